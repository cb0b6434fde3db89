//! The Gateway API data path: an HTTP/1.1, HTTP/2 and TLS proxy serving the [`GatewayModel`].
//!
//! The modules follow a request:
//! - `listener`: one socket per Gateway port, bound on all addresses (or `--bind`);
//! - `server`: a connection: the listeners serving its local address, TLS, HTTP/1.1 or h2;
//! - `tls`: SNI picks the HTTPS listener and its certificate;
//! - `request`: route, filters ([`filters`], `cors`), backend, timeouts, retries (`retry`);
//! - `headers`: hop-by-hop fields, `X-Forwarded-*`, `Via`;
//! - `upstream`: pooled HTTP/1.1 and h2c connections to endpoints;
//! - `mirror`: RequestMirror copies; `upgrade`: WebSocket tunnels;
//! - `error`: what goes wrong, on which side, and the status the client gets.
//!
//! Hygiene lbgw applies to every forwarded request: hop-by-hop fields removed (RFC 9110
//! §7.6.1), `X-Forwarded-For` appended with the client address, `X-Forwarded-Proto` and
//! `X-Forwarded-Host` set, the client's Host kept unless a URLRewrite changes it, and
//! `Via: <version> lbgw` appended (RFC 9110 §7.6.3: `1.1 lbgw` for an HTTP/1.1 request,
//! `2 lbgw` for HTTP/2) on requests and responses. lbgw's own error responses are a short
//! `text/plain` status line.

mod body;
mod cors;
pub mod error;
pub mod filters;
mod headers;
mod listener;
mod mirror;
mod request;
pub mod retry;
mod server;
pub mod tls;
mod upgrade;
pub mod upstream;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::body::ProxyBody;
pub use self::error::{ProxyError, Side};

use self::tls::TlsConfigs;
use self::upstream::Upstreams;
use crate::gateway::{GatewayModel, PortModel};

/// How the proxy binds.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Address to bind every Gateway port on; `None` for all addresses (dual-stack).
    pub bind: Option<IpAddr>,
    /// Bind each Gateway port on an ephemeral port instead (tests); [`Proxy::local_addrs`]
    /// says which.
    pub ephemeral_ports: bool,
    /// How long in-flight requests may go on after shutdown began.
    pub drain_timeout: Duration,
    /// Bind every Gateway port twice on loopback, `127.0.0.1` and `[::1]` (IPv6 only), on
    /// ephemeral ports, for the `sk_lookup` program to hand VIP connections to (it cannot give
    /// an IPv4 connection to a dual-stack socket bound to `::1`); `bind` and
    /// `ephemeral_ports` are then ignored.
    pub steered: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            bind: None,
            ephemeral_ports: false,
            drain_timeout: Duration::from_secs(5),
            steered: false,
        }
    }
}

/// State every connection shares.
pub(crate) struct Shared {
    /// The model; swapped whole on reload.
    pub(crate) model: Arc<ArcSwap<GatewayModel>>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) tls: TlsConfigs,
}

/// A connection, as requests on it see it.
pub(crate) struct Conn {
    /// The model the connection was accepted under.
    pub(crate) model: Arc<GatewayModel>,
    /// Index of its port in `model.ports`.
    pub(crate) port_index: usize,
    /// Indices (in the port's listeners) of the listeners serving it, all of one protocol.
    pub(crate) listeners: Vec<usize>,
    /// The listener TLS chose (HTTPS).
    pub(crate) tls: Option<usize>,
    /// The client.
    pub(crate) peer: SocketAddr,
}

impl Conn {
    pub(crate) fn port(&self) -> &PortModel {
        &self.model.ports[self.port_index]
    }
}

/// The proxy: bound sockets, ready to serve.
pub struct Proxy {
    shared: Arc<Shared>,
    sockets: Vec<(u16, TcpListener)>,
    drain_timeout: Duration,
}

impl Proxy {
    /// Binds one socket per port of the current model. Must be called within a Tokio
    /// runtime.
    pub fn bind(
        model: Arc<ArcSwap<GatewayModel>>,
        opts: &ProxyOptions,
    ) -> Result<Self, ProxyError> {
        let ports: Vec<u16> = model.load().ports.iter().map(|p| p.port).collect();
        let sockets = if opts.steered {
            ports
                .into_iter()
                .flat_map(|port| {
                    [
                        IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                    ]
                    .map(|ip| listener::bind(Some(ip), 0).map(|socket| (port, socket)))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            ports
                .into_iter()
                .map(|port| {
                    let bind_port = if opts.ephemeral_ports { 0 } else { port };
                    listener::bind(opts.bind, bind_port).map(|socket| (port, socket))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        for (port, socket) in &sockets {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(gateway_port = port, "proxy listening on {addr}");
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                model,
                upstreams: Arc::new(Upstreams::new()),
                tls: TlsConfigs::default(),
            }),
            sockets,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// The Gateway port, address family (true: IPv6) and listening socket of every socket,
    /// for the `sk_lookup` steering.
    pub fn listener_fds(&self) -> Vec<(u16, bool, std::os::fd::BorrowedFd<'_>)> {
        use std::os::fd::AsFd;
        self.sockets
            .iter()
            .filter_map(|(port, s)| Some((*port, s.local_addr().ok()?.is_ipv6(), s.as_fd())))
            .collect()
    }

    /// The Gateway port and local address of every socket.
    pub fn local_addrs(&self) -> Vec<(u16, SocketAddr)> {
        self.sockets
            .iter()
            .filter_map(|(port, s)| s.local_addr().ok().map(|a| (*port, a)))
            .collect()
    }

    /// Serves until `shutdown` completes; then stops accepting and lets open connections
    /// finish their requests (HTTP/1.1 closes after the current response, HTTP/2 sends
    /// GOAWAY) for at most the drain timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<listener::Accepted>(256);
        let accept_tasks: Vec<_> = self
            .sockets
            .into_iter()
            .map(|(port, socket)| tokio::spawn(listener::accept_loop(socket, port, tx.clone())))
            .collect();
        drop(tx);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = rx.recv() => {
                    let Some((stream, peer, port)) = accepted else { break };
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(server::serve(shared, stream, peer, port, graceful.watcher()));
                }
            }
        }
        for task in &accept_tasks {
            task.abort();
        }
        drop(rx);
        tracing::info!(connections = graceful.count(), "proxy draining");
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("proxy drain timed out; closing open connections");
        }
    }
}

impl Proxy {
    /// Serves in a task of its own until [`RunningProxy::stop`].
    pub fn spawn(self) -> RunningProxy {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(self.serve(async {
            let _ = rx.await;
        }));
        RunningProxy { stop: tx, task }
    }
}

/// A proxy serving in the background.
pub struct RunningProxy {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningProxy {
    /// Stops accepting, lets in-flight requests finish (up to the drain timeout) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(err) = self.task.await {
            tracing::warn!("proxy task: {err}");
        }
    }
}
