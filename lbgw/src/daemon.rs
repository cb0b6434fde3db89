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
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use crate::{
    admin::{Admin, AdminError, DataplaneCounters, DataplaneStats, VipCounterValues},
    announce::{AnnounceError, Announcer},
    config::{self, ConfigError, error_chain},
    dataplane::{
        AttachMode, Dataplane, DataplaneError, VipEntry,
        host::{Host, HostError},
        object,
        pin::{self, Pinning},
        served::{self, SteeringOptions},
        sys::{self, Interface, SysError},
    },
    gateway::GatewayModel,
    ipam::{IpamError, Plan, State},
    proxy::{
        AccessLog, AccessLogFormat, Limits, OutlierOptions, Proxy, ProxyError, ProxyHandle,
        ProxyMetrics, ProxyOptions,
    },
    reload::{self, Allocations, Current, FileWatch, IpamSource, ReloadError, Reloader},
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
    /// Proxy worker threads (`--workers`).
    pub workers: usize,
    /// Connection, header and HTTP/2 limits of the proxy.
    pub limits: Limits,
    /// Passive outlier detection.
    pub outlier: OutlierOptions,
    /// Reload when the `--config` files change (SIGHUP always reloads).
    pub watch: bool,
    /// Changes to the files within this long are applied as one reload.
    pub watch_debounce: Duration,
    /// This node's name, for `externalTrafficPolicy: Local` (EndpointSlice `nodeName`).
    pub node_name: Option<String>,
    /// L4 source NAT port range: first port and count.
    pub snat_ports: (u16, u16),
    /// Whether the data plane is pinned on bpffs: then it keeps running (ARP/NDP answered,
    /// L4 flows forwarded, VIPs routed locally) after lbgw exits, for the next lbgw to adopt;
    /// `lbgw cleanup` removes it.
    pub pinning: Pinning,
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
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Runs the data plane until SIGINT or SIGTERM.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let Some(iface_name) = opts.iface.as_deref() else {
        return run_proxy_only(&opts).await;
    };
    sys::check_privileges()?;
    let iface = Interface::by_name(iface_name)?;

    let current = allocate(&opts)?;
    // Without --bind, the proxy listens on loopback only, on ephemeral ports, and the
    // sk_lookup program hands it the connections to its VIPs.
    let steered = opts.bind.is_none();
    let mut services = start_services(&opts, current, steered, state_file(&opts)).await?;
    let mut node = XdpNode::start(&opts, iface, &services, steered, None).await?;
    services.ready("");

    let mut signals = Signals::new()?;
    let mut announce_tick = interval(opts.announce_interval);
    let mut stats_tick = interval(opts.stats_interval);
    loop {
        let reloaded = tokio::select! {
            _ = signals.int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = signals.term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = signals.hup.recv() => services.reload(&opts, "SIGHUP", true),
            () = services.watch_changed() => services.reload(&opts, "file change", false),
            _ = announce_tick.tick() => { node.announce(&opts.vlans); false }
            _ = stats_tick.tick() => { node.log_counters(false); false }
        };
        if reloaded {
            node.sync(&services, &opts, None).await;
        }
    }
    services.stop().await;
    node.stop().await;
    Ok(())
}

/// The XDP side of a running lbgw, the same in file and Kubernetes mode: the data plane on
/// one interface (pinned, or adopted from a pinned one), the local routes and neighbour
/// entries it needs, and the announcer.
pub(crate) struct XdpNode {
    iface: Interface,
    dataplane: Arc<Mutex<Dataplane>>,
    host: Host,
    announcer: Announcer,
    steered: bool,
    /// The VIP map as last written.
    vips: Vec<VipEntry>,
    /// The VIPs announced (answered, and sent gratuitously) since the last sync.
    announced: Vec<IpAddr>,
    last_stats: Option<String>,
}

