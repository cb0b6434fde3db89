//! The XDP data plane: loading lbgw's eBPF object, attaching it to an interface, keeping its
//! maps in step with the VIP plan, and reading its counters.
//!
//! - [`object`]: the embedded eBPF object (built by `build.rs`);
//! - [`sys`]: the few facts about the host read from sysfs/procfs (interfaces, privileges);
//! - [`served`]: which VIP ports are served, from the configuration and the VIP plan;
//! - [`stats`]: the per-CPU counters, summed.
pub mod object;
pub mod served;
pub mod stats;
pub mod sys;

use std::{collections::BTreeMap, net::IpAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use lbgw_common::{
    Config, IFACE_F_ACTIVE, IFACE_SLOTS, IfaceInfo, IfaceKey, MAX_POOLS, MAX_PORTS, MAX_VIPS,
    PORT_ACTION_LOCAL, PoolRange, PortInfo, PortKey, VIP_F_ANNOUNCE, VipInfo, VipKey, VipStats,
    names,
};
use tracing::{info, warn};

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
}

/// A (VIP, protocol, port) something serves; traffic to other ports of a VIP is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServedPort {
    pub ip: IpAddr,
    /// IANA protocol number (`lbgw_common::PROTO_*`).
    pub proto: u8,
    pub port: u16,
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
    /// Whether this node announces it (answers ARP/NDP). Always true until VIP ownership is
    /// elected between nodes.
    pub announce: bool,
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
    /// Statistics slot of each VIP in the map; a VIP keeps its slot while it stays.
    slots: BTreeMap<IpAddr, u32>,
    attached: Vec<(String, AttachMode, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded eBPF object and verifies its program.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_bytes(object::bytes())
    }

    /// Loads an eBPF object given as bytes (tests load the same embedded object).
    pub fn load_bytes(bytes: &[u8]) -> Result<Self, DataplaneError> {
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .load(bytes)
            .map_err(|source| DataplaneError::Load { source })?;
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
        let vips = take_map(&mut ebpf, names::VIPS)?;
        let ifaces = take_map(&mut ebpf, names::IFACES)?;
        let iface_array = take_map(&mut ebpf, names::IFACE_ARRAY)?;
        let vip_stats = take_map(&mut ebpf, names::VIP_STATS)?;
        let counters = take_map(&mut ebpf, names::COUNTERS)?;
        let config = take_map(&mut ebpf, names::CONFIG)?;
        let pools = take_map(&mut ebpf, names::POOLS)?;
        let ports = take_map(&mut ebpf, names::PORTS)?;
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
            slots: BTreeMap::new(),
            attached: Vec::new(),
        })
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

    /// Detaches the program from every interface it was attached to.
    pub fn detach_all(&mut self) {
        for (iface, _, link) in std::mem::take(&mut self.attached) {
            if let Err(err) = self.program().detach(link) {
                warn!(%iface, "detaching XDP failed: {err}");
            }
        }
    }

    /// Makes the VIP map hold exactly `vips`: removes the others, adds the new ones (with
    /// zeroed counters in a fresh slot), updates flags of the rest. A VIP that stays keeps its
    /// counters.
    pub fn sync_vips(&mut self, vips: &[VipEntry]) -> Result<(), DataplaneError> {
        let wanted: BTreeMap<IpAddr, bool> = vips.iter().map(|v| (v.ip, v.announce)).collect();
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
        for (&ip, &announce) in &wanted {
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
        let wanted: std::collections::BTreeSet<ServedPort> =
            steering.ports.iter().copied().collect();
        let existing: Vec<PortKey> = self.ports.keys().filter_map(Result::ok).collect();
        for key in existing {
            if !wanted.contains(&port_from_key(&key)) {
                match self.ports.remove(&key) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(source) => return Err(map_err(names::PORTS)(source)),
                }
            }
        }
        for port in &wanted {
            // Call `sync_vips` first: a port of a VIP without a slot is served but not counted.
            let info = PortInfo {
                action: PORT_ACTION_LOCAL,
                stats_index: self.slots.get(&port.ip).copied().unwrap_or(u32::MAX),
            };
            self.ports
                .insert(port_key(port), info, 0)
                .map_err(map_err(names::PORTS))?;
        }
        let mut flags = 0;
        if steering.early_drop {
            flags |= lbgw_common::CONFIG_F_EARLY_DROP;
        }
        if steering.echo {
            flags |= lbgw_common::CONFIG_F_ECHO;
        }
        let config = Config {
            flags,
            pool_count: steering.pools.len() as u32,
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
        for (&ip, &slot) in &self.slots {
            per_vip.push(stats::read_vip(&self.vip_stats, ip, slot)?);
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

fn port_from_key(key: &PortKey) -> ServedPort {
    ServedPort {
        ip: stats::key_to_ip(&VipKey { addr: key.addr }),
        proto: key.proto,
        port: u16::from_be(key.port_be),
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
