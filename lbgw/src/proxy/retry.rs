//! Running GEP-1731 retries: a request is retried only when its body can be sent again: it
//! has none, or it was small enough to be buffered whole before the first attempt (see
//! `request`). A streamed body is consumed by the first attempt, so such a request is sent
//! once whatever the policy says. Every attempt picks an endpoint anew, so a retry usually
//! reaches another replica. The policy itself is rule data: [`crate::route::RetryPolicy`].

use std::future::Future;

use http::Response;

use super::error::ProxyError;
pub use crate::route::RetryPolicy;

/// Whether an attempt's outcome is retried under `policy`.
fn retries_response<B>(policy: &RetryPolicy, result: &Result<Response<B>, ProxyError>) -> bool {
    match result {
        Ok(response) => policy.codes.contains(&response.status()),
        // "connection errors" and timed-out attempts (GEP-1731).
        Err(err) => err.retry_safe(),
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
    // One `attempt(..).await` in the loop, not one before it and one in it: each await of a
    // future is a slot of its own in this function's future.
    let mut retry = 0;
    loop {
        let result = attempt(retry).await;
        let Some(policy) = policy else {
            return result;
        };
        retry += 1;
        if retry > policy.attempts || !retries_response(policy, &result) {
            return result;
        }
        tracing::debug!(retry, "retrying backend request");
        // Drop a retried response (and its connection's claim on the body) before waiting.
        drop(result);
        tokio::time::sleep(policy.backoff_before(retry)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::HttpRouteRetry;
    use http::StatusCode;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

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