impl XdpNode {
    /// Loads the data plane (adopting a pinned one), programs it for what `services` serve,
    /// attaches it, adds the local routes and announces the VIPs: all of them, or with
    /// `owned` (Kubernetes mode) those whose Lease this node holds.
    pub(crate) async fn start(
        opts: &RunOptions,
        iface: Interface,
        services: &Services,
        steered: bool,
        owned: Option<&Held>,
    ) -> Result<Self, DaemonError> {
        let mut dataplane = Dataplane::load_with(object::bytes(), &opts.pinning)?;
        dataplane.add_iface(iface.ifindex, 0, iface.mac)?;
        for &vlan in &opts.vlans {
            dataplane.add_iface(iface.ifindex, vlan, iface.mac)?;
        }
        let current = services.reloader.current();
        let synced = sync_maps(
            &mut dataplane,
            current,
            &services.handle,
            opts,
            &iface.name,
            steered,
            owned,
        )?;
        if steered {
            dataplane.attach_sk_lookup()?;
        }
        let mode = dataplane.attach(&iface, opts.xdp_mode)?;
        dataplane.remove_stale_pins();
        info!(
            iface = %iface.name,
            mac = %sys::format_mac(&iface.mac),
            %mode,
            vips = synced.vips.len(),
            announced = synced.vips.iter().filter(|v| v.announce).count(),
            l4_frontends = synced.l4_frontends,
            "XDP program attached; answering ARP/NDP for the announced VIPs"
        );
        // Local routes only once XDP drops ARP for VIPs other nodes own: with a local route
        // the kernel would answer for them.
        let mut host = Host::new()?;
        if let Err(err) = sync_host(&mut host, &synced, &iface.name).await {
            if !dataplane.is_pinned() {
                dataplane.detach_all();
            }
            return Err(err.into());
        }
        host.resolve_neighbours(&dataplane.l4_backend_ips()).await;
        let dataplane = Arc::new(Mutex::new(dataplane));
        if let Some(admin) = &services.admin {
            admin.set_dataplane(Arc::new(XdpStats(Arc::clone(&dataplane))));
        }
        let node = XdpNode {
            announcer: Announcer::new(iface.ifindex, iface.mac)?,
            iface,
            dataplane,
            host,
            steered,
            announced: announced(&synced),
            vips: synced.vips,
            last_stats: None,
        };
        node.announce(&opts.vlans);
        Ok(node)
    }

    /// Makes the data plane follow what `services` serve now (after a reload) and, in
    /// Kubernetes mode, the VIPs this node holds (`owned`): VIPs, L4 rings, served ports,
    /// proxy sockets, local routes, neighbours. VIPs announced from now on are announced at
    /// once (gratuitous ARP / unsolicited NA: a takeover). Errors are logged: the data plane
    /// keeps what it had.
    pub(crate) async fn sync(
        &mut self,
        services: &Services,
        opts: &RunOptions,
        owned: Option<&Held>,
    ) {
        let synced = sync_maps(
            &mut lock(&self.dataplane),
            services.reloader.current(),
            &services.handle,
            opts,
            &self.iface.name,
            self.steered,
            owned,
        );
        let synced = match synced {
            Ok(synced) => synced,
            Err(err) => {
                error!("updating the XDP maps: {}", error_chain(&err));
                return;
            }
        };
        if let Err(err) = sync_host(&mut self.host, &synced, &self.iface.name).await {
            error!("updating local routes: {}", error_chain(&err));
        }
        let backends = lock(&self.dataplane).l4_backend_ips();
        self.host.resolve_neighbours(&backends).await;
        let now = announced(&synced);
        let fresh: Vec<IpAddr> = now
            .iter()
            .filter(|ip| !self.announced.contains(ip))
            .copied()
            .collect();
        if !fresh.is_empty() {
            info!(vips = ?fresh, "announcing: gratuitous ARP / unsolicited NA");
            announce_all(&self.announcer, &fresh, &opts.vlans);
        }
        self.announced = now;
        self.vips = synced.vips;
    }

    /// Moves the end of each held VIP's announcement to the end of its Lease as last renewed
    /// (Kubernetes mode, every Lease poll). A VIP no longer held stops being answered at once.
    pub(crate) fn renew(&mut self, held: &Held) {
        for vip in &mut self.vips {
            vip.announce = vip.announce && held.contains_key(&vip.ip);
            vip.until = held.get(&vip.ip).copied();
        }
        if let Err(err) = lock(&self.dataplane).sync_vips(&self.vips) {
            warn!("renewing the VIPs' announcements: {}", error_chain(&err));
        }
    }

    /// The interface the data plane runs on.
    pub(crate) fn iface_name(&self) -> &str {
        &self.iface.name
    }

    /// Announces every announced VIP again (`--announce-interval`).
    pub(crate) fn announce(&self, vlans: &[u16]) {
        announce_all(&self.announcer, &self.announced, vlans);
    }

    /// Stops answering ARP/NDP for every VIP (Kubernetes mode, before its Leases are released
    /// on shutdown: a pinned program must not keep answering for VIPs another node takes).
    pub(crate) fn withdraw(&mut self) {
        for vip in &mut self.vips {
            vip.announce = false;
        }
        if let Err(err) = lock(&self.dataplane).sync_vips(&self.vips) {
            warn!("withdrawing the VIPs: {}", error_chain(&err));
        }
        self.announced.clear();
    }

