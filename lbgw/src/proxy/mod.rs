//! The Gateway API data path: an HTTP/1.1, HTTP/2 and TLS proxy serving the [`GatewayModel`].
//!
//! The modules follow a request:
//! - `workers`: N threads, each a single-threaded runtime serving the connections it accepts
//!   with its own upstream pool (thread per core);
//! - `listener`: per Gateway port, one `SO_REUSEPORT` socket per worker, bound on all
//!   addresses (or `--bind`);
//! - `server`: a connection: the listeners serving its local address, TLS, HTTP/1.1 or h2;
//! - `tls`: SNI picks the HTTPS listener and its certificate;
//! - `request`: route, filters ([`filters`], `cors`), backend, timeouts, retries (`retry`);
//! - `headers`: hop-by-hop fields, `X-Forwarded-*`, `Via`;
//! - `upstream`: pooled HTTP/1.1 and h2c connections to endpoints;
//! - `mirror`: RequestMirror copies; `upgrade`: WebSocket tunnels;
//! - `error`: what goes wrong, on which side, and the status the client gets;
//! - [`limits`]: connection limit, header size/count and read timeout, idle timeout, HTTP/2
//!   stream limits and rapid-reset (CVE-2023-44487) defence;
//! - [`outlier`]: passive outlier detection, which endpoints requests may go to;
//! - `exchange`: one request as observed, finished when its response body is sent: the
//!   [`metrics`] and the `access_log` line.
//!
//! The model is swapped whole on reload ([`ProxyHandle::update`]): listener ports are bound
//! and closed to match, open connections pick up the new model at their next request.
//!
//! Hygiene lbgw applies to every forwarded request: hop-by-hop fields removed (RFC 9110
//! §7.6.1), `X-Forwarded-For` appended with the client address, `X-Forwarded-Proto` and
//! `X-Forwarded-Host` set, the client's Host kept unless a URLRewrite changes it, and
//! `Via: <version> lbgw` appended (RFC 9110 §7.6.3: `1.1 lbgw` for an HTTP/1.1 request,
//! `2 lbgw` for HTTP/2) on requests and responses. lbgw's own error responses are a short
//! `text/plain` status line.

mod access_log;
mod body;
mod cors;
pub mod error;
mod exchange;
pub mod filters;
mod headers;
pub mod limits;
mod listener;
pub mod metrics;
mod mirror;
pub mod outlier;
mod request;
pub mod retry;
mod server;
pub mod tls;
mod upgrade;
pub mod upstream;
mod workers;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

pub use self::access_log::{AccessLog, AccessLogFormat};
pub use self::body::ProxyBody;
pub use self::error::{ProxyError, Side};
pub use self::limits::Limits;
pub use self::metrics::ProxyMetrics;
use self::metrics::RouteMetricsCache;
pub use self::outlier::{EndpointHealth, OutlierOptions, Outliers};
pub use self::workers::default_count as default_workers;

use self::tls::TlsConfigs;
use self::upstream::Upstreams;
use crate::gateway::{GatewayModel, ListenerProtocol, PortModel};

/// How the proxy binds, and the knobs of `lbgw run` it follows.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Address to bind every Gateway port on; `None` for all addresses (dual-stack).
    pub bind: Option<IpAddr>,
    /// Bind each Gateway port on an ephemeral port instead (tests); [`Proxy::local_addrs`]
    /// says which.
    pub ephemeral_ports: bool,
    /// How long in-flight requests may go on after shutdown began.
    pub drain_timeout: Duration,
    /// Connection, header and HTTP/2 limits.
    pub limits: Limits,
    /// Passive outlier detection.
    pub outlier: OutlierOptions,
    /// Where metrics are counted (shared with the admin endpoint).
    pub metrics: Arc<ProxyMetrics>,
    /// Where access log lines go.
    pub access_log: AccessLog,
    /// Bind every Gateway port twice on loopback, `127.0.0.1` and `[::1]` (IPv6 only), on
    /// ephemeral ports, for the `sk_lookup` program to hand VIP connections to (it cannot give
    /// an IPv4 connection to a dual-stack socket bound to `::1`); `bind` and
    /// `ephemeral_ports` are then ignored. [`ProxyHandle::listener_fds`] gives the sockets.
    pub steered: bool,
    /// Worker threads, each with its own socket per port and upstream pool (at least 1).
    pub workers: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            bind: None,
            ephemeral_ports: false,
            drain_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            outlier: OutlierOptions::default(),
            metrics: Arc::default(),
            access_log: AccessLog::Off,
            steered: false,
            workers: workers::default_count(),
        }
    }
}

