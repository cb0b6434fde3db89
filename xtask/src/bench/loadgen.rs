//! The load generators: wrk (HTTP/1.1), h2load (HTTP/2) and bench-backend's own handshake and
//! SSE clients, each run as a process, its output parsed into a [`Measured`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::sse::{Samples, SseDelay};

/// What one load run measured on the client side.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Requests (or SSE events) completed.
    pub requests: f64,
    /// Requests (events) per second.
    pub rps: f64,
    /// Latency percentiles in milliseconds (SSE: send-to-receive delay of an event).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests, non-2xx responses, socket errors.
    pub errors: u64,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.00m`.
fn wrk_duration_ms(s: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

/// `wrk -t2 -c<conns> -d<secs>s --latency <url>` with optional extra headers.
pub fn wrk(url: &str, conns: usize, secs: u64, headers: &[&str]) -> Result<Measured> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        "2",
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ])
    .args(["--timeout", "10s"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run(cmd.arg(url))?;
    parse_wrk(&out).with_context(|| format!("parsing wrk output:\n{out}"))
}

fn parse_wrk(out: &str) -> Result<Measured> {
    let mut m = Measured::default();
    for line in out.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", v] => m.p50_ms = wrk_duration_ms(v).context("p50")?,
            ["99%", v] => m.p99_ms = wrk_duration_ms(v).context("p99")?,
            ["Requests/sec:", v] => m.rps = v.parse()?,
            [n, "requests", "in", ..] => m.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => m.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                m.errors += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if m.rps == 0.0 {
        bail!("no Requests/sec");
    }
    Ok(m)
}

/// `h2load -t2 -c<conns> -m<streams> -D<secs>` over TLS (ALPN h2), latencies from its
/// per-request log.
pub fn h2load(url: &str, conns: usize, streams: usize, secs: u64, log: &Path) -> Result<Measured> {
    let out = run(Command::new("h2load")
        .args([
            "-t",
            "2",
            "-c",
            &conns.to_string(),
            "-m",
            &streams.to_string(),
        ])
        .args(["-D", &secs.to_string()])
        .arg("--log-file")
        .arg(log)
        .arg(url))?;
    if !out.contains("Application protocol: h2") {
        bail!("h2load did not negotiate h2:\n{out}");
    }
    let mut m = Measured::default();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // finished in 4.00s, 12345.67 req/s, 1.23MB/s
            m.rps = rest
                .split(", ")
                .nth(1)
                .and_then(|f| f.strip_suffix(" req/s"))
                .context("req/s")?
                .parse()?;
        }
        if let Some(rest) = line.strip_prefix("requests: ") {
            // requests: 1000 total, 1000 started, 1000 done, 990 succeeded, 10 failed, ...
            for part in rest.split(", ") {
                let mut it = part.split_whitespace();
                let (Some(n), Some(what)) = (it.next(), it.next()) else {
                    continue;
                };
                match what {
                    "succeeded" => m.requests = n.parse()?,
                    "failed" | "errored" | "timeout" => m.errors += n.parse::<u64>()?,
                    _ => {}
                }
            }
        }
        if let Some(rest) = line.strip_prefix("status codes: ") {
            // status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx
            for part in rest.split(", ").skip(1) {
                if let Some(n) = part.split_whitespace().next() {
                    m.errors += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    // Log lines: <start µs since epoch> <status> <duration µs>, tab-separated.
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut durations: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .collect();
    let _ = std::fs::remove_file(log);
    durations.sort_by(f64::total_cmp);
    m.p50_ms = percentile(&durations, 0.50) / 1000.0;
    m.p99_ms = percentile(&durations, 0.99) / 1000.0;
    if m.rps == 0.0 {
        bail!("h2load: no req/s in:\n{out}");
    }
    Ok(m)
}

/// The value at rank round((n − 1) · p) of `sorted` (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn json_field(json: &serde_json::Value, name: &str) -> Result<f64> {
    json.get(name)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("no {name} in {json}"))
}

/// bench-backend's handshake client: a new connection and a full TLS 1.3 handshake per request.
pub fn handshakes(client: &Path, addr: SocketAddr, conns: usize, secs: u64) -> Result<Measured> {
    let out = run(Command::new(client)
        .args([
            "handshake",
            "--addr",
            &addr.to_string(),
            "--host",
            "bench.lbgw.test",
        ])
        .args(["--conns", &conns.to_string(), "--secs", &secs.to_string()]))?;
    let json: serde_json::Value = serde_json::from_str(out.trim()).context("handshake output")?;
    Ok(Measured {
        requests: json_field(&json, "requests")?,
        rps: json_field(&json, "rps")?,
        p50_ms: json_field(&json, "p50_us")? / 1000.0,
        p99_ms: json_field(&json, "p99_us")? / 1000.0,
        errors: json_field(&json, "errors")? as u64,
    })
}

/// bench-backend's SSE client: `streams` streams of `events` events `interval_ms` apart through
/// the proxy at `proxy` (TLS), and as many at the same time straight from `backend`, the
/// streams' events spread evenly over the interval (see [`super::sse`]); the per-event delays
/// go through `samples` (a scratch file) into [`SseDelay`].
pub fn sse(
    client: &Path,
    proxy: SocketAddr,
    backend: SocketAddr,
    streams: usize,
    events: u64,
    interval_ms: u64,
    samples: &Path,
) -> Result<(Measured, SseDelay)> {
    let started = std::time::Instant::now();
    let out = run(Command::new(client)
        .args([
            "sse-client",
            "--addr",
            &proxy.to_string(),
            "--host",
            "bench.lbgw.test",
            "--tls",
        ])
        .args(["--path", &format!("/sse?n={events}&ms={interval_ms}")])
        .args(["--streams", &streams.to_string()])
        .args(["--spread-ms", &interval_ms.to_string()])
        .args(["--direct", &backend.to_string()])
        .arg("--samples")
        .arg(samples))?;
    let elapsed = started.elapsed().as_secs_f64();
    let json: serde_json::Value = serde_json::from_str(out.trim()).context("sse-client output")?;
    let text = std::fs::read_to_string(samples)
        .with_context(|| format!("reading {}", samples.display()))?;
    let _ = std::fs::remove_file(samples);
    let parsed = Samples::parse(&text)?;
    let delay = SseDelay::from_samples(&parsed);
    let got = parsed.proxied.len() as f64;
    let expected = (streams as u64 * events) as f64;
    let direct_missing = (expected - delay.direct_events as f64).max(0.0);
    if direct_missing > 0.0 || json_field(&json, "direct_errors")? > 0.0 {
        bail!(
            "the direct SSE streams (the baseline) lost {direct_missing} of {expected} events: {out}"
        );
    }
    // A proxied stream whose request reached the backend a tick or two after its direct twin's
    // starts (and ends) that much later: its first and last events have no twin.
    if (delay.pairs as f64) < got * 0.9 {
        bail!(
            "only {} of {got} proxied SSE events had a direct twin on the same tick",
            delay.pairs
        );
    }
    let measured = Measured {
        requests: got,
        rps: got / elapsed,
        p50_ms: delay.proxied_p50_ms,
        p99_ms: delay.proxied_p99_ms,
        errors: json_field(&json, "errors")? as u64 + (expected - got).max(0.0) as u64,
    };
    Ok((measured, delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 3s test @ https://127.0.0.1:1/\n  2 threads and 64 connections\n\
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     2.10ms  812.00us  20.00ms   90.00%\n\
            Latency Distribution\n     50%    1.90ms\n     75%    2.20ms\n     90%    3.00ms\n     99%    5.50ms\n\
            30000 requests in 3.00s, 4.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            Non-2xx or 3xx responses: 4\nRequests/sec:  10000.00\nTransfer/sec:      1.33MB\n";
        let m = parse_wrk(out).unwrap();
        assert_eq!(m.requests, 30000.0);
        assert_eq!(m.rps, 10000.0);
        assert!((m.p50_ms - 1.9).abs() < 1e-9);
        assert!((m.p99_ms - 5.5).abs() < 1e-9);
        assert_eq!(m.errors, 7);
        assert!((wrk_duration_ms("812.00us").unwrap() - 0.812).abs() < 1e-9);
    }
}
