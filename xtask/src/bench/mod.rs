//! `cargo xtask bench [--quick]`: lbgw, nginx and HAProxy side by side as TLS-terminating
//! reverse proxies, in one run on this machine, with the same backend, the same certificate
//! and the same load generators.
//!
//! Every process listens on 127.0.0.1 on a free ephemeral port; every process the run starts
//! is stopped again when the run ends or fails ([`procs::Proc`] guards). For each load and
//! proxy: requests/s, p50/p99 latency, CPU time per request of the proxy's processes and
//! their peak RSS. Results go to `docs/bench/results.json` and two SVG charts.

mod configs;
pub mod flood;
mod loadgen;
mod procs;
mod report;
mod xdpgen;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use self::loadgen::Measured;
use self::procs::Proc;

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
    fn new(quick: bool) -> Self {
        Self {
            secs: if quick { 4 } else { 15 },
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
            Load::Sse => "SSE, 100 streams × 50 events/s, delay per event".to_owned(),
            Load::Large => "10 MiB bodies, HTTP/1.1 keep-alive, wrk -t2 -c8".to_owned(),
        }
    }
}

/// One proxy under test.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    proc: Proc,
}

/// A measured (load, target) pair.
#[derive(Clone, Debug)]
pub struct Row {
    pub load: Load,
    pub target: &'static str,
    pub measured: Measured,
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

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
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

/// Builds lbgw and bench-backend in release mode; returns their paths.
fn build() -> Result<(PathBuf, PathBuf)> {
    let status = Command::new(crate::cargo())
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "-p", "lbgw", "--bin", "lbgw"])
        .args(["-p", "lbgw-tests", "--bin", "bench-backend"])
        .status()
        .context("running cargo build")?;
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

fn start_targets(lbgw: &Path, dir: &Path, backend: SocketAddr) -> Result<Vec<Target>> {
    let (cert_pem, key_pem) = crate::cert::self_signed("bench.lbgw.test")?;
    std::fs::write(dir.join("cert.pem"), &cert_pem)?;
    std::fs::write(dir.join("key.pem"), &key_pem)?;
    std::fs::write(dir.join("haproxy.pem"), format!("{cert_pem}{key_pem}"))?;
    let mut targets = Vec::new();

    let port = procs::free_port()?;
    let config = dir.join("lbgw.yaml");
    std::fs::write(&config, configs::lbgw(port, backend, &cert_pem, &key_pem))?;
    let mut cmd = Command::new(lbgw);
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
    .arg(&config)
    .arg("--state")
    .arg(dir.join("ipam.json"))
    // The proxy serves on its --workers threads; the main runtime only runs the daemon.
    .env("TOKIO_WORKER_THREADS", "1")
    .env("LBGW_LOG", "warn");
    targets.push(start("lbgw", cmd, port, dir)?);

    let port = procs::free_port()?;
    let config = dir.join("nginx.conf");
    std::fs::write(&config, configs::nginx(dir, port, backend))?;
    let mut cmd = Command::new("/usr/sbin/nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(&config);
    targets.push(start("nginx", cmd, port, dir)?);

    let port = procs::free_port()?;
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, configs::haproxy(dir, port, backend))?;
    let mut cmd = Command::new("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&config);
    targets.push(start("haproxy", cmd, port, dir)?);
    Ok(targets)
}

fn start(name: &'static str, cmd: Command, port: u16, dir: &Path) -> Result<Target> {
    let log = dir.join(format!("{name}.log"));
    let mut proc = Proc::spawn(name, cmd, &log)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    procs::wait_listening(&mut proc, addr, &log)?;
    Ok(Target { name, addr, proc })
}

/// Runs `load` against one target and measures the target's processes around it.
fn measure(load: Load, plan: &Plan, target: &mut Target, client: &Path, dir: &Path) -> Result<Row> {
    target.proc.check_alive()?;
    let pids = target.proc.tree();
    procs::reset_peak_rss(&pids);
    let cpu_before = procs::cpu_seconds(&pids);
    let url = format!("https://{}", target.addr);
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
        Load::Sse => loadgen::sse(
            client,
            target.addr,
            true,
            plan.sse_streams,
            plan.secs * 1000 / plan.sse_interval_ms,
            plan.sse_interval_ms,
        )?,
        Load::Large => loadgen::wrk(&format!("{url}/large"), plan.large_conns, plan.secs, &[])?,
    };
    let pids = target.proc.tree();
    let cpu = procs::cpu_seconds(&pids) - cpu_before;
    let row = Row {
        load,
        target: target.name,
        cpu_us: if measured.requests > 0.0 {
            cpu * 1e6 / measured.requests
        } else {
            0.0
        },
        rss_mib: procs::peak_rss_mib(&pids),
        measured,
    };
    eprintln!(
        "xtask bench: {:<13} {:<8} {:>10.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  {:>7.1} µs CPU/req  {:>6.1} MiB  errors {}",
        load.key(),
        row.target,
        row.measured.rps,
        row.measured.p50_ms,
        row.measured.p99_ms,
        row.cpu_us,
        row.rss_mib,
        row.measured.errors
    );
    Ok(row)
}

/// The whole run.
pub fn run(quick: bool) -> Result<()> {
    install_packages()?;
    let (lbgw, client) = build()?;
    let dir = std::env::temp_dir().join(format!("lbgw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch(dir.clone());
    let plan = Plan::new(quick);

    let (backend_proc, backend) = start_backend(&client, &dir)?;
    let mut targets = start_targets(&lbgw, &dir, backend)?;
    eprintln!(
        "xtask bench: backend {backend}; {}",
        targets
            .iter()
            .map(|t| format!("{} {}", t.name, t.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Warm-up: TLS state, upstream pools, page cache.
    for target in &targets {
        loadgen::wrk(&format!("https://{}/", target.addr), plan.conns, 1, &[])
            .with_context(|| format!("warming up {}", target.name))?;
    }

    let mut rows = Vec::new();
    for load in Load::ALL {
        if load == Load::Sse {
            // The baseline: the same streams straight from the backend (no TLS).
            let m = loadgen::sse(
                &client,
                backend,
                false,
                plan.sse_streams,
                plan.secs * 1000 / plan.sse_interval_ms,
                plan.sse_interval_ms,
            )?;
            eprintln!(
                "xtask bench: sse           direct   p50 {:.3} ms  p99 {:.3} ms",
                m.p50_ms, m.p99_ms
            );
            rows.push(Row {
                load,
                target: "direct",
                measured: m,
                cpu_us: 0.0,
                rss_mib: 0.0,
            });
        }
        for target in &mut targets {
            rows.push(measure(load, &plan, target, &client, &dir)?);
        }
    }
    drop(targets);
    drop(backend_proc);
    drop(scratch);

    let out = crate::workspace_root().join("docs").join("bench");
    std::fs::create_dir_all(&out)?;
    let machine = report::machine();
    print!(
        "{}",
        report::table(&rows, &plan_summary(&plan, quick), &machine)
    );
    report::write(&out, &rows, quick, &plan_summary(&plan, quick), &machine)?;
    eprintln!("xtask bench: wrote {}", out.display());
    Ok(())
}

fn plan_summary(plan: &Plan, quick: bool) -> String {
    format!(
        "{} s per load and proxy{}; {} workers each; loads: {}",
        plan.secs,
        if quick { " (--quick)" } else { "" },
        configs::WORKERS,
        Load::ALL
            .iter()
            .map(|l| format!("{}: {}", l.key(), l.describe(plan.conns)))
            .collect::<Vec<_>>()
            .join("; ")
    )
}
