//! `cargo xtask bench [--quick] [--loads L,..] [--proxies P,..] [--secs N] [--rounds N]
//! [--lbgw-also LABEL=PATH ..]`: lbgw, nginx and HAProxy side by side as TLS-terminating
//! reverse proxies, in one run on this machine, with the same backend, the same certificate
//! and the same load generators.
//!
//! Every process listens on 127.0.0.1 on a free ephemeral port; every process the run starts
//! is stopped again when the run ends or fails ([`procs::Proc`] guards). For each load and
//! proxy: requests/s, p50/p99 latency, CPU time per request of the proxy's processes and
//! their peak RSS. For SSE, the delay each proxy adds to an event is its delay minus that of
//! its twin, the event sent on the same tick to a direct stream read at the same time (see
//! [`sse`]).
//!
//! Loads run one after another; within a load the targets run in turn, and with `--rounds N`
//! the load is repeated N times, each round starting at the next target, and every figure of
//! a target is the median of its N rounds. `--lbgw-also LABEL=PATH` starts another lbgw
//! binary configured exactly like `lbgw`, as one more target. A run of every load against the
//! three proxies and nothing else writes `docs/bench/results.json` and `summary.svg`; any
//! other run (`--loads`, `--proxies`, `--lbgw-also`) only prints its table.

mod configs;
pub mod flood;
pub mod instructions;
mod loadgen;
pub mod options;
mod procs;
mod report;
mod sse;
mod xdpgen;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use self::loadgen::Measured;
use self::options::{Options, Proxy};
use self::procs::Proc;
use self::sse::SseDelay;

/// Durations, connections and sizes of one run.
struct Plan {
    secs: u64,
    conns: usize,
    h2_streams: usize,
    handshake_conns: usize,
    large_conns: usize,
    sse_streams: usize,
    sse_interval_ms: u64,
}

impl Plan {
    fn new(quick: bool, secs: Option<u64>) -> Self {
        Self {
            secs: secs.unwrap_or(if quick { 4 } else { 15 }),
            conns: 64,
            h2_streams: 10,
            handshake_conns: 32,
            large_conns: 8,
            sse_streams: 100,
            sse_interval_ms: 20,
        }
    }
}

/// The loads, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    H1,
    H2,
    Handshake,
    Sse,
    Large,
}

impl Load {
    pub const ALL: [Load; 5] = [Load::H1, Load::H2, Load::Handshake, Load::Sse, Load::Large];

    pub fn key(self) -> &'static str {
        match self {
            Load::H1 => "h1-keepalive",
            Load::H2 => "h2-keepalive",
            Load::Handshake => "new-tls-conn",
            Load::Sse => "sse",
            Load::Large => "10mb-body",
        }
    }

    pub fn describe(self, plan_conns: usize) -> String {
        match self {
            Load::H1 => format!("HTTPS HTTP/1.1 keep-alive, 128 B GETs, wrk -t2 -c{plan_conns}"),
            Load::H2 => format!("HTTPS HTTP/2, 128 B GETs, h2load -t2 -c{plan_conns} -m10"),
            Load::Handshake => "new TCP + full TLS 1.3 handshake per GET, 32 loops".to_owned(),
            Load::Sse => {
                "SSE, 100 streams × 50 events/s, delay added per event over its twin on 100 direct streams read at the same time"
                    .to_owned()
            }
            Load::Large => "10 MiB bodies, HTTP/1.1 keep-alive, wrk -t2 -c8".to_owned(),
        }
    }
}

/// One proxy under test.
struct Target {
    name: String,
    addr: SocketAddr,
    proc: Proc,
}

/// A measured (load, target) pair.
#[derive(Clone, Debug)]
pub struct Row {
    pub load: Load,
    pub target: String,
    pub measured: Measured,
    /// SSE only: the proxied and the simultaneous direct delays.
    pub sse: Option<SseDelay>,
    /// CPU time of the proxy's processes per request (SSE: per event), microseconds.
    pub cpu_us: f64,
    /// Peak RSS of the proxy's processes during the load, MiB.
    pub rss_mib: f64,
}

