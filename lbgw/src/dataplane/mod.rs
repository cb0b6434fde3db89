//! The XDP data plane: loading lbgw's eBPF object, attaching it to an interface, keeping its
//! maps in step with the VIP plan, and reading its counters.
//!
//! - [`object`]: the embedded eBPF object (built by `build.rs`);
//! - [`sys`]: the few facts about the host read from sysfs/procfs (interfaces, privileges);
//! - [`served`]: which VIP ports are served, and by what, from the configuration and the plan;
//! - [`l4`]: the L4 forwarder's maps (service indices, backend slots, Maglev rings);
//! - [`host`]: local routes for the proxied VIPs and neighbour entries for L4 backends;
//! - [`stats`]: the per-CPU counters, summed.
//!
//! Besides the XDP program, the object has an `sk_lookup` program that hands connections to a
//! Gateway listener's (VIP, port) to the proxy's listening socket ([`Dataplane::steer_to_proxy`]).
pub mod host;
pub mod l4;
pub mod object;
pub mod pin;
pub mod served;
pub mod stats;
pub mod sys;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues, SockMap},
    programs::{
        ProgramError, SkLookup, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        sk_lookup::SkLookupLinkId,
        xdp::{XdpLink, XdpLinkId},
    },
};
use lbgw_common::{
    CONFIG_F_L4_DNAT_ONLY, CONFIG_F_LOCAL_ROUTES, Config, IFACE_F_ACTIVE, IFACE_SLOTS, IfaceInfo,
    IfaceKey, LISTENERS_V6_OFFSET, MAX_POOLS, MAX_PORTS, MAX_VIPS, PORT_ACTION_L4,
    PORT_ACTION_LOCAL, PORT_ACTION_PROXY, PoolRange, PortInfo, PortKey, VIP_F_ANNOUNCE, VipInfo,
    VipKey, VipStats, names,
};
use tracing::{debug, info, warn};

pub use stats::{Counters, VipCounters};
pub use sys::Interface;

/// Errors of the XDP data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "loading the eBPF object failed (lbgw needs root, or CAP_BPF + CAP_NET_ADMIN + \
         CAP_PERFMON, and a kernel with BTF)"
    )]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("the eBPF object has no {what} named {name}: the build of lbgw-ebpf is out of date")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("eBPF program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching XDP to {iface} in {mode} mode")]
    Attach {
        iface: String,
        mode: AttachMode,
        #[source]
        source: ProgramError,
    },
    #[error("map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("too many VIPs: the data plane holds at most {MAX_VIPS}")]
    TooManyVips,
    #[error("too many pool ranges: the data plane holds at most {MAX_POOLS}")]
    TooManyPools,
    #[error("too many served ports: the data plane holds at most {MAX_PORTS}")]
    TooManyPorts,
    #[error("building a Maglev table")]
    Maglev(#[source] crate::l4::maglev::MaglevError),
    #[error("attaching the sk_lookup program to this network namespace")]
    SkLookup(#[source] ProgramError),
    #[error("opening this process's network namespace (/proc/self/ns/net)")]
    Netns(#[source] std::io::Error),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("pinning or adopting the {what} link at {path}")]
    Link {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("putting the proxy's socket for port {port} into {map}", map = names::LISTENERS)]
    Listener {
        port: u16,
        #[source]
        source: MapError,
    },
}

/// Who serves a (VIP, protocol, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortAction {
    /// The kernel stack: whatever listens there (e.g. a Gateway TCP/UDP listener, which lbgw's
    /// proxy does not implement).
    Local,
    /// lbgw's proxy, through the `sk_lookup` program.
    Proxy,
    /// The L4 forwarder in XDP.
    L4,
}

/// A (VIP, protocol, port) something serves; traffic to other ports of a VIP is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServedPort {
    pub ip: IpAddr,
    /// IANA protocol number (`lbgw_common::PROTO_*`).
    pub proto: u8,
    pub port: u16,
    pub action: PortAction,
}

