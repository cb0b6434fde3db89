//! The SSE load's figure: the delay a proxy adds to each event.
//!
//! Every event carries its send time (CLOCK_REALTIME ns, stamped by bench-backend), and
//! bench-backend's sse-client records receive − send for each event it reads. During each
//! proxy's SSE load the client reads, at the same time, as many streams straight from the
//! backend (plain HTTP) as through the proxy, opened alternately and sent on the same ticks
//! (bench-backend aligns every stream's events to multiples of the interval). The added delay
//! at a percentile is the proxied streams' delay at that percentile minus the direct streams'
//! delay at that percentile, both from the same seconds of the same run:
//!
//! `added_pXX = pXX(proxied receive − send) − pXX(direct receive − send)`.
//!
//! Before, the direct streams ran alone before the proxies' runs, and a direct baseline taken
//! in a slower moment (p50 0.41 ms against 0.1 ms in other runs) made the proxies' added delay
//! negative. Now whatever slows the machine during a proxy's load slows its baseline too. The
//! difference can still come out slightly below zero at p99 from sampling alone (the top 1 %
//! of a few thousand events per set), never from a baseline taken at another time.

use super::loadgen::percentile;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("SSE samples line {line}: expected `p <ns>` or `d <ns>`, got {text:?}")]
    BadLine { line: usize, text: String },
}

/// Per-event delays (receive − send), nanoseconds, of one SSE load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// Events read through the proxy.
    pub proxied: Vec<u64>,
    /// Events read straight from the backend at the same time.
    pub direct: Vec<u64>,
}

impl Samples {
    /// sse-client's `--samples` file: `p <ns>` or `d <ns>` per line.
    pub fn parse(text: &str) -> Result<Self, SseError> {
        let mut samples = Samples::default();
        for (i, line) in text.lines().enumerate() {
            let bad = || SseError::BadLine {
                line: i + 1,
                text: line.to_owned(),
            };
            let (tag, ns) = line.split_once(' ').ok_or_else(bad)?;
            let ns: u64 = ns.trim().parse().map_err(|_| bad())?;
            match tag {
                "p" => samples.proxied.push(ns),
                "d" => samples.direct.push(ns),
                _ => return Err(bad()),
            }
        }
        Ok(samples)
    }
}

/// The delays of one SSE load, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SseDelay {
    pub proxied_p50_ms: f64,
    pub proxied_p99_ms: f64,
    pub direct_p50_ms: f64,
    pub direct_p99_ms: f64,
    /// Events read straight from the backend (the baseline's sample size).
    pub direct_events: usize,
}

impl SseDelay {
    pub fn from_samples(samples: &Samples) -> Self {
        let ms = |v: &[u64], p: f64| {
            let mut v: Vec<f64> = v.iter().map(|&ns| ns as f64 / 1e6).collect();
            v.sort_by(f64::total_cmp);
            percentile(&v, p)
        };
        Self {
            proxied_p50_ms: ms(&samples.proxied, 0.50),
            proxied_p99_ms: ms(&samples.proxied, 0.99),
            direct_p50_ms: ms(&samples.direct, 0.50),
            direct_p99_ms: ms(&samples.direct, 0.99),
            direct_events: samples.direct.len(),
        }
    }

    /// The delay the proxy adds at the median.
    pub fn added_p50_ms(&self) -> f64 {
        self.proxied_p50_ms - self.direct_p50_ms
    }

    /// The delay the proxy adds at the 99th percentile.
    pub fn added_p99_ms(&self) -> f64 {
        self.proxied_p99_ms - self.direct_p99_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` delays spread evenly over `[lo_ms, hi_ms]`, in ns.
    fn spread(n: usize, lo_ms: f64, hi_ms: f64) -> Vec<u64> {
        (0..n)
            .map(|i| ((lo_ms + (hi_ms - lo_ms) * i as f64 / (n - 1) as f64) * 1e6) as u64)
            .collect()
    }

    #[test]
    fn parses_the_samples_file() {
        let s = Samples::parse("p 120000\nd 80000\np 130000\n").unwrap();
        assert_eq!(s.proxied, [120_000, 130_000]);
        assert_eq!(s.direct, [80_000]);
        assert_eq!(
            Samples::parse("p 1\nx 2\n"),
            Err(SseError::BadLine {
                line: 2,
                text: "x 2".to_owned()
            })
        );
        assert!(Samples::parse("p\n").is_err());
        assert!(Samples::parse("d -3\n").is_err());
    }

    #[test]
    fn added_delay_is_proxied_minus_simultaneous_direct() {
        // 0.05–0.15 ms direct; the proxy adds 0.2 ms to every event.
        let direct = spread(1001, 0.05, 0.15);
        let proxied: Vec<u64> = direct.iter().map(|d| d + 200_000).collect();
        let delay = SseDelay::from_samples(&Samples { proxied, direct });
        assert!((delay.direct_p50_ms - 0.10).abs() < 1e-6, "{delay:?}");
        assert!((delay.added_p50_ms() - 0.2).abs() < 1e-6, "{delay:?}");
        assert!((delay.added_p99_ms() - 0.2).abs() < 1e-6, "{delay:?}");
        assert_eq!(delay.direct_events, 1001);
    }

    /// The full run of 2026-11-29: the direct streams, run alone before the proxies, had a
    /// p50 of 0.41 ms and a p99 of 4.5 ms; nginx's proxied streams later, on a quieter
    /// machine, 0.33 and 3.0 ms. The old subtraction reported −0.09 and −1.5 ms. Measured
    /// the new way, the direct streams run during nginx's load, on the same quieter machine.
    #[test]
    fn a_slow_baseline_from_another_moment_no_longer_makes_it_negative() {
        let direct_earlier = SseDelay::from_samples(&Samples {
            proxied: Vec::new(),
            direct: spread(1001, 0.01, 0.81)
                .into_iter()
                .chain(spread(20, 4.5, 4.6))
                .collect(),
        });
        // During nginx's load: direct 0.03–0.23 ms with a tail to 0.6 ms; nginx adds 0.2 ms
        // to every event and has a longer tail.
        let direct_now: Vec<u64> = spread(1001, 0.03, 0.23)
            .into_iter()
            .chain(spread(20, 0.5, 0.6))
            .collect();
        let mut proxied: Vec<u64> = direct_now[..1001].iter().map(|d| d + 200_000).collect();
        proxied.extend(spread(20, 3.0, 3.1));
        let now = SseDelay::from_samples(&Samples {
            proxied,
            direct: direct_now,
        });
        // The old method: this run's proxied percentiles minus the earlier run's direct ones.
        let old_p50 = now.proxied_p50_ms - direct_earlier.direct_p50_ms;
        let old_p99 = now.proxied_p99_ms - direct_earlier.direct_p99_ms;
        assert!(old_p50 < 0.0 && old_p99 < 0.0, "{old_p50} {old_p99}");
        assert!(
            (now.added_p50_ms() - 0.2).abs() < 1e-3,
            "{}",
            now.added_p50_ms()
        );
        assert!(now.added_p99_ms() > 0.2, "{}", now.added_p99_ms());
    }
}