/// State the connections of a worker share; all but the upstream pool is shared by every
/// worker.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The model; swapped whole on reload.
    pub(crate) model: Arc<ArcSwap<GatewayModel>>,
    /// The worker's own backend connections.
    pub(crate) upstreams: Arc<Upstreams>,
    /// The worker's handles on the request metrics of each route and backend.
    pub(crate) route_metrics: Arc<RouteMetricsCache>,
    pub(crate) tls: Arc<TlsConfigs>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) access_log: AccessLog,
    pub(crate) outliers: Arc<Outliers>,
    /// One permit per open client connection.
    pub(crate) connections: Arc<Semaphore>,
    /// Connections the worker accepted (its series of `worker_connections`).
    pub(crate) worker_connections: Counter,
}

/// A connection, as requests on it see it: the model it is served under, which changes when
/// a reload swaps the model (see [`Conn::rebind`]).
pub(crate) struct Conn {
    /// The model.
    pub(crate) model: Arc<GatewayModel>,
    /// Index of its port in `model.ports`.
    pub(crate) port_index: usize,
    /// Indices (in the port's listeners) of the listeners serving it, all of one protocol.
    pub(crate) listeners: Vec<usize>,
    /// The listener TLS chose (HTTPS).
    pub(crate) tls: Option<usize>,
    /// The client.
    pub(crate) peer: SocketAddr,
    /// The local address the client connected to.
    pub(crate) local: SocketAddr,
}

impl Conn {
    pub(crate) fn port(&self) -> &PortModel {
        &self.model.ports[self.port_index]
    }

    /// The same connection under `model`, after a reload: its port and listeners looked up
    /// again (by port, local address and protocol; the TLS listener by Gateway and name).
    /// `None` when the new model no longer serves it: the connection then goes on under
    /// the model it had until it closes.
    pub(crate) fn rebind(&self, model: Arc<GatewayModel>) -> Option<Conn> {
        let old_port = self.port();
        let protocol = if self.tls.is_some() {
            ListenerProtocol::Https
        } else {
            ListenerProtocol::Http
        };
        let port_index = model.ports.iter().position(|p| p.port == old_port.port)?;
        let port = &model.ports[port_index];
        let listeners: Vec<usize> = server::serving_listeners(port, self.local.ip())
            .into_iter()
            .filter(|&i| port.listeners[i].protocol == protocol)
            .collect();
        if listeners.is_empty() {
            return None;
        }
        let tls = match self.tls {
            None => None,
            Some(chosen) => {
                let old = &old_port.listeners[chosen];
                Some(listeners.iter().copied().find(|&i| {
                    let l = &port.listeners[i];
                    l.gateway == old.gateway && l.name == old.name
                })?)
            }
        };
        Some(Conn {
            model,
            port_index,
            listeners,
            tls,
            peer: self.peer,
            local: self.local,
        })
    }
}

/// The proxy: bound sockets and started workers, ready to serve.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    threads: workers::Threads,
    serving: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    drain_timeout: Duration,
}

/// The bound listener sockets: per Gateway port, one per worker (per address when steered),
/// each with its accept loop on its worker.
struct Listeners {
    bind: Option<IpAddr>,
    ephemeral_ports: bool,
    steered: bool,
    workers: Vec<workers::Worker>,
    serving: watch::Receiver<bool>,
    bound: Mutex<Bound>,
}

/// The sockets of every port, and the drain receiver handed to new accept loops (taken when
/// the proxy closes its listeners, so that only connections hold one).
struct Bound {
    ports: BTreeMap<u16, PortSockets>,
    drain: Option<watch::Receiver<bool>>,
}

/// The sockets of one Gateway port: a group per address (one address, or two when steered:
/// IPv4 and IPv6 loopback), one socket per worker in each.
struct PortSockets {
    groups: Vec<Group>,
}