/// Removes the run's scratch directory when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian packages the bench drives, keyed by a binary each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("/usr/sbin/nginx", "nginx-light"),
    ("/usr/sbin/haproxy", "haproxy"),
    ("/usr/bin/wrk", "wrk"),
    ("/usr/bin/h2load", "nghttp2-client"),
];

/// Installs the Debian packages of [`PACKAGES`] and `extra` whose binary is missing.
fn install_packages(extra: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .chain(extra)
        .filter(|(bin, _)| !Path::new(bin).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask bench: installing {missing:?}");
    let ok = |s: std::process::ExitStatus| s.success();
    if !Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .is_ok_and(ok)
        || !Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(ok)
    {
        bail!(
            "installing {missing:?} failed (apt-get install {})",
            missing.join(" ")
        );
    }
    Ok(())
}

/// Builds bench-backend, and lbgw when it is one of the targets, in release mode; returns
/// their paths.
fn build(with_lbgw: bool) -> Result<(PathBuf, PathBuf)> {
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(crate::workspace_root())
        .args(["build", "--release"])
        .args(["-p", "lbgw-tests", "--bin", "bench-backend"]);
    if with_lbgw {
        cmd.args(["-p", "lbgw", "--bin", "lbgw"]);
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building lbgw and bench-backend failed ({status})");
    }
    let release = crate::target_dir().join("release");
    Ok((release.join("lbgw"), release.join("bench-backend")))
}

/// Starts bench-backend and reads the address it printed.
fn start_backend(bin: &Path, dir: &Path) -> Result<(Proc, SocketAddr)> {
    use std::io::BufRead as _;
    let mut child = Command::new(bin)
        .arg("serve")
        .env("BENCH_THREADS", configs::WORKERS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("backend.log"))?)
        .spawn()
        .context("starting bench-backend")?;
    let stdout = child.stdout.take().context("backend stdout")?;
    let proc = Proc::adopt("bench-backend", child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("bench-backend printed {line:?}"))?
        .parse()?;
    Ok((proc, addr))
}

/// Starts the selected proxies, each `--lbgw-also` build right after lbgw (or first, without
/// lbgw), so that A/B rows sit next to each other.
fn start_targets(
    opts: &Options,
    lbgw: &Path,
    dir: &Path,
    backend: SocketAddr,
) -> Result<Vec<Target>> {
    let (cert_pem, key_pem) = crate::cert::self_signed("bench.lbgw.test")?;
    std::fs::write(dir.join("cert.pem"), &cert_pem)?;
    std::fs::write(dir.join("key.pem"), &key_pem)?;
    std::fs::write(dir.join("haproxy.pem"), format!("{cert_pem}{key_pem}"))?;
    let mut lbgws: Vec<(String, PathBuf)> = Vec::new();
    let proxies = opts.proxies();
    if proxies.contains(&Proxy::Lbgw) {
        lbgws.push(("lbgw".to_owned(), lbgw.to_owned()));
    }
    opts.check_binaries()?;
    for extra in &opts.lbgw_also {
        lbgws.push((extra.label.clone(), extra.path.clone()));
    }
    let mut targets = Vec::new();
    for (name, bin) in lbgws {
        targets.push(start_lbgw(&name, &bin, dir, backend, &cert_pem, &key_pem)?);
    }

    if proxies.contains(&Proxy::Nginx) {
        let port = procs::free_port()?;
        let config = dir.join("nginx.conf");
        std::fs::write(&config, configs::nginx(dir, port, backend))?;
        let mut cmd = Command::new("/usr/sbin/nginx");
        cmd.arg("-p").arg(dir).arg("-c").arg(&config);
        targets.push(start("nginx", cmd, port, dir)?);
    }

    if proxies.contains(&Proxy::Haproxy) {
        let port = procs::free_port()?;
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, configs::haproxy(dir, port, backend))?;
        let mut cmd = Command::new("/usr/sbin/haproxy");
        cmd.arg("-db").arg("-f").arg(&config);
        targets.push(start("haproxy", cmd, port, dir)?);
    }
    Ok(targets)
}

