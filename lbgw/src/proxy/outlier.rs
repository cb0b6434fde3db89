//! Passive outlier detection: an endpoint whose requests fail `consecutive_failures` times in
//! a row (connect errors, resets, 5xx answers) is ejected: no request goes to it while another
//! endpoint of the backend is healthy. The ejection lasts `base_ejection` times the number of
//! times the endpoint has been ejected (capped at `max_ejection`), as Envoy's outlier detection
//! does; a success after an ejection resets the consecutive count, and the ejection count
//! decays after a quiet period of `max_ejection`.
//!
//! When every endpoint of a backend is ejected, they are all used ("panic mode"): answering
//! from a possibly broken endpoint beats answering 503 for certain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::metrics::{EndpointLabels, ProxyMetrics};

/// Settings of passive outlier detection.
#[derive(Clone, Debug)]
pub struct OutlierOptions {
    /// Failures in a row that eject an endpoint; 0 disables outlier detection.
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
}

impl Default for OutlierOptions {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// How one request to an endpoint went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer below 500.
    Success,
    /// A connect error, a reset, or a 5xx answer.
    Failure,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    last_ejection: Option<Instant>,
}

/// The health of every endpoint the proxy has sent to.
#[derive(Debug)]
pub struct Outliers {
    options: OutlierOptions,
    endpoints: Mutex<HashMap<SocketAddr, Health>>,
    /// Endpoints with an ejection that may still be running: while 0, picking takes no lock.
    ejected: AtomicUsize,
    /// Endpoints in `endpoints`: while 0, a success (the usual outcome) takes no lock.
    tracked: AtomicUsize,
}

/// One endpoint's state, for `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointHealth {
    /// The endpoint.
    pub endpoint: SocketAddr,
    /// Ejected now.
    pub ejected: bool,
    /// Seconds of ejection left.
    pub ejected_for_secs: f64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Times it has been ejected.
    pub ejections: u32,
}

impl Outliers {
    /// No endpoint known yet.
    pub fn new(options: OutlierOptions) -> Self {
        Self {
            options,
            endpoints: Mutex::new(HashMap::new()),
            ejected: AtomicUsize::new(0),
            tracked: AtomicUsize::new(0),
        }
    }

    /// Picks an endpoint uniformly at random among those not ejected; among all of them when
    /// every one is ejected. Random rather than round-robin: every proxy thread and every lbgw
    /// instance spreads load without shared counters.
    pub fn pick(&self, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        let any = || endpoints.get(fastrand::usize(..endpoints.len())).copied();
        if self.ejected.load(Ordering::Relaxed) == 0 {
            return any();
        }
        let now = Instant::now();
        let map = self.lock();
        let healthy: Vec<SocketAddr> = endpoints
            .iter()
            .copied()
            .filter(|e| {
                map.get(e)
                    .and_then(|h| h.ejected_until)
                    .is_none_or(|until| until <= now)
            })
            .collect();
        drop(map);
        if healthy.is_empty() {
            return any();
        }
        healthy.get(fastrand::usize(..healthy.len())).copied()
    }

