//! The admin endpoint (`lbgw run --admin ADDR:PORT`, off by default; `127.0.0.1:9901` is a
//! sensible choice): a small HTTP/1.1 server of its own, off the data path.
//!
//! | path       | answer |
//! |------------|--------|
//! | `/metrics` | Prometheus text format 0.0.4 (prometheus-client), names prefixed `lbgw_`: the proxy's [`ProxyMetrics`] and the XDP per-CPU counters summed (`lbgw_xdp_*`) |
//! | `/healthz` | 200 while the process serves |
//! | `/readyz`  | 200 once the listeners are bound and, with XDP, the data plane is attached; 503 before |
//! | `/config`  | the effective configuration as JSON, Secret data redacted |
//! | `/status`  | VIPs, listeners, routes, endpoints and their health as JSON (what `lbgw status` prints) |
//!
//! The XDP counters come through [`DataplaneStats`], which the daemon implements over its
//! data plane, so this module knows nothing of eBPF.

pub mod view;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::gateway::GatewayModel;
use crate::ipam::Plan;
use crate::proxy::{ProxyHandle, ProxyMetrics};

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding `--admin`.
    #[error("binding the admin endpoint (--admin) on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The XDP counters, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct DataplaneCounters {
    /// Global counters by name (`lbgw_common::Counter::name`).
    pub global: Vec<(&'static str, u64)>,
    /// Per VIP.
    pub vips: Vec<VipCounterValues>,
}

/// One VIP's XDP counters.
#[derive(Clone, Debug)]
pub struct VipCounterValues {
    /// The VIP.
    pub ip: IpAddr,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbor Advertisements sent.
    pub na_replies: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// Packets to ports nothing serves, dropped.
    pub dropped_unserved: u64,
    /// Packets passed to the kernel.
    pub passed: u64,
    /// Whether this node answers ARP/NDP for it now (in Kubernetes mode: holds its Lease).
    pub announced: bool,
}

/// Reads the data plane's counters at scrape time.
pub trait DataplaneStats: Send + Sync {
    /// The counters now; `None` when they cannot be read (logged by the implementation).
    fn read(&self) -> Option<DataplaneCounters>;
}

type StatsSlot = Arc<OnceLock<Arc<dyn DataplaneStats>>>;

/// Encodes the XDP counters at scrape time.
struct XdpCollector(StatsSlot);

impl std::fmt::Debug for XdpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XdpCollector")
    }
}

impl prometheus_client::collector::Collector for XdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(counters) = self.0.get().and_then(|s| s.read()) else {
            return Ok(());
        };
        {
            let mut metric = encoder.encode_descriptor(
                "xdp_events",
                "XDP program counters summed over CPUs, by counter",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (name, value) in &counters.global {
                let labels = [("counter", *name)];
                let family = metric.encode_family(&labels)?;
                ConstCounter::new(*value).encode(family)?;
            }
        }
        type Field = fn(&VipCounterValues) -> u64;
        let per_vip: [(&str, &str, Field); 5] = [
            ("xdp_vip_arp_replies", "ARP replies sent for the VIP", |v| {
                v.arp_replies
            }),
            (
                "xdp_vip_na_replies",
                "Neighbor Advertisements sent for the VIP",
                |v| v.na_replies,
            ),
            (
                "xdp_vip_echo_replies",
                "ICMP echo replies sent for the VIP",
                |v| v.echo_replies,
            ),
            (
                "xdp_vip_dropped_unserved",
                "Packets to ports of the VIP nothing serves, dropped in XDP",
                |v| v.dropped_unserved,
            ),
            (
                "xdp_vip_passed",
                "Packets to the VIP passed to the kernel",
                |v| v.passed,
            ),
        ];
        {
            // Summed over the nodes, 1 per VIP: exactly one node answers for it.
            let mut metric = encoder.encode_descriptor(
                "xdp_vip_announced",
                "1 when this node answers ARP/NDP for the VIP (holds its Lease), else 0",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for vip in &counters.vips {
                let ip = vip.ip.to_string();
                let labels = [("vip", ip.as_str())];
                let family = metric.encode_family(&labels)?;
                ConstGauge::new(i64::from(vip.announced)).encode(family)?;
            }
        }
        for (name, help, field) in per_vip {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for vip in &counters.vips {
                let ip = vip.ip.to_string();
                let labels = [("vip", ip.as_str())];
                let family = metric.encode_family(&labels)?;
                ConstCounter::new(field(vip)).encode(family)?;
            }
        }
        Ok(())
    }
}

/// The configuration currently applied, as the admin endpoint shows it.
struct Applied {
    config: serde_json::Value,
    status: view::Status,
    at: Instant,
}

/// The admin endpoint's state, shared with the daemon.
pub struct Admin {
    registry: Registry,
    ready: AtomicBool,
    applied: ArcSwap<Option<Applied>>,
    dataplane: StatsSlot,
    proxy: OnceLock<ProxyHandle>,
    vip_since: Mutex<HashMap<IpAddr, u64>>,
}