/// One lbgw target (`lbgw` itself or an `--lbgw-also` build): every one gets the same flags
/// and the same configuration, on its own port, with its own files named after it.
fn start_lbgw(
    name: &str,
    bin: &Path,
    dir: &Path,
    backend: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Target> {
    let port = procs::free_port()?;
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, configs::lbgw(port, backend, cert_pem, key_pem))?;
    let cmd = lbgw_command(bin, &config, &dir.join(format!("{name}-ipam.json")));
    start(name, cmd, port, dir)
}

/// `lbgw run` as every bench runs it, on `config` with its IPAM state in `state`.
fn lbgw_command(bin: &Path, config: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--no-xdp",
        "--bind",
        "127.0.0.1",
        "--lb-cidr",
        "192.0.2.0/24",
        // Like nginx and HAProxy in this bench: no access log.
        "--access-log",
        "off",
        "--no-watch",
        // Like nginx's worker_processes and HAProxy's nbthread.
        "--workers",
        &configs::WORKERS.to_string(),
    ])
    .arg("--config")
    .arg(config)
    .arg("--state")
    .arg(state)
    // The proxy serves on its --workers threads; the main runtime only runs the daemon.
    .env("TOKIO_WORKER_THREADS", "1")
    .env("LBGW_LOG", "warn");
    cmd
}

fn start(name: &str, cmd: Command, port: u16, dir: &Path) -> Result<Target> {
    let log = dir.join(format!("{name}.log"));
    let mut proc = Proc::spawn(name, cmd, &log)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    procs::wait_listening(&mut proc, addr, &log)?;
    Ok(Target {
        name: name.to_owned(),
        addr,
        proc,
    })
}

/// Runs `load` against one target and measures the target's processes around it.
fn measure(
    load: Load,
    plan: &Plan,
    target: &mut Target,
    backend: SocketAddr,
    client: &Path,
    dir: &Path,
) -> Result<Row> {
    target.proc.check_alive()?;
    let pids = target.proc.tree();
    procs::reset_peak_rss(&pids);
    let cpu_before = procs::cpu_seconds(&pids);
    let url = format!("https://{}", target.addr);
    let mut sse = None;
    let measured = match load {
        Load::H1 => loadgen::wrk(&format!("{url}/"), plan.conns, plan.secs, &[])?,
        Load::H2 => loadgen::h2load(
            &format!("{url}/"),
            plan.conns,
            plan.h2_streams,
            plan.secs,
            &dir.join("h2load.log"),
        )?,
        Load::Handshake => {
            loadgen::handshakes(client, target.addr, plan.handshake_conns, plan.secs)?
        }
        Load::Sse => {
            let (measured, delay) = loadgen::sse(
                client,
                target.addr,
                backend,
                plan.sse_streams,
                plan.secs * 1000 / plan.sse_interval_ms,
                plan.sse_interval_ms,
                &dir.join("sse-samples.txt"),
            )?;
            sse = Some(delay);
            measured
        }
        Load::Large => loadgen::wrk(&format!("{url}/large"), plan.large_conns, plan.secs, &[])?,
    };
    let pids = target.proc.tree();
    let cpu = procs::cpu_seconds(&pids) - cpu_before;
    let row = Row {
        load,
        target: target.name.clone(),
        cpu_us: if measured.requests > 0.0 {
            cpu * 1e6 / measured.requests
        } else {
            0.0
        },
        rss_mib: procs::peak_rss_mib(&pids),
        measured,
        sse,
    };
    let added = row.sse.map_or(String::new(), |d| {
        format!(
            "  added p50 {:.3} ms p99 {:.3} ms over {} pairs (direct p50 {:.3} p99 {:.3})",
            d.added_p50_ms, d.added_p99_ms, d.pairs, d.direct_p50_ms, d.direct_p99_ms
        )
    });
    eprintln!(
        "xtask bench: {:<13} {:<8} {:>10.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  {:>7.1} µs CPU/req  {:>6.1} MiB  errors {}{added}",
        load.key(),
        row.target,
        row.measured.rps,
        row.measured.p50_ms,
        row.measured.p99_ms,
        row.cpu_us,
        row.rss_mib,
        row.measured.errors,
    );
    Ok(row)
}

