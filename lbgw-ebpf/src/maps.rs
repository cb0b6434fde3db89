//! The maps shared with userspace; their names and value types come from `lbgw-common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lbgw_common::{
    Config, Counter, IFACE_F_ACTIVE, IFACE_SLOTS, IfaceInfo, IfaceKey, MAX_IFACES, MAX_POOLS,
    MAX_PORTS, MAX_VIPS, PoolRange, PortInfo, PortKey, VipInfo, VipKey, VipStats,
};

#[map(name = "LBGW_VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "LBGW_IFACES")]
static IFACES: HashMap<IfaceKey, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);

#[map(name = "LBGW_IFACE_ARR")]
static IFACE_ARRAY: Array<IfaceInfo> = Array::with_max_entries(IFACE_SLOTS, 0);

#[map(name = "LBGW_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "LBGW_POOLS")]
static POOLS: Array<PoolRange> = Array::with_max_entries(MAX_POOLS, 0);

#[map(name = "LBGW_PORTS")]
static PORTS: HashMap<PortKey, PortInfo> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "LBGW_VIP_STATS")]
static VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "LBGW_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// The run-time settings (all-zero until userspace writes them).
#[inline(always)]
pub fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

/// Whether `addr` (as a VIP key) lies in one of the first `count` pools. A bounded scan of an
/// array: cheaper than a trie for the handful of pools a site has.
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
    let mut i = 0;
    while i < MAX_POOLS {
        if i >= count {
            break;
        }
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

/// The VIP entry for `key`, if this node announces it.
#[inline(always)]
pub fn announced_vip(key: &VipKey) -> Option<VipInfo> {
    // SAFETY: the value is copied out immediately; userspace only replaces whole entries.
    let info = unsafe { VIPS.get(key) }.copied()?;
    if info.flags & lbgw_common::VIP_F_ANNOUNCE == 0 {
        return None;
    }
    Some(info)
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
