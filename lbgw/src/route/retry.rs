//! GEP-1731 HTTPRoute retries as rule data: which backend answers are retried, how often,
//! and how long to wait in between. The proxy runs the loop (`proxy::retry`).

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// HTTPRouteRetry.attempts: "When this field is unspecified, the number of times to attempt
/// to retry a backend request is implementation-specific." lbgw retries once.
const DEFAULT_ATTEMPTS: u32 = 1;
/// HTTPRouteRetry.backoff: "When this field is unspecified, the time to wait between retry
/// attempts is implementation-specific." 25 ms, Envoy's base interval.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// Backoff doubles per retry up to this multiple of the configured minimum ("MAY use an
/// exponential or alternative backoff strategy ..., MAY cap the maximum backoff duration").
const MAX_BACKOFF_FACTOR: u32 = 10;

/// HTTPRouteRule.retry (HTTPRouteRetry) as written in YAML. The type is experimental-channel
/// only, and lbgw builds gateway-api without its `experimental` feature, so it is mirrored
/// here field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct HttpRouteRetry {
    /// "the maximum number of times an individual request from the gateway to a backend
    /// should be retried."
    pub attempts: Option<i64>,
    /// "the minimum duration a Gateway should wait between retry attempts", a GEP-2257
    /// duration.
    pub backoff: Option<String>,
    /// "the HTTP response status codes for which a backend request should be retried."
    pub codes: Option<Vec<i64>>,
}

/// A rule's retry stanza, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Response statuses that are retried.
    pub codes: Vec<StatusCode>,
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Minimum wait before a retry.
    pub backoff: Duration,
}

/// Why a retry stanza is invalid.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// A code outside 400..=599 ("+kubebuilder:validation:Minimum:=400", "Maximum:=599").
    #[error("retry code {0} is not in 400..=599")]
    Code(i64),
    /// A negative or huge attempt count.
    #[error("retry attempts {0} out of range")]
    Attempts(i64),
    /// A backoff that is not a GEP-2257 duration.
    #[error("retry backoff {value:?}: {reason}")]
    Backoff {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
}

impl RetryPolicy {
    /// Compiles `rules[].retry` of an experimental-channel HTTPRoute.
    pub fn from_api(retry: &HttpRouteRetry) -> Result<Self, RetryError> {
        let codes = retry
            .codes
            .iter()
            .flatten()
            .map(|&c| {
                u16::try_from(c)
                    .ok()
                    .filter(|c| (400..=599).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or(RetryError::Code(c))
            })
            .collect::<Result<_, _>>()?;
        let attempts = match retry.attempts {
            None => DEFAULT_ATTEMPTS,
            Some(a) => u32::try_from(a)
                .ok()
                .filter(|a| *a <= 100)
                .ok_or(RetryError::Attempts(a))?,
        };
        let backoff = match &retry.backoff {
            None => DEFAULT_BACKOFF,
            Some(value) => {
                let d: gateway_api::Duration =
                    value.parse().map_err(|reason| RetryError::Backoff {
                        value: value.clone(),
                        reason,
                    })?;
                Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
        };
        Ok(Self {
            codes,
            attempts,
            backoff,
        })
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn backoff_before(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(MAX_BACKOFF_FACTOR);
        self.backoff.saturating_mul(factor)
    }
}
