//! The `lbgw run --kubernetes` flags and their translation into [`KubeRunOptions`].
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use lbgw::kube::run::KubeRunOptions;

use crate::lbgw_run::RunArgs;

/// Kubernetes mode: the configuration comes from the API server.
#[derive(clap::Args, Clone)]
pub struct KubeArgs {
    /// Read the configuration from the Kubernetes API (in-cluster service account, or
    /// --kubeconfig) instead of files, write status, and elect VIP owners with Leases.
    #[arg(long)]
    pub kubernetes: bool,
    /// kubeconfig file (default: in-cluster configuration, else KUBECONFIG / ~/.kube/config).
    #[arg(long, value_name = "PATH", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name: the holder identity of its Leases (--kubernetes), and the nodeName
    /// of the endpoints that count as local for externalTrafficPolicy: Local (default
    /// without --kubernetes: the host name).
    #[arg(
        long,
        env = "NODE_NAME",
        value_name = "NAME",
        required_if_eq("kubernetes", "true")
    )]
    pub node_name: Option<String>,
    /// Namespace of lbgw's Leases.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS", default_value = "lbgw")]
    pub lease_namespace: String,
    /// Only nodes whose labels match this selector hold VIP Leases (`key=value`, `key!=value`,
    /// `key`, `!key`, comma-separated).
    #[arg(long, value_name = "SELECTOR", requires = "kubernetes")]
    pub node_selector: Option<String>,
    /// Announce on the first interface (by name) that is up and whose name matches this regex,
    /// e.g. `^(eth|en)` (so that e.g. `siderolink` never announces).
    #[arg(
        long,
        value_name = "REGEX",
        requires = "kubernetes",
        conflicts_with = "iface"
    )]
    pub iface_regex: Option<String>,
    /// Lease duration in milliseconds (rounded up to whole seconds in the Lease).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 2000,
        requires = "kubernetes"
    )]
    pub lease_duration_ms: u64,
    /// How often held Leases are renewed, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 500,
        requires = "kubernetes"
    )]
    pub lease_renew_ms: u64,
    /// How often Leases are listed, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 250,
        requires = "kubernetes"
    )]
    pub lease_poll_ms: u64,
}

/// `lbgw run --kubernetes`: the options both modes share, plus the Kubernetes ones.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let kube = args.kube.clone();
    let no_xdp = args.no_xdp;
    let iface_regex = kube
        .iface_regex
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--iface-regex")?;
    let node_name = kube
        .node_name
        .context("--node-name (or NODE_NAME) is required")?;
    let opts = KubeRunOptions {
        run: crate::lbgw_run::run_options(args),
        kubeconfig: kube.kubeconfig,
        node_name,
        namespace: kube.lease_namespace,
        node_selector: kube.node_selector,
        iface_regex,
        no_xdp,
        lease_duration: Duration::from_millis(kube.lease_duration_ms),
        lease_renew: Duration::from_millis(kube.lease_renew_ms),
        lease_poll: Duration::from_millis(kube.lease_poll_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(lbgw::kube::run::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
