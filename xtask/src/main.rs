//! Developer tasks: `cargo xtask setup | build | run | test | bench | bench-flood | bench-xdp | image`.
//!
//! Everything a fresh machine lacks (nightly's rust-src, bpf-linker, the Debian packages the
//! tests drive) is installed by `setup`, which `run`, `test` and `bench-xdp` call first.
mod bench;
mod cert;
mod image;
mod lab;
mod setup;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (rust-src, bpf-linker, Debian packages).
    Setup,
    /// Build lbgw (with its embedded eBPF object).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run lbgw. Without --iface: in a throwaway lab of network namespaces on the examples
    /// config, removed again on Ctrl-C or exit. With --iface: on that interface of this host.
    Run {
        /// A real interface of this (dev) machine to run on, instead of the lab.
        #[arg(long)]
        iface: Option<String>,
        /// Configuration files or directories (default: examples/).
        #[arg(long)]
        config: Vec<PathBuf>,
        #[arg(long)]
        release: bool,
        /// Extra arguments passed to `lbgw run`.
        #[arg(last = true)]
        lbgw_args: Vec<String>,
    },
    /// Run every test, the privileged ones included (needs root).
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Measure the XDP program's per-packet cost per verdict with BPF_PROG_TEST_RUN.
    BenchXdp,
    /// Build a static (musl) lbgw and write it as an OCI image layout into DIR (no container
    /// engine needed); push it with `skopeo copy oci:DIR docker://REGISTRY/lbgw:TAG`.
    Image {
        /// Output directory (created; must be empty).
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
        /// The image reference recorded in index.json.
        #[arg(long, default_value = concat!("lbgw:", env!("CARGO_PKG_VERSION")))]
        reference: String,
        /// Use this binary instead of building one.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// lbgw, nginx and HAProxy side by side as TLS-terminating reverse proxies (installs
    /// nginx-light and haproxy). A run of every load against the three proxies writes
    /// docs/bench/results.json and summary.svg; a run with --loads, --proxies or --lbgw-also
    /// only prints its table.
    Bench {
        /// Short runs (about 4 s per load and proxy) that finish in a few minutes.
        #[arg(long)]
        quick: bool,
        /// Only these loads (comma-separated): h1-keepalive, h2-keepalive, new-tls-conn, sse,
        /// 10mb-body. They run in that order whatever the order given.
        #[arg(long, value_name = "LOAD,..", value_parser = bench::options::loads)]
        loads: Option<bench::options::Loads>,
        /// Only these proxies (comma-separated): lbgw, nginx, haproxy.
        #[arg(long, value_name = "PROXY,..", value_parser = bench::options::proxies)]
        proxies: Option<bench::options::Proxies>,
        /// Seconds per load and target (default 15, 4 with --quick).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
        secs: Option<u64>,
        /// Run each load N times, the targets in turn (each round starting one target
        /// further), and report every figure as the median of the N rounds.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
        rounds: u16,
        /// Another lbgw binary as one more target named LABEL, configured exactly like lbgw
        /// and measured in the same run, e.g. `old=/tmp/lbgw-main` (repeatable). Its rows
        /// get lbgw's ratios like nginx's and HAProxy's.
        #[arg(long = "lbgw-also", value_name = "LABEL=PATH", value_parser = bench::options::extra_lbgw)]
        lbgw_also: Vec<bench::options::ExtraLbgw>,
    },
    /// User-space instructions per proxied request (valgrind callgrind) of lbgw and HAProxy
    /// under the h1-keepalive and h2-keepalive loads: a count that does not move with the
    /// machine's load, for comparing builds (installs valgrind).
    BenchInstructions {
        /// Requests counted per load and target.
        #[arg(long, value_name = "N", default_value_t = 4000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
        requests: u64,
        /// Another lbgw binary to count, as in `bench` (repeatable).
        #[arg(long = "lbgw-also", value_name = "LABEL=PATH", value_parser = bench::options::extra_lbgw)]
        lbgw_also: Vec<bench::options::ExtraLbgw>,
    },
    /// A UDP flood to an unserved VIP port over veth in network namespaces: lbgw's XDP early
    /// drop (native and generic) against an nftables drop rule.
    BenchFlood {
        /// 3 s per configuration instead of 10 s.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::all(),
        Task::Build { release } => build(release).map(|_| ()),
        Task::Run {
            iface,
            config,
            release,
            lbgw_args,
        } => {
            setup::all()?;
            let bin = build(release)?;
            let embedded_default = config.is_empty();
            let config = if embedded_default {
                vec![workspace_root().join("examples")]
            } else {
                config
            };
            match iface {
                Some(iface) => run_on_host(&bin, &iface, &config, &lbgw_args),
                None => lab::run(&bin, &config, embedded_default, &lbgw_args),
            }
        }
        Task::Test { cargo_args } => {
            setup::all()?;
            let bin = build(false)?;
            let status = Command::new(cargo())
                .current_dir(workspace_root())
                .args(["test", "--workspace", "--exclude", "lbgw-ebpf"])
                .args(&cargo_args)
                .env("LBGW_BIN", &bin)
                .status()
                .context("running cargo test")?;
            if !status.success() {
                bail!("tests failed ({status})");
            }
            Ok(())
        }
        Task::Image {
            output,
            reference,
            binary,
        } => {
            let binary = match binary {
                Some(binary) => binary,
                None => {
                    setup::all()?;
                    image::build_static(&workspace_root(), &cargo())?
                }
            };
            let mtime = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let manifest = image::write_layout(&binary, &output, &reference, mtime)?;
            let verified = image::verify_layout(&output)?;
            println!(
                "wrote {} ({reference}): manifest {} ({} bytes), binary {} bytes (mode {:o}); {} blobs verified",
                output.display(),
                manifest.digest,
                manifest.size,
                verified.binary.len(),
                verified.mode,
                verified.blobs
            );
            Ok(())
        }
        Task::Bench {
            quick,
            loads,
            proxies,
            secs,
            rounds,
            lbgw_also,
        } => {
            let opts = bench::options::Options {
                quick,
                loads,
                proxies,
                secs,
                rounds: usize::from(rounds),
                lbgw_also,
            };
            // Label clashes and missing binaries are found before the setup and the build.
            opts.validate()?;
            opts.check_binaries()?;
            setup::all()?;
            bench::run(&opts)
        }
        Task::BenchInstructions {
            requests,
            lbgw_also,
        } => {
            setup::all()?;
            bench::instructions::run(requests, &lbgw_also)
        }
        Task::BenchFlood { quick } => {
            setup::all()?;
            bench::flood::run(quick)
        }
        Task::BenchXdp => {
            setup::all()?;
            let status = Command::new(cargo())
                .current_dir(workspace_root())
                .args(["run", "--release", "-p", "lbgw-tests", "--bin", "xdp-bench"])
                .status()
                .context("running xdp-bench")?;
            if !status.success() {
                bail!("xdp-bench failed ({status})");
            }
            Ok(())
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds `lbgw` and returns the path of the binary.
fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "lbgw"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building lbgw failed ({status})");
    }
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("lbgw"))
}

/// Cargo's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn run_on_host(bin: &PathBuf, iface: &str, config: &[PathBuf], extra: &[String]) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--iface", iface]);
    for c in config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(extra);
    let status = cmd.status().context("running lbgw")?;
    if !status.success() {
        bail!("lbgw exited with {status}");
    }
    Ok(())
}