/// What the XDP program does with IP traffic for the pools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steering {
    /// Drop traffic to unallocated pool addresses and to unserved ports of VIPs.
    pub early_drop: bool,
    /// Answer ICMP / ICMPv6 echo requests to VIPs.
    pub echo: bool,
    /// The pools' address ranges, (first, last) inclusive.
    pub pools: Vec<(IpAddr, IpAddr)>,
    pub ports: Vec<ServedPort>,
    /// The proxied VIPs have local routes: drop ARP for those this node does not announce.
    pub local_routes: bool,
    /// L4 source NAT port range: first port and count (0: no source NAT).
    pub snat_ports: (u16, u16),
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode when the driver refuses it. On veth
    /// devices generic mode is chosen directly: a native-mode XDP_TX into a veth is dropped
    /// unless the peer also runs an XDP program.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only: works on every device, after the kernel allocated an skb.
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native (driver)",
            AttachMode::Generic => "generic (skb)",
        })
    }
}

/// A VIP the data plane answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipEntry {
    pub ip: IpAddr,
    /// Whether this node announces it (answers ARP/NDP): always in file mode, while it holds
    /// the VIP's Lease in Kubernetes mode.
    pub announce: bool,
    /// Announce only until then (the end of the Lease); `None` for no end.
    pub until: Option<std::time::Instant>,
}

/// The loaded XDP program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    vips: HashMap<MapData, VipKey, VipInfo>,
    ifaces: HashMap<MapData, IfaceKey, IfaceInfo>,
    iface_array: Array<MapData, IfaceInfo>,
    vip_stats: PerCpuArray<MapData, VipStats>,
    counters: PerCpuArray<MapData, u64>,
    config: Array<MapData, Config>,
    pools: Array<MapData, PoolRange>,
    ports: HashMap<MapData, PortKey, PortInfo>,
    listeners: SockMap<MapData>,
    l4_maps: l4::L4Maps,
    l4: l4::L4State,
    /// Statistics slot of each VIP in the map; a VIP keeps its slot while it stays.
    slots: BTreeMap<IpAddr, u32>,
    attached: Vec<(String, AttachMode, XdpLinkId)>,
    sk_lookup: Option<SkLookupLinkId>,
    /// Pin paths when the data plane is pinned.
    pins: Option<pin::PinPaths>,
    /// Links pinned on bpffs (they stay attached when lbgw exits).
    pinned_links: Vec<PinnedLink>,
    /// The pinned sk_lookup link.
    sk_lookup_fd: Option<std::os::fd::OwnedFd>,
}

