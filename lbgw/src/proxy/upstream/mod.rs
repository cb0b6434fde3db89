//! Connections to backends, per proxy worker:
//!
//! - [`http1`]: a keep-alive pool of HTTP/1.1 connections that are driven inside the task of
//!   the request using them, not in tasks of their own;
//! - [`h2c`]: one multiplexed cleartext HTTP/2 connection per endpoint.
//!
//! HTTP/1.1 requests go out in origin form (`/path?query`, RFC 9112 §3.2.1) with the client's
//! `Host`, so the pool is keyed by endpoint. HTTP/2 has no `Host` line: the target host travels
//! in `:authority` (RFC 9113 §8.3.1), which hyper takes from the request URI.

mod h2c;
mod http1;

use std::net::SocketAddr;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use tokio::net::TcpStream;

use super::body::ProxyBody;
use super::error::ProxyError;
use crate::gateway::UpstreamProtocol;

/// How long connecting to a backend may take before the request fails with 502. This bounds
/// a connection attempt to an endpoint that silently drops SYNs, not the request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client side of one proxy worker.
#[derive(Default)]
pub struct Upstreams {
    http1: http1::Pool,
    h2c: h2c::Pool,
}

impl Upstreams {
    /// Clients with no connection yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to `endpoint`. The request's URI carries only path and query; `host` is
    /// the host the backend should see (`Host` for HTTP/1.1, `:authority` for h2c).
    ///
    /// The response body streams from the backend. For HTTP/1.1 it also drives the backend
    /// connection, which goes back to the pool once the body has been read to its end.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        protocol: UpstreamProtocol,
        host: Option<&Authority>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match protocol {
            UpstreamProtocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                super::headers::remove_te_for_http1(req.headers_mut());
                *req.uri_mut() = Uri::from(path);
                let host = match host {
                    Some(host) => HeaderValue::from_str(host.as_str()).ok(),
                    None => HeaderValue::from_str(&endpoint.to_string()).ok(),
                };
                if let Some(host) = host {
                    req.headers_mut().insert(HOST, host);
                }
                self.http1.send(endpoint, req).await
            }
            UpstreamProtocol::H2c => {
                *req.version_mut() = Version::HTTP_2;
                let authority = match host {
                    Some(host) => host.clone(),
                    None => endpoint_authority(endpoint)?,
                };
                *req.uri_mut() = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(authority)
                    .path_and_query(path)
                    .build()
                    .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
                // RFC 9113 §8.3.1: the host goes in `:authority`, not in a Host field.
                req.headers_mut().remove(HOST);
                Box::pin(self.h2c.send(endpoint, req)).await
            }
        }
    }
}

/// A TCP connection to `endpoint` with Nagle off, within [`CONNECT_TIMEOUT`].
async fn connect(endpoint: SocketAddr) -> Result<TcpStream, ProxyError> {
    let connect_err = |source: super::error::BoxError| ProxyError::Connect { endpoint, source };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
        .await
        .map_err(|elapsed| connect_err(elapsed.into()))?
        .map_err(|err| connect_err(err.into()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn endpoint_authority(endpoint: SocketAddr) -> Result<Authority, ProxyError> {
    endpoint
        .to_string()
        .parse()
        .map_err(|e: http::uri::InvalidUri| ProxyError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests;
