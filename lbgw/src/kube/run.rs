//! `lbgw run --kubernetes`: the node daemon fed by the API server.
//!
//! After the source, the path is file mode's: every snapshot is applied by the same
//! [`Reloader::apply`] a SIGHUP uses (allocations read back from status instead of a state
//! file, see [`Allocations::Status`]), and the same [`XdpNode`] programs the data plane: VIPs,
//! L4 Services load-balanced in XDP, Gateway ports steered to the proxy by sk_lookup, local
//! routes, pinning. A listener port that appears is bound at once. The leader writes status;
//! every node contends for the Leases of the VIPs published in status and announces only those
//! it holds (gratuitous ARP / unsolicited NA on takeover).
//!
//! [`Reloader::apply`]: crate::reload::Reloader::apply
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    core::{Expression, Selector, SelectorExt as _},
};
use regex::Regex;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use super::{
    DesiredStatus, KubeError, KubeSource, LeaseOptions, LeaseSet, Ownership, SourceOptions,
    StatusWriter, state_from_status,
};
use crate::{
    config::{Config, error_chain},
    daemon::{self, RunOptions, XdpNode},
    dataplane::sys::{self, Interface},
    gateway::GatewayModel,
    ipam::{self, Plan, PoolSource, Pools, State},
    reload::{self, Allocations, Current, IpamSource},
};

/// How often node eligibility (labels, uplink state) is checked.
const ELIGIBILITY_INTERVAL: Duration = Duration::from_secs(2);

/// What `lbgw run --kubernetes` was asked to do.
#[derive(Clone, Debug)]
pub struct KubeRunOptions {
    /// The options both modes share (`config`, `state` and `watch` are not used: the
    /// configuration comes from the API server and allocations live in status). `iface` is
    /// the interface by name, if given.
    pub run: RunOptions,
    /// `--kubeconfig`; `None` for the in-cluster configuration (or `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (`--node-name`, in a DaemonSet from the downward API `spec.nodeName`).
    pub node_name: String,
    /// Namespace of lbgw's Leases.
    pub namespace: String,
    /// Label selector the Node must match to hold VIP Leases (`key=value`, `key!=value`,
    /// `key`, `!key`, comma-separated).
    pub node_selector: Option<String>,
    /// The interface to announce on: the first (by name) whose name matches and that is up.
    pub iface_regex: Option<Regex>,
    /// No XDP, no announcements: proxy, status and Leases only.
    pub no_xdp: bool,
    /// Lease timing.
    pub lease_duration: Duration,
    pub lease_renew: Duration,
    pub lease_poll: Duration,
}

/// A client from `--kubeconfig`, else the in-cluster service account (or `KUBECONFIG` /
/// `~/.kube/config`, as kube-rs infers).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| KubeError::ClientConfig {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        source,
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.into()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| err(e.into()))?
        }
        None => kube::Config::infer().await.map_err(|e| err(e.into()))?,
    };
    Client::try_from(config).map_err(|e| err(e.into()))
}

/// Parses an equality-based label selector (`a=b,c!=d,e,!f`; `==` is `=`).
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let mut expressions = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let expression = if let Some((k, v)) = part.split_once("!=") {
            Expression::NotEqual(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Expression::Equal(k.trim().into(), v.trim().into())
        } else if let Some(k) = part.strip_prefix('!') {
            Expression::DoesNotExist(k.trim().into())
        } else if part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Expression::Exists(part.into())
        } else {
            return Err(format!("unsupported label selector term {part:?}"));
        };
        expressions.push(expression);
    }
    Ok(expressions.into_iter().collect())
}

/// The interface: `name`, or the first up interface (by name) matching `regex`.
pub fn select_interface(name: Option<&str>, regex: Option<&Regex>) -> Result<Interface, KubeError> {
    if let Some(name) = name {
        return Interface::by_name(name).map_err(KubeError::from);
    }
    let regex = regex
        .ok_or_else(|| KubeError::Interface("neither --iface nor --iface-regex given".into()))?;
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| KubeError::Interface(format!("listing /sys/class/net: {e}")))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| regex.is_match(n))
        .collect();
    names.sort();
    names
        .iter()
        .find(|n| uplink_up(n))
        .ok_or_else(|| {
            KubeError::Interface(format!(
                "no interface that is up matches {:?} (matching: {names:?})",
                regex.as_str()
            ))
        })
        .and_then(|n| Interface::by_name(n).map_err(KubeError::from))
}