impl Dataplane {
    /// Loads the embedded eBPF object and verifies its program, with nothing pinned.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(object::bytes(), &pin::Pinning::None)
    }

    /// Loads an eBPF object given as bytes, pinned or not. Pinned, the maps of a data plane a
    /// previous lbgw left running are reused (adopted) when they come from the same object.
    pub fn load_with(bytes: &[u8], pinning: &pin::Pinning) -> Result<Self, DataplaneError> {
        raise_memlock_limit();
        // Maps are pinned by name in the object. Unpinned, they are pinned in a private
        // directory that is removed right after loading (the process's fds keep them). It sits
        // at the top of bpffs, not under the default pin directory, so that nothing is left
        // behind (an empty /sys/fs/bpf/lbgw) after a run that pins nothing.
        let (map_dir, pins) = match pinning {
            pin::Pinning::Dir(dir) => {
                let paths = pin::PinPaths::new(dir)?;
                (paths.maps(bytes), Some(paths))
            }
            pin::Pinning::None => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = std::path::Path::new(pin::BPFFS)
                    .join(format!("lbgw-tmp-{}-{n}", std::process::id()));
                (dir, None)
            }
        };
        pin::prepare(&map_dir)?;
        let adopted = std::fs::read_dir(&map_dir).is_ok_and(|mut d| d.next().is_some());
        let loaded = EbpfLoader::new()
            .default_map_pin_directory(&map_dir)
            .load(bytes);
        if pins.is_none() {
            pin::remove(&map_dir)?;
        }
        let mut ebpf = loaded.map_err(|source| DataplaneError::Load { source })?;
        if adopted {
            info!(dir = %map_dir.display(), "adopted the pinned maps of the running data plane");
        }
        let program: &mut Xdp = ebpf
            .program_mut(names::XDP_PROGRAM)
            .ok_or(DataplaneError::Missing {
                what: "program",
                name: names::XDP_PROGRAM,
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: names::XDP_PROGRAM,
                source,
            })?;
        program.load().map_err(|source| DataplaneError::Program {
            name: names::XDP_PROGRAM,
            source,
        })?;
        let sk_lookup: &mut SkLookup = ebpf
            .program_mut(names::SK_LOOKUP_PROGRAM)
            .ok_or(DataplaneError::Missing {
                what: "program",
                name: names::SK_LOOKUP_PROGRAM,
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: names::SK_LOOKUP_PROGRAM,
                source,
            })?;
        sk_lookup.load().map_err(|source| DataplaneError::Program {
            name: names::SK_LOOKUP_PROGRAM,
            source,
        })?;
        let vips = take_map(&mut ebpf, names::VIPS)?;
        let ifaces = take_map(&mut ebpf, names::IFACES)?;
        let iface_array = take_map(&mut ebpf, names::IFACE_ARRAY)?;
        let vip_stats = take_map(&mut ebpf, names::VIP_STATS)?;
        let counters = take_map(&mut ebpf, names::COUNTERS)?;
        let config = take_map(&mut ebpf, names::CONFIG)?;
        let pools = take_map(&mut ebpf, names::POOLS)?;
        let ports = take_map(&mut ebpf, names::PORTS)?;
        let listeners = take_map(&mut ebpf, names::LISTENERS)?;
        let l4_maps = l4::L4Maps {
            services: take_map(&mut ebpf, names::L4_SERVICES)?,
            backends: take_map(&mut ebpf, names::L4_BACKENDS)?,
            ring: take_map(&mut ebpf, names::L4_RING)?,
        };
        Ok(Self {
            ebpf,
            vips,
            ifaces,
            iface_array,
            vip_stats,
            counters,
            config,
            pools,
            ports,
            listeners,
            l4_maps,
            l4: l4::L4State::default(),
            slots: BTreeMap::new(),
            attached: Vec::new(),
            sk_lookup: None,
            pins,
            pinned_links: Vec::new(),
            sk_lookup_fd: None,
        }
        .adopt())
    }

    /// Takes over what a previous lbgw left in pinned maps: the VIPs' statistics slots (so
    /// counters go on), and the live Maglev generation of every L4 service (so the next ring
    /// is written into the idle one).
    fn adopt(mut self) -> Self {
        let entries: Vec<(VipKey, VipInfo)> = self.vips.iter().filter_map(Result::ok).collect();
        for (key, info) in entries {
            self.slots.insert(stats::key_to_ip(&key), info.stats_index);
        }
        self.l4.adopt(&self.l4_maps);
        self
    }

    /// Whether the data plane is pinned (stays attached when lbgw exits).
    pub fn is_pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// The loaded XDP program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> &mut Xdp {
        // Checked to exist and be XDP in `load_bytes`.
        self.ebpf
            .program_mut(names::XDP_PROGRAM)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("checked at load")
    }

    /// Answers on `ifindex` (and VLAN `vlan_id`, 0 = untagged) with `mac`.
    pub fn add_iface(
        &mut self,
        ifindex: u32,
        vlan_id: u16,
        mac: [u8; 6],
    ) -> Result<(), DataplaneError> {
        let key = IfaceKey {
            ifindex,
            vlan_id: vlan_id.into(),
        };
        let info = IfaceInfo {
            mac,
            flags: IFACE_F_ACTIVE,
            _pad: 0,
        };
        // Mirrors `iface()` in lbgw-ebpf/src/maps.rs: untagged and small ifindex → the array.
        if vlan_id == 0 && ifindex < IFACE_SLOTS {
            return self
                .iface_array
                .set(ifindex, info, 0)
                .map_err(|source| DataplaneError::Map {
                    map: names::IFACE_ARRAY,
                    source,
                });
        }
        self.ifaces
            .insert(key, info, 0)
            .map_err(|source| DataplaneError::Map {
                map: names::IFACES,
                source,
            })
    }

    /// Attaches the program to `iface`, choosing the mode as [`AttachMode`] describes, and
    /// returns the mode it was attached in.
    pub fn attach(
        &mut self,
        iface: &Interface,
        mode: AttachMode,
    ) -> Result<AttachMode, DataplaneError> {
        let Some(pins) = self.pins.clone() else {
            return self.attach_unpinned(iface, mode);
        };
        let path = pins.xdp_link(&iface.name);
        let link_err = |source| DataplaneError::Link {
            what: "XDP",
            path: path.clone(),
            source,
        };
        if path.exists() {
            // A previous lbgw's program is attached: swap ours in atomically (BPF_LINK_UPDATE);
            // the interface never goes without a program.
            let pinned =
                PinnedLink::from_pin(&path).map_err(|e| link_err(std::io::Error::other(e)))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| link_err(std::io::Error::other(e)))?;
            let id =
                self.program()
                    .attach_to_link(link)
                    .map_err(|source| DataplaneError::Attach {
                        iface: iface.name.clone(),
                        mode,
                        source,
                    })?;
            self.keep_pinned_xdp(id, &path, &iface.name)?;
            info!(iface = %iface.name, "took over the pinned XDP link of the running data plane");
            return Ok(mode);
        }
        let mode = self.attach_unpinned(iface, mode)?;
        if let Some((_, _, id)) = self.attached.pop() {
            self.keep_pinned_xdp(id, &path, &iface.name)?;
        }
        Ok(mode)
    }

    /// Moves the XDP link `id` out of the program (which would detach it when dropped) into a
    /// pin at `path`.
    fn keep_pinned_xdp(
        &mut self,
        id: XdpLinkId,
        path: &std::path::Path,
        iface: &str,
    ) -> Result<(), DataplaneError> {
        let link_err = |source| DataplaneError::Link {
            what: "XDP",
            path: path.to_owned(),
            source,
        };
        let link = self
            .program()
            .take_link(id)
            .map_err(|e| link_err(std::io::Error::other(e)))?;
        let fd_link = FdLink::try_from(link).map_err(|e| link_err(std::io::Error::other(e)))?;
        if path.exists() {
            // Updated in place: the pin already names this link.
            self.pinned_links
                .push(PinnedLink::from_pin(path).map_err(|e| link_err(std::io::Error::other(e)))?);
            drop(fd_link);
        } else {
            let pinned = fd_link
                .pin(path)
                .map_err(|e| link_err(std::io::Error::other(e)))?;
            self.pinned_links.push(pinned);
        }
        debug!(iface, path = %path.display(), "XDP link pinned");
        Ok(())
    }

    /// Removes the maps of other eBPF objects (an older lbgw) once this one is attached.
    pub fn remove_stale_pins(&self) {
        let Some(pins) = &self.pins else { return };
        let current = pins.maps(object::bytes());
        for stale in pins.stale_maps(&current) {
            match pin::remove(&stale) {
                Ok(_) => info!(dir = %stale.display(), "removed the maps of a previous lbgw build"),
                Err(err) => warn!("{}", crate::config::error_chain(&err)),
            }
        }
    }

    fn attach_unpinned(
        &mut self,
        iface: &Interface,
        mode: AttachMode,
    ) -> Result<AttachMode, DataplaneError> {
        let program = self.program();
        let try_mode = |program: &mut Xdp, mode: AttachMode| {
            let flags = match mode {
                AttachMode::Native => XdpMode::Driver,
                _ => XdpMode::Skb,
            };
            program
                .attach_to_if_index(iface.ifindex, flags)
                .map_err(|source| DataplaneError::Attach {
                    iface: iface.name.clone(),
                    mode,
                    source,
                })
        };
        let (mode, link) = match mode {
            AttachMode::Auto if iface.is_veth => {
                info!(
                    iface = %iface.name,
                    "veth device: attaching in generic mode (native XDP_TX on veth is dropped unless the peer runs XDP)"
                );
                (AttachMode::Generic, try_mode(program, AttachMode::Generic)?)
            }
            AttachMode::Auto => match try_mode(program, AttachMode::Native) {
                Ok(link) => (AttachMode::Native, link),
                Err(err) => {
                    warn!(
                        iface = %iface.name,
                        "native XDP refused ({}); falling back to generic (skb) mode",
                        crate::config::error_chain(&err)
                    );
                    (AttachMode::Generic, try_mode(program, AttachMode::Generic)?)
                }
            },
            mode => (mode, try_mode(program, mode)?),
        };
        self.attached.push((iface.name.clone(), mode, link));
        Ok(mode)
    }

    /// Attaches the `sk_lookup` program to the network namespace lbgw runs in: from then on,
    /// new connections to a (VIP, port) served by the proxy go to the socket registered with
    /// [`Dataplane::steer_to_proxy`] for that port.
    pub fn attach_sk_lookup(&mut self) -> Result<(), DataplaneError> {
        let netns = std::fs::File::open("/proc/self/ns/net").map_err(DataplaneError::Netns)?;
        let program: &mut SkLookup = self
            .ebpf
            .program_mut(names::SK_LOOKUP_PROGRAM)
            .and_then(|p| <&mut SkLookup>::try_from(p).ok())
            .ok_or(DataplaneError::Missing {
                what: "program",
                name: names::SK_LOOKUP_PROGRAM,
            })?;
        let Some(pins) = self.pins.clone() else {
            let link = program.attach(&netns).map_err(DataplaneError::SkLookup)?;
            self.sk_lookup = Some(link);
            return Ok(());
        };
        let path = pins.sk_lookup_link();
        let link_err = |source| DataplaneError::Link {
            what: "sk_lookup",
            path: path.clone(),
            source,
        };
        let prog = program.fd().map_err(DataplaneError::SkLookup)?;
        let prog = std::os::fd::AsFd::as_fd(prog);
        if path.exists() {
            // The previous lbgw's program stays attached until ours replaces it atomically.
            let link = pin::sys::obj_get(&path).map_err(link_err)?;
            pin::sys::link_update(link.as_fd(), prog).map_err(link_err)?;
            self.sk_lookup_fd = Some(link);
            return Ok(());
        }
        let link = pin::sys::sk_lookup_link(prog, netns.as_fd()).map_err(link_err)?;
        pin::sys::obj_pin(link.as_fd(), &path).map_err(link_err)?;
        self.sk_lookup_fd = Some(link);
        Ok(())
    }

    /// Registers the proxy's listening sockets of each Gateway port (IPv4 and IPv6), for the
    /// `sk_lookup` program. Ports not listed keep whatever socket they had.
    pub fn steer_to_proxy<S: AsRawFd>(
        &mut self,
        sockets: &[(u16, bool, S)],
    ) -> Result<(), DataplaneError> {
        for (port, ipv6, socket) in sockets {
            let index = u32::from(*port) + if *ipv6 { LISTENERS_V6_OFFSET } else { 0 };
            self.listeners
                .set(index, socket, 0)
                .map_err(|source| DataplaneError::Listener {
                    port: *port,
                    source,
                })?;
        }
        Ok(())
    }

    /// Makes the L4 forwarder serve exactly `frontends` (call before [`Dataplane::set_steering`],
    /// which points their ports at the service indices given here).
    pub fn set_l4(&mut self, frontends: &[crate::l4::Frontend]) -> Result<(), DataplaneError> {
        self.l4.sync(&mut self.l4_maps, frontends)
    }

    /// The addresses of every L4 backend, whose next hops must stay resolved.
    pub fn l4_backend_ips(&self) -> BTreeSet<IpAddr> {
        self.l4.backend_ips()
    }

    /// Detaches the program from every interface it was attached to.
    pub fn detach_all(&mut self) {
        for (iface, _, link) in std::mem::take(&mut self.attached) {
            if let Err(err) = self.program().detach(link) {
                warn!(%iface, "detaching XDP failed: {err}");
            }
        }
        if let Some(link) = self.sk_lookup.take()
            && let Some(program) = self
                .ebpf
                .program_mut(names::SK_LOOKUP_PROGRAM)
                .and_then(|p| <&mut SkLookup>::try_from(p).ok())
            && let Err(err) = program.detach(link)
        {
            warn!("detaching sk_lookup failed: {err}");
        }
    }

    /// Makes the VIP map hold exactly `vips`: removes the others, adds the new ones (with
    /// zeroed counters in a fresh slot), updates flags of the rest. A VIP that stays keeps its
    /// counters.
    pub fn sync_vips(&mut self, vips: &[VipEntry]) -> Result<(), DataplaneError> {
        let wanted: BTreeMap<IpAddr, (bool, u64)> = vips
            .iter()
            .map(|v| (v.ip, (v.announce, v.until.map_or(0, sys::monotonic_ns))))
            .collect();
        let gone: Vec<IpAddr> = self
            .slots
            .keys()
            .filter(|ip| !wanted.contains_key(ip))
            .copied()
            .collect();
        for ip in gone {
            self.slots.remove(&ip);
            match self.vips.remove(&vip_key(ip)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(DataplaneError::Map {
                        map: names::VIPS,
                        source,
                    });
                }
            }
        }
        for (&ip, &(announce, announce_until_ns)) in &wanted {
            let slot = match self.slots.get(&ip) {
                Some(&slot) => slot,
                None => {
                    let slot = (0..MAX_VIPS)
                        .find(|s| !self.slots.values().any(|used| used == s))
                        .ok_or(DataplaneError::TooManyVips)?;
                    self.zero_stats(slot)?;
                    self.slots.insert(ip, slot);
                    slot
                }
            };
            let info = VipInfo {
                flags: if announce { VIP_F_ANNOUNCE } else { 0 },
                stats_index: slot,
                announce_until_ns,
            };
            self.vips
                .insert(vip_key(ip), info, 0)
                .map_err(|source| DataplaneError::Map {
                    map: names::VIPS,
                    source,
                })?;
        }
        Ok(())
    }

    /// Sets what happens to IP traffic for the pools: the pool ranges, the served ports, and
    /// the switches. Ports are replaced as a whole (removed ones first, then added ones); the
    /// configuration entry is written last, so the program never sees a count of pools that
    /// are not there yet.
    pub fn set_steering(&mut self, steering: &Steering) -> Result<(), DataplaneError> {
        if steering.pools.len() > MAX_POOLS as usize {
            return Err(DataplaneError::TooManyPools);
        }
        if steering.ports.len() > MAX_PORTS as usize {
            return Err(DataplaneError::TooManyPorts);
        }
        let map_err = |map| move |source| DataplaneError::Map { map, source };
        for (i, &(first, last)) in steering.pools.iter().enumerate() {
            let (first_hi, first_lo) = halves(first);
            let (last_hi, last_lo) = halves(last);
            let range = PoolRange {
                first_hi,
                first_lo,
                last_hi,
                last_lo,
            };
            self.pools
                .set(i as u32, range, 0)
                .map_err(map_err(names::POOLS))?;
        }
        let wanted: std::collections::HashMap<PortKey, PortInfo> = steering
            .ports
            .iter()
            .map(|port| {
                let stats_index = self.slots.get(&port.ip).copied().unwrap_or(u32::MAX);
                let l4 = self.l4.services.get(&(port.ip, port.proto, port.port));
                let (action, target) = match (port.action, l4) {
                    (PortAction::L4, Some(slot)) => (PORT_ACTION_L4, slot.index),
                    // An L4 frontend the forwarder could not take: the stack gets it.
                    (PortAction::L4, None) | (PortAction::Local, _) => (PORT_ACTION_LOCAL, 0),
                    // The listener map is indexed by port.
                    (PortAction::Proxy, _) => (PORT_ACTION_PROXY, u32::from(port.port)),
                };
                // Call `sync_vips` first: a port of a VIP without a slot is served but not
                // counted.
                let info = PortInfo {
                    action,
                    stats_index,
                    target,
                    _pad: 0,
                };
                (port_key(port), info)
            })
            .collect();
        let existing: Vec<PortKey> = self.ports.keys().filter_map(Result::ok).collect();
        for key in existing {
            if !wanted.contains_key(&key) {
                match self.ports.remove(&key) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(source) => return Err(map_err(names::PORTS)(source)),
                }
            }
        }
        for (key, info) in &wanted {
            self.ports
                .insert(key, info, 0)
                .map_err(map_err(names::PORTS))?;
        }
        let mut flags = 0;
        if steering.early_drop {
            flags |= lbgw_common::CONFIG_F_EARLY_DROP;
        }
        if steering.echo {
            flags |= lbgw_common::CONFIG_F_ECHO;
        }
        if steering.local_routes {
            flags |= CONFIG_F_LOCAL_ROUTES;
        }
        if self.l4.dnat_only {
            flags |= CONFIG_F_L4_DNAT_ONLY;
        }
        let config = Config {
            flags,
            pool_count: steering.pools.len() as u32,
            snat_port_min: steering.snat_ports.0,
            snat_port_count: steering.snat_ports.1,
        };
        self.config
            .set(0, config, 0)
            .map_err(map_err(names::CONFIG))
    }

    fn zero_stats(&mut self, slot: u32) -> Result<(), DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            map: names::VIP_STATS,
            source,
        };
        let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| {
            map_err(MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error,
            }))
        })?;
        let zeros =
            PerCpuValues::try_from(vec![VipStats::default(); cpus]).map_err(|io_error| {
                map_err(MapError::SyscallError(aya::sys::SyscallError {
                    call: "PerCpuValues",
                    io_error,
                }))
            })?;
        self.vip_stats.set(slot, zeros, 0).map_err(map_err)
    }

    /// Global and per-VIP counters, summed over CPUs.
    pub fn counters(&self) -> Result<(Counters, Vec<VipCounters>), DataplaneError> {
        let global = stats::read_counters(&self.counters)?;
        let mut per_vip = Vec::with_capacity(self.slots.len());
        for &ip in self.slots.keys() {
            let info = self
                .vips
                .get(&vip_key(ip), 0)
                .map_err(|source| DataplaneError::Map {
                    map: names::VIPS,
                    source,
                })?;
            per_vip.push(stats::read_vip(&self.vip_stats, ip, &info)?);
        }
        Ok((global, per_vip))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// An address as the program compares pool ranges: the VIP key's 16 bytes as two integers.
fn halves(ip: IpAddr) -> (u64, u64) {
    let bits = u128::from_be_bytes(vip_key(ip).addr);
    ((bits >> 64) as u64, bits as u64)
}

fn port_key(port: &ServedPort) -> PortKey {
    PortKey {
        addr: vip_key(port.ip).addr,
        port_be: port.port.to_be(),
        proto: port.proto,
        _pad: 0,
    }
}

/// The VIP map key of an address (IPv4 in its IPv4-mapped form).
pub fn vip_key(ip: IpAddr) -> VipKey {
    match ip {
        IpAddr::V4(v4) => VipKey::v4(v4.octets()),
        IpAddr::V6(v6) => VipKey::v6(v6.octets()),
    }
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, DataplaneError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::Missing { what: "map", name })?;
    M::try_from(map).map_err(|source| DataplaneError::Map { map: name, source })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use memory cgroups and
/// ignore it. Raising it is harmless either way.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