    /// Logs the counters when they changed (or `always`).
    pub(crate) fn log_counters(&mut self, always: bool) {
        log_counters(&lock(&self.dataplane), &mut self.last_stats, always);
    }

    /// At exit: a pinned data plane keeps running for the next lbgw; otherwise the local
    /// routes are removed and the programs detached.
    pub(crate) async fn stop(mut self) {
        self.log_counters(true);
        if lock(&self.dataplane).is_pinned() {
            info!(
                iface = %self.iface.name,
                "the pinned data plane keeps running for the next lbgw (`lbgw cleanup` removes it)"
            );
            return;
        }
        if let Err(err) = self.host.remove_local_routes().await {
            warn!("{}", error_chain(&err));
        }
        lock(&self.dataplane).detach_all();
        info!(iface = %self.iface.name, "XDP program detached");
    }
}

fn announced(synced: &Synced) -> Vec<IpAddr> {
    synced
        .vips
        .iter()
        .filter(|v| v.announce)
        .map(|v| v.ip)
        .collect()
}

/// `lbgw run --no-xdp`: the proxy alone, until SIGINT or SIGTERM.
async fn run_proxy_only(opts: &RunOptions) -> Result<(), DaemonError> {
    let current = allocate(opts)?;
    let mut services = start_services(opts, current, false, state_file(opts)).await?;
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

/// What [`sync_maps`] programmed.
struct Synced {
    vips: Vec<VipEntry>,
    l4_frontends: usize,
    /// VIPs with a port steered to the proxy: they get local routes.
    proxied: BTreeSet<IpAddr>,
}

/// Makes the data plane's maps follow `current` (at start and after every reload): the VIPs
/// (announced: all, or the `owned` ones), the L4 frontends and their Maglev rings, the served
/// ports and who serves them, and the proxy's listening sockets for sk_lookup.
fn sync_maps(
    dataplane: &mut Dataplane,
    current: &Current,
    proxy: &ProxyHandle,
    opts: &RunOptions,
    iface: &str,
    steered: bool,
    owned: Option<&Held>,
) -> Result<Synced, DataplaneError> {
    let vips = vip_entries(&current.plan, owned);
    dataplane.sync_vips(&vips)?;
    let frontends = crate::l4::frontends(&current.config, &current.plan, opts.node_name.as_deref());
    dataplane.set_l4(&frontends)?;
    let sockets = proxy.listener_fds();
    let proxy_ports: BTreeSet<u16> = sockets.iter().map(|(port, _, _)| *port).collect();
    let steering = served::steering(
        &current.config,
        &current.plan,
        &current.pools,
        &SteeringOptions {
            early_drop: !opts.no_early_drop,
            echo: true,
            proxy_ports: steered.then_some(proxy_ports),
            snat_ports: opts.snat_ports,
        },
    );
    dataplane.set_steering(&steering)?;
    if steered {
        dataplane.steer_to_proxy(&sockets)?;
    }
    warn_forwarding_off(iface, &frontends);
    Ok(Synced {
        vips,
        l4_frontends: frontends.len(),
        proxied: served::proxied_vips(&steering),
    })
}

/// Local routes for the proxied VIPs.
async fn sync_host(host: &mut Host, synced: &Synced, iface: &str) -> Result<(), HostError> {
    host.set_local_routes(&synced.proxied).await?;
    if !synced.proxied.is_empty() {
        debug!(
            iface,
            vips = synced.proxied.len(),
            "proxied VIPs routed locally and steered to the proxy by sk_lookup"
        );
    }
    Ok(())
}

/// The VIPs as the XDP program takes them: announced all (file mode), or only the `owned`
/// ones, each until its Lease ends (Kubernetes mode).
fn vip_entries(plan: &Plan, owned: Option<&Held>) -> Vec<VipEntry> {
    plan.vips()
        .iter()
        .map(|v| VipEntry {
            ip: v.ip,
            announce: owned.is_none_or(|o| o.contains_key(&v.ip)),
            until: owned.and_then(|o| o.get(&v.ip).copied()),
        })
        .collect()
}

/// The VIPs this node holds the Leases of, each with the end of its Lease (Kubernetes mode).
pub(crate) type Held = BTreeMap<IpAddr, Instant>;

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
                        announced: v.announced,
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

/// The proxy, the admin endpoint and the reloader, as `lbgw run` starts them (in either mode).
pub(crate) struct Services {
    proxy: crate::proxy::RunningProxy,
    /// The proxy, for its listening sockets.
    handle: ProxyHandle,
    admin: Option<Arc<Admin>>,
    /// Applies new configuration snapshots.
    pub(crate) reloader: Reloader,
    watch: Option<FileWatch>,
}

impl Services {
    /// `/readyz` answers 200 from now on.
    pub(crate) fn ready(&self, note: &str) {
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

    /// Stops accepting and drains the proxy.
    pub(crate) async fn stop(self) {
        if let Some(admin) = &self.admin {
            admin.set_ready(false);
        }
        self.proxy.stop().await;
    }
}

/// Starts the proxy for `current`, the admin endpoint and the file watch (`opts.watch`).
pub(crate) async fn start_services(
    opts: &RunOptions,
    current: Current,
    steered: bool,
    allocations: Allocations,
) -> Result<Services, DaemonError> {
    let metrics = Arc::new(ProxyMetrics::default());
    let admin = opts.admin.map(|_| Admin::new(&metrics));
    let (proxy, handle) = start_proxy(&current, opts, &metrics, steered)?;
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
    let services_handle = handle.clone();
    let reloader = Reloader::new(
        ipam_source(opts, allocations),
        handle,
        admin.clone(),
        metrics,
        current,
    );
    Ok(Services {
        proxy,
        handle: services_handle,
        admin,
        reloader,
        watch,
    })
}

/// The pools' sources and where allocations are kept.
pub(crate) fn ipam_source(opts: &RunOptions, allocations: Allocations) -> IpamSource {
    IpamSource {
        lb_cidrs: opts.lb_cidrs.clone(),
        env_lb_cidr: opts.env_lb_cidr.clone(),
        allocations,
    }
}

fn state_file(opts: &RunOptions) -> Allocations {
    Allocations::StateFile(opts.state.clone())
}

/// Loads the configuration and allocates the VIPs, saving the allocation state.
fn allocate(opts: &RunOptions) -> Result<Current, DaemonError> {
    let config = config::load(&opts.config)?;
    // A state file that cannot be read is an error, not an empty state: starting empty and
    // saving over it would move every object to a new address.
    let previous = State::load(&opts.state)?;
    let (pools, plan) = ipam_source(opts, state_file(opts)).allocate(&config, &previous)?;
    for vip in plan.vips() {
        info!(ip = %vip.ip, owner = %vip.owner, pool = %vip.pool, "VIP allocated");
    }
    Ok(Current {
        config,
        pools,
        plan,
    })
}

/// Builds the Gateway model and starts serving it; logs `proxy listening on <addr>` per
/// bound port.
fn start_proxy(
    current: &Current,
    opts: &RunOptions,
    metrics: &Arc<ProxyMetrics>,
    steered: bool,
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
            steered,
            workers: opts.workers,
        },
    )?;
    let handle = proxy.handle();
    Ok((proxy.spawn(), handle))
}

