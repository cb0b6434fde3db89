//! The maps shared with userspace; their names and value types come from `lbgw-common`.
//!
//! Every map is pinned by name (libbpf's `LIBBPF_PIN_BY_NAME`): userspace loads the object
//! with a pin directory on bpffs, so a restarted lbgw finds the maps — VIPs, connection and NAT
//! tables, counters — the running program uses, and keeps them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, SockMap},
};
use lbgw_common::{
    AffinityKey, AffinityState, Config, Counter, FlowKey, FlowState, IFACE_F_ACTIVE, IFACE_SLOTS,
    IfaceInfo, IfaceKey, L4_MAX_AFFINITY, L4_MAX_FLOWS, L4_MAX_NAT, L4_RING_ELEMS,
    L4_RING_GENERATIONS, L4Backend, L4Service, MAX_IFACES, MAX_L4_BACKENDS, MAX_L4_SERVICES,
    MAX_LISTENERS, MAX_POOLS, MAX_PORTS, MAX_VIPS, NatState, PoolRange, PortInfo, PortKey, VipInfo,
    VipKey, VipStats,
};

#[map(name = "LBGW_VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::pinned(MAX_VIPS, 0);

#[map(name = "LBGW_IFACES")]
static IFACES: HashMap<IfaceKey, IfaceInfo> = HashMap::pinned(MAX_IFACES, 0);

#[map(name = "LBGW_IFACE_ARR")]
static IFACE_ARRAY: Array<IfaceInfo> = Array::pinned(IFACE_SLOTS, 0);

#[map(name = "LBGW_CONFIG")]
static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "LBGW_POOLS")]
static POOLS: Array<PoolRange> = Array::pinned(MAX_POOLS, 0);

#[map(name = "LBGW_PORTS")]
static PORTS: HashMap<PortKey, PortInfo> = HashMap::pinned(MAX_PORTS, 0);

/// The proxy's listening sockets, indexed by Gateway port (read by the `sk_lookup` program).
#[map(name = "LBGW_LISTENERS")]
pub static LISTENERS: SockMap = SockMap::pinned(MAX_LISTENERS, 0);

#[map(name = "LBGW_L4_SVCS")]
static L4_SERVICES: Array<L4Service> = Array::pinned(MAX_L4_SERVICES, 0);

#[map(name = "LBGW_L4_BACKENDS")]
static L4_BACKENDS: Array<L4Backend> = Array::pinned(MAX_L4_BACKENDS, 0);

/// Maglev tables: for service `s` and generation `g`, elements
/// `(s * L4_RING_GENERATIONS + g) * L4_RING_ELEMS ..` hold `L4_RING_LANES` backend slots each.
#[map(name = "LBGW_L4_RING")]
static L4_RING: Array<[u16; 4]> =
    Array::pinned(MAX_L4_SERVICES * L4_RING_GENERATIONS * L4_RING_ELEMS, 0);

/// Connection table: client flow → backend and NAT, per CPU like Katran's (no cross-CPU
/// contention; a flow stays on one CPU under RSS, and Maglev picks the same backend anyway).
#[map(name = "LBGW_L4_FLOWS")]
pub static L4_FLOWS: LruPerCpuHashMap<FlowKey, FlowState> =
    LruPerCpuHashMap::pinned(L4_MAX_FLOWS, 0);

/// The connection table shared by all CPUs: the fallback of a per-CPU miss, for flows whose
/// packets moved to another CPU.
#[map(name = "LBGW_L4_FLOWS_SHARED")]
pub static L4_FLOWS_SHARED: LruHashMap<FlowKey, FlowState> = LruHashMap::pinned(L4_MAX_FLOWS, 0);

/// Reverse NAT: (backend, translated source) → the client and VIP. Shared by all CPUs because
/// replies arrive on whichever CPU the backend's traffic lands on.
#[map(name = "LBGW_L4_NAT")]
pub static L4_NAT: LruHashMap<FlowKey, NatState> = LruHashMap::pinned(L4_MAX_NAT, 0);

#[map(name = "LBGW_L4_AFFINITY")]
pub static L4_AFFINITY: LruHashMap<AffinityKey, AffinityState> =
    LruHashMap::pinned(L4_MAX_AFFINITY, 0);

#[map(name = "LBGW_VIP_STATS")]
static VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::pinned(MAX_VIPS, 0);

#[map(name = "LBGW_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// The run-time settings (all-zero until userspace writes them).
#[inline(always)]
pub fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

