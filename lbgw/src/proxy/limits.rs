//! Protection against clients that hold resources without using them, with safe defaults:
//!
//! - a global connection limit: a connection over it is closed at once (counted as
//!   `connection_limit`), the others are served;
//! - request heads: at most `max_header_bytes` (HTTP/1.1 read buffer, HTTP/2
//!   `SETTINGS_MAX_HEADER_LIST_SIZE`, RFC 9113 §6.5.2) and `max_headers` fields; over either,
//!   hyper answers `431 Request Header Fields Too Large` (RFC 6585 §5);
//! - `header_read_timeout`: an HTTP/1.1 request head must arrive within it (slowloris);
//! - `idle_timeout`: a connection with no request in progress for that long is closed
//!   gracefully (HTTP/1.1 closes, HTTP/2 sends GOAWAY); a long response (SSE) or a WebSocket
//!   is a request in progress and is never cut by it;
//! - HTTP/2: `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2) and the rapid-reset
//!   (CVE-2023-44487) defences: h2's limits on streams reset before they are accepted
//!   (`max_pending_accept_reset_streams`, answered with GOAWAY ENHANCE_YOUR_CALM) and on
//!   streams lbgw had to reset, plus lbgw's own check on streams the client reset before
//!   their response started ("premature resets", as Envoy counts them): once a connection
//!   has had `max_premature_resets` of them and they are at least half of its streams, the
//!   connection is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Notify;

/// The limits, all configurable on `lbgw run`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Client connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Largest request head in bytes (HTTP/1.1 read buffer, at least 8192; HTTP/2 header
    /// list).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request.
    pub max_headers: usize,
    /// Time for an HTTP/1.1 client to send a request head.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams the client may reset before lbgw accepted them (h2's own limit).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams lbgw may reset because of client protocol errors before the
    /// connection is closed.
    pub h2_max_local_error_reset_streams: usize,
    /// Requests a connection may abandon before their response (HTTP/2 RST_STREAM) before it
    /// is closed, when they are at least half of its requests.
    pub max_premature_resets: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            h2_max_concurrent_streams: 250,
            h2_max_pending_accept_reset_streams: 50,
            h2_max_local_error_reset_streams: 256,
            max_premature_resets: 100,
        }
    }
}

/// What one connection is doing, shared by its requests.
#[derive(Debug)]
pub struct ConnState {
    start: Instant,
    /// Requests in progress (until their response body ends).
    active: AtomicU64,
    /// Milliseconds since `start` when `active` last became 0.
    idle_since_ms: AtomicU64,
    streams: AtomicU64,
    premature_resets: AtomicU64,
    max_premature_resets: u64,
    /// Woken when the connection must be closed for abuse.
    abuse: Notify,
}

/// Why a connection is closed early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No request in progress for the idle timeout.
    Idle,
    /// Too many requests abandoned before their response.
    PrematureResets,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle_timeout",
            Self::PrematureResets => "premature_resets",
        }
    }
}

impl ConnState {
    /// A connection opened now.
    pub fn new(max_premature_resets: u64) -> Self {
        Self {
            start: Instant::now(),
            active: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            premature_resets: AtomicU64::new(0),
            max_premature_resets,
            abuse: Notify::new(),
        }
    }

    /// A request began.
    pub fn stream_started(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// A request ended; `premature` when the client abandoned it before its response.
    pub fn stream_ended(&self, premature: bool) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms
                .store(self.start.elapsed().as_millis() as u64, Ordering::Release);
        }
        if premature {
            let resets = self.premature_resets.fetch_add(1, Ordering::Relaxed) + 1;
            let streams = self.streams.load(Ordering::Relaxed);
            if resets >= self.max_premature_resets && resets * 2 >= streams {
                self.abuse.notify_one();
            }
        }
    }

    /// Completes when the connection should be closed: idle for `idle` (no request in
    /// progress) or abusive.
    pub async fn close_signal(&self, idle: Duration) -> CloseReason {
        let abuse = self.abuse.notified();
        tokio::pin!(abuse);
        let idle_deadline = |since_ms: u64| self.start + Duration::from_millis(since_ms) + idle;
        let mut deadline = idle_deadline(self.idle_since_ms.load(Ordering::Acquire));
        loop {
            tokio::select! {
                () = &mut abuse => return CloseReason::PrematureResets,
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if self.active.load(Ordering::Acquire) == 0 {
                        deadline = idle_deadline(self.idle_since_ms.load(Ordering::Acquire));
                        if deadline <= now {
                            return CloseReason::Idle;
                        }
                    } else {
                        // Busy: look again after another idle period.
                        deadline = now + idle;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_without_requests_in_progress() {
        let state = ConnState::new(100);
        state.stream_started();
        let idle = Duration::from_secs(5);
        let fired = tokio::time::timeout(Duration::from_secs(30), state.close_signal(idle)).await;
        assert!(
            fired.is_err(),
            "a connection with a request in progress is not idle"
        );
        state.stream_ended(false);
        let fired = tokio::time::timeout(Duration::from_secs(30), state.close_signal(idle)).await;
        assert_eq!(fired.unwrap(), CloseReason::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn premature_resets_close_the_connection() {
        let state = ConnState::new(10);
        for _ in 0..20 {
            state.stream_started();
            state.stream_ended(false);
        }
        for _ in 0..10 {
            state.stream_started();
            state.stream_ended(true);
        }
        // 10 of 30 abandoned: under half, still fine.
        let check = tokio::time::timeout(
            Duration::from_secs(1),
            state.close_signal(Duration::from_secs(3600)),
        )
        .await;
        assert!(check.is_err());
        for _ in 0..10 {
            state.stream_started();
            state.stream_ended(true);
        }
        let check = tokio::time::timeout(
            Duration::from_secs(1),
            state.close_signal(Duration::from_secs(3600)),
        )
        .await;
        assert_eq!(check.unwrap(), CloseReason::PrematureResets);
    }
}
