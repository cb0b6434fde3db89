//! The proxy's Prometheus metrics (prometheus-client), registered under the `lbgw_` prefix by
//! the admin endpoint. Request metrics carry the HTTPRoute (`namespace/name`) and backend
//! (`namespace/service:port`) that served the request; requests lbgw answered itself (no
//! route, invalid backend, ...) have an empty `route` or `backend`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the HTTPRoute, empty when none matched.
    pub route: String,
    /// `namespace/service:port`, empty when no backend was chosen.
    pub backend: String,
    /// Status class: `1xx` ... `5xx`.
    pub code: &'static str,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `namespace/name` of the HTTPRoute.
    pub route: String,
    /// `namespace/service:port`.
    pub backend: String,
}

/// A reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
}

/// An upstream endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `ip:port`.
    pub endpoint: String,
}

/// A proxy worker thread.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// Its index, from 0.
    pub worker: String,
}

/// A reload outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms doubling to ~16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the proxy and the daemon update.
#[derive(Debug)]
pub struct ProxyMetrics {
    /// Requests answered, by route, backend and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Request duration: from the request head to the end of the response body.
    pub request_duration: HistogramFamily,
    /// Time to first byte: from the request head to the response head.
    pub time_to_first_byte: HistogramFamily,
    /// Client connections open now.
    pub active_connections: Gauge,
    /// Requests (HTTP/1.1 exchanges and HTTP/2 streams) in progress now, bodies included.
    pub active_streams: Gauge,
    /// Client connections accepted.
    pub connections: Counter,
    /// Client connections accepted, by worker thread (how `SO_REUSEPORT` spread them).
    pub worker_connections: Family<WorkerLabels, Counter>,
    /// Client connections refused or closed by lbgw, by reason (`connection_limit`,
    /// `idle_timeout`, `premature_resets`).
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// TLS handshakes that failed, by reason.
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    /// Connections to backends that failed.
    pub upstream_connect_errors: Family<EndpointLabels, Counter>,
    /// Passive outlier detection ejections.
    pub upstream_ejections: Family<EndpointLabels, Counter>,
    /// Endpoints ejected now.
    pub upstream_ejected: Gauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Configuration reloads, by outcome.
    pub config_reloads: Family<ResultLabels, Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            time_to_first_byte: Family::new_with_constructor(latency_histogram),
            active_connections: Gauge::default(),
            active_streams: Gauge::default(),
            connections: Counter::default(),
            worker_connections: Family::default(),
            connections_closed: Family::default(),
            tls_handshake_failures: Family::default(),
            upstream_connect_errors: Family::default(),
            upstream_ejections: Family::default(),
            upstream_ejected: Gauge::default(),
            access_log_dropped: Counter::default(),
            config_reloads: Family::default(),
        }
    }
}

impl ProxyMetrics {
    /// Registers every metric in `registry` (which adds the `lbgw_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, backend and status class",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "From the request head to the end of the response body",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register_with_unit(
            "http_time_to_first_byte",
            "From the request head to the response head",
            Unit::Seconds,
            self.time_to_first_byte.clone(),
        );
        registry.register(
            "active_connections",
            "Client connections open",
            self.active_connections.clone(),
        );
        registry.register(
            "active_streams",
            "Requests in progress (HTTP/1.1 exchanges and HTTP/2 streams)",
            self.active_streams.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            self.connections.clone(),
        );
        registry.register(
            "worker_connections",
            "Client connections accepted, by proxy worker thread",
            self.worker_connections.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections refused or closed by lbgw, by reason",
            self.connections_closed.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Failed TLS handshakes, by reason",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connections to backend endpoints",
            self.upstream_connect_errors.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Endpoints ejected by passive outlier detection",
            self.upstream_ejections.clone(),
        );
        registry.register(
            "upstream_ejected",
            "Endpoints ejected now",
            self.upstream_ejected.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            self.access_log_dropped.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            self.config_reloads.clone(),
        );
    }
}

/// `2xx` for 204 and so on.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[class_index(status)]
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    match status / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}

