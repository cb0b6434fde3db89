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
    /// The `sk_lookup` program handing VIP connections to the proxy's listening sockets.
    pub const SK_LOOKUP_PROGRAM: &str = "lbgw_sk_lookup";
    /// SOCKMAP of the proxy's listening sockets, indexed by Gateway port.
    pub const LISTENERS: &str = "LBGW_LISTENERS";
    pub const L4_SERVICES: &str = "LBGW_L4_SVCS";
    pub const L4_BACKENDS: &str = "LBGW_L4_BACKENDS";
    pub const L4_RING: &str = "LBGW_L4_RING";
    pub const L4_FLOWS: &str = "LBGW_L4_FLOWS";
    pub const L4_FLOWS_SHARED: &str = "LBGW_L4_FLOWS_SHARED";
    pub const L4_NAT: &str = "LBGW_L4_NAT";
    pub const L4_AFFINITY: &str = "LBGW_L4_AFFINITY";
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
    /// With `VIP_F_ANNOUNCE`: answer only before this `CLOCK_MONOTONIC` time in ns (the
    /// clock of `bpf_ktime_get_ns`); 0 for no deadline. In Kubernetes mode it is the end of
    /// the VIP's Lease as last renewed, so that a program left attached by an lbgw that died
    /// stops answering before another node may take the Lease over.
    pub announce_until_ns: u64,
}

impl VipInfo {
    /// Whether the VIP is answered for (ARP, NDP) at `now_ns`.
    #[inline(always)]
    pub fn announced_at(&self, now_ns: u64) -> bool {
        self.flags & VIP_F_ANNOUNCE != 0
            && (self.announce_until_ns == 0 || now_ns < self.announce_until_ns)
    }
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
    /// Packets to an L4 Service port of the VIP forwarded to a backend in XDP.
    pub forwarded: u64,
}

/// `Config::flags`: drop traffic to unallocated pool addresses and unserved VIP ports.
pub const CONFIG_F_EARLY_DROP: u32 = 1 << 0;
/// `Config::flags`: answer ICMP / ICMPv6 echo requests to VIPs.
pub const CONFIG_F_ECHO: u32 = 1 << 1;
/// `Config::flags`: the kernel has local routes for the VIPs lbgw's proxy serves, so it would
/// answer ARP for them itself; ARP requests for VIPs this node does not announce are dropped.
pub const CONFIG_F_LOCAL_ROUTES: u32 = 1 << 2;
/// `Config::flags`: some L4 Service is forwarded without source NAT (`externalTrafficPolicy:
/// Local`): replies are recognised by a NAT-table lookup of every TCP/UDP packet, not only of
/// those to the source-NAT port range.
pub const CONFIG_F_L4_DNAT_ONLY: u32 = 1 << 3;

/// Run-time settings of the XDP program (single entry of the `LBGW_CONFIG` array). All-zero
/// (before userspace writes it) means: answer ARP/NDP only, pass everything else.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// `CONFIG_F_*` bits.
    pub flags: u32,
    /// Number of valid entries at the start of the pool array (`<= MAX_POOLS`).
    pub pool_count: u32,
    /// First port of the range L4 source NAT allocates from (host order).
    pub snat_port_min: u16,
    /// Number of ports in that range (0: no source NAT, L4 forwarding of SNAT Services off).
    pub snat_port_count: u16,
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

/// What serves a port: the local stack (e.g. a Gateway listener lbgw's proxy does not
/// implement, such as TCP or UDP listeners): passed.
pub const PORT_ACTION_LOCAL: u32 = 1;
/// A Gateway listener of lbgw's proxy: passed, and the `sk_lookup` program hands the
/// connection to the proxy socket at index [`PortInfo::target`] of `LBGW_LISTENERS` (plus
/// [`LISTENERS_V6_OFFSET`] for IPv6).
pub const PORT_ACTION_PROXY: u32 = 2;
/// An L4 LoadBalancer Service port: forwarded in XDP to a backend of the L4 service at index
/// [`PortInfo::target`] of `LBGW_L4_SVCS`.
pub const PORT_ACTION_L4: u32 = 3;

/// Value of the served-ports map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortInfo {
    /// `PORT_ACTION_*`.
    pub action: u32,
    /// The VIP's statistics slot (as in [`VipInfo::stats_index`]), so a served packet is
    /// counted without a second lookup in the VIP map.
    pub stats_index: u32,
    /// Listener socket index (`PORT_ACTION_PROXY`) or L4 service index (`PORT_ACTION_L4`).
    pub target: u32,
    pub _pad: u32,
}

