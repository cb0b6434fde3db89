//! Connections to backends: a keep-alive pool of HTTP/1.1 connections (hyper-util's legacy
//! client) and one multiplexed h2c connection per endpoint.
//!
//! HTTP/1.1 requests are sent to `http://<endpoint>/<path>` with the client's `Host` header,
//! so the pool is keyed by endpoint. HTTP/2 has no `Host` line: the target host travels in
//! `:authority` (RFC 9113 §8.3.1), which hyper takes from the request URI; the legacy
//! client would then key its pool by that host rather than by endpoint, so h2c uses its own
//! small pool of [`SendRequest`] handles, one connection per endpoint, reconnecting when one
//! closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::ProxyBody;
use super::error::ProxyError;
use crate::gateway::UpstreamProtocol;

/// How long connecting to a backend may take before the request fails with 502. This bounds
/// a connection attempt to an endpoint that silently drops SYNs, not the request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled HTTP/1.1 connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The client side of the proxy, shared by every connection.
pub struct Upstreams {
    http1: Client<HttpConnector, ProxyBody>,
    h2c: Mutex<HashMap<SocketAddr, SendRequest<ProxyBody>>>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Clients with no connection yet.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self {
            http1,
            h2c: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` to `endpoint`. The request's URI carries only path and query; `host` is
    /// the host the backend should see (`Host` for HTTP/1.1, `:authority` for h2c).
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        protocol: UpstreamProtocol,
        host: Option<&Authority>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match protocol {
            UpstreamProtocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                super::headers::remove_te_for_http1(req.headers_mut());
                *req.uri_mut() = uri(&endpoint_authority(endpoint)?, path)?;
                if let Some(host) = host
                    && let Ok(value) = host.as_str().parse()
                {
                    req.headers_mut().insert(HOST, value);
                }
                self.http1.request(req).await.map_err(|err| {
                    if err.is_connect() {
                        ProxyError::Connect {
                            endpoint,
                            source: err.into(),
                        }
                    } else {
                        ProxyError::Upstream {
                            endpoint,
                            source: err.into(),
                        }
                    }
                })
            }
            UpstreamProtocol::H2c => {
                *req.version_mut() = Version::HTTP_2;
                let authority = match host {
                    Some(host) => host.clone(),
                    None => endpoint_authority(endpoint)?,
                };
                *req.uri_mut() = uri(&authority, path)?;
                // RFC 9113 §8.3.1: the host goes in `:authority`, not in a Host field.
                req.headers_mut().remove(HOST);
                self.send_h2c(endpoint, req).await
            }
        }
    }

    async fn send_h2c(
        &self,
        endpoint: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pooled = self
            .h2c
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&endpoint)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => {
                let sender = connect_h2c(endpoint).await?;
                // Two requests racing here each open a connection; the last one is kept
                // and the other closes once its request is done.
                self.h2c
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(endpoint, sender.clone());
                sender
            }
        };
        let upstream = |source: hyper::Error| ProxyError::Upstream {
            endpoint,
            source: source.into(),
        };
        sender.ready().await.map_err(upstream)?;
        sender.send_request(req).await.map_err(upstream)
    }
}

async fn connect_h2c(endpoint: SocketAddr) -> Result<SendRequest<ProxyBody>, ProxyError> {
    let connect_err = |source: super::error::BoxError| ProxyError::Connect { endpoint, source };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
        .await
        .map_err(|elapsed| connect_err(elapsed.into()))?
        .map_err(|err| connect_err(err.into()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| connect_err(err.into()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%endpoint, "h2c connection closed: {err}");
        }
    });
    Ok(sender)
}

fn endpoint_authority(endpoint: SocketAddr) -> Result<Authority, ProxyError> {
    endpoint
        .to_string()
        .parse()
        .map_err(|e: http::uri::InvalidUri| ProxyError::BadRequest(e.to_string()))
}

fn uri(authority: &Authority, path: PathAndQuery) -> Result<Uri, ProxyError> {
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| ProxyError::BadRequest(e.to_string()))
}

/// Picks an endpoint uniformly at random. Random rather than round-robin: every proxy
/// thread and every lbgw instance spreads load without shared counters.
pub fn pick_endpoint(endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    if endpoints.is_empty() {
        return None;
    }
    endpoints.get(fastrand::usize(..endpoints.len())).copied()
}