/// `lbgw cleanup`: removes what a pinned data plane leaves in this network namespace — the
/// pinned programs and maps under `dir` (detaching the programs) and lbgw's local routes.
pub async fn cleanup(dir: &std::path::Path) -> Result<Vec<String>, DaemonError> {
    let mut done = Vec::new();
    let paths = pin::PinPaths::new(dir).map_err(DataplaneError::from)?;
    if pin::remove(&paths.root).map_err(DataplaneError::from)? {
        done.push(format!(
            "removed {} (XDP and sk_lookup programs detached, maps freed)",
            paths.root.display()
        ));
    }
    let host = Host::new()?;
    let routes = host.local_routes().await?;
    if !routes.is_empty() {
        host.remove_local_routes().await?;
        for ip in routes {
            done.push(format!("removed the local route for {ip}"));
        }
    }
    Ok(done)
}

/// XDP's FIB lookup refuses to route for an interface with forwarding off
/// (BPF_FIB_LKUP_RET_FWD_DISABLED), as the kernel would; Kubernetes nodes have it on.
fn warn_forwarding_off(iface: &str, frontends: &[crate::l4::Frontend]) {
    for (v6, family) in [(false, "ipv4"), (true, "ipv6")] {
        if !frontends.iter().any(|f| f.ip.is_ipv6() == v6) {
            continue;
        }
        let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
            warn!(
                "L4 Services cannot be forwarded: {family} forwarding is off on {iface} \
                 (sysctl -w net.{family}.conf.{iface}.forwarding=1; Kubernetes nodes have it on)"
            );
        }
    }
}

/// A ticker that skips its immediate first tick; a zero period never fires.
pub(crate) fn ticker(period: Duration) -> tokio::time::Interval {
    interval(period)
}

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
                        forwarded = vip.forwarded,
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
