//! The `lbgw` command: `check`, `run`, `maps`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lbgw", version, about = "eBPF L4 load balancer and Gateway API data plane")]
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
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBGW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config, pool } => cmd_check(&config, &pool),
        Command::Run(_args) => todo_run(),
        Command::Maps => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lbgw: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_check(_config: &[PathBuf], _pool: &PoolArgs) -> Result<ExitCode> {
    // Filled in with config::load + ipam::allocate.
    Ok(ExitCode::SUCCESS)
}

fn todo_run() -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