    /// Records the outcome of a request to `endpoint`.
    pub fn report(&self, endpoint: SocketAddr, outcome: Outcome, metrics: &ProxyMetrics) {
        let threshold = self.options.consecutive_failures;
        if threshold == 0 {
            return;
        }
        if outcome == Outcome::Success && self.tracked.load(Ordering::Acquire) == 0 {
            // Nothing to reset (a failure racing in from another worker is as if it came
            // just after this success).
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        self.record(&mut map, endpoint, outcome, now, threshold, metrics);
        self.tracked.store(map.len(), Ordering::Release);
    }

    fn record(
        &self,
        map: &mut HashMap<SocketAddr, Health>,
        endpoint: SocketAddr,
        outcome: Outcome,
        now: Instant,
        threshold: u32,
        metrics: &ProxyMetrics,
    ) {
        if outcome == Outcome::Success && !map.contains_key(&endpoint) {
            return;
        }
        let health = map.entry(endpoint).or_default();
        if let Some(until) = health.ejected_until
            && until <= now
        {
            health.ejected_until = None;
            self.ejected.fetch_sub(1, Ordering::Relaxed);
            metrics.upstream_ejected.dec();
            tracing::info!(%endpoint, "endpoint back in rotation after its ejection");
        }
        match outcome {
            Outcome::Success => {
                health.consecutive_failures = 0;
                // A long quiet period forgets earlier ejections, so the backoff starts over.
                if health.ejected_until.is_none()
                    && health
                        .last_ejection
                        .is_none_or(|at| now.duration_since(at) > self.options.max_ejection)
                {
                    map.remove(&endpoint);
                }
            }
            Outcome::Failure => {
                health.consecutive_failures += 1;
                if health.consecutive_failures >= threshold && health.ejected_until.is_none() {
                    health.ejections += 1;
                    let length = self
                        .options
                        .base_ejection
                        .saturating_mul(health.ejections)
                        .min(self.options.max_ejection);
                    health.ejected_until = Some(now + length);
                    health.last_ejection = Some(now);
                    health.consecutive_failures = 0;
                    self.ejected.fetch_add(1, Ordering::Relaxed);
                    metrics.upstream_ejected.inc();
                    metrics
                        .upstream_ejections
                        .get_or_create(&EndpointLabels {
                            endpoint: endpoint.to_string(),
                        })
                        .inc();
                    tracing::warn!(
                        %endpoint,
                        failures = threshold,
                        ejection = health.ejections,
                        seconds = length.as_secs_f64(),
                        "endpoint ejected after consecutive failures"
                    );
                }
            }
        }
    }

    /// The state of `endpoint`, for `/status`.
    pub fn health(&self, endpoint: SocketAddr) -> EndpointHealth {
        let now = Instant::now();
        let map = self.lock();
        let health = map.get(&endpoint);
        let left = health
            .and_then(|h| h.ejected_until)
            .map(|until| until.saturating_duration_since(now))
            .unwrap_or_default();
        EndpointHealth {
            endpoint,
            ejected: !left.is_zero(),
            ejected_for_secs: left.as_secs_f64(),
            consecutive_failures: health.map_or(0, |h| h.consecutive_failures),
            ejections: health.map_or(0, |h| h.ejections),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Health>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn outliers(failures: u32) -> Outliers {
        Outliers::new(OutlierOptions {
            consecutive_failures: failures,
            base_ejection: Duration::from_secs(60),
            max_ejection: Duration::from_secs(600),
        })
    }

    #[test]
    fn consecutive_failures_eject_and_traffic_avoids_the_endpoint() {
        let o = outliers(3);
        let m = ProxyMetrics::default();
        let eps = [ep(1), ep(2)];
        for _ in 0..2 {
            o.report(ep(1), Outcome::Failure, &m);
        }
        // A success in between resets the count.
        o.report(ep(1), Outcome::Success, &m);
        for _ in 0..2 {
            o.report(ep(1), Outcome::Failure, &m);
        }
        assert!(!o.health(ep(1)).ejected);
        o.report(ep(1), Outcome::Failure, &m);
        assert!(o.health(ep(1)).ejected);
        assert_eq!(m.upstream_ejected.get(), 1);
        for _ in 0..200 {
            assert_eq!(o.pick(&eps), Some(ep(2)));
        }
    }

    #[test]
    fn every_endpoint_ejected_still_serves() {
        let o = outliers(1);
        let m = ProxyMetrics::default();
        o.report(ep(1), Outcome::Failure, &m);
        o.report(ep(2), Outcome::Failure, &m);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(o.pick(&[ep(1), ep(2)]).unwrap());
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn ejections_grow_up_to_the_maximum() {
        let o = Outliers::new(OutlierOptions {
            consecutive_failures: 1,
            base_ejection: Duration::ZERO,
            max_ejection: Duration::from_secs(600),
        });
        let m = ProxyMetrics::default();
        for _ in 0..3 {
            o.report(ep(1), Outcome::Failure, &m);
        }
        assert_eq!(o.health(ep(1)).ejections, 3);
        let o = outliers(1);
        for _ in 0..30 {
            o.report(ep(1), Outcome::Failure, &m);
        }
        // The first ejection (60 s) is still running: failures while ejected do not stack.
        assert_eq!(o.health(ep(1)).ejections, 1);
        assert!(o.health(ep(1)).ejected_for_secs <= 60.0);
    }

    #[test]
    fn disabled_never_ejects() {
        let o = outliers(0);
        let m = ProxyMetrics::default();
        for _ in 0..100 {
            o.report(ep(1), Outcome::Failure, &m);
        }
        assert!(!o.health(ep(1)).ejected);
    }
}