impl Admin {
    /// Registers `metrics` (and the XDP collector) under the `lbgw_` prefix.
    pub fn new(metrics: &ProxyMetrics) -> Arc<Self> {
        let mut registry = Registry::with_prefix("lbgw");
        metrics.register(&mut registry);
        let dataplane: StatsSlot = Arc::default();
        registry.register_collector(Box::new(XdpCollector(Arc::clone(&dataplane))));
        Arc::new(Self {
            registry,
            ready: AtomicBool::new(false),
            applied: ArcSwap::from_pointee(None),
            dataplane,
            proxy: OnceLock::new(),
            vip_since: Mutex::new(HashMap::new()),
        })
    }

    /// Where the XDP counters come from (set once).
    pub fn set_dataplane(&self, stats: Arc<dyn DataplaneStats>) {
        let _ = self.dataplane.set(stats);
    }

    /// The proxy whose sockets and endpoint health `/status` shows (set once).
    pub fn set_proxy(&self, proxy: ProxyHandle) {
        let _ = self.proxy.set(proxy);
    }

    /// `/readyz` answers 200 from now on (or 503 again).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Records the configuration now applied.
    pub fn publish(&self, config: &Config, plan: &Plan, model: &GatewayModel) {
        let bound = self
            .proxy
            .get()
            .map(ProxyHandle::local_addrs)
            .unwrap_or_default();
        let mut status = view::status(config, plan, model, &bound);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        {
            let mut since = self
                .vip_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            since.retain(|ip, _| status.vips.iter().any(|v| v.ip == *ip));
            for vip in &mut status.vips {
                vip.since_unix = *since.entry(vip.ip).or_insert(now);
            }
        }
        self.applied.store(Arc::new(Some(Applied {
            config: view::config_json(config, plan),
            status,
            at: Instant::now(),
        })));
    }

    /// `/status` now: the applied configuration with live health and counters.
    pub fn status(&self) -> view::Status {
        let applied = self.applied.load();
        let Some(applied) = applied.as_ref() else {
            return view::Status::default();
        };
        let mut status = applied.status.clone();
        status.ready = self.ready.load(Ordering::Acquire);
        status.config_age_secs = applied.at.elapsed().as_secs_f64();
        if let Some(proxy) = self.proxy.get() {
            for endpoint in status
                .routes
                .iter_mut()
                .flat_map(|r| r.backends.iter_mut())
                .flat_map(|b| b.endpoints.iter_mut())
            {
                let health = proxy.endpoint_health(endpoint.endpoint);
                endpoint.health = if health.ejected {
                    format!(
                        "ejected ({:.0}s left, {} ejections)",
                        health.ejected_for_secs, health.ejections
                    )
                } else {
                    "healthy".to_owned()
                };
            }
        }
        if let Some(counters) = self.dataplane.get().and_then(|s| s.read()) {
            for vip in &mut status.vips {
                if let Some(c) = counters.vips.iter().find(|c| c.ip == vip.ip) {
                    vip.arp_replies = Some(c.arp_replies);
                    vip.na_replies = Some(c.na_replies);
                    vip.announced = Some(c.announced);
                }
            }
        }
        status
    }

    /// Binds `addr` and serves in a task of its own; returns the bound address.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> Result<SocketAddr, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| AdminError::Bind { addr, source })?;
        tracing::info!("admin endpoint listening on http://{local}");
        let admin = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!("admin accept: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let admin = Arc::clone(&admin);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let admin = Arc::clone(&admin);
                        async move { Ok::<_, Infallible>(admin.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(local)
    }

    fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/metrics" => {
                let mut out = String::new();
                if let Err(err) =
                    prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
                {
                    tracing::warn!("encoding metrics: {err}");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
                }
                with_type(out, "text/plain; version=0.0.4; charset=utf-8")
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            "/config" => {
                let applied = self.applied.load();
                let body = applied
                    .as_ref()
                    .as_ref()
                    .map(|a| serde_json::to_string_pretty(&a.config).unwrap_or_default())
                    .unwrap_or_else(|| "null".to_owned());
                with_type(body, "application/json")
            }
            "/status" => with_type(
                serde_json::to_string_pretty(&self.status()).unwrap_or_default(),
                "application/json",
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics /healthz /readyz /config /status\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_type(body.to_owned(), "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

fn with_type(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// `lbgw status`: fetches `/status` from the admin endpoint at `addr`.
pub async fn fetch_status(addr: SocketAddr) -> Result<view::Status, FetchError> {
    use http_body_util::BodyExt;
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| FetchError::Timeout(addr))?
    .map_err(|source| FetchError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| FetchError::Http { addr, source })?;
    tokio::spawn(connection);
    let req = Request::get("/status")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| FetchError::Body(e.to_string()))?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let response = sender.send_request(req).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    })
    .await
    .map_err(|_| FetchError::Timeout(addr))?
    .map_err(|source| FetchError::Http { addr, source })?;
    if response.0 != StatusCode::OK {
        return Err(FetchError::Body(format!("/status answered {}", response.0)));
    }
    serde_json::from_slice(&response.1).map_err(|e| FetchError::Body(e.to_string()))
}

/// Why `lbgw status` failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting.
    #[error("connecting to the admin endpoint {addr} (is `lbgw run --admin {addr}` running?)")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("the admin endpoint {0} did not answer within 5 s")]
    Timeout(SocketAddr),
    /// HTTP failed.
    #[error("HTTP to the admin endpoint {addr}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The answer was not a status report.
    #[error("unexpected answer from the admin endpoint: {0}")]
    Body(String),
}