/// The median of `values` (the mean of the middle two for an even count; 0 when empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One row from the rounds of a (load, target): the median of every figure, each taken on its
/// own (for SSE, the median of the rounds' added-delay percentiles); requests, errors and
/// event counts summed over the rounds.
fn combine(rounds: &[Row]) -> Option<Row> {
    let first = rounds.first()?;
    let med = |f: &dyn Fn(&Row) -> f64| median(rounds.iter().map(f).collect());
    let sse = first.sse.map(|_| {
        let d = |f: &dyn Fn(&SseDelay) -> f64| med(&|r: &Row| r.sse.as_ref().map_or(0.0, f));
        let sum = |f: &dyn Fn(&SseDelay) -> usize| {
            rounds.iter().filter_map(|r| r.sse.as_ref().map(f)).sum()
        };
        SseDelay {
            added_p50_ms: d(&|s| s.added_p50_ms),
            added_p99_ms: d(&|s| s.added_p99_ms),
            proxied_p50_ms: d(&|s| s.proxied_p50_ms),
            proxied_p99_ms: d(&|s| s.proxied_p99_ms),
            direct_p50_ms: d(&|s| s.direct_p50_ms),
            direct_p99_ms: d(&|s| s.direct_p99_ms),
            direct_events: sum(&|s| s.direct_events),
            pairs: sum(&|s| s.pairs),
        }
    });
    Some(Row {
        load: first.load,
        target: first.target.clone(),
        measured: Measured {
            requests: rounds.iter().map(|r| r.measured.requests).sum(),
            rps: med(&|r| r.measured.rps),
            p50_ms: med(&|r| r.measured.p50_ms),
            p99_ms: med(&|r| r.measured.p99_ms),
            errors: rounds.iter().map(|r| r.measured.errors).sum(),
        },
        sse,
        cpu_us: med(&|r| r.cpu_us),
        rss_mib: med(&|r| r.rss_mib),
    })
}

/// The order of the targets in round `round`: each round starts one target further, so no
/// target always runs first (right after the previous load) or last.
fn round_order(targets: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..targets).map(move |i| (round + i) % targets)
}

