//! One client connection: which listeners serve it, TLS when they are HTTPS, then HTTP/1.1
//! or HTTP/2 (hyper-util's auto server: h2 by ALPN or prior knowledge, else HTTP/1.1).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Conn, Shared, request, tls};
use crate::config::error_chain;
use crate::gateway::{ListenerProtocol, PortModel};

/// How long a client may take to send a request head (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
    watcher: Watcher,
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
                };
                serve_http(shared, conn, stream, watcher).await;
            }
            Err(err) => tracing::debug!(%peer, "{}", error_chain(&err)),
        }
    } else {
        let conn = Conn {
            model: Arc::clone(&model),
            port_index,
            listeners,
            tls: None,
            peer,
        };
        serve_http(shared, conn, stream, watcher).await;
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

async fn serve_http<IO>(shared: Arc<Shared>, conn: Conn, io: IO, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let conn = Arc::clone(&conn);
        async move { Ok::<_, Infallible>(request::handle(shared, conn, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2 has no header read timeout; keep-alive PINGs close connections whose peer is
    // gone instead of holding them (and their streams) forever.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, "connection: {err}");
    }
}
