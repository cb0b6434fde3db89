//! Listener sockets: one per Gateway port, and the accept loops feeding connections to the
//! server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::error::ProxyError;

/// Backlog of each listener socket.
const BACKLOG: i32 = 1024;

/// An accepted connection and the Gateway port whose socket took it.
pub type Accepted = (TcpStream, SocketAddr, u16);

/// Binds a listening socket on `ip:port`. Without `ip`, on every address: `[::]` accepting
/// IPv4 too (IPV6_V6ONLY off), or `0.0.0.0` when the host has no IPv6.
pub fn bind(ip: Option<IpAddr>, port: u16) -> Result<TcpListener, ProxyError> {
    match ip {
        Some(ip) => bind_one(SocketAddr::new(ip, port)),
        None => bind_one(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).or_else(|err| {
            tracing::debug!("dual-stack bind failed ({err}); binding IPv4 only");
            bind_one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))
        }),
    }
}

fn bind_one(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let bind_err = |source| ProxyError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_err)?;
    if addr.is_ipv6() {
        // The wildcard `[::]` takes IPv4 too; a specific IPv6 address (`::1` for sk_lookup
        // steering) takes only IPv6.
        socket
            .set_only_v6(!addr.ip().is_unspecified())
            .map_err(bind_err)?;
    }
    // A restarted lbgw must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)?;
    TcpListener::from_std(socket.into()).map_err(bind_err)
}

/// Accepts connections on `listener` for `gateway_port` and hands them to `tx` until the
/// receiver is gone.
pub async fn accept_loop(listener: TcpListener, gateway_port: u16, tx: mpsc::Sender<Accepted>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if tx.send((stream, peer, gateway_port)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(gateway_port, "accept: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
