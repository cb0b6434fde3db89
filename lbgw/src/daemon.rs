//! `lbgw run`: the node daemon. Loads the configuration, allocates VIPs, loads and attaches
//! the XDP program, announces the VIPs, and keeps going until SIGINT/SIGTERM, after which the
//! program is detached.
//!
//! Beside the XDP data plane it serves the Gateway API proxy ([`crate::proxy`]) for the
//! configuration's Gateways and HTTPRoutes. With `--no-xdp` it runs the proxy alone: no
//! interface, no XDP program, no announcements, no privileges beyond binding the ports.
//!
//! While running: SIGHUP or a change of the `--config` files reloads the configuration
//! ([`crate::reload`]); `--admin` serves metrics, health and status ([`crate::admin`]);
//! SIGTERM/SIGINT stop accepting and drain in-flight requests for up to `--drain-timeout`.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    admin::{Admin, AdminError, DataplaneCounters, DataplaneStats, VipCounterValues},
    announce::{AnnounceError, Announcer},
    config::{self, ConfigError, error_chain},
    dataplane::{
        AttachMode, Dataplane, DataplaneError, VipEntry,
        sys::{self, Interface, SysError},
    },
    gateway::GatewayModel,
    ipam::{self, IpamError, Plan, Pools, State},
    proxy::{
        AccessLog, AccessLogFormat, Limits, OutlierOptions, Proxy, ProxyError, ProxyHandle,
        ProxyMetrics, ProxyOptions,
    },
    reload::{self, Current, FileWatch, IpamSource, ReloadError, Reloader},
};

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
    /// The admin endpoint's address (`--admin`); `None` for none.
    pub admin: Option<SocketAddr>,
    /// How long in-flight proxy requests may go on after SIGINT/SIGTERM.
    pub drain_timeout: Duration,
    /// Access log format.
    pub access_log: AccessLogFormat,
    /// Connection, header and HTTP/2 limits of the proxy.
    pub limits: Limits,
    /// Passive outlier detection.
    pub outlier: OutlierOptions,
    /// Reload when the `--config` files change (SIGHUP always reloads).
    pub watch: bool,
    /// Changes to the files within this long are applied as one reload.
    pub watch_debounce: Duration,
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
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

/// Runs the data plane until SIGINT or SIGTERM.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let Some(iface_name) = opts.iface.as_deref() else {
        return run_proxy_only(&opts).await;
    };
    sys::check_privileges()?;
    let iface = Interface::by_name(iface_name)?;

    let (config, pools, plan) = allocate(&opts)?;
    let mut services = start_services(
        &opts,
        Current {
            config,
            pools,
            plan,
        },
    )
    .await?;
    let current = services.reloader.current();
    let vips = vip_entries(&current.plan);

    let mut dataplane = Dataplane::load()?;
    dataplane.add_iface(iface.ifindex, 0, iface.mac)?;
    for &vlan in &opts.vlans {
        dataplane.add_iface(iface.ifindex, vlan, iface.mac)?;
    }
    dataplane.sync_vips(&vips)?;
    dataplane.set_steering(&crate::dataplane::served::steering(
        &current.config,
        &current.plan,
        &current.pools,
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
    let dataplane = Arc::new(Mutex::new(dataplane));
    if let Some(admin) = &services.admin {
        admin.set_dataplane(Arc::new(XdpStats(Arc::clone(&dataplane))));
    }

    let announcer = Announcer::new(iface.ifindex, iface.mac)?;
    let mut ips: Vec<IpAddr> = vips.iter().filter(|v| v.announce).map(|v| v.ip).collect();
    announce_all(&announcer, &ips, &opts.vlans);
    services.ready("");

    let mut signals = Signals::new()?;
    let mut announce_tick = interval(opts.announce_interval);
    let mut stats_tick = interval(opts.stats_interval);
    let mut last_stats = None;
    loop {
        let reloaded = tokio::select! {
            _ = signals.int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = signals.term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = signals.hup.recv() => services.reload(&opts, "SIGHUP", true),
            () = services.watch_changed() => services.reload(&opts, "file change", false),
            _ = announce_tick.tick() => { announce_all(&announcer, &ips, &opts.vlans); false }
            _ = stats_tick.tick() => {
                log_counters(&lock(&dataplane), &mut last_stats, false);
                false
            }
        };
        if reloaded {
            ips = sync_xdp(
                &dataplane,
                services.reloader.current(),
                &opts,
                &announcer,
                &ips,
            );
        }
    }
    services.stop().await;
    let mut dataplane = lock(&dataplane);
    log_counters(&dataplane, &mut last_stats, true);
    dataplane.detach_all();
    info!(iface = %iface.name, "XDP program detached");
    Ok(())
}

/// `lbgw run --no-xdp`: the proxy alone, until SIGINT or SIGTERM.
async fn run_proxy_only(opts: &RunOptions) -> Result<(), DaemonError> {
    let (config, pools, plan) = allocate(opts)?;
    let mut services = start_services(
        opts,
        Current {
            config,
            pools,
            plan,
        },
    )
    .await?;
    services.ready(" (proxy only, no XDP)");
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            _ = signals.int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = signals.term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = signals.hup.recv() => { services.reload(opts, "SIGHUP", true); }
            () = services.watch_changed() => { services.reload(opts, "file change", false); }
        }
    }
    services.stop().await;
    Ok(())
}

