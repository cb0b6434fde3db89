//! The results: a table on stdout with lbgw's ratios to every other target (nginx, HAProxy and
//! `--lbgw-also` builds), a JSON file and an SVG chart (written as text, no plotting
//! dependency).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Load, Row};

const PROXIES: [&str; 3] = ["lbgw", "nginx", "haproxy"];

/// CPU model, cores and kernel of this machine.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

fn find<'a>(rows: &'a [Row], load: Load, target: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.load == load && r.target == target)
}

/// The latency figure compared: for SSE, the delay the proxy adds over the direct streams
/// read at the same time.
fn latency(row: &Row, p99: bool) -> f64 {
    match (row.sse, p99) {
        (Some(d), false) => d.added_p50_ms,
        (Some(d), true) => d.added_p99_ms,
        (None, false) => row.measured.p50_ms,
        (None, true) => row.measured.p99_ms,
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".to_owned()
    }
}

/// The table, with lbgw's ratios to each other target: throughput (higher is better) and p99
/// (lower is better).
pub fn table(rows: &[Row], plan: &str, machine: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{machine}\n{plan}\n");
    let _ = writeln!(
        out,
        "| load | proxy | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | errors | lbgw req/s ratio | lbgw p99 ratio |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for load in Load::ALL {
        let lbgw = find(rows, load, "lbgw");
        for row in rows.iter().filter(|r| r.load == load) {
            let (rps_ratio, p99_ratio) = match lbgw {
                Some(l) if row.target != "lbgw" => (
                    format!(
                        "{} vs {}",
                        ratio(l.measured.rps, row.measured.rps),
                        row.target
                    ),
                    format!(
                        "{} vs {}",
                        ratio(latency(l, true), latency(row, true)),
                        row.target
                    ),
                ),
                _ => (String::new(), String::new()),
            };
            let label = if row.sse.is_some() {
                "sse (added)".to_owned()
            } else {
                load.key().to_owned()
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} | {} | {rps_ratio} | {p99_ratio} |",
                row.target,
                row.measured.rps,
                latency(row, false),
                latency(row, true),
                row.cpu_us,
                row.rss_mib,
                row.measured.errors,
            );
        }
    }
    let baselines: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.sse.map(|d| {
                format!(
                    "{} {:.3} / {:.3}",
                    r.target, d.direct_p50_ms, d.direct_p99_ms
                )
            })
        })
        .collect();
    if !baselines.is_empty() {
        let _ = writeln!(
            out,
            "\nSSE rows: p50/p99 of each proxied event's delay minus that of its twin, the event sent on the same tick \
             to a direct stream read at the same time; req/s is events/s, CPU per event. Direct p50 / p99 ms during each target's load: {}.",
            baselines.join(", ")
        );
    }
    out
}

