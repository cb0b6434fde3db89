//! `lbgw run`: the node daemon. Loads the configuration, allocates VIPs, loads and attaches
//! the XDP program, announces the VIPs, and keeps going until SIGINT/SIGTERM, after which the
//! program is detached.
//!
//! Beside the XDP data plane it serves the Gateway API proxy ([`crate::proxy`]) for the
//! configuration's Gateways and HTTPRoutes. With `--no-xdp` it runs the proxy alone: no
//! interface, no XDP program, no announcements, no privileges beyond binding the ports.

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    announce::{AnnounceError, Announcer},
    config::{self, ConfigError, error_chain},
    dataplane::{
        AttachMode, Dataplane, DataplaneError, VipEntry,
        sys::{self, Interface, SysError},
    },
    gateway::GatewayModel,
    ipam::{self, IpamError, Plan, Pools, State},
    proxy::{Proxy, ProxyError, ProxyOptions},
};

/// How long in-flight proxy requests may go on after SIGINT/SIGTERM.
const PROXY_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What `lbgw run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: Vec<PathBuf>,
    /// Interface of the XDP data plane; `None` runs the proxy alone (`--no-xdp`).
    pub iface: Option<String>,
    pub lb_cidrs: Vec<String>,
    /// `CILIUM_LB_CIDR` as read from the environment.
    pub env_lb_cidr: Option<String>,
    pub state: PathBuf,
    pub xdp_mode: AttachMode,
    /// 802.1Q VLANs (besides untagged) on which to answer and announce.
    pub vlans: Vec<u16>,
    /// How often VIPs are announced again with gratuitous ARP / unsolicited NA (0 = only once).
    pub announce_interval: Duration,
    /// How often counters are logged when they changed (0 = only at exit).
    pub stats_interval: Duration,
    /// Pass traffic to unallocated pool addresses and unserved VIP ports to the kernel instead
    /// of dropping it in XDP.
    pub no_early_drop: bool,
    /// Address the proxy binds its listener ports on; `None` for all addresses.
    pub bind: Option<IpAddr>,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    #[error("installing a signal handler")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// Runs the data plane until SIGINT or SIGTERM.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let Some(iface_name) = opts.iface.as_deref() else {
        return run_proxy_only(&opts).await;
    };
    sys::check_privileges()?;
    let iface = Interface::by_name(iface_name)?;

    let (config, pools, plan) = allocate(&opts)?;
    let proxy = start_proxy(&config, &plan, &opts)?;
    let vips: Vec<VipEntry> = plan
        .vips()
        .iter()
        .map(|v| VipEntry {
            ip: v.ip,
            announce: true,
        })
        .collect();

    let mut dataplane = Dataplane::load()?;
    dataplane.add_iface(iface.ifindex, 0, iface.mac)?;
    for &vlan in &opts.vlans {
        dataplane.add_iface(iface.ifindex, vlan, iface.mac)?;
    }
    dataplane.sync_vips(&vips)?;
    dataplane.set_steering(&crate::dataplane::served::steering(
        &config,
        &plan,
        &pools,
        !opts.no_early_drop,
        true,
    ))?;
    let mode = dataplane.attach(&iface, opts.xdp_mode)?;
    info!(
        iface = %iface.name,
        mac = %sys::format_mac(&iface.mac),
        %mode,
        vips = vips.len(),
        "XDP program attached; answering ARP/NDP for the VIPs"
    );

    let announcer = Announcer::new(iface.ifindex, iface.mac)?;
    let ips: Vec<IpAddr> = vips.iter().filter(|v| v.announce).map(|v| v.ip).collect();
    announce_all(&announcer, &ips, &opts.vlans);
    info!("lbgw ready");

    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut announce_tick = interval(opts.announce_interval);
    let mut stats_tick = interval(opts.stats_interval);
    let mut last_stats = None;
    loop {
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = announce_tick.tick() => announce_all(&announcer, &ips, &opts.vlans),
            _ = stats_tick.tick() => log_counters(&dataplane, &mut last_stats, false),
        }
    }
    proxy.stop().await;
    log_counters(&dataplane, &mut last_stats, true);
    dataplane.detach_all();
    info!(iface = %iface.name, "XDP program detached");
    Ok(())
}

/// `lbgw run --no-xdp`: the proxy alone, until SIGINT or SIGTERM.
async fn run_proxy_only(opts: &RunOptions) -> Result<(), DaemonError> {
    let (config, _pools, plan) = allocate(opts)?;
    let proxy = start_proxy(&config, &plan, opts)?;
    info!("lbgw ready (proxy only, no XDP)");
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    tokio::select! {
        _ = sigint.recv() => info!("SIGINT: shutting down"),
        _ = sigterm.recv() => info!("SIGTERM: shutting down"),
    }
    proxy.stop().await;
    Ok(())
}

/// Loads the configuration and allocates the VIPs, saving the allocation state.
fn allocate(opts: &RunOptions) -> Result<(config::Config, Pools, Plan), DaemonError> {
    let config = config::load(&opts.config)?;
    let pools = Pools::resolve(&opts.lb_cidrs, opts.env_lb_cidr.as_deref(), &config)?;
    // A state file that cannot be read is an error, not an empty state: starting empty and
    // saving over it would move every object to a new address.
    let previous = State::load(&opts.state)?;
    let plan = ipam::allocate(&pools, &config, &previous);
    for err in plan.errors.iter().flat_map(|e| e.errors()) {
        error!("{}", error_chain(err));
    }
    if let Err(err) = plan.state().save(&opts.state) {
        warn!(
            "{}; allocations will not be remembered across restarts",
            error_chain(&err)
        );
    }
    for vip in plan.vips() {
        info!(ip = %vip.ip, owner = %vip.owner, pool = %vip.pool, "VIP allocated");
    }
    Ok((config, pools, plan))
}

/// Builds the Gateway model and starts serving it; logs `proxy listening on <addr>` per
/// bound port.
fn start_proxy(
    config: &config::Config,
    plan: &Plan,
    opts: &RunOptions,
) -> Result<crate::proxy::RunningProxy, DaemonError> {
    let (model, _status) = GatewayModel::build(config, plan);
    let listeners = model.listeners().count();
    if listeners == 0 {
        info!("no Gateway listener to serve; the proxy is idle");
    } else {
        info!(
            listeners,
            ports = model.ports.len(),
            "serving Gateway listeners (`lbgw check` reports their status)"
        );
    }
    let model = Arc::new(arc_swap::ArcSwap::from_pointee(model));
    let proxy = Proxy::bind(
        model,
        &ProxyOptions {
            bind: opts.bind,
            ephemeral_ports: false,
            drain_timeout: PROXY_DRAIN_TIMEOUT,
            ..Default::default()
        },
    )?;
    Ok(proxy.spawn())
}

/// A ticker that skips its immediate first tick; a zero period never fires.
fn interval(period: Duration) -> tokio::time::Interval {
    let period = if period.is_zero() {
        Duration::from_secs(u64::MAX / 4)
    } else {
        period
    };
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

fn announce_all(announcer: &Announcer, ips: &[IpAddr], vlans: &[u16]) {
    for &ip in ips {
        for vlan in std::iter::once(0).chain(vlans.iter().copied()) {
            if let Err(err) = announcer.announce(ip, vlan) {
                warn!("{}", error_chain(&err));
            }
        }
    }
}

fn log_counters(dataplane: &Dataplane, last: &mut Option<String>, always: bool) {
    match dataplane.counters() {
        Ok((global, per_vip)) => {
            let line = format!("{global}");
            if always || last.as_deref() != Some(line.as_str()) {
                info!(counters = %line, "XDP counters");
                for vip in per_vip {
                    info!(
                        ip = %vip.ip,
                        arp_replies = vip.arp_replies,
                        na_replies = vip.na_replies,
                        echo_replies = vip.echo_replies,
                        dropped_unserved = vip.dropped_unserved,
                        passed = vip.passed,
                        "VIP counters"
                    );
                }
                *last = Some(line);
            }
        }
        Err(err) => warn!("reading XDP counters: {}", error_chain(&err)),
    }
}

impl DaemonError {
    /// One line per problem, each with its causes: a configuration can have many problems.
    pub fn lines(&self) -> Vec<String> {
        match self {
            DaemonError::Config(err) => err.errors().iter().map(|e| error_chain(e)).collect(),
            DaemonError::Ipam(err) => err.errors().iter().map(|e| error_chain(e)).collect(),
            other => vec![error_chain(other)],
        }
    }
}