/// The request metrics of one route and backend (either may be absent: a request lbgw
/// answered itself), with their label values. Found once per route and backend by
/// [`RouteMetricsCache`], so that finishing a request formats and hashes no labels; each
/// series is created in its family when first used, as `get_or_create` would.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    labels: RouteLabels,
    requests: [OnceLock<Counter>; 5],
    duration: OnceLock<Histogram>,
    ttfb: OnceLock<Histogram>,
}

impl RouteMetrics {
    fn new(route: String, backend: String) -> Self {
        Self {
            labels: RouteLabels { route, backend },
            requests: Default::default(),
            duration: OnceLock::new(),
            ttfb: OnceLock::new(),
        }
    }

    /// `namespace/name` of the HTTPRoute, empty when none matched.
    pub(crate) fn route(&self) -> &str {
        &self.labels.route
    }

    /// `namespace/service:port`, empty when no backend was chosen.
    pub(crate) fn backend(&self) -> &str {
        &self.labels.backend
    }

    /// Counts a request answered with `status` that took `duration` (and `ttfb` to its
    /// response head).
    pub(crate) fn observe(
        &self,
        metrics: &ProxyMetrics,
        status: u16,
        duration: Duration,
        ttfb: Option<Duration>,
    ) {
        let class = class_index(status);
        self.requests[class]
            .get_or_init(|| {
                let labels = RequestLabels {
                    route: self.labels.route.clone(),
                    backend: self.labels.backend.clone(),
                    code: STATUS_CLASSES[class],
                };
                metrics.requests.get_or_create(&labels).clone()
            })
            .inc();
        self.duration
            .get_or_init(|| metrics.request_duration.get_or_create(&self.labels).clone())
            .observe(duration.as_secs_f64());
        if let Some(ttfb) = ttfb {
            self.ttfb
                .get_or_init(|| {
                    metrics
                        .time_to_first_byte
                        .get_or_create(&self.labels)
                        .clone()
                })
                .observe(ttfb.as_secs_f64());
        }
    }
}

/// One worker's [`RouteMetrics`], by route and backend of the model they were found under.
///
/// Keyed by the addresses of the model's `RouteId` and `BackendRef`: the cache holds the
/// model, so those addresses cannot be reused while they are keys; under another model
/// (after a reload) it starts over.
#[derive(Default)]
pub(crate) struct RouteMetricsCache {
    inner: Mutex<CacheInner>,
    /// Requests lbgw answered before any route matched.
    unrouted: OnceLock<Arc<RouteMetrics>>,
}

#[derive(Default)]
struct CacheInner {
    model: Option<Arc<crate::gateway::GatewayModel>>,
    entries: foldhash::HashMap<(usize, usize), Arc<RouteMetrics>>,
}

/// Routes and backends kept per worker; a model with more starts the cache over.
const MAX_CACHED_ROUTE_METRICS: usize = 4096;

impl RouteMetricsCache {
    /// The metrics of requests no route matched.
    pub(crate) fn unrouted(&self) -> Arc<RouteMetrics> {
        Arc::clone(
            self.unrouted
                .get_or_init(|| Arc::new(RouteMetrics::new(String::new(), String::new()))),
        )
    }

    /// The metrics of `route` and (once chosen) `backend`, both taken from `model`.
    pub(crate) fn get(
        &self,
        model: &Arc<crate::gateway::GatewayModel>,
        route: &crate::route::RouteId,
        backend: Option<&crate::route::BackendRef>,
    ) -> Arc<RouteMetrics> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, model))
            || inner.entries.len() >= MAX_CACHED_ROUTE_METRICS
        {
            inner.entries.clear();
            inner.model = Some(Arc::clone(model));
        }
        let key = (
            std::ptr::from_ref(route) as usize,
            backend.map_or(0, |b| std::ptr::from_ref(b) as usize),
        );
        Arc::clone(inner.entries.entry(key).or_insert_with(|| {
            Arc::new(RouteMetrics::new(
                route.to_string(),
                backend.map(backend_label).unwrap_or_default(),
            ))
        }))
    }
}

/// `namespace/service:port` (no port: `namespace/service:`).
fn backend_label(backend: &crate::route::BackendRef) -> String {
    format!(
        "{}/{}:{}",
        backend.namespace,
        backend.name,
        backend.port.map(|p| p.to_string()).unwrap_or_default()
    )
}
