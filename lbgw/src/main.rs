//! The `lbgw` command: `check`, `run`, `maps`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lbgw",
    version,
    about = "eBPF L4 load balancer and Gateway API data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the LoadBalancer IP pool comes from, shared by `check` and `run`.
#[derive(clap::Args, Clone)]
struct PoolArgs {
    /// A CIDR of the LoadBalancer IP pool (repeatable). Overrides CILIUM_LB_CIDR and any
    /// CiliumLoadBalancerIPPool objects.
    #[arg(long = "lb-cidr", value_name = "CIDR")]
    lb_cidr: Vec<String>,
    /// File where allocations are remembered so every object keeps its IP across restarts.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/lbgw/ipam.json")]
    state: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the VIP plan (object → IP, pool). Exit code 0 only
    /// when the configuration is valid and every object got its address.
    Check {
        /// Kubernetes YAML files or directories of them (repeatable).
        #[arg(long, short, required = true, value_name = "PATH")]
        config: Vec<PathBuf>,
        #[command(flatten)]
        pool: PoolArgs,
    },
    /// Run the data plane on an interface.
    Run(Box<lbgw_run::RunArgs>),
    /// Print the counters of the XDP programs currently loaded (per VIP and global).
    Maps,
}

mod lbgw_run {
    use super::*;
    use lbgw::dataplane::AttachMode;

    #[derive(clap::Args)]
    pub struct RunArgs {
        /// Kubernetes YAML files or directories of them (repeatable).
        #[arg(long, short, required = true, value_name = "PATH")]
        pub config: Vec<PathBuf>,
        /// Interface to announce VIPs on and attach the XDP program to.
        #[arg(long, value_name = "IFACE")]
        pub iface: String,
        #[command(flatten)]
        pub pool: PoolArgs,
        /// XDP attach mode: auto tries native (driver) mode and falls back to generic.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        pub xdp_mode: AttachMode,
        /// Also answer and announce on this 802.1Q VLAN of IFACE (repeatable).
        #[arg(long = "vlan", value_name = "ID", value_parser = clap::value_parser!(u16).range(1..4095))]
        pub vlans: Vec<u16>,
        /// Seconds between repeated gratuitous ARP / unsolicited NA for every VIP (0: only at start).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        pub announce_interval: u64,
        /// Seconds between logs of the XDP counters, when they changed (0: only at exit).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        pub stats_interval: u64,
        /// Pass traffic to unallocated pool addresses and to VIP ports nothing serves to the
        /// kernel instead of dropping it in XDP.
        #[arg(long)]
        pub no_early_drop: bool,
    }

    pub fn run(args: RunArgs) -> Result<ExitCode> {
        let opts = lbgw::daemon::RunOptions {
            config: args.config,
            iface: args.iface,
            lb_cidrs: args.pool.lb_cidr,
            env_lb_cidr: std::env::var("CILIUM_LB_CIDR").ok(),
            state: args.pool.state,
            xdp_mode: args.xdp_mode,
            vlans: args.vlans,
            announce_interval: std::time::Duration::from_secs(args.announce_interval),
            stats_interval: std::time::Duration::from_secs(args.stats_interval),
            no_early_drop: args.no_early_drop,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(lbgw::daemon::run(opts))?;
        Ok(ExitCode::SUCCESS)
    }

    /// `lbgw maps`: the counters of every loaded lbgw XDP program.
    pub fn maps() -> Result<ExitCode> {
        let reports = lbgw::dataplane::stats::loaded_reports()?;
        if reports.is_empty() {
            println!("no lbgw XDP program is loaded");
            return Ok(ExitCode::SUCCESS);
        }
        for report in reports {
            println!(
                "program {} ({})",
                report.program_id,
                lbgw_common::names::XDP_PROGRAM
            );
            println!(
                "  {:<40} {:>12} {:>12} {:>12} {:>12} {:>12}",
                "VIP", "ARP replies", "NA replies", "echo", "dropped", "passed"
            );
            for vip in &report.vips {
                println!(
                    "  {:<40} {:>12} {:>12} {:>12} {:>12} {:>12}",
                    vip.ip.to_string(),
                    vip.arp_replies,
                    vip.na_replies,
                    vip.echo_replies,
                    vip.dropped_unserved,
                    vip.passed
                );
            }
            println!("  counters: {}", report.counters);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBGW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config, pool } => cmd_check(&config, &pool),
        Command::Run(args) => lbgw_run::run(*args),
        Command::Maps => lbgw_run::maps(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lbgw: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lbgw check`: loads the configuration, resolves the pools (`--lb-cidr`, else
/// `CILIUM_LB_CIDR`, else CiliumLoadBalancerIPPool objects), reads the IPAM state without ever
/// writing it (a missing file is fine), allocates, and prints the VIP plan to stdout and every
/// error to stderr. Exit code 0 only when there is no error at all.
fn cmd_check(config: &[PathBuf], pool: &PoolArgs) -> Result<ExitCode> {
    use lbgw::{config::error_chain, ipam};

    fn report<E: std::error::Error>(errors: &[E]) -> ExitCode {
        for err in errors {
            eprintln!("lbgw: {}", error_chain(err));
        }
        ExitCode::FAILURE
    }

    let config = match lbgw::config::load(config) {
        Ok(config) => config,
        Err(err) => return Ok(report(err.errors())),
    };
    let env = match std::env::var("CILIUM_LB_CIDR") {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("CILIUM_LB_CIDR is not valid UTF-8")
        }
    };
    let pools = match ipam::Pools::resolve(&pool.lb_cidr, env.as_deref(), &config) {
        Ok(pools) => pools,
        Err(err) => return Ok(report(err.errors())),
    };
    let previous = match ipam::State::load(&pool.state) {
        Ok(state) => state,
        Err(err) => return Ok(report(err.errors())),
    };
    let plan = ipam::allocate(&pools, &config, &previous);
    print!("{}", plan.table());
    if plan.is_ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(report(&plan.errors))
    }
}