/// Whether the interface's operational state is up (`/sys/class/net/IFACE/operstate`;
/// `unknown` counts as up: drivers that do not report a state, like `lo`, use it).
pub fn uplink_up(iface: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(iface).join("operstate"))
        .map(|s| matches!(s.trim(), "up" | "unknown"))
        .unwrap_or(false)
}

async fn node_matches(
    client: &Client,
    node: &str,
    selector: Option<&Selector>,
) -> Result<bool, KubeError> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let object = nodes.get(node).await.map_err(|source| KubeError::Api {
        verb: "get",
        object: format!("Node {node}"),
        source: Box::new(source),
    })?;
    let labels = object.metadata.labels.unwrap_or_default();
    Ok(selector.matches(&labels))
}

/// The plan of a snapshot: pools (`--lb-cidr`, `CILIUM_LB_CIDR` or the pool objects), with the
/// allocations published in status as the previous state. Pools that do not resolve are
/// logged and none are used, so that lbgw still serves and reports.
pub fn plan(config: &Config, lb_cidrs: &[String], env: Option<&str>) -> (Pools, Plan) {
    let ipam = IpamSource {
        lb_cidrs: lb_cidrs.to_vec(),
        env_lb_cidr: env.map(str::to_owned),
        allocations: Allocations::Status,
    };
    ipam.allocate(config, &State::default())
        .unwrap_or_else(|err| {
            for e in err.errors() {
                error!("{}", error_chain(e));
            }
            let pools = Pools {
                source: PoolSource::Objects,
                pools: Vec::new(),
            };
            let plan = ipam::allocate(&pools, config, &State::default());
            (pools, plan)
        })
}

/// The VIPs nodes contend for: those of the plan that the leader has published in status (so
/// that every node contends for the same set).
pub fn published_vips(config: &Config, pools: &Pools, plan: &Plan) -> BTreeSet<IpAddr> {
    let published: BTreeSet<IpAddr> = state_from_status(config, pools)
        .allocations
        .iter()
        .map(|v| v.ip)
        .collect();
    plan.vips()
        .into_iter()
        .map(|v| v.ip)
        .filter(|ip| published.contains(ip))
        .collect()
}

