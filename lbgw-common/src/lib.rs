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
    /// `Array<Config>` of one entry: settings userspace changes at run time.
    pub const CONFIG: &str = "LBGW_CONFIG";
    /// `Array<PoolRange>`: the LoadBalancer pools, the first `Config::pool_count` entries.
    pub const POOLS: &str = "LBGW_POOLS";
    /// `HashMap<PortKey, PortInfo>`: the (VIP, protocol, port) that something serves.
    pub const PORTS: &str = "LBGW_PORTS";
}

/// Capacity of the VIP map and of the per-VIP statistics array.
pub const MAX_VIPS: u32 = 4096;
/// Capacity of the pool array: pools are few (a CIDR or two per site).
pub const MAX_POOLS: u32 = 64;
/// Capacity of the served-ports map (VIPs × ports).
pub const MAX_PORTS: u32 = 16384;

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
    /// ICMP / ICMPv6 echo requests to the VIP answered.
    pub echo_replies: u64,
    /// TCP/UDP packets to a port of the VIP that nothing serves, dropped.
    pub dropped_unserved: u64,
    /// Packets to the VIP passed on to the stack (served ports, other ICMP, fragments).
    pub passed: u64,
}

/// `Config::flags`: drop traffic to unallocated pool addresses and unserved VIP ports.
pub const CONFIG_F_EARLY_DROP: u32 = 1 << 0;
/// `Config::flags`: answer ICMP / ICMPv6 echo requests to VIPs.
pub const CONFIG_F_ECHO: u32 = 1 << 1;

/// Run-time settings of the XDP program (single entry of the `LBGW_CONFIG` array). All-zero
/// (before userspace writes it) means: answer ARP/NDP only, pass everything else.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// `CONFIG_F_*` bits.
    pub flags: u32,
    /// Number of valid entries at the start of the pool array (`<= MAX_POOLS`).
    pub pool_count: u32,
}

/// An inclusive address range of a pool, as 128-bit integers split in halves (host order), with
/// IPv4 in its IPv4-mapped form like [`VipKey`]. Comparing integers is cheaper than a trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PoolRange {
    pub first_hi: u64,
    pub first_lo: u64,
    pub last_hi: u64,
    pub last_lo: u64,
}

/// IP protocol numbers used in [`PortKey::proto`] (IANA).
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// Key of the served-ports map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// The VIP, as in [`VipKey`].
    pub addr: [u8; 16],
    /// Destination port, network byte order.
    pub port_be: u16,
    /// `PROTO_*`.
    pub proto: u8,
    pub _pad: u8,
}

/// What serves a port: traffic goes to the local stack (a Gateway listener, steered to the
/// proxy) — the only action so far; L4 Services forwarded in XDP will add others.
pub const PORT_ACTION_LOCAL: u32 = 1;

/// Value of the served-ports map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortInfo {
    /// `PORT_ACTION_*`.
    pub action: u32,
    /// The VIP's statistics slot (as in [`VipInfo::stats_index`]), so a served packet is
    /// counted without a second lookup in the VIP map.
    pub stats_index: u32,
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
    /// Packets to a pool address that is not allocated, dropped.
    DroppedUnallocated = 8,
    /// TCP/UDP packets to a VIP port that nothing serves, dropped.
    DroppedUnserved = 9,
    /// ICMP / ICMPv6 echo requests to a VIP answered.
    EchoReplied = 10,
    /// Packets to a VIP passed to the stack (served port, other ICMP, fragments, ...).
    VipPassed = 11,
    /// Packets to a VIP too short or malformed to classify, dropped.
    DroppedMalformed = 12,
}

impl Counter {
    /// Number of counters (length of the `LBGW_COUNTERS` array).
    pub const COUNT: u32 = 13;
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
        Counter::DroppedUnallocated,
        Counter::DroppedUnserved,
        Counter::EchoReplied,
        Counter::VipPassed,
        Counter::DroppedMalformed,
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
            Counter::DroppedUnallocated => "dropped_unallocated",
            Counter::DroppedUnserved => "dropped_unserved",
            Counter::EchoReplied => "echo_replied",
            Counter::VipPassed => "vip_passed",
            Counter::DroppedMalformed => "dropped_malformed",
        }
    }
}

// The layouts are ABI: a size change must be deliberate on both sides.
const _: () = assert!(core::mem::size_of::<VipKey>() == 16);
const _: () = assert!(core::mem::size_of::<VipInfo>() == 8);
const _: () = assert!(core::mem::size_of::<IfaceKey>() == 8);
const _: () = assert!(core::mem::size_of::<IfaceInfo>() == 8);
const _: () = assert!(core::mem::size_of::<VipStats>() == 40);
const _: () = assert!(core::mem::size_of::<Config>() == 8);
const _: () = assert!(core::mem::size_of::<PoolRange>() == 32);
const _: () = assert!(core::mem::size_of::<PortKey>() == 20);
const _: () = assert!(core::mem::size_of::<PortInfo>() == 8);

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
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for PoolRange {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortInfo {}
}