/// The XDP side of a reload: the VIP set and the served ports follow the applied
/// configuration, and new VIPs are announced at once. Returns the announced VIPs.
fn sync_xdp(
    dataplane: &Mutex<Dataplane>,
    current: &Current,
    opts: &RunOptions,
    announcer: &Announcer,
    announced: &[IpAddr],
) -> Vec<IpAddr> {
    let vips = vip_entries(&current.plan);
    let steering = crate::dataplane::served::steering(
        &current.config,
        &current.plan,
        &current.pools,
        !opts.no_early_drop,
        true,
    );
    let mut dp = lock(dataplane);
    if let Err(err) = dp
        .sync_vips(&vips)
        .and_then(|()| dp.set_steering(&steering))
    {
        error!(
            "updating the XDP maps after a reload: {}",
            error_chain(&err)
        );
    }
    drop(dp);
    let ips: Vec<IpAddr> = vips.iter().filter(|v| v.announce).map(|v| v.ip).collect();
    let fresh: Vec<IpAddr> = ips
        .iter()
        .filter(|ip| !announced.contains(ip))
        .copied()
        .collect();
    announce_all(announcer, &fresh, &opts.vlans);
    ips
}

/// The VIPs as the XDP program takes them.
fn vip_entries(plan: &Plan) -> Vec<VipEntry> {
    plan.vips()
        .iter()
        .map(|v| VipEntry {
            ip: v.ip,
            announce: true,
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The XDP counters for the admin endpoint, read at scrape time.
struct XdpStats(Arc<Mutex<Dataplane>>);

impl DataplaneStats for XdpStats {
    fn read(&self) -> Option<DataplaneCounters> {
        match lock(&self.0).counters() {
            Ok((global, per_vip)) => Some(DataplaneCounters {
                global: lbgw_common::Counter::ALL
                    .iter()
                    .map(|c| (c.name(), global.get(*c)))
                    .collect(),
                vips: per_vip
                    .into_iter()
                    .map(|v| VipCounterValues {
                        ip: v.ip,
                        arp_replies: v.arp_replies,
                        na_replies: v.na_replies,
                        echo_replies: v.echo_replies,
                        dropped_unserved: v.dropped_unserved,
                        passed: v.passed,
                    })
                    .collect(),
            }),
            Err(err) => {
                warn!("reading XDP counters: {}", error_chain(&err));
                None
            }
        }
    }
}

/// SIGINT/SIGTERM (stop) and SIGHUP (reload).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, DaemonError> {
        let sig = |kind| signal(kind).map_err(DaemonError::Signal);
        Ok(Self {
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
        })
    }
}

/// The proxy, the admin endpoint and the reloader, as `lbgw run` starts them.
struct Services {
    proxy: crate::proxy::RunningProxy,
    admin: Option<Arc<Admin>>,
    reloader: Reloader,
    watch: Option<FileWatch>,
}

impl Services {
    /// `/readyz` answers 200 from now on.
    fn ready(&self, note: &str) {
        if let Some(admin) = &self.admin {
            admin.set_ready(true);
        }
        info!("lbgw ready{note}");
    }

    async fn watch_changed(&mut self) {
        match &mut self.watch {
            Some(watch) => watch.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Reloads the `--config` files; true when a new configuration was applied.
    fn reload(&mut self, opts: &RunOptions, trigger: &str, force: bool) -> bool {
        let outcome = self.reloader.reload_files(&opts.config, force);
        reload::log_outcome(trigger, &outcome);
        matches!(outcome, Ok(Some(_)))
    }

    async fn stop(self) {
        if let Some(admin) = &self.admin {
            admin.set_ready(false);
        }
        self.proxy.stop().await;
    }
}

/// Starts the proxy for `current`, the admin endpoint and the file watch.
async fn start_services(opts: &RunOptions, current: Current) -> Result<Services, DaemonError> {
    let metrics = Arc::new(ProxyMetrics::default());
    let admin = opts.admin.map(|_| Admin::new(&metrics));
    let (proxy, handle) = start_proxy(&current, opts, &metrics)?;
    if let (Some(admin), Some(addr)) = (&admin, opts.admin) {
        admin.set_proxy(handle.clone());
        admin.publish(&current.config, &current.plan, &handle.model());
        admin.serve(addr).await?;
    }
    let watch = if opts.watch {
        Some(FileWatch::start(&opts.config, opts.watch_debounce)?)
    } else {
        None
    };
    let reloader = Reloader::new(
        IpamSource {
            lb_cidrs: opts.lb_cidrs.clone(),
            env_lb_cidr: opts.env_lb_cidr.clone(),
            state: opts.state.clone(),
        },
        handle,
        admin.clone(),
        metrics,
        current,
    );
    Ok(Services {
        proxy,
        admin,
        reloader,
        watch,
    })
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
    current: &Current,
    opts: &RunOptions,
    metrics: &Arc<ProxyMetrics>,
) -> Result<(crate::proxy::RunningProxy, ProxyHandle), DaemonError> {
    let (model, _status) = GatewayModel::build(&current.config, &current.plan);
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
            drain_timeout: opts.drain_timeout,
            limits: opts.limits.clone(),
            outlier: opts.outlier.clone(),
            metrics: Arc::clone(metrics),
            access_log: AccessLog::start(opts.access_log),
        },
    )?;
    let handle = proxy.handle();
    Ok((proxy.spawn(), handle))
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