/// The `SO_REUSEPORT` group of one address.
struct Group {
    addr: SocketAddr,
    /// A duplicate of the first socket's fd, for the `sk_lookup` listener map: the kernel
    /// picks the group member from there.
    fd: std::os::fd::OwnedFd,
    /// The accept loops, one per worker; each owns its socket.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Group {
    fn drop(&mut self) {
        // The accept loops own the sockets: aborting them (and closing `fd`) closes the
        // sockets, which also takes them out of the kernel's listener map.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PortSockets {
    fn addrs(&self) -> String {
        let addrs: Vec<String> = self.groups.iter().map(|g| g.addr.to_string()).collect();
        addrs.join(", ")
    }
}

impl Listeners {
    fn bind_port(
        &self,
        port: u16,
        drain: &watch::Receiver<bool>,
    ) -> Result<PortSockets, ProxyError> {
        let targets: Vec<(Option<IpAddr>, u16)> = if self.steered {
            vec![
                (Some(std::net::Ipv4Addr::LOCALHOST.into()), 0),
                (Some(std::net::Ipv6Addr::LOCALHOST.into()), 0),
            ]
        } else {
            vec![(self.bind, if self.ephemeral_ports { 0 } else { port })]
        };
        let mut groups = Vec::with_capacity(targets.len());
        for (ip, bind_port) in targets {
            let sockets = listener::bind_group(ip, bind_port, self.workers.len())?;
            let bind_err = |source| ProxyError::Bind {
                addr: SocketAddr::new(
                    ip.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED.into()),
                    bind_port,
                ),
                source,
            };
            let first = sockets
                .first()
                .ok_or_else(|| bind_err(std::io::Error::other("no worker to serve the socket")))?;
            let addr = first.local_addr().map_err(bind_err)?;
            let fd = std::os::fd::AsFd::as_fd(first)
                .try_clone_to_owned()
                .map_err(bind_err)?;
            // Registered with every worker's reactor before any accept loop starts, so that
            // an error leaves nothing behind.
            let mut registered = Vec::with_capacity(sockets.len());
            for (socket, worker) in sockets.into_iter().zip(&self.workers) {
                let _runtime = worker.runtime.enter();
                registered.push(TcpListener::from_std(socket).map_err(bind_err)?);
            }
            let tasks = registered
                .into_iter()
                .zip(&self.workers)
                .map(|(socket, worker)| {
                    worker.runtime.spawn(listener::accept_loop(
                        socket,
                        listener::Accepting {
                            gateway_port: port,
                            shared: Arc::clone(&worker.shared),
                            serving: self.serving.clone(),
                            drain: drain.clone(),
                        },
                    ))
                })
                .collect();
            tracing::info!(
                gateway_port = port,
                workers = self.workers.len(),
                "proxy listening on {addr}"
            );
            groups.push(Group { addr, fd, tasks });
        }
        Ok(PortSockets { groups })
    }

    /// Binds the ports of `model` not bound yet and closes those it no longer has. All or
    /// nothing: when one port cannot be bound, the ports bound for it are closed again and
    /// the sockets are as before. After [`Listeners::close_all`], binds nothing.
    fn sync(&self, model: &GatewayModel) -> Result<PortChanges, ProxyError> {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(drain) = bound.drain.clone() else {
            return Ok(PortChanges::default());
        };
        let wanted: Vec<u16> = model.ports.iter().map(|p| p.port).collect();
        let mut added = BTreeMap::new();
        for &port in &wanted {
            if !bound.ports.contains_key(&port) {
                added.insert(port, self.bind_port(port, &drain)?);
            }
        }
        let removed: Vec<u16> = bound
            .ports
            .keys()
            .copied()
            .filter(|p| !wanted.contains(p))
            .collect();
        for port in &removed {
            if let Some(b) = bound.ports.remove(port) {
                tracing::info!(
                    gateway_port = port,
                    "proxy no longer listening on {}",
                    b.addrs()
                );
            }
        }
        let changes = PortChanges {
            added: added.keys().copied().collect(),
            removed,
        };
        bound.ports.extend(added);
        Ok(changes)
    }

    fn addrs(&self) -> Vec<(u16, SocketAddr)> {
        let bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        bound
            .ports
            .iter()
            .flat_map(|(p, b)| b.groups.iter().map(move |g| (*p, g.addr)))
            .collect()
    }

    fn fds(&self) -> Vec<(u16, bool, std::os::fd::OwnedFd)> {
        let bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        bound
            .ports
            .iter()
            .flat_map(|(p, b)| {
                b.groups
                    .iter()
                    .filter_map(move |g| Some((*p, g.addr.is_ipv6(), g.fd.try_clone().ok()?)))
            })
            .collect()
    }

    /// Closes every socket; later [`Listeners::sync`] calls bind nothing.
    fn close_all(&self) {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        bound.ports.clear();
        bound.drain = None;
    }
}

/// Listener ports a model swap bound and closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortChanges {
    /// Ports bound.
    pub added: Vec<u16>,
    /// Ports closed (their open connections go on until they close).
    pub removed: Vec<u16>,
}

/// A handle to a proxy (bound or serving) for reloads and the admin endpoint. Cheap to
/// clone.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
}

impl ProxyHandle {
    /// Serves `model` from now on: binds its new ports, swaps it in (new requests, also on
    /// open connections, see it; requests in flight finish under the old one), then closes
    /// the ports it no longer has. On a bind error nothing changes.
    pub fn update(&self, model: GatewayModel) -> Result<PortChanges, ProxyError> {
        let changes = self.listeners.sync(&model)?;
        let model = Arc::new(model);
        self.shared.model.store(Arc::clone(&model));
        self.shared.tls.retain(&model);
        Ok(changes)
    }

