//! Listener sockets: per Gateway port, one socket per worker in an `SO_REUSEPORT` group, and
//! the accept loops that serve what each accepts on its own worker.
//!
//! With `SO_REUSEPORT` (socket(7)) the kernel spreads new connections over the sockets of the
//! group by a hash of the 4-tuple, so each worker accepts its own share and serves it without
//! handing it to another thread. The `sk_lookup` program (steered mode) puts one member of the
//! group into its socket map: the kernel applies the group's selection to a socket the
//! program chose as well, unless it asked for `BPF_SK_LOOKUP_F_NO_REUSEPORT`
//! (net/ipv4/inet_hashtables.c `inet_lookup_run_sk_lookup`, Documentation/bpf/prog_sk_lookup.rst
//! "SO_REUSEPORT").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::error::ProxyError;
use super::metrics::ReasonLabels;
use super::{Shared, server};

/// Backlog of each listener socket.
const BACKLOG: i32 = 1024;

/// Binds `count` listening sockets on `ip:port` (one, or an `SO_REUSEPORT` group). Without
/// `ip`, on every address: `[::]` accepting IPv4 too (IPV6_V6ONLY off), or `0.0.0.0` when the
/// host has no IPv6. Port 0 binds the first socket on an ephemeral port and the others on the
/// same port.
pub fn bind_group(
    ip: Option<IpAddr>,
    port: u16,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, ProxyError> {
    let reuse_port = count > 1;
    let first = match ip {
        Some(ip) => bind_one(SocketAddr::new(ip, port), reuse_port)?,
        None => bind_one(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            reuse_port,
        )
        .or_else(|err| {
            tracing::debug!("dual-stack bind failed ({err}); binding IPv4 only");
            bind_one(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
                reuse_port,
            )
        })?,
    };
    let addr = first.local_addr().map_err(|source| ProxyError::Bind {
        addr: SocketAddr::new(ip.unwrap_or(Ipv6Addr::UNSPECIFIED.into()), port),
        source,
    })?;
    let mut group = Vec::with_capacity(count);
    group.push(first);
    for _ in 1..count {
        // On error the sockets bound so far are closed as `group` drops.
        group.push(bind_one(addr, true)?);
    }
    Ok(group)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> Result<std::net::TcpListener, ProxyError> {
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
    if reuse_port {
        // socket(7): every socket of the group sets it before bind(2), all under one user.
        socket.set_reuse_port(true).map_err(bind_err)?;
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)?;
    Ok(socket.into())
}

/// What an accept loop needs besides its socket.
pub struct Accepting {
    /// The Gateway port the socket serves.
    pub gateway_port: u16,
    /// The worker's state.
    pub shared: Arc<Shared>,
    /// Becomes true when the proxy serves ([`super::Proxy::serve`]); until then connections
    /// wait in the backlog.
    pub serving: watch::Receiver<bool>,
    /// Handed to every connection: becomes true when the proxy drains.
    pub drain: watch::Receiver<bool>,
}

/// Accepts connections on `listener` and serves each in a task of this worker, until the
/// task is aborted (the port closed, the proxy draining).
pub async fn accept_loop(listener: TcpListener, mut accepting: Accepting) {
    if accepting
        .serving
        .wait_for(|serving| *serving)
        .await
        .is_err()
    {
        return;
    }
    let Accepting {
        gateway_port,
        shared,
        drain,
        ..
    } = accepting;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
                    // Over the connection limit: closed at once, the others go on.
                    shared
                        .metrics
                        .connections_closed
                        .get_or_create(&ReasonLabels {
                            reason: "connection_limit",
                        })
                        .inc();
                    tracing::debug!(%peer, "connection limit reached; connection closed");
                    continue;
                };
                let shared = Arc::clone(&shared);
                let drain = drain.clone();
                tokio::spawn(async move {
                    server::serve(shared, stream, peer, gateway_port, drain).await;
                    drop(permit);
                });
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(gateway_port, "accept: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