/// Writes `results.json` and `summary.svg` into `dir`.
pub fn write(
    dir: &Path,
    rows: &[Row],
    quick: bool,
    rounds: usize,
    plan: &str,
    machine: &str,
) -> Result<()> {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "load": r.load.key(),
                "proxy": r.target,
                "requests": r.measured.requests,
                "rps": round(r.measured.rps, 1),
                "p50_ms": round(r.measured.p50_ms, 3),
                "p99_ms": round(r.measured.p99_ms, 3),
                "added_p50_ms": r.sse.map(|d| round(d.added_p50_ms, 3)),
                "added_p99_ms": r.sse.map(|d| round(d.added_p99_ms, 3)),
                "sse_pairs": r.sse.map(|d| d.pairs),
                "direct_p50_ms": r.sse.map(|d| round(d.direct_p50_ms, 3)),
                "direct_p99_ms": r.sse.map(|d| round(d.direct_p99_ms, 3)),
                "cpu_us_per_request": round(r.cpu_us, 2),
                "peak_rss_mib": round(r.rss_mib, 1),
                "errors": r.measured.errors,
            })
        })
        .collect();
    let json = serde_json::json!({
        "machine": machine,
        "quick": quick,
        "rounds": rounds,
        "plan": plan,
        "results": results,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    std::fs::write(dir.join("summary.svg"), svg(rows, machine))?;
    Ok(())
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Two panels of grouped bars, one group per load: requests/s and p99 latency, each relative
/// to nginx (1.0), with the absolute value above each bar.
fn svg(rows: &[Row], machine: &str) -> String {
    const COLORS: [&str; 3] = ["#d9480f", "#2b8a3e", "#1c7ed6"];
    let (w, panel_h, left, top) = (900.0, 260.0, 60.0, 60.0);
    let group_w = (w - left - 20.0) / Load::ALL.len() as f64;
    let bar_w = group_w / 4.0;
    let mut s = String::new();
    let total_h = top + 2.0 * (panel_h + 70.0);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="22" font-size="15">lbgw vs nginx vs HAProxy (TLS-terminating, 2 workers each)</text><text x="{left}" y="40" fill="#555">{}</text>"##,
        xml(machine)
    );
    for (i, name) in PROXIES.iter().enumerate() {
        let x = w - 260.0 + i as f64 * 80.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="12" width="12" height="12" fill="{}"/><text x="{}" y="22">{name}</text>"#,
            COLORS[i],
            x + 16.0
        );
    }
    let panels: [(&str, bool); 2] = [
        (
            "requests/s (SSE: events/s) relative to nginx — higher is better",
            false,
        ),
        (
            "p99 latency (SSE: added delay) relative to nginx — lower is better",
            true,
        ),
    ];
    for (p, (title, is_latency)) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (panel_h + 70.0);
        let base = y0 + 20.0 + panel_h;
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-size="13">{title}</text>"#,
            y0 + 12.0
        );
        let value = |r: &Row| {
            if *is_latency {
                latency(r, true)
            } else {
                r.measured.rps
            }
        };
        let max_rel = Load::ALL
            .iter()
            .flat_map(|&l| {
                let n = find(rows, l, "nginx").map(value).unwrap_or(0.0);
                PROXIES
                    .iter()
                    .filter_map(move |t| find(rows, l, t))
                    .map(move |r| if n > 0.0 { value(r) / n } else { 0.0 })
            })
            .fold(1.0f64, f64::max)
            .min(5.0);
        let scale = panel_h / max_rel;
        // The nginx = 1.0 line.
        let one = base - scale;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{one}" y2="{one}" stroke="#999" stroke-dasharray="4 3"/><text x="{}" y="{}" fill="#666" text-anchor="end">1.0</text>"##,
            w - 20.0,
            left - 4.0,
            one + 4.0
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{base}" y2="{base}" stroke="#333"/>"##,
            w - 20.0
        );
        for (g, &load) in Load::ALL.iter().enumerate() {
            let gx = left + g as f64 * group_w + bar_w / 2.0;
            let nginx = find(rows, load, "nginx").map(value).unwrap_or(0.0);
            for (i, target) in PROXIES.iter().enumerate() {
                let Some(row) = find(rows, load, target) else {
                    continue;
                };
                let v = value(row);
                let rel = if nginx > 0.0 {
                    (v / nginx).clamp(0.0, max_rel)
                } else {
                    0.0
                };
                let h = rel * scale;
                let x = gx + i as f64 * bar_w;
                let label = if *is_latency {
                    format!("{v:.2}ms")
                } else {
                    format!("{v:.0}")
                };
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{label}</text>"#,
                    base - h,
                    bar_w - 4.0,
                    COLORS[i],
                    x + (bar_w - 4.0) / 2.0,
                    base - h - 3.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + 1.5 * bar_w,
                base + 16.0,
                load.key()
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::loadgen::Measured;
    use crate::bench::sse::SseDelay;

    fn row(load: Load, target: &str, rps: f64, sse: Option<SseDelay>) -> Row {
        Row {
            load,
            target: target.to_owned(),
            measured: Measured {
                requests: rps * 4.0,
                rps,
                p50_ms: 1.0,
                p99_ms: 4.0,
                errors: 0,
            },
            sse,
            cpu_us: 50.0,
            rss_mib: 20.0,
        }
    }

    #[test]
    fn extra_builds_get_lbgws_ratio_and_sse_rows_the_added_delay() {
        let sse = |added_p50_ms| SseDelay {
            added_p50_ms,
            added_p99_ms: 0.8,
            proxied_p50_ms: 0.3,
            proxied_p99_ms: 2.0,
            direct_p50_ms: 0.1,
            direct_p99_ms: 3.0,
            direct_events: 1000,
            pairs: 990,
        };
        let rows = [
            row(Load::H1, "lbgw", 1100.0, None),
            row(Load::H1, "old", 1000.0, None),
            row(Load::Sse, "lbgw", 5000.0, Some(sse(0.2))),
            row(Load::Sse, "old", 5000.0, Some(sse(0.25))),
        ];
        let table = table(&rows, "plan", "machine");
        assert!(
            table.contains("| h1-keepalive | old | 1000 | 1.000 | 4.000 | 50.0 | 20.0 | 0 | 1.10× vs old | 1.00× vs old |"),
            "{table}"
        );
        assert!(
            table.contains("| sse (added) | lbgw | 5000 | 0.200 | 0.800 |"),
            "{table}"
        );
        assert!(
            table.contains("lbgw 0.100 / 3.000, old 0.100 / 3.000"),
            "{table}"
        );

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &rows, true, 3, "plan", "machine").unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["rounds"], 3);
        let results = json["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[3]["proxy"], "old");
        assert_eq!(results[3]["added_p50_ms"], 0.25);
        assert_eq!(results[3]["direct_p99_ms"], 3.0);
        assert_eq!(results[3]["sse_pairs"], 990);
        assert!(results[0]["added_p50_ms"].is_null());
        assert!(dir.path().join("summary.svg").exists());
    }
}
