//! `lbgw run --kubernetes`: the node daemon fed by the API server.
//!
//! After the source, the path is file mode's: every snapshot goes through
//! [`crate::ipam::allocate`] (with the allocations read back from status instead of a state
//! file) and [`GatewayModel::build`]; the proxy serves the new model through its `ArcSwap`, and
//! the XDP VIP map and steering are re-synced. The leader writes status; every node contends
//! for the Leases of the VIPs published in status and announces those it holds (gratuitous
//! ARP / unsolicited NA on takeover).
//!
//! Limits until the hot-reload work is merged: the proxy binds its ports at start, so a listener
//! port that appears later is logged and served only after a restart.
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    core::{Expression, Selector, SelectorExt as _},
};
use regex::Regex;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use super::{
    DesiredStatus, KubeError, KubeSource, LeaseOptions, LeaseSet, Ownership, SourceOptions,
    StatusWriter, state_from_status,
};
use crate::{
    announce::Announcer,
    config::{Config, error_chain},
    dataplane::{
        AttachMode, Dataplane, VipEntry,
        sys::{self, Interface},
    },
    gateway::GatewayModel,
    ipam::{self, Plan, PoolSource, Pools},
    proxy::{Proxy, ProxyOptions},
};

/// How long in-flight proxy requests may go on after SIGINT/SIGTERM.
const PROXY_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often node eligibility (labels, uplink state) is checked.
const ELIGIBILITY_INTERVAL: Duration = Duration::from_secs(2);

/// What `lbgw run --kubernetes` was asked to do.
#[derive(Clone, Debug)]
pub struct KubeRunOptions {
    /// `--kubeconfig`; `None` for the in-cluster configuration (or `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (`--node-name`, in a DaemonSet from the downward API `spec.nodeName`).
    pub node_name: String,
    /// Namespace of lbgw's Leases.
    pub namespace: String,
    /// Label selector the Node must match to hold VIP Leases (`key=value`, `key!=value`,
    /// `key`, `!key`, comma-separated).
    pub node_selector: Option<String>,
    /// The interface to announce on, by name.
    pub iface: Option<String>,
    /// The interface to announce on: the first (by name) whose name matches and that is up.
    pub iface_regex: Option<Regex>,
    /// No XDP, no announcements: proxy, status and Leases only.
    pub no_xdp: bool,
    pub xdp_mode: AttachMode,
    pub vlans: Vec<u16>,
    pub lb_cidrs: Vec<String>,
    pub env_lb_cidr: Option<String>,
    pub bind: Option<IpAddr>,
    pub no_early_drop: bool,
    /// How often owned VIPs are announced again (0 = only on takeover).
    pub announce_interval: Duration,
    /// The admin endpoint (`--admin`): metrics, `/healthz`, `/readyz` for the DaemonSet's
    /// probes, `/status`.
    pub admin: Option<std::net::SocketAddr>,
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
/// allocations published in status as the previous state.
pub fn plan(config: &Config, lb_cidrs: &[String], env: Option<&str>) -> (Pools, Plan) {
    let pools = Pools::resolve(lb_cidrs, env, config).unwrap_or_else(|err| {
        for e in err.errors() {
            error!("{}", error_chain(e));
        }
        Pools {
            source: PoolSource::Objects,
            pools: Vec::new(),
        }
    });
    let previous = state_from_status(config, &pools);
    let plan = ipam::allocate(&pools, config, &previous);
    for err in plan.errors.iter().flat_map(|e| e.errors()) {
        error!("{}", error_chain(err));
    }
    (pools, plan)
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

struct Xdp {
    dataplane: Dataplane,
    iface: Interface,
    announcer: Announcer,
}

/// Runs until SIGINT or SIGTERM; then releases the Leases, drains the proxy, detaches XDP.
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
    let env = opts.env_lb_cidr.as_deref();
    let (mut pools, mut plan) = plan(&first.config, &opts.lb_cidrs, env);
    let (model, _) = GatewayModel::build(&first.config, &plan);
    let ports: BTreeSet<u16> = model.ports.iter().map(|p| p.port).collect();
    let model = Arc::new(ArcSwap::from_pointee(model));
    let metrics = Arc::new(crate::proxy::ProxyMetrics::default());
    let proxy = Proxy::bind(
        model.clone(),
        &ProxyOptions {
            bind: opts.bind,
            ephemeral_ports: false,
            drain_timeout: PROXY_DRAIN_TIMEOUT,
            metrics: Arc::clone(&metrics),
            ..ProxyOptions::default()
        },
    )?;
    let admin = match opts.admin {
        Some(addr) => {
            let admin = crate::admin::Admin::new(&metrics);
            let handle = proxy.handle();
            admin.set_proxy(handle.clone());
            admin.publish(&first.config, &plan, &handle.model());
            admin
                .serve(addr)
                .await
                .map_err(|e| KubeError::Admin(Box::new(e)))?;
            Some(admin)
        }
        None => None,
    };
    let proxy = proxy.spawn();

    let mut xdp = if opts.no_xdp {
        None
    } else {
        sys::check_privileges()?;
        let iface = select_interface(opts.iface.as_deref(), opts.iface_regex.as_ref())?;
        let mut dataplane = Dataplane::load()?;
        dataplane.add_iface(iface.ifindex, 0, iface.mac)?;
        for &vlan in &opts.vlans {
            dataplane.add_iface(iface.ifindex, vlan, iface.mac)?;
        }
        let announcer = Announcer::new(iface.ifindex, iface.mac)?;
        let mode = dataplane.attach(&iface, opts.xdp_mode)?;
        info!(iface = %iface.name, %mode, "XDP program attached; VIPs are answered once their Lease is held");
        Some(Xdp {
            dataplane,
            iface,
            announcer,
        })
    };

    let mut ownership_rx = leases.ownership();
    let mut owned = Ownership::default();
    let mut current = first;
    let mut sigint = signal(SignalKind::interrupt()).map_err(KubeError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(KubeError::Signal)?;
    let mut eligibility = tokio::time::interval(ELIGIBILITY_INTERVAL);
    let mut announce_tick = crate::daemon::ticker(opts.announce_interval);
    let mut apply = true;
    if let Some(admin) = &admin {
        admin.set_ready(true);
    }
    info!(node = %opts.node_name, "lbgw ready (Kubernetes mode)");
    loop {
        if apply {
            apply = false;
            let vips = published_vips(&current.config, &pools, &plan);
            leases.set_vips(vips);
            if let Some(xdp) = xdp.as_mut() {
                sync_dataplane(
                    xdp,
                    &current.config,
                    &pools,
                    &plan,
                    &owned,
                    !opts.no_early_drop,
                    &[],
                );
            }
            if owned.leader {
                let (_, report) = GatewayModel::build(&current.config, &plan);
                let desired = DesiredStatus::compute(&current.config, &plan, &report);
                let sent = writer.apply(&desired).await;
                if sent > 0 {
                    info!(patches = sent, "status written");
                }
            }
        }
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Err(KubeError::SourceStopped);
                }
                current = snapshots.borrow_and_update().clone();
                info!(generation = current.generation, invalid = current.errors.len(), "configuration changed");
                (pools, plan) = self::plan(&current.config, &opts.lb_cidrs, env);
                let (new_model, _) = GatewayModel::build(&current.config, &plan);
                for port in new_model.ports.iter().map(|p| p.port).filter(|p| !ports.contains(p)) {
                    warn!(port, "a Gateway listener port appeared: it is served after a restart of lbgw");
                }
                model.store(Arc::new(new_model));
                apply = true;
            }
            _ = ownership_rx.changed() => {
                let new = ownership_rx.borrow_and_update().clone();
                let gained: Vec<IpAddr> = new.vips.difference(&owned.vips).copied().collect();
                if new.leader && !owned.leader {
                    info!("this node leads: it allocates and writes status");
                }
                owned = new;
                if let Some(xdp) = xdp.as_mut() {
                    sync_dataplane(xdp, &current.config, &pools, &plan, &owned, !opts.no_early_drop, &gained);
                }
                apply = true;
            }
            _ = eligibility.tick() => {
                let iface_up = xdp.as_ref().is_none_or(|x| uplink_up(&x.iface.name));
                let node_ok = match node_matches(&client, &opts.node_name, selector.as_ref()).await {
                    Ok(ok) => ok,
                    Err(err) => { warn!("{}", error_chain(&err)); true }
                };
                leases.set_eligible(iface_up && node_ok);
            }
            _ = announce_tick.tick() => {
                if let Some(xdp) = xdp.as_ref() {
                    announce(xdp, &owned.vips.iter().copied().collect::<Vec<_>>(), &opts.vlans);
                }
            }
        }
    }
    leases.shutdown().await;
    if let Some(admin) = &admin {
        admin.set_ready(false);
    }
    proxy.stop().await;
    if let Some(mut xdp) = xdp {
        let _ = xdp.dataplane.sync_vips(&[]);
        xdp.dataplane.detach_all();
        info!(iface = %xdp.iface.name, "XDP program detached");
    }
    Ok(())
}

