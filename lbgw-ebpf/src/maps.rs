//! The maps shared with userspace; their names and value types come from `lbgw-common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lbgw_common::{
    Counter, IFACE_F_ACTIVE, IFACE_SLOTS, IfaceInfo, IfaceKey, MAX_IFACES, MAX_VIPS, VipInfo,
    VipKey, VipStats,
};

#[map(name = "LBGW_VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "LBGW_IFACES")]
static IFACES: HashMap<IfaceKey, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);

#[map(name = "LBGW_IFACE_ARR")]
static IFACE_ARRAY: Array<IfaceInfo> = Array::with_max_entries(IFACE_SLOTS, 0);

#[map(name = "LBGW_VIP_STATS")]
static VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "LBGW_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

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
    if let Some(stats) = VIP_STATS.get_ptr_mut(info.stats_index) {
        unsafe { *field(&mut *stats) += 1 };
    }
}