    /// The model served now.
    pub fn model(&self) -> Arc<GatewayModel> {
        self.shared.model.load_full()
    }

    /// The Gateway port and local address of every socket group.
    pub fn local_addrs(&self) -> Vec<(u16, SocketAddr)> {
        self.listeners.addrs()
    }

    /// The Gateway port, address family (true: IPv6) and a duplicate fd of one listening
    /// socket per port and address, for the `sk_lookup` steering: the kernel spreads what the
    /// program hands to it over the workers' sockets of its `SO_REUSEPORT` group.
    pub fn listener_fds(&self) -> Vec<(u16, bool, std::os::fd::OwnedFd)> {
        self.listeners.fds()
    }

    /// Passive health of an endpoint.
    pub fn endpoint_health(&self, endpoint: SocketAddr) -> EndpointHealth {
        self.shared.outliers.health(endpoint)
    }
}

impl Proxy {
    /// Starts `opts.workers` worker threads and binds, per port of the current model, one
    /// socket per worker; connections wait in the backlog until [`Proxy::serve`].
    pub fn bind(
        model: Arc<ArcSwap<GatewayModel>>,
        opts: &ProxyOptions,
    ) -> Result<Self, ProxyError> {
        let shared = Shared {
            model,
            upstreams: Arc::new(Upstreams::new()),
            route_metrics: Arc::default(),
            tls: Arc::default(),
            limits: opts.limits.clone(),
            metrics: Arc::clone(&opts.metrics),
            access_log: opts.access_log.clone(),
            outliers: Arc::new(Outliers::new(opts.outlier.clone())),
            connections: Arc::new(Semaphore::new(opts.limits.max_connections)),
            worker_connections: Counter::default(),
        };
        let (workers, threads) = workers::start(opts.workers.max(1), &shared)?;
        let (serving, serving_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let listeners = Arc::new(Listeners {
            bind: opts.bind,
            ephemeral_ports: opts.ephemeral_ports,
            steered: opts.steered,
            workers,
            serving: serving_rx,
            bound: Mutex::new(Bound {
                ports: BTreeMap::new(),
                drain: Some(drain_rx),
            }),
        });
        listeners.sync(&shared.model.load())?;
        Ok(Self {
            shared: Arc::new(shared),
            listeners,
            threads,
            serving,
            drain,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// The Gateway port and local address of every socket group.
    pub fn local_addrs(&self) -> Vec<(u16, SocketAddr)> {
        self.listeners.addrs()
    }

    /// A handle for reloads and status.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
            listeners: Arc::clone(&self.listeners),
        }
    }

    /// Serves until `shutdown` completes; then closes the listener sockets and lets open
    /// connections finish their requests (HTTP/1.1 closes after the current response,
    /// HTTP/2 sends GOAWAY) for at most the drain timeout; then stops the workers, which
    /// closes what is left.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Proxy {
            shared: _,
            listeners,
            threads,
            serving,
            drain,
            drain_timeout,
        } = self;
        // Dropped last, also when this future is dropped: stops the workers.
        let mut stop = StopOnDrop {
            threads: Some(threads),
            listeners: Arc::clone(&listeners),
        };
        let _ = serving.send(true);
        shutdown.await;
        listeners.close_all();
        // Every connection holds a receiver; `closed()` completes when all are gone (the
        // aborted accept loops drop theirs as their workers get to them).
        let open = drain.receiver_count();
        tracing::info!(connections = open, "proxy draining");
        let _ = drain.send(true);
        if tokio::time::timeout(drain_timeout, drain.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = drain.receiver_count(),
                "proxy drain timed out after {drain_timeout:?}; closing open connections"
            );
        }
        // Stopping the workers joins their threads: off the async runtime, so that its other
        // tasks (the admin endpoint, Lease release) are not held up meanwhile.
        if let Some(threads) = stop.threads.take() {
            let _ = tokio::task::spawn_blocking(move || drop(threads)).await;
        }
    }

    /// Serves in a task of its own until [`RunningProxy::stop`].
    pub fn spawn(self) -> RunningProxy {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(self.serve(async {
            let _ = rx.await;
        }));
        RunningProxy { stop: tx, task }
    }
}

/// Closes the listeners and stops the worker threads when the serving future ends or is
/// dropped.
struct StopOnDrop {
    threads: Option<workers::Threads>,
    listeners: Arc<Listeners>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.listeners.close_all();
        drop(self.threads.take());
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
