//! RequestMirror: a copy of the request goes to another backend, and its answer is thrown
//! away.
//!
//! The copy is sent from a task of its own, so it never delays or fails the main request.
//! Only requests whose body lbgw holds whole are mirrored: bodyless ones, and small bodies
//! with a known length that `request` buffers for this purpose; a streamed body can be read
//! only once, so such a request is forwarded without its mirror copy (logged at debug).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::uri::Authority;
use http_body_util::BodyExt;

use super::body;
use super::upstream::Upstreams;
use crate::gateway::UpstreamProtocol;

/// Mirrored requests that take longer than this are abandoned, so a slow mirror backend
/// cannot pile up tasks.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// A mirrored request, ready to send.
pub struct MirrorRequest {
    /// The request (path-only URI, final headers).
    pub request: Request<()>,
    /// The body, when it has one.
    pub body: Option<Bytes>,
    /// The forwarded host.
    pub host: Option<Authority>,
    /// Where it goes.
    pub endpoint: SocketAddr,
    /// How.
    pub protocol: UpstreamProtocol,
}

/// Sends `mirror` in the background; its response body is read to the end (so the
/// connection can be reused) and dropped.
pub fn spawn(upstreams: Arc<Upstreams>, mirror: MirrorRequest) {
    tokio::spawn(async move {
        let (parts, ()) = mirror.request.into_parts();
        let body = mirror.body.map_or_else(body::empty, body::full);
        let request = Request::from_parts(parts, body);
        let send = async {
            let response = upstreams
                .send(
                    mirror.endpoint,
                    mirror.protocol,
                    mirror.host.as_ref(),
                    request,
                )
                .await?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            Ok::<_, super::error::ProxyError>(status)
        };
        match tokio::time::timeout(MIRROR_TIMEOUT, send).await {
            Ok(Ok(status)) => tracing::debug!(endpoint = %mirror.endpoint, %status, "mirrored"),
            Ok(Err(err)) => tracing::debug!(endpoint = %mirror.endpoint, "mirror failed: {err}"),
            Err(_) => tracing::debug!(endpoint = %mirror.endpoint, "mirror timed out"),
        }
    });
}