/// Every VIP of the plan in the XDP map, answered (ARP/NDP) only where this node holds its
/// Lease; gratuitous ARP / unsolicited NA for `gained`.
fn sync_dataplane(
    xdp: &mut Xdp,
    config: &Config,
    pools: &Pools,
    plan: &Plan,
    owned: &Ownership,
    early_drop: bool,
    gained: &[IpAddr],
) {
    let vips: Vec<VipEntry> = plan
        .vips()
        .iter()
        .map(|v| VipEntry {
            ip: v.ip,
            announce: owned.vips.contains(&v.ip),
        })
        .collect();
    if let Err(err) = xdp.dataplane.sync_vips(&vips) {
        error!("{}", error_chain(&err));
    }
    // Kubernetes mode does not steer with sk_lookup nor forward L4 Services in XDP yet: the
    // proxy binds its ports itself and Service ports go to the stack.
    let steering = crate::dataplane::served::steering(
        config,
        plan,
        pools,
        &crate::dataplane::served::SteeringOptions {
            early_drop,
            echo: true,
            proxy_ports: None,
            snat_ports: (0, 0),
        },
    );
    if let Err(err) = xdp.dataplane.set_steering(&steering) {
        error!("{}", error_chain(&err));
    }
    if !gained.is_empty() {
        info!(vips = ?gained, "took over VIPs: sending gratuitous ARP / unsolicited NA");
        announce(xdp, gained, &[]);
    }
}

fn announce(xdp: &Xdp, ips: &[IpAddr], vlans: &[u16]) {
    for &ip in ips {
        for vlan in std::iter::once(0).chain(vlans.iter().copied()) {
            if let Err(err) = xdp.announcer.announce(ip, vlan) {
                warn!("{}", error_chain(&err));
            }
        }
    }
}
