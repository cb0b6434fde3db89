//! One request–response exchange as the proxy observes it: what served it (listener, route,
//! rule, backend, endpoint), when its response head left (time to first byte), how many body
//! bytes went each way, and how it ended. The record travels with the response body and is
//! finished when the body has been sent or dropped: then the metrics are updated and the
//! access log line is written. An exchange dropped before it had a response is one the client
//! abandoned (an HTTP/2 RST_STREAM, a closed connection): a premature reset for
//! [`ConnState`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, Version};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::access_log::{Entry, millis};
use super::body::ProxyBody;
use super::limits::ConnState;
use super::metrics::RouteMetrics;
use super::{Conn, Shared};

/// An exchange in progress.
pub(crate) struct Exchange {
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    start: Instant,
    peer: SocketAddr,
    method: Method,
    version: Version,
    host: String,
    path: String,
    /// `namespace/gateway/listener`.
    pub(crate) listener: String,
    /// The route and backend that served it, with their metrics; `None` until routed.
    pub(crate) served_by: Option<Arc<RouteMetrics>>,
    /// The rule's index.
    pub(crate) rule: Option<usize>,
    /// The endpoint of the last attempt.
    pub(crate) endpoint: Option<SocketAddr>,
    /// Why the request failed.
    pub(crate) failure: Option<String>,
    /// Request body bytes, counted as they stream.
    pub(crate) bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    status: Option<u16>,
    ttfb: Option<Duration>,
}

impl Exchange {
    /// An exchange for `req`, begun now.
    pub(crate) fn start<B>(
        shared: &Arc<Shared>,
        conn: &Conn,
        state: Arc<ConnState>,
        req: &Request<B>,
    ) -> Self {
        state.stream_started();
        shared.metrics.active_streams.inc();
        // What only the access log uses is copied only when there is one.
        let logged = shared.access_log.enabled();
        let host = if logged {
            req.uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| {
                    req.headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                })
                .unwrap_or_default()
                .to_owned()
        } else {
            String::new()
        };
        let listener = conn
            .tls
            .filter(|_| logged)
            .map(|i| {
                let l = &conn.port().listeners[i];
                format!("{}/{}/{}", l.gateway.namespace, l.gateway.name, l.name)
            })
            .unwrap_or_default();
        let path = if logged {
            req.uri().path().to_owned()
        } else {
            String::new()
        };
        Self {
            shared: Arc::clone(shared),
            state,
            start: Instant::now(),
            peer: conn.peer,
            method: req.method().clone(),
            version: req.version(),
            host,
            path,
            listener,
            served_by: None,
            rule: None,
            endpoint: None,
            failure: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            status: None,
            ttfb: None,
        }
    }

    /// Whether the exchange ends in an access log line (else its host, path and listener
    /// are not recorded).
    pub(crate) fn logged(&self) -> bool {
        self.shared.access_log.enabled()
    }

    /// The response head is ready: the exchange now travels with its body and finishes
    /// when the body has been sent.
    pub(crate) fn respond(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        self.status = Some(response.status().as_u16());
        self.ttfb = Some(self.start.elapsed());
        let (parts, body) = response.into_parts();
        let mut exchange = self;
        let body = body
            .map_frame(move |frame| {
                // The whole record moves into the body (not just the counter field).
                let exchange = &mut exchange;
                if let Some(data) = frame.data_ref() {
                    exchange.bytes_out += data.len() as u64;
                }
                frame
            })
            .boxed();
        Response::from_parts(parts, body)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        let metrics = &self.shared.metrics;
        metrics.active_streams.dec();
        self.state.stream_ended(self.status.is_none());
        if let Some(status) = self.status {
            let served_by = match &self.served_by {
                Some(served_by) => Arc::clone(served_by),
                None => self.shared.route_metrics.unrouted(),
            };
            served_by.observe(metrics, status, duration, self.ttfb);
        }
        let log = &self.shared.access_log;
        if !log.enabled() {
            return;
        }
        let proto = match self.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let failure = match (&self.failure, self.status) {
            (Some(f), _) => Some(f.as_str()),
            (None, None) => Some("client went away before the response"),
            (None, Some(_)) => None,
        };
        let logged = log.log(&Entry {
            listener: &self.listener,
            peer: self.peer,
            method: self.method.as_str(),
            host: &self.host,
            path: &self.path,
            proto,
            route: self.served_by.as_ref().map_or("", |s| s.route()),
            rule: self.rule,
            backend: self.served_by.as_ref().map_or("", |s| s.backend()),
            endpoint: self.endpoint,
            status: self.status.unwrap_or(0),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
            duration_ms: millis(duration),
            ttfb_ms: self.ttfb.map(millis),
            failure,
        });
        if !logged {
            metrics.access_log_dropped.inc();
        }
    }
}
