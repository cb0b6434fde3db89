//! The access log: one line per request, written when its response has been sent (or the
//! exchange was abandoned), in `text` (logfmt: `key=value`, values with spaces quoted) or
//! `json` (one object per line) on stdout, or as `tracing` events with target
//! `lbgw::access` (so they go wherever the daemon's log goes, filtered by `LBGW_LOG`).
//!
//! Lines are handed to a writer thread through a bounded queue so a slow stdout never stalls
//! the data path; when the queue is full the line is dropped and counted in
//! `lbgw_access_log_dropped_total`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;

/// Lines queued for the writer thread at most.
const QUEUE: usize = 16 * 1024;

/// The access log format (`--access-log`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    /// No access log.
    Off,
    /// `key=value` pairs on stdout.
    #[default]
    Text,
    /// One JSON object per line on stdout.
    Json,
    /// `tracing` events with target `lbgw::access` (stderr, with the daemon's log).
    Tracing,
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// `namespace/gateway/listener` that served it, empty when unknown.
    pub listener: &'a str,
    /// The client.
    pub peer: SocketAddr,
    /// Method.
    pub method: &'a str,
    /// `:authority` or Host.
    pub host: &'a str,
    /// Path (without query: queries may carry secrets).
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub proto: &'a str,
    /// `namespace/name` of the HTTPRoute, empty when none matched.
    pub route: &'a str,
    /// Index of the rule in the route's `spec.rules`.
    pub rule: Option<usize>,
    /// `namespace/service:port`, empty when none.
    pub backend: &'a str,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// The status sent, 0 when the client went away before the response.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Milliseconds from the request head to the end of the response.
    pub duration_ms: f64,
    /// Milliseconds from the request head to the response head.
    pub ttfb_ms: Option<f64>,
    /// Why the backend request failed (or the client's request), when it did.
    pub failure: Option<&'a str>,
}

/// Where access log lines go. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub enum AccessLog {
    /// Nowhere.
    #[default]
    Off,
    /// To the writer thread, formatted.
    Stdout {
        /// Text or JSON.
        json: bool,
        /// The writer thread's queue.
        queue: SyncSender<String>,
    },
    /// As `tracing` events.
    Tracing,
}

impl AccessLog {
    /// Starts the writer for `format` (a thread for stdout formats).
    pub fn start(format: AccessLogFormat) -> Self {
        match format {
            AccessLogFormat::Off => Self::Off,
            AccessLogFormat::Tracing => Self::Tracing,
            AccessLogFormat::Text | AccessLogFormat::Json => {
                let (queue, rx) = mpsc::sync_channel::<String>(QUEUE);
                let spawned = std::thread::Builder::new()
                    .name("lbgw-access-log".into())
                    .spawn(move || write_lines(&rx));
                if let Err(err) = spawned {
                    tracing::error!("access log writer thread: {err}; access log off");
                    return Self::Off;
                }
                Self::Stdout {
                    json: format == AccessLogFormat::Json,
                    queue,
                }
            }
        }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Logs `entry`; returns false when the line had to be dropped.
    pub fn log(&self, entry: &Entry<'_>) -> bool {
        match self {
            Self::Off => true,
            Self::Tracing => {
                tracing::info!(
                    target: "lbgw::access",
                    listener = entry.listener,
                    peer = %entry.peer,
                    method = entry.method,
                    host = entry.host,
                    path = entry.path,
                    proto = entry.proto,
                    route = entry.route,
                    rule = entry.rule,
                    backend = entry.backend,
                    endpoint = entry.endpoint.map(tracing::field::display),
                    status = entry.status,
                    bytes_in = entry.bytes_in,
                    bytes_out = entry.bytes_out,
                    duration_ms = entry.duration_ms,
                    ttfb_ms = entry.ttfb_ms,
                    failure = entry.failure,
                );
                true
            }
            Self::Stdout { json, queue } => {
                let line = if *json {
                    serde_json::to_string(entry).unwrap_or_default()
                } else {
                    text(entry)
                };
                match queue.try_send(line) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                }
            }
        }
    }
}

fn write_lines(rx: &mpsc::Receiver<String>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Ok(line) = rx.recv() {
        let mut write = |line: String| {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        };
        write(line);
        // Batch what is queued, then flush: one write(2) per burst, not per line.
        while let Ok(line) = rx.try_recv() {
            write(line);
        }
        let _ = out.flush();
    }
}

/// Milliseconds with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// logfmt: `key=value`, a value with spaces, quotes or `=` quoted (Rust string escaping),
/// an absent value `-`.
fn text(e: &Entry<'_>) -> String {
    use std::fmt::Write as _;
    fn value(out: &mut String, key: &str, v: &str) {
        let _ = if v.is_empty() {
            write!(out, " {key}=-")
        } else if v.contains([' ', '"', '=', '\\']) || v.chars().any(char::is_control) {
            write!(out, " {key}={v:?}")
        } else {
            write!(out, " {key}={v}")
        };
    }
    let mut out = String::with_capacity(256);
    out.push_str("access");
    value(&mut out, "listener", e.listener);
    value(&mut out, "peer", &e.peer.to_string());
    value(&mut out, "method", e.method);
    value(&mut out, "host", e.host);
    value(&mut out, "path", e.path);
    value(&mut out, "proto", e.proto);
    value(&mut out, "route", e.route);
    value(
        &mut out,
        "rule",
        &e.rule.map(|r| r.to_string()).unwrap_or_default(),
    );
    value(&mut out, "backend", e.backend);
    value(
        &mut out,
        "endpoint",
        &e.endpoint.map(|a| a.to_string()).unwrap_or_default(),
    );
    let _ = write!(
        out,
        " status={} bytes_in={} bytes_out={} duration_ms={:.3}",
        e.status, e.bytes_in, e.bytes_out, e.duration_ms
    );
    value(
        &mut out,
        "ttfb_ms",
        &e.ttfb_ms.map(|t| format!("{t:.3}")).unwrap_or_default(),
    );
    value(&mut out, "failure", e.failure.unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_quote_values_with_spaces() {
        let entry = Entry {
            listener: "default/gw/http",
            peer: "127.0.0.1:5000".parse().unwrap(),
            method: "GET",
            host: "example.com",
            path: "/a b",
            proto: "HTTP/1.1",
            route: "default/r",
            rule: Some(0),
            backend: "default/app:80",
            endpoint: Some("127.0.0.1:8080".parse().unwrap()),
            status: 502,
            bytes_in: 0,
            bytes_out: 16,
            duration_ms: 1.5,
            ttfb_ms: None,
            failure: Some("connecting to 127.0.0.1:8080"),
        };
        assert_eq!(
            text(&entry),
            "access listener=default/gw/http peer=127.0.0.1:5000 method=GET host=example.com \
             path=\"/a b\" proto=HTTP/1.1 route=default/r rule=0 backend=default/app:80 \
             endpoint=127.0.0.1:8080 status=502 bytes_in=0 bytes_out=16 duration_ms=1.500 \
             ttfb_ms=- failure=\"connecting to 127.0.0.1:8080\""
        );
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
        assert_eq!(json["status"], 502);
        assert_eq!(json["endpoint"], "127.0.0.1:8080");
    }
}