/// Entries of the listener SOCKMAP: an IPv4 and an IPv6 socket per possible port number (the
/// kernel will not hand an IPv4 connection to a dual-stack socket bound to `::1`).
pub const MAX_LISTENERS: u32 = 2 * 65536;
/// Index offset of the IPv6 sockets in the listener SOCKMAP.
pub const LISTENERS_V6_OFFSET: u32 = 65536;

/// L4 services (one per VIP, protocol and port of a LoadBalancer Service) the data plane holds.
pub const MAX_L4_SERVICES: u32 = 128;
/// Backends over all L4 services.
pub const MAX_L4_BACKENDS: u32 = 4096;
/// Size of each service's Maglev lookup table: a prime, as Maglev requires (Eisenbud et al.,
/// NSDI 2016, §3.4: M ≥ 100·N keeps the imbalance under 1% for N up to 163 backends).
pub const L4_RING_SIZE: u32 = 16381;
/// Backend indices per ring element: array map values take 8 bytes each whatever their size
/// (the kernel rounds `value_size` up to 8), so four `u16` indices share one.
pub const L4_RING_LANES: u32 = 4;
/// Ring elements per (service, generation): `ceil(L4_RING_SIZE / L4_RING_LANES)`.
pub const L4_RING_ELEMS: u32 = L4_RING_SIZE.div_ceil(L4_RING_LANES);
/// Each service has two ring generations: userspace writes the idle one, then flips
/// [`L4Service::generation`], so the program never sees a half-written table.
pub const L4_RING_GENERATIONS: u32 = 2;
/// Connection-table entries (per CPU) and NAT-table entries.
pub const L4_MAX_FLOWS: u32 = 65536;
pub const L4_MAX_NAT: u32 = 131072;
pub const L4_MAX_AFFINITY: u32 = 65536;

/// `L4Service::flags`: the service has backends (its ring is valid).
pub const L4_SVC_F_ACTIVE: u32 = 1 << 0;
/// `L4Service::flags`: rewrite the source to the node's address (`externalTrafficPolicy:
/// Cluster`); without it only the destination is translated and the client address is kept
/// (`Local`).
pub const L4_SVC_F_SNAT: u32 = 1 << 1;
/// `L4Service::flags`: `sessionAffinity: ClientIP`.
pub const L4_SVC_F_AFFINITY: u32 = 1 << 2;

/// An L4 service: one (VIP, protocol, port) of a LoadBalancer Service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct L4Service {
    /// `L4_SVC_F_*` bits.
    pub flags: u32,
    /// Which of the two ring generations is live (0 or 1).
    pub generation: u32,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub affinity_timeout_s: u32,
    pub _pad: u32,
}

/// `L4Backend::flags`: the slot holds a backend (possibly not ready, i.e. not in the ring, but
/// still serving the flows it has).
pub const L4_BACKEND_F_EXISTS: u8 = 1 << 0;
/// `L4Backend::flags`: the endpoint is ready: new flows (and session affinity) may pick it.
pub const L4_BACKEND_F_READY: u8 = 1 << 1;

/// A backend endpoint: where forwarded packets go.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct L4Backend {
    /// Address, IPv4 in its IPv4-mapped form as in [`VipKey`].
    pub addr: [u8; 16],
    /// Port, network byte order.
    pub port_be: u16,
    /// `L4_BACKEND_F_*` bits.
    pub flags: u8,
    pub _pad: u8,
    /// The L4 service the slot belongs to.
    pub service: u32,
}

/// A flow as seen on the wire: key of the connection table (client → VIP) and of the NAT
/// table (backend → the address the backend replies to).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Connection-table value: where a client flow goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// Backend slot; the flow is re-balanced when the slot no longer holds `backend_addr`.
    pub backend: u32,
    /// Source port after NAT, network byte order (the client's own without source NAT).
    pub nat_port_be: u16,
    pub backend_port_be: u16,
    pub backend_addr: [u8; 16],
    /// Source address after NAT (the client's own without source NAT).
    pub nat_addr: [u8; 16],
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the cached route below was looked up and
    /// the NAT entry's `last_seen_ns` refreshed. A packet of a flow whose entry is older than
    /// [`L4_ROUTE_TTL_NS`] does both again, so a flow costs one FIB lookup and one write of
    /// the shared NAT table per second, not per packet. A time in the future counts as fresh.
    pub refreshed_ns: u64,
    /// The route to the backend from the last FIB lookup: egress interface, and the source
    /// and destination MACs of forwarded frames.
    pub route_ifindex: u32,
    pub route_smac: [u8; 6],
    pub route_dmac: [u8; 6],
}

