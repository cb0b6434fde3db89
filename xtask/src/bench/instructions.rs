//! `cargo xtask bench-instructions`: user-space instructions per proxied request, counted by
//! valgrind's callgrind, for lbgw (and `--lbgw-also` builds) and HAProxy behind the same
//! backend and under the same h2load loads as `cargo xtask bench`.
//!
//! Wall-clock figures on a shared 2-core VM move by ±30 % between runs; an instruction count
//! does not move with the machine's load, so it is the figure to compare two builds by, and
//! what a change to the request path is measured with before a wall-clock bench confirms it.
//! What it does not see: kernel time (system calls, loopback TCP, wake-ups), and the cost of a
//! cache miss or of a large `memcpy` (valgrind counts a `rep movsb` byte by byte, so big
//! copies weigh more here than on the CPU). nginx is left out: its master and worker
//! processes do not fit `callgrind_control` on one pid without changing its configuration.
//!
//! Method, per target and load: start it under `valgrind --tool=callgrind`, send a warm-up
//! (TLS sessions, upstream pools), zero the counters (`callgrind_control -z`), send exactly
//! `--requests` requests over 8 connections, dump the counters (`callgrind_control -d`), and
//! divide the dump's total by the requests. The 8 TLS handshakes of the measured run are
//! included (about 1,100 instructions per request at 8,000 requests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::options::ExtraLbgw;
use super::procs::{self, Proc};
use super::{Scratch, configs, lbgw_command, start_backend};

/// The loads: h2load over HTTP/1.1 (`--h1`), one request at a time per connection, and over
/// HTTP/2 with 10 streams per connection, as the `h1-keepalive` and `h2-keepalive` loads.
const LOADS: [(&str, &[&str]); 2] = [
    ("h1-keepalive", &["--h1", "-c", "8", "-m", "1"]),
    ("h2-keepalive", &["-c", "8", "-m", "10"]),
];

/// Requests sent before counting.
const WARM_UP: u64 = 400;

/// How to start a target listening on a port, with its files in a directory.
type Starter = Box<dyn Fn(u16, &Path) -> Result<Command>>;

/// One measured target.
struct Target {
    name: String,
    start: Starter,
}

/// The run: `requests` per load and target.
pub fn run(requests: u64, lbgw_also: &[ExtraLbgw]) -> Result<()> {
    super::install_packages(&[("/usr/bin/valgrind", "valgrind")])?;
    for build in lbgw_also {
        if !build.path.is_file() {
            bail!(
                "--lbgw-also {}: {} is not a file",
                build.label,
                build.path.display()
            );
        }
    }
    let (lbgw, client) = super::build(true)?;
    let dir = std::env::temp_dir().join(format!("lbgw-bench-instr-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch(dir.clone());
    let (backend_proc, backend) = start_backend(&client, &dir)?;
    let (cert_pem, key_pem) = crate::cert::self_signed("bench.lbgw.test")?;
    std::fs::write(dir.join("haproxy.pem"), format!("{cert_pem}{key_pem}"))?;

    let mut targets = Vec::new();
    let mut lbgws = vec![("lbgw".to_owned(), lbgw)];
    lbgws.extend(lbgw_also.iter().map(|b| (b.label.clone(), b.path.clone())));
    for (name, bin) in lbgws {
        let (cert, key) = (cert_pem.clone(), key_pem.clone());
        let label = name.clone();
        targets.push(Target {
            name,
            start: Box::new(move |port, dir| {
                let config = dir.join(format!("{label}.yaml"));
                std::fs::write(&config, configs::lbgw(port, backend, &cert, &key))?;
                Ok(lbgw_command(
                    &bin,
                    &config,
                    &dir.join(format!("{label}-ipam.json")),
                ))
            }),
        });
    }
    targets.push(Target {
        name: "haproxy".to_owned(),
        start: Box::new(move |port, dir| {
            let config = dir.join("haproxy.cfg");
            std::fs::write(&config, configs::haproxy(dir, port, backend))?;
            let mut cmd = Command::new("/usr/sbin/haproxy");
            cmd.arg("-db").arg("-f").arg(&config);
            Ok(cmd)
        }),
    });

    let mut rows: Vec<(&str, String, u64)> = Vec::new();
    for (load, args) in LOADS {
        for target in &targets {
            let per_request = measure(target, load, args, requests, &dir)
                .with_context(|| format!("{} under {load}", target.name))?;
            eprintln!(
                "xtask bench-instructions: {load:<13} {:<10} {per_request:>8} instructions per request",
                target.name
            );
            rows.push((load, target.name.clone(), per_request));
        }
    }
    drop(backend_proc);
    drop(scratch);

    println!(
        "\nInstructions per request (valgrind callgrind, user space), {requests} requests per load"
    );
    println!("| load | proxy | instructions/request | vs haproxy |");
    println!("|---|---|---:|---:|");
    for (load, name, n) in &rows {
        let haproxy = rows
            .iter()
            .find(|(l, t, _)| l == load && t == "haproxy")
            .map(|r| r.2);
        let ratio = match haproxy {
            Some(h) if name != "haproxy" && h > 0 => format!("{:.2}×", *n as f64 / h as f64),
            _ => String::new(),
        };
        println!("| {load} | {name} | {n} | {ratio} |");
    }
    Ok(())
}

/// Instructions per request of `target` under one load.
fn measure(target: &Target, load: &str, args: &[&str], requests: u64, dir: &Path) -> Result<u64> {
    let port = procs::free_port()?;
    let inner = (target.start)(port, dir)?;
    let out = dir.join(format!("callgrind.{}.{load}", target.name));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--dump-instr=no")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let log = dir.join(format!("{}.{load}.log", target.name));
    let mut proc = Proc::spawn(format!("{} (callgrind)", target.name), cmd, &log)?;
    // Valgrind starts slowly.
    procs::wait_listening_for(
        &mut proc,
        SocketAddr::from(([127, 0, 0, 1], port)),
        &log,
        Duration::from_secs(120),
    )?;
    let url = format!("https://127.0.0.1:{port}/");
    h2load(args, WARM_UP, &url)?;
    callgrind_control("-z", proc.pid())?;
    h2load(args, requests, &url)?;
    callgrind_control("-d", proc.pid())?;
    drop(proc);
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let text =
        std::fs::read_to_string(&dump).with_context(|| format!("reading {}", dump.display()))?;
    Ok(total(&text).with_context(|| format!("no totals in {}", dump.display()))? / requests)
}

/// Sends exactly `requests` requests; fails unless every one succeeded.
fn h2load(args: &[&str], requests: u64, url: &str) -> Result<()> {
    let output = Command::new("h2load")
        .args(args)
        .args(["-n", &requests.to_string(), url])
        .output()
        .context("running h2load")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wanted = format!("{requests} succeeded, 0 failed");
    if !output.status.success() || !stdout.contains(&wanted) {
        bail!("h2load {args:?} -n {requests} {url}: not all succeeded:\n{stdout}");
    }
    Ok(())
}

fn callgrind_control(action: &str, pid: u32) -> Result<()> {
    let status = Command::new("callgrind_control")
        .args([action, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {action} {pid} failed ({status})");
    }
    Ok(())
}

/// The event total of a callgrind dump (its `summary:` or `totals:` line; Ir only here).
fn total(dump: &str) -> Option<u64> {
    dump.lines()
        .filter_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::total;

    #[test]
    fn the_total_is_read_from_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=(1) main\n3 10\nsummary: 145653774\ntotals: 145653774\n";
        assert_eq!(total(dump), Some(145_653_774));
        assert_eq!(total("events: Ir\n"), None);
    }
}