/// The whole run.
pub fn run(opts: &Options) -> Result<()> {
    opts.validate()?;
    install_packages(&[])?;
    let (lbgw, client) = build(opts.proxies().contains(&Proxy::Lbgw))?;
    let dir = std::env::temp_dir().join(format!("lbgw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch(dir.clone());
    let plan = Plan::new(opts.quick, opts.secs);
    let rounds = opts.rounds.max(1);

    let (backend_proc, backend) = start_backend(&client, &dir)?;
    let mut targets = start_targets(opts, &lbgw, &dir, backend)?;
    eprintln!(
        "xtask bench: backend {backend}; {}",
        targets
            .iter()
            .map(|t| format!("{} {}", t.name, t.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Warm-up: TLS state, upstream pools, page cache. 2 s: with 1 s, 64 handshakes on a
    // busy machine sometimes did not finish and wrk reported no request at all.
    for target in &targets {
        loadgen::wrk(&format!("https://{}/", target.addr), plan.conns, 2, &[])
            .with_context(|| format!("warming up {}", target.name))?;
    }

    let mut rows = Vec::new();
    for load in opts.loads() {
        let mut measured: Vec<Vec<Row>> = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            if rounds > 1 {
                eprintln!("xtask bench: {} round {}/{rounds}", load.key(), round + 1);
            }
            for i in round_order(targets.len(), round) {
                let row = measure(load, &plan, &mut targets[i], backend, &client, &dir)?;
                measured[i].push(row);
            }
        }
        rows.extend(measured.iter().filter_map(|r| combine(r)));
    }
    drop(targets);
    drop(backend_proc);
    drop(scratch);

    let machine = report::machine();
    let summary = plan_summary(&plan, opts);
    print!("{}", report::table(&rows, &summary, &machine));
    if opts.partial() {
        eprintln!(
            "xtask bench: a partial run (--loads, --proxies or --lbgw-also): docs/bench/results.json and summary.svg are left as they are"
        );
        return Ok(());
    }
    let out = crate::workspace_root().join("docs").join("bench");
    std::fs::create_dir_all(&out)?;
    report::write(&out, &rows, opts.quick, rounds, &summary, &machine)?;
    eprintln!("xtask bench: wrote {}", out.display());
    Ok(())
}

fn plan_summary(plan: &Plan, opts: &Options) -> String {
    let rounds = opts.rounds.max(1);
    format!(
        "{} s per load and proxy{}{}; {} workers each; loads: {}",
        plan.secs,
        if opts.quick { " (--quick)" } else { "" },
        if rounds > 1 {
            format!(", median of {rounds} rounds")
        } else {
            String::new()
        },
        configs::WORKERS,
        opts.loads()
            .iter()
            .map(|l| format!("{}: {}", l.key(), l.describe(plan.conns)))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, rps: f64, added_p50: f64, direct_p50: f64) -> Row {
        Row {
            load: Load::Sse,
            target: target.to_owned(),
            measured: Measured {
                requests: 100.0,
                rps,
                p50_ms: direct_p50 + added_p50,
                p99_ms: 1.0,
                errors: 1,
            },
            sse: Some(SseDelay {
                added_p50_ms: added_p50,
                added_p99_ms: 0.5,
                proxied_p50_ms: direct_p50 + added_p50,
                proxied_p99_ms: 1.0,
                direct_p50_ms: direct_p50,
                direct_p99_ms: 0.5,
                direct_events: 100,
                pairs: 90,
            }),
            cpu_us: rps / 100.0,
            rss_mib: 10.0,
        }
    }

    #[test]
    fn rounds_combine_into_medians() {
        let rows = [
            row("old", 900.0, 0.20, 0.40),
            row("old", 1000.0, 0.30, 0.10),
            row("old", 5000.0, 0.25, 0.12),
        ];
        let r = combine(&rows).unwrap();
        assert_eq!(r.target, "old");
        assert_eq!(r.measured.rps, 1000.0);
        assert_eq!(r.cpu_us, 10.0);
        assert_eq!(r.measured.requests, 300.0);
        assert_eq!(r.measured.errors, 3);
        let sse = r.sse.unwrap();
        // The median of the rounds' added delays (0.20, 0.30, 0.25).
        assert!((sse.added_p50_ms - 0.25).abs() < 1e-9, "{sse:?}");
        assert_eq!(sse.pairs, 270);
        assert!((sse.direct_p50_ms - 0.12).abs() < 1e-9, "{sse:?}");
        assert_eq!(sse.direct_events, 300);
        assert!(combine(&[]).is_none());
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn each_round_starts_one_target_further() {
        let order = |round| round_order(3, round).collect::<Vec<_>>();
        assert_eq!(order(0), [0, 1, 2]);
        assert_eq!(order(1), [1, 2, 0]);
        assert_eq!(order(2), [2, 0, 1]);
        assert_eq!(order(3), [0, 1, 2]);
    }
}
