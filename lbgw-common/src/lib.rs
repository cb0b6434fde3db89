//! Types and names shared by lbgw's eBPF programs (`lbgw-ebpf`) and its userspace daemon (`lbgw`).
//!
//! Everything here crosses the kernel boundary through BPF maps, so every type is `#[repr(C)]`,
//! has no implicit padding (explicit `_pad` fields instead, so a `Pod` never carries
//! uninitialised bytes into the kernel) and has its size asserted at compile time.
//! Fields in network byte order carry a `_be` suffix; addresses are plain byte arrays, which
//! have no byte order.
#![no_std]

/// Names of the programs and maps in the eBPF object, used by both sides.
///
/// Map names are limited to 15 characters by the kernel (`BPF_OBJ_NAME_LEN` is 16 with the NUL).
pub mod names {
    /// The XDP program attached to announcing interfaces.
    pub const XDP_PROGRAM: &str = "lbgw_xdp";
    /// A program that passes every frame (benchmark baseline, veth peers in native mode).
    pub const PASS_PROGRAM: &str = "lbgw_pass";
    /// `HashMap<VipKey, VipInfo>`: the VIPs this node answers for.
    pub const VIPS: &str = "LBGW_VIPS";
    /// `HashMap<IfaceKey, IfaceInfo>`: tagged VLANs, and interfaces whose ifindex is too
    /// large for [`IFACE_SLOTS`](super::IFACE_SLOTS), the program answers on.
    pub const IFACES: &str = "LBGW_IFACES";
    /// `Array<IfaceInfo>` indexed by ifindex: untagged frames of interfaces with a small
    /// ifindex. Array lookups are inlined by the verifier; hash lookups cost a helper call and
    /// a hash, measurably the largest cost of an ARP reply.
    pub const IFACE_ARRAY: &str = "LBGW_IFACE_ARR";
    /// `PerCpuArray<VipStats>` indexed by [`super::VipInfo::stats_index`].
    pub const VIP_STATS: &str = "LBGW_VIP_STATS";
    /// `PerCpuArray<u64>` indexed by [`super::Counter`].
    pub const COUNTERS: &str = "LBGW_COUNTERS";
}

/// Capacity of the VIP map and of the per-VIP statistics array.
pub const MAX_VIPS: u32 = 4096;
/// Capacity of the interface hash map (interfaces × VLANs).
pub const MAX_IFACES: u32 = 256;
/// Length of the interface array: untagged interfaces with an ifindex below this are found
/// there. Physical NICs are created at boot and have small ifindexes.
pub const IFACE_SLOTS: u32 = 1024;

/// `IfaceInfo::flags`: the entry is configured (array slots of other interfaces are zero).
pub const IFACE_F_ACTIVE: u8 = 1 << 0;

/// Key of the VIP map: an IPv6 address, or an IPv4 address in its IPv4-mapped IPv6 form
/// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u8; 16],
}

impl VipKey {
    /// Key for an IPv4 address given as its four bytes in network order.
    #[inline(always)]
    pub const fn v4(octets: [u8; 4]) -> Self {
        Self {
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2],
                octets[3],
            ],
        }
    }

    /// Key for an IPv6 address given as its sixteen bytes in network order.
    #[inline(always)]
    pub const fn v6(octets: [u8; 16]) -> Self {
        Self { addr: octets }
    }
}

/// This node answers ARP / Neighbor Solicitations for the VIP.
pub const VIP_F_ANNOUNCE: u32 = 1 << 0;

/// Value of the VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipInfo {
    /// `VIP_F_*` bits.
    pub flags: u32,
    /// Slot of this VIP in the per-VIP statistics array (`< MAX_VIPS`).
    pub stats_index: u32,
}

/// Key of the interface map: the ingress interface and the 802.1Q VLAN id the frame carried
/// (0 for untagged frames; VLAN 0 is "priority tag only" in IEEE 802.1Q and never a real VLAN).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub vlan_id: u32,
}

/// Value of the interface map: what the program answers with on that interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceInfo {
    /// The MAC address replies carry as sender / target link-layer address.
    pub mac: [u8; 6],
    /// `IFACE_F_*` bits.
    pub flags: u8,
    pub _pad: u8,
}

/// Per-VIP counters, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipStats {
    /// ARP requests for the VIP answered with an ARP reply.
    pub arp_replies: u64,
    /// Neighbor Solicitations for the VIP answered with a Neighbor Advertisement.
    pub na_replies: u64,
}

/// Global counters of the XDP program, indexes of the `LBGW_COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames passed to the kernel stack untouched.
    Passed = 0,
    /// ARP requests answered.
    ArpReplied = 1,
    /// Neighbor Solicitations answered.
    NsReplied = 2,
    /// ARP or NDP frames too short or with invalid fields; passed to the kernel.
    Malformed = 3,
    /// ARP / NS for an address this node does not announce; passed.
    NotAnnounced = 4,
    /// ARP / NS for a VIP that arrived on an interface or VLAN not configured; passed.
    WrongIface = 5,
    /// Frames with more than one VLAN tag (QinQ); passed.
    StackedVlan = 6,
    /// Frames the program had to give up on (e.g. tail adjustment refused); passed.
    Aborted = 7,
}

impl Counter {
    /// Number of counters (length of the `LBGW_COUNTERS` array).
    pub const COUNT: u32 = 8;
    /// All counters, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Passed,
        Counter::ArpReplied,
        Counter::NsReplied,
        Counter::Malformed,
        Counter::NotAnnounced,
        Counter::WrongIface,
        Counter::StackedVlan,
        Counter::Aborted,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Passed => "passed",
            Counter::ArpReplied => "arp_replied",
            Counter::NsReplied => "ns_replied",
            Counter::Malformed => "malformed",
            Counter::NotAnnounced => "not_announced",
            Counter::WrongIface => "wrong_iface",
            Counter::StackedVlan => "stacked_vlan",
            Counter::Aborted => "aborted",
        }
    }
}

// The layouts are ABI: a size change must be deliberate on both sides.
const _: () = assert!(core::mem::size_of::<VipKey>() == 16);
const _: () = assert!(core::mem::size_of::<VipInfo>() == 8);
const _: () = assert!(core::mem::size_of::<IfaceKey>() == 8);
const _: () = assert!(core::mem::size_of::<IfaceInfo>() == 8);
const _: () = assert!(core::mem::size_of::<VipStats>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], Copy, made of integers and byte arrays, and have no
    // implicit padding (sizes asserted above), so every bit pattern is valid.
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for IfaceKey {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for VipStats {}
}