/// Runs until SIGINT or SIGTERM; then withdraws the VIPs, releases the Leases, drains the
/// proxy and (unless pinned) detaches XDP.
pub async fn run(opts: KubeRunOptions) -> Result<(), KubeError> {
    let selector = opts
        .node_selector
        .as_deref()
        .map(parse_selector)
        .transpose()
        .map_err(|reason| KubeError::Node {
            node: opts.node_name.clone(),
            reason: format!("--node-selector: {reason}"),
        })?;
    let iface = if opts.no_xdp {
        None
    } else {
        sys::check_privileges()?;
        Some(select_interface(
            opts.run.iface.as_deref(),
            opts.iface_regex.as_ref(),
        )?)
    };
    let client = client(opts.kubeconfig.as_deref()).await?;
    let source = KubeSource::spawn(client.clone(), SourceOptions::default());
    let mut lease_opts = LeaseOptions::new(&opts.namespace, &opts.node_name);
    lease_opts.duration = opts.lease_duration;
    lease_opts.renew = opts.lease_renew;
    lease_opts.poll = opts.lease_poll;
    let leases = LeaseSet::spawn(client.clone(), lease_opts);
    let writer = StatusWriter::new(client.clone(), source.stores().clone());

    let mut snapshots = source.snapshots();
    let first = source
        .first_snapshot()
        .await
        .ok_or(KubeError::SourceStopped)?;
    snapshots.mark_unchanged();
    info!(objects = ?first.config, "first snapshot from the Kubernetes API");
    let current = first_allocation(&opts.run, first.config.clone());
    // Without --bind, the proxy listens on loopback only and sk_lookup hands it the VIPs'
    // connections, as in file mode.
    let steered = iface.is_some() && opts.run.bind.is_none();
    let services = daemon::start_services(&opts.run, current, steered, Allocations::Status)
        .await
        .map_err(Box::new)?;
    let mut owned = Ownership::default();
    // The VIPs held, each until its Lease ends: XDP answers for a VIP only until then.
    let mut held = daemon::Held::new();
    let mut node = match iface {
        Some(iface) => Some(
            XdpNode::start(&opts.run, iface, &services, steered, Some(&held))
                .await
                .map_err(Box::new)?,
        ),
        None => None,
    };

    let mut ownership_rx = leases.ownership();
    let mut sigint = signal(SignalKind::interrupt()).map_err(KubeError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(KubeError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(KubeError::Signal)?;
    let mut eligibility = tokio::time::interval(ELIGIBILITY_INTERVAL);
    let mut announce_tick = daemon::ticker(opts.run.announce_interval);
    let mut stats_tick = daemon::ticker(opts.run.stats_interval);
    let mut renew_tick = daemon::ticker(opts.lease_poll);
    let mut publish = true;
    services.ready(" (Kubernetes mode)");
    let mut services = services;
    loop {
        if publish {
            publish = false;
            let current = services.reloader.current();
            leases.set_vips(published_vips(
                &current.config,
                &current.pools,
                &current.plan,
            ));
            if owned.leader {
                let (_, report) = GatewayModel::build(&current.config, &current.plan);
                let desired = DesiredStatus::compute(&current.config, &current.plan, &report);
                let sent = writer.apply(&desired).await;
                if sent > 0 {
                    info!(patches = sent, "status written");
                }
            }
        }
        let resync = tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sighup.recv() => {
                let config = snapshots.borrow().config.clone();
                let outcome = services.reloader.apply(config).map(Some);
                reload::log_outcome("SIGHUP (the latest API snapshot)", &outcome);
                outcome.is_ok()
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Err(KubeError::SourceStopped);
                }
                let snapshot = snapshots.borrow_and_update().clone();
                debug!(generation = snapshot.generation, invalid = snapshot.errors.len(), "API objects changed");
                let outcome = services.reloader.apply(snapshot.config.clone()).map(Some);
                reload::log_outcome("API change", &outcome);
                outcome.is_ok()
            }
            _ = ownership_rx.changed() => {
                let new = ownership_rx.borrow_and_update().clone();
                if new.leader && !owned.leader {
                    info!("this node leads: it allocates and writes status");
                }
                owned = new;
                held = leases.held_until();
                true
            }
            _ = renew_tick.tick() => {
                held = leases.held_until();
                if let Some(node) = node.as_mut() {
                    node.renew(&held);
                }
                false
            }
            _ = eligibility.tick() => {
                let iface_up = node.as_ref().is_none_or(|n| uplink_up(n.iface_name()));
                let node_ok = match node_matches(&client, &opts.node_name, selector.as_ref()).await {
                    Ok(ok) => ok,
                    Err(err) => { warn!("{}", error_chain(&err)); true }
                };
                leases.set_eligible(iface_up && node_ok);
                false
            }
            _ = announce_tick.tick() => {
                if let Some(node) = &node {
                    node.announce(&opts.run.vlans);
                }
                false
            }
            _ = stats_tick.tick() => {
                if let Some(node) = node.as_mut() {
                    node.log_counters(false);
                }
                false
            }
        };
        if resync {
            if let Some(node) = node.as_mut() {
                node.sync(&services, &opts.run, Some(&held)).await;
            }
            publish = true;
        }
    }
    // Stop answering for the VIPs before their Leases go: the next holder announces them.
    if let Some(node) = node.as_mut() {
        node.withdraw();
    }
    leases.shutdown().await;
    services.stop().await;
    if let Some(node) = node {
        node.stop().await;
    }
    Ok(())
}

/// The first snapshot's allocation ([`plan`]).
fn first_allocation(opts: &RunOptions, config: Config) -> Current {
    let (pools, plan) = plan(&config, &opts.lb_cidrs, opts.env_lb_cidr.as_deref());
    Current {
        config,
        pools,
        plan,
    }
}
