//! GEP-1731 HTTPRoute retries: which backend answers are retried, how often, and how long
//! to wait in between.
//!
//! A request is retried only when its body can be sent again: it has none, or it was small
//! enough to be buffered whole before the first attempt (see `request`). A streamed body is
//! consumed by the first attempt, so such a request is sent once whatever the policy says.
//! Every attempt picks an endpoint anew, so a retry usually reaches another replica.

use std::future::Future;
use std::time::Duration;

use http::{Response, StatusCode};
use serde::Deserialize;

use super::error::ProxyError;

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

    fn retries_response<B>(&self, result: &Result<Response<B>, ProxyError>) -> bool {
        match result {
            Ok(response) => self.codes.contains(&response.status()),
            // "connection errors" and timed-out attempts (GEP-1731).
            Err(err) => err.retry_safe(),
        }
    }
}

/// Runs `attempt` once, then again as `policy` allows while the outcome is retryable. The
/// last outcome is returned: after the last retry "the Gateway MUST return an error", which
/// is the backend's own error status or lbgw's 502/504. The caller bounds the whole loop by
/// the request timeout ("the entire duration of the initial request and any retry attempts
/// MUST not exceed the Request timeout duration").
pub async fn run<B, F, Fut>(
    policy: Option<&RetryPolicy>,
    mut attempt: F,
) -> Result<Response<B>, ProxyError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Response<B>, ProxyError>>,
{
    let mut result = attempt(0).await;
    let Some(policy) = policy else {
        return result;
    };
    for retry in 1..=policy.attempts {
        if !policy.retries_response(&result) {
            break;
        }
        tracing::debug!(retry, "retrying backend request");
        // Drop a retried response (and its connection's claim on the body) before waiting.
        drop(result);
        tokio::time::sleep(policy.backoff_before(retry)).await;
        result = attempt(retry).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(codes: &[u16], attempts: u32) -> RetryPolicy {
        RetryPolicy {
            codes: codes
                .iter()
                .map(|c| StatusCode::from_u16(*c).unwrap())
                .collect(),
            attempts,
            backoff: Duration::from_millis(100),
        }
    }

    fn status(code: u16) -> Result<Response<()>, ProxyError> {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        Ok(r)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_listed_codes_with_backoff_until_success() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let result = run(Some(&policy(&[503], 3)), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { status(if n < 2 { 503 } else { 200 }) }
        })
        .await;
        assert_eq!(result.unwrap().status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // 100 ms, then 200 ms: never before the configured minimum.
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_attempts_and_returns_the_last_answer() {
        let calls = AtomicU32::new(0);
        let result = run(Some(&policy(&[500], 2)), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { status(500) }
        })
        .await;
        assert_eq!(result.unwrap().status(), 500);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn unlisted_codes_and_no_policy_are_not_retried() {
        let calls = AtomicU32::new(0);
        let _ = run(Some(&policy(&[503], 3)), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { status(404) }
        })
        .await;
        let _ = run(None, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { status(503) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried() {
        let calls = AtomicU32::new(0);
        let result = run(Some(&policy(&[], 1)), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(ProxyError::Connect {
                        endpoint: ([127, 0, 0, 1], 9).into(),
                        source: "refused".into(),
                    })
                } else {
                    status(200)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap().status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn compiles_the_api_stanza() {
        let p = RetryPolicy::from_api(&HttpRouteRetry {
            attempts: Some(2),
            backoff: Some("1s".into()),
            codes: Some(vec![500, 503]),
        })
        .unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                codes: vec![
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::SERVICE_UNAVAILABLE
                ],
                attempts: 2,
                backoff: Duration::from_secs(1),
            }
        );
        assert_eq!(p.backoff_before(5), Duration::from_secs(10));
        assert!(
            RetryPolicy::from_api(&HttpRouteRetry {
                codes: Some(vec![200]),
                ..Default::default()
            })
            .is_err()
        );
    }
}