/// How long a flow forwards with its cached route before the FIB is asked again: a changed
/// neighbour (a backend's new MAC) or route is picked up within this time.
pub const L4_ROUTE_TTL_NS: u64 = 1_000_000_000;

/// NAT-table value: how to translate a reply back to the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatState {
    pub client_addr: [u8; 16],
    pub vip_addr: [u8; 16],
    pub client_port_be: u16,
    pub vip_port_be: u16,
    /// Interface the client's packets arrive on: replies leave through it.
    pub ifindex: u32,
    /// `bpf_ktime_get_ns()` when the flow last sent a packet (refreshed about once a second).
    pub last_seen_ns: u64,
    /// Source MAC of the client's packets (the client, or the router in front of it), the
    /// destination of replies: the node itself may never have resolved the client's address,
    /// since XDP answered its ARP for the VIP.
    pub client_mac: [u8; 6],
    /// Destination MAC of the client's packets (this node's interface), the source of replies.
    pub node_mac: [u8; 6],
    pub _pad: u32,
}

/// Key of the session-affinity table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AffinityKey {
    pub service: u32,
    pub client: [u8; 16],
}

/// Value of the session-affinity table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AffinityState {
    pub backend: u32,
    pub _pad: u32,
    pub last_seen_ns: u64,
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
    /// An ARP request for a VIP another node announces, dropped so the kernel (which has a
    /// local route for it) does not answer.
    ArpDroppedNotOwner = 13,
    /// Packets of L4 Service flows forwarded to a backend.
    L4Forwarded = 14,
    /// Backend replies translated back to the client.
    L4Reversed = 15,
    /// L4 Service packets dropped: no backend is ready.
    L4NoBackend = 16,
    /// L4 Service packets dropped: no route, or the next hop is not resolved yet (userspace
    /// keeps backends' neighbour entries resolved).
    L4NoRoute = 17,
    /// L4 Service packets dropped: no free source-NAT port for the backend.
    L4NatExhausted = 18,
    /// L4 Service packets dropped: IP fragments (a fragmented datagram cannot be balanced
    /// by its ports).
    L4Fragment = 19,
    /// L4 Service flows whose backend was removed, re-balanced to another backend.
    L4Rebalanced = 20,
}

impl Counter {
    /// Number of counters (length of the `LBGW_COUNTERS` array).
    pub const COUNT: u32 = 21;
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
        Counter::ArpDroppedNotOwner,
        Counter::L4Forwarded,
        Counter::L4Reversed,
        Counter::L4NoBackend,
        Counter::L4NoRoute,
        Counter::L4NatExhausted,
        Counter::L4Fragment,
        Counter::L4Rebalanced,
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
            Counter::ArpDroppedNotOwner => "arp_dropped_not_owner",
            Counter::L4Forwarded => "l4_forwarded",
            Counter::L4Reversed => "l4_reversed",
            Counter::L4NoBackend => "l4_no_backend",
            Counter::L4NoRoute => "l4_no_route",
            Counter::L4NatExhausted => "l4_nat_exhausted",
            Counter::L4Fragment => "l4_fragment",
            Counter::L4Rebalanced => "l4_rebalanced",
        }
    }
}

// The layouts are ABI: a size change must be deliberate on both sides.
const _: () = assert!(core::mem::size_of::<VipKey>() == 16);
const _: () = assert!(core::mem::size_of::<VipInfo>() == 16);
const _: () = assert!(core::mem::size_of::<IfaceKey>() == 8);
const _: () = assert!(core::mem::size_of::<IfaceInfo>() == 8);
const _: () = assert!(core::mem::size_of::<VipStats>() == 48);
const _: () = assert!(core::mem::size_of::<Config>() == 12);
const _: () = assert!(core::mem::size_of::<PoolRange>() == 32);
const _: () = assert!(core::mem::size_of::<PortKey>() == 20);
const _: () = assert!(core::mem::size_of::<PortInfo>() == 16);
const _: () = assert!(core::mem::size_of::<L4Service>() == 16);
const _: () = assert!(core::mem::size_of::<L4Backend>() == 24);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowState>() == 64);
const _: () = assert!(core::mem::size_of::<NatState>() == 64);
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 20);
const _: () = assert!(core::mem::size_of::<AffinityState>() == 16);
const _: () = assert!(L4_RING_ELEMS * L4_RING_LANES >= L4_RING_SIZE);
const _: () = assert!(MAX_L4_BACKENDS <= u16::MAX as u32);

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
    unsafe impl aya::Pod for L4Service {}
    unsafe impl aya::Pod for L4Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for NatState {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityState {}
}
