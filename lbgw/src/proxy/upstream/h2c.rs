//! Cleartext HTTP/2 (h2c, prior knowledge) to backends: one multiplexed connection per
//! endpoint, reconnecting when it closes. The connection runs in a task of its own, since
//! many requests' streams share it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use http::{Request, Response};
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::super::body::{self, ProxyBody};
use super::super::error::ProxyError;

/// One [`SendRequest`] handle per endpoint.
#[derive(Default)]
pub(super) struct Pool {
    senders: Mutex<HashMap<SocketAddr, SendRequest<ProxyBody>>>,
}

impl Pool {
    pub(super) async fn send(
        &self,
        endpoint: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let pooled = self
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&endpoint)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => {
                let sender = connect(endpoint).await?;
                // Two requests racing here each open a connection; the last one is kept
                // and the other closes once its request is done.
                self.senders
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
        let response = sender.send_request(req).await.map_err(upstream)?;
        Ok(response.map(body::incoming))
    }
}

async fn connect(endpoint: SocketAddr) -> Result<SendRequest<ProxyBody>, ProxyError> {
    let stream = super::connect(endpoint).await?;
    let (sender, connection) = Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| ProxyError::Connect {
            endpoint,
            source: err.into(),
        })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%endpoint, "h2c connection closed: {err}");
        }
    });
    Ok(sender)
}
