//! WebSocket (RFC 6455) over HTTP/1.1: the `Upgrade` request is forwarded with `Connection:
//! upgrade` kept, and when the backend answers `101 Switching Protocols` the two upgraded
//! connections are joined byte for byte.
//!
//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) are not supported: lbgw does not send
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so HTTP/2 clients open WebSockets over HTTP/1.1.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client's and the backend's upgraded connections once both are ready, in a task
/// of its own that ends when either side closes.
pub fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!("upgrade failed: {err}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(err) => tracing::debug!("upgraded connection: {err}"),
        }
    });
}
