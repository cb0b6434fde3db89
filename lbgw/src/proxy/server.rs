//! One client connection: which listeners serve it, TLS when they are HTTPS, then HTTP/1.1
//! or HTTP/2 (hyper-util's auto server: h2 by ALPN or prior knowledge, else HTTP/1.1).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::limits::ConnState;
use super::metrics::ReasonLabels;
use super::{Conn, Shared, request, tls};
use crate::config::error_chain;
use crate::gateway::{ListenerProtocol, PortModel};

/// The first byte of a TLS handshake record (RFC 8446 §5.1, ContentType handshake(22)).
const TLS_HANDSHAKE: u8 = 0x16;
/// How often an idle HTTP/2 connection is pinged (PING frames, RFC 9113 §6.7), so that dead
/// peers and idle connections whose NAT state vanished are noticed and closed.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a keep-alive PING may go unacknowledged before the connection is closed.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The listeners of `port` that serve a connection addressed to `local`: those whose Gateway
/// has that address, or all of them when none has (e.g. `--no-xdp` on 127.0.0.1, where the
/// VIPs are not local addresses).
pub fn serving_listeners(port: &PortModel, local: IpAddr) -> Vec<usize> {
    let local = local.to_canonical();
    let matching: Vec<usize> = port
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.addresses.contains(&local))
        .map(|(i, _)| i)
        .collect();
    if matching.is_empty() {
        (0..port.listeners.len()).collect()
    } else {
        matching
    }
}

/// Serves a connection accepted on the socket for Gateway port `gateway_port`.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    gateway_port: u16,
    drain: watch::Receiver<bool>,
) {
    shared.metrics.connections.inc();
    shared.worker_connections.inc();
    shared.metrics.active_connections.inc();
    serve_connection(&shared, stream, peer, gateway_port, drain).await;
    shared.metrics.active_connections.dec();
}

async fn serve_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    gateway_port: u16,
    drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(err) => {
            tracing::debug!(%peer, "local address: {err}");
            return;
        }
    };
    // The model is taken once per connection: a reload applies to new connections.
    let model = shared.model.load_full();
    let Some(port_index) = model.ports.iter().position(|p| p.port == gateway_port) else {
        tracing::debug!(%peer, gateway_port, "port no longer served");
        return;
    };
    let port = &model.ports[port_index];
    let listeners = serving_listeners(port, local.ip());
    let https = listeners
        .iter()
        .any(|&i| port.listeners[i].protocol == ListenerProtocol::Https);
    let http = listeners
        .iter()
        .any(|&i| port.listeners[i].protocol == ListenerProtocol::Http);
    // Gateways with HTTP and HTTPS listeners on one port (only possible when no VIP tells
    // them apart): the first byte says which.
    let tls = if https && http {
        // A client that connects and sends nothing is closed after the handshake timeout.
        match starts_with_tls(&stream).await {
            Some(tls) => tls,
            None => {
                tracing::debug!(%peer, "no first byte within {:?}", tls::HANDSHAKE_TIMEOUT);
                return;
            }
        }
    } else {
        https
    };
    let protocol = if tls {
        ListenerProtocol::Https
    } else {
        ListenerProtocol::Http
    };
    let listeners: Vec<usize> = listeners
        .into_iter()
        .filter(|&i| port.listeners[i].protocol == protocol)
        .collect();

    if tls {
        let candidates = listeners.iter().map(|&i| (i, &port.listeners[i]));
        match tls::accept(stream, peer, candidates, &shared.tls).await {
            Ok((stream, chosen)) => {
                let conn = Conn {
                    model: Arc::clone(&model),
                    port_index,
                    listeners,
                    tls: Some(chosen),
                    peer,
                    local,
                };
                serve_http(shared, conn, stream, drain).await;
            }
            Err(err) => {
                shared
                    .metrics
                    .tls_handshake_failures
                    .get_or_create(&ReasonLabels {
                        reason: tls::failure_reason(&err),
                    })
                    .inc();
                tracing::debug!(%peer, "{}", error_chain(&err));
            }
        }
    } else {
        let conn = Conn {
            model: Arc::clone(&model),
            port_index,
            listeners,
            tls: None,
            peer,
            local,
        };
        serve_http(shared, conn, stream, drain).await;
    }
}

/// Whether the first byte is a TLS handshake record; `None` when the client sends nothing
/// within the TLS handshake timeout.
async fn starts_with_tls(stream: &TcpStream) -> Option<bool> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, stream.peek(&mut first))
        .await
        .ok()?;
    Some(matches!(peeked, Ok(1) if first[0] == TLS_HANDSHAKE))
}

/// Serves HTTP on `io` until the client closes, the connection idles out or misbehaves, or
/// the proxy drains (then gracefully: HTTP/1.1 closes after the response in progress, HTTP/2
/// sends GOAWAY and finishes its streams).
async fn serve_http<IO>(shared: &Arc<Shared>, conn: Conn, io: IO, mut drain: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let limits = &shared.limits;
    let state = Arc::new(ConnState::new(limits.max_premature_resets));
    let conn = Arc::new(ArcSwap::from_pointee(conn));
    let service = {
        let shared = Arc::clone(shared);
        let state = Arc::clone(&state);
        service_fn(move |req: hyper::Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let conn = current(&shared, &conn);
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(request::handle(shared, conn, state, req).await) }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when the head outgrows the buffer or has too many fields.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    // HTTP/2 has no header read timeout; keep-alive PINGs close connections whose peer is
    // gone instead of holding them (and their streams) forever.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    if *drain.borrow_and_update() {
        connection.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, "connection: {err}");
                }
                return;
            }
            changed = drain.changed(), if !closing => {
                // The sender gone means the proxy is gone too: close as when draining.
                let _ = changed;
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            reason = state.close_signal(limits.idle_timeout), if !closing => {
                shared.metrics.connections_closed
                    .get_or_create(&ReasonLabels { reason: reason.label() })
                    .inc();
                match reason {
                    super::limits::CloseReason::Idle => {
                        tracing::debug!(%peer, "idle timeout; closing the connection");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    super::limits::CloseReason::PrematureResets => {
                        tracing::warn!(%peer, "client reset too many requests before their \
                            response (HTTP/2 rapid reset, CVE-2023-44487); connection closed");
                        return;
                    }
                }
            }
        }
    }
}

/// The connection as the current model sees it: rebound once after each reload, so that
/// keep-alive connections see new routes and endpoints.
fn current(shared: &Shared, conn: &ArcSwap<Conn>) -> Arc<Conn> {
    let view = conn.load_full();
    let model = shared.model.load();
    if Arc::ptr_eq(&view.model, &model) {
        return view;
    }
    match view.rebind(Arc::clone(&model)) {
        Some(rebound) => {
            let rebound = Arc::new(rebound);
            conn.store(Arc::clone(&rebound));
            rebound
        }
        None => view,
    }
}