/// Whether `addr` (as a VIP key) lies in one of the first `count` pools. A bounded scan of an
/// array: cheaper than a trie for the handful of pools a site has.
/// Inline: a BPF-to-BPF call here cost ~20 ns per packet (bench-xdp, "outside the pools").
#[inline(always)]
pub fn in_pool(addr: &VipKey, count: u32) -> bool {
    let hi = u64::from_be_bytes([
        addr.addr[0],
        addr.addr[1],
        addr.addr[2],
        addr.addr[3],
        addr.addr[4],
        addr.addr[5],
        addr.addr[6],
        addr.addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr.addr[8],
        addr.addr[9],
        addr.addr[10],
        addr.addr[11],
        addr.addr[12],
        addr.addr[13],
        addr.addr[14],
        addr.addr[15],
    ]);
    // A loop bounded by the pool count, not unrolled to MAX_POOLS (the verifier follows
    // bounded loops since Linux 5.3): the unrolled scan cost stack and instructions.
    let n = count.min(MAX_POOLS);
    let mut i = 0;
    while i < n {
        if let Some(r) = POOLS.get(i) {
            let above = hi > r.first_hi || (hi == r.first_hi && lo >= r.first_lo);
            let below = hi < r.last_hi || (hi == r.last_hi && lo <= r.last_lo);
            if above && below {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// What serves (VIP, protocol, port), if anything.
#[inline(always)]
pub fn port(key: &PortKey) -> Option<PortInfo> {
    // SAFETY: a copy of a plain-old-data value.
    unsafe { PORTS.get(key) }.copied()
}

/// The VIP map entry for `key`, announced here or not.
#[inline(always)]
pub fn vip(key: &VipKey) -> Option<VipInfo> {
    // SAFETY: a copy of a plain-old-data value.
    unsafe { VIPS.get(key) }.copied()
}

/// The VIP entry for `key`, if this node announces it now.
#[inline(always)]
pub fn announced_vip(key: &VipKey) -> Option<VipInfo> {
    // SAFETY: the value is copied out immediately; userspace only replaces whole entries.
    let info = unsafe { VIPS.get(key) }.copied()?;
    announces(&info).then_some(info)
}

/// Whether this node answers for the VIP now: announced, and its deadline (the end of its
/// Lease in Kubernetes mode) not passed. The clock is read only when there is a deadline.
#[inline(always)]
pub fn announces(info: &VipInfo) -> bool {
    if info.announce_until_ns == 0 {
        return info.flags & lbgw_common::VIP_F_ANNOUNCE != 0;
    }
    // SAFETY: a helper without arguments; CLOCK_MONOTONIC, as userspace writes the deadline.
    info.announced_at(unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() })
}

/// The configuration of an interface and VLAN: untagged frames of small ifindexes from the
/// array (an inlined lookup), everything else from the hash map.
#[inline(always)]
pub fn iface(key: &IfaceKey) -> Option<IfaceInfo> {
    if key.vlan_id == 0 && key.ifindex < IFACE_SLOTS {
        let info = IFACE_ARRAY.get(key.ifindex).copied()?;
        return (info.flags & IFACE_F_ACTIVE != 0).then_some(info);
    }
    // SAFETY: a copy of a plain-old-data value.
    unsafe { IFACES.get(key) }.copied()
}

/// Adds one to a global counter (per-CPU, so no atomics are needed).
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += 1 };
    }
}

/// Adds one to a per-VIP counter chosen by `field`.
#[inline(always)]
pub fn count_vip(info: &VipInfo, field: fn(&mut VipStats) -> &mut u64) {
    count_vip_slot(info.stats_index, field);
}

/// Adds one to a counter of the VIP statistics slot `slot` (out of range: nothing).
#[inline(always)]
pub fn count_vip_slot(slot: u32, field: fn(&mut VipStats) -> &mut u64) {
    if let Some(stats) = VIP_STATS.get_ptr_mut(slot) {
        unsafe { *field(&mut *stats) += 1 };
    }
}

/// The L4 service at `index`.
#[inline(always)]
pub fn l4_service(index: u32) -> Option<L4Service> {
    L4_SERVICES.get(index).copied()
}

/// The backend in slot `index`.
#[inline(always)]
pub fn l4_backend(index: u32) -> Option<L4Backend> {
    L4_BACKENDS.get(index).copied()
}

/// The backend slot at `position` of service `service`'s ring, generation `generation`.
#[inline(always)]
pub fn l4_ring(service: u32, generation: u32, position: u32) -> Option<u32> {
    let lanes = lbgw_common::L4_RING_LANES;
    let elem =
        (service * L4_RING_GENERATIONS + (generation & 1)) * L4_RING_ELEMS + position / lanes;
    let slots = L4_RING.get(elem)?;
    let lane = (position % lanes) as usize;
    if lane >= slots.len() {
        return None;
    }
    Some(slots[lane] as u32)
}
