//! L4 LoadBalancer Services, forwarded in XDP (Katran's design, with full NAT instead of
//! IP-in-IP so backends need no tunnel):
//! - a client packet to (VIP, proto, port) finds its flow in the per-CPU connection table, or
//!   picks a backend from the service's Maglev ring (Eisenbud et al., NSDI 2016) by a hash of
//!   its 5-tuple (of the client address alone with `sessionAffinity: ClientIP`);
//! - destination NAT to the backend and, for `externalTrafficPolicy: Cluster`, source NAT to
//!   the node's address on the route to the backend (`BPF_FIB_LOOKUP_SRC`) and a port from the
//!   configured range, recorded in the shared NAT table;
//! - replies from the backend are found in the NAT table, translated back and sent out of the
//!   interface the client's packets came in on, to the MAC they came from;
//! - checksums are updated incrementally (RFC 1624), TTL / hop limit decremented as a router
//!   does (RFC 791 §3.2, RFC 8200 §3), and the frame is sent out of the interface the kernel's
//!   FIB chose (`XDP_TX` when it is the ingress interface, `XDP_REDIRECT` otherwise);
//! - the FIB's answer (egress interface and MACs) is cached in the flow entry: a known flow
//!   asks the FIB again only when its entry is older than `L4_ROUTE_TTL_NS` (1 s), when it
//!   also refreshes its NAT entry, so the per-packet path has no FIB lookup and no map write.
//!
//! A flow whose backend was removed is re-balanced: its next packet picks a backend from the
//! current ring (a TCP backend then answers the unknown connection with a reset, so clients
//! reconnect at once instead of timing out). Backends that are only not ready keep their flows.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, BPF_NOEXIST, bpf_fib_lookup},
    helpers::{bpf_csum_diff, bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lbgw_common::{
    AffinityKey, AffinityState, CONFIG_F_L4_DNAT_ONLY, Config, Counter, FlowKey, FlowState,
    L4_BACKEND_F_EXISTS, L4_BACKEND_F_READY, L4_RING_SIZE, L4_ROUTE_TTL_NS, L4_SVC_F_ACTIVE,
    L4_SVC_F_AFFINITY, L4_SVC_F_SNAT, L4Backend, L4Service, NatState, PROTO_TCP, PROTO_UDP,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    eth::L2,
    ip::{self, L3},
    maps::{self, L4_AFFINITY, L4_FLOWS, L4_FLOWS_SHARED, L4_NAT},
    packet::{Verdict, ptr_at},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// A NAT port whose flow was idle this long may be given to another flow (TCP: like an
/// established conntrack entry that saw no traffic for 2 hours; UDP: nf_conntrack's 120 s
/// `udp_timeout_stream`).
const TCP_IDLE_NS: u64 = 7200 * 1_000_000_000;
const UDP_IDLE_NS: u64 = 120 * 1_000_000_000;
/// Source-NAT ports tried per new flow before giving up.
const NAT_PROBES: u32 = 8;

/// Working memory of one packet, in a per-CPU array rather than on the stack: the flow key,
/// states and FIB parameters together exceed the 512-byte BPF stack.
struct Scratch {
    key: FlowKey,
    reverse: FlowKey,
    state: FlowState,
    nat: NatState,
    fib: bpf_fib_lookup,
    route: Route,
    new: Rewrite,
}

#[map(name = "LBGW_L4_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Where the FIB says a packet goes.
struct Route {
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
    /// The source address the kernel would use on that route (asked for with
    /// `BPF_FIB_LOOKUP_SRC`), IPv4 mapped.
    src: [u8; 16],
}

/// Forwards a packet of L4 service `service`, which the classifier found serving its
/// destination port. A function of its own (a BPF-to-BPF call) called by the program after
/// the classifier returned, so their stack frames are not stacked; it parses the headers again
/// (a few nanoseconds) rather than receive them.
#[inline(never)]
pub fn forward(ctx: &XdpContext, service: u32, stats_index: u32) -> Verdict {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return Verdict::Drop(Counter::Aborted);
    };
    // SAFETY: the per-CPU scratch entry is ours until the program returns.
    let s = unsafe { &mut *s };
    let headers = match crate::eth::parse(ctx) {
        Ok(l2) => ip::parse(ctx, &l2).map(|l3| (l2, l3)),
        Err(reason) => Err(reason),
    };
    let Ok((l2, l3)) = headers else {
        return Verdict::Drop(Counter::DroppedMalformed);
    };
    match try_forward(ctx, &l2, &l3, service, s) {
        // TTL / hop limit expired: left to the kernel, which answers Time Exceeded.
        Ok(Verdict::Pass(_)) => {
            maps::count_vip_slot(stats_index, |s| &mut s.passed);
            Verdict::Pass(Counter::VipPassed)
        }
        Ok(verdict) => {
            maps::count(Counter::L4Forwarded);
            maps::count_vip_slot(stats_index, |s| &mut s.forwarded);
            verdict
        }
        Err(reason) => {
            maps::count_vip_slot(stats_index, |s| &mut s.dropped_unserved);
            Verdict::Drop(reason)
        }
    }
}

#[inline(always)]
fn try_forward(
    ctx: &XdpContext,
    l2: &L2,
    l3: &L3,
    index: u32,
    s: &mut Scratch,
) -> Result<Verdict, Counter> {
    if l3.fragment {
        return Err(Counter::L4Fragment);
    }
    if l2.vlan_id != 0 {
        // The FIB answers for the untagged device; VLAN sub-interfaces are not handled.
        return Err(Counter::L4NoRoute);
    }
    // The transport header must reach its checksum, which `rewrite` updates: checked before
    // a truncated packet can take a flow entry and a NAT port.
    let check_end = l3.l4_offset + if l3.proto == PROTO_TCP { 18 } else { 8 };
    ptr_at::<u8>(ctx, check_end - 1).ok_or(Counter::DroppedMalformed)?;
    let ports: *const [u8; 4] = ptr_at(ctx, l3.l4_offset).ok_or(Counter::DroppedMalformed)?;
    let ports = unsafe { *ports };
    ip::source_into(ctx, l2, l3.ipv6, &mut s.key.src).ok_or(Counter::DroppedMalformed)?;
    s.key.dst = l3.dst.addr;
    s.key.sport_be = u16::from_ne_bytes([ports[0], ports[1]]);
    s.key.dport_be = u16::from_ne_bytes([ports[2], ports[3]]);
    s.key.proto = l3.proto;
    s.key._pad = [0; 3];
    let service = maps::l4_service(index).ok_or(Counter::L4NoBackend)?;
    let snat = service.flags & L4_SVC_F_SNAT != 0;
    let now = unsafe { bpf_ktime_get_ns() };

    let mut known = false;
    // In a per-CPU LRU map an entry created on one CPU exists, zeroed, on the others: a zero
    // backend port (never a real one) marks "not seen on this CPU", not a removed backend.
    // A flow's packets can reach another CPU (generic XDP runs on the CPU of whatever
    // delivered the frame; RSS can be reprogrammed): a miss here falls back to the shared
    // table, so the flow keeps its backend even when the ring changed meanwhile.
    let mut found = false;
    if let Some(state) = unsafe { L4_FLOWS.get(&s.key) }.filter(|st| st.backend_port_be != 0) {
        s.state = *state;
        found = true;
    } else if let Some(state) = unsafe { L4_FLOWS_SHARED.get(&s.key) } {
        s.state = *state;
        found = true;
        let _ = L4_FLOWS.insert(&s.key, &s.state, 0);
    }
    if found {
        match maps::l4_backend(s.state.backend) {
            Some(b) if same_backend(&b, &s.state, index) => known = true,
            _ => maps::count(Counter::L4Rebalanced),
        }
    }
    if known {
        // The program never writes a time in the future (the clock is monotonic); one that a
        // test wrote to hold the cache counts as fresh.
        if now.saturating_sub(s.state.refreshed_ns) > L4_ROUTE_TTL_NS {
            // A failed lookup drops the packet and leaves the entry as it was, so the next
            // packet asks again.
            route(ctx, l3.ipv6, false, s)?;
            if snat {
                refresh_nat(s, now);
            }
            cache_route(s, now);
            let _ = L4_FLOWS.insert(&s.key, &s.state, 0);
        } else {
            s.route.ifindex = s.state.route_ifindex;
            s.route.smac = s.state.route_smac;
            s.route.dmac = s.state.route_dmac;
        }
    } else {
        if service.flags & L4_SVC_F_ACTIVE == 0 {
            return Err(Counter::L4NoBackend);
        }
        let (slot, backend) = pick(&s.key, index, &service, now)?;
        s.state = FlowState {
            backend: slot,
            nat_port_be: s.key.sport_be,
            backend_port_be: backend.port_be,
            backend_addr: backend.addr,
            nat_addr: s.key.src,
            refreshed_ns: now,
            route_ifindex: 0,
            route_smac: [0; 6],
            route_dmac: [0; 6],
        };
        route(ctx, l3.ipv6, snat, s)?;
        cache_route(s, now);
        let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::DroppedMalformed)?;
        s.nat = NatState {
            client_addr: s.key.src,
            vip_addr: s.key.dst,
            client_port_be: s.key.sport_be,
            vip_port_be: s.key.dport_be,
            ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
            last_seen_ns: now,
            client_mac: unsafe { (*eth).src_addr },
            node_mac: unsafe { (*eth).dst_addr },
            _pad: 0,
        };
        if snat {
            s.state.nat_addr = s.route.src;
            nat_port(s, now)?;
        } else {
            s.reverse = FlowKey {
                src: backend.addr,
                dst: s.key.src,
                sport_be: backend.port_be,
                dport_be: s.key.sport_be,
                proto: s.key.proto,
                _pad: [0; 3],
            };
            L4_NAT
                .insert(&s.reverse, &s.nat, 0)
                .map_err(|_| Counter::L4NatExhausted)?;
        }
        let _ = L4_FLOWS.insert(&s.key, &s.state, 0);
        let _ = L4_FLOWS_SHARED.insert(&s.key, &s.state, 0);
    }
    s.new = Rewrite::new(
        &s.state.nat_addr,
        &s.state.backend_addr,
        s.state.nat_port_be,
        s.state.backend_port_be,
    );
    rewrite(ctx, l2, l3, s)
}

/// Whether `l3` may be a backend's reply that [`reverse`] translates: a TCP/UDP packet, not
/// a fragment, to the source-NAT port range (with `externalTrafficPolicy: Local` services,
/// any port: their replies go to the client's own). Inline, so most packets are settled
/// without the call.
#[inline(always)]
pub fn maybe_reply(ctx: &XdpContext, l3: &L3, cfg: &Config) -> bool {
    if !matches!(l3.proto, PROTO_TCP | PROTO_UDP) || !l3.has_ports || l3.fragment {
        return false;
    }
    if cfg.flags & CONFIG_F_L4_DNAT_ONLY != 0 {
        return true;
    }
    let Some(ports) = ptr_at::<[u8; 4]>(ctx, l3.l4_offset) else {
        return false;
    };
    let ports = unsafe { *ports };
    // Source-NAT replies come back to the NAT port range: everything else is not ours.
    let port = u16::from_be_bytes([ports[2], ports[3]]).wrapping_sub(cfg.snat_port_min);
    port < cfg.snat_port_count
}

/// Translates a backend's reply back to the client, if the packet is one (the program calls
/// it when the classifier answered [`Verdict::Reply`], after [`maybe_reply`]). `None`: not an
/// L4 reply. Called from the program, not the classifier, so their stack frames are not
/// stacked; it parses the IP header again (a few nanoseconds) rather than receive it.
#[inline(never)]
pub fn reverse(ctx: &XdpContext, l2: &L2) -> Option<Verdict> {
    let l3 = ip::parse(ctx, l2).ok()?;
    let l3 = &l3;
    let ports: *const [u8; 4] = ptr_at(ctx, l3.l4_offset)?;
    let ports = unsafe { *ports };
    let dport_be = u16::from_ne_bytes([ports[2], ports[3]]);
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the per-CPU scratch entry is ours until the program returns.
    let s = unsafe { &mut *s };
    ip::source_into(ctx, l2, l3.ipv6, &mut s.key.src)?;
    s.key.dst = l3.dst.addr;
    s.key.sport_be = u16::from_ne_bytes([ports[0], ports[1]]);
    s.key.dport_be = dport_be;
    s.key.proto = l3.proto;
    s.key._pad = [0; 3];
    s.nat = *unsafe { L4_NAT.get(&s.key) }?;
    // Back the way the client's packets came: no FIB lookup (the node may not even have a
    // neighbour entry for the client, whose ARP for the VIP XDP answered).
    s.route.ifindex = s.nat.ifindex;
    s.route.smac = s.nat.node_mac;
    s.route.dmac = s.nat.client_mac;
    s.new = Rewrite::new(
        &s.nat.vip_addr,
        &s.nat.client_addr,
        s.nat.vip_port_be,
        s.nat.client_port_be,
    );
    let verdict = rewrite(ctx, l2, l3, s);
    Some(match verdict {
        Ok(Verdict::Pass(reason)) => Verdict::Pass(reason),
        Ok(v) => {
            maps::count(Counter::L4Reversed);
            v
        }
        Err(reason) => Verdict::Drop(reason),
    })
}

#[inline(always)]
fn same_backend(b: &L4Backend, state: &FlowState, service: u32) -> bool {
    b.flags & L4_BACKEND_F_EXISTS != 0
        && b.service == service
        && b.port_be == state.backend_port_be
        && b.addr == state.backend_addr
}

/// A backend for a new flow: the client's affinity entry while it is fresh, else the ring.
#[inline(always)]
fn pick(
    key: &FlowKey,
    index: u32,
    service: &L4Service,
    now: u64,
) -> Result<(u32, L4Backend), Counter> {
    let affinity = service.flags & L4_SVC_F_AFFINITY != 0;
    let akey = AffinityKey {
        service: index,
        client: key.src,
    };
    if affinity {
        if let Some(a) = unsafe { L4_AFFINITY.get(&akey) } {
            let timeout = service.affinity_timeout_s as u64 * 1_000_000_000;
            let slot = a.backend;
            if now.wrapping_sub(a.last_seen_ns) < timeout {
                if let Some(b) = maps::l4_backend(slot) {
                    if b.flags & L4_BACKEND_F_READY != 0 && b.service == index {
                        let fresh = AffinityState {
                            backend: slot,
                            _pad: 0,
                            last_seen_ns: now,
                        };
                        let _ = L4_AFFINITY.insert(&akey, &fresh, 0);
                        return Ok((slot, b));
                    }
                }
            }
        }
    }
    let hash = if affinity {
        hash_addr(0x6c62_6777, &key.src)
    } else {
        hash_flow(key)
    };
    let position = hash % L4_RING_SIZE;
    let slot = maps::l4_ring(index, service.generation, position).ok_or(Counter::L4NoBackend)?;
    let backend = maps::l4_backend(slot).ok_or(Counter::L4NoBackend)?;
    if backend.flags & L4_BACKEND_F_EXISTS == 0 || backend.service != index {
        return Err(Counter::L4NoBackend);
    }
    if affinity {
        let fresh = AffinityState {
            backend: slot,
            _pad: 0,
            last_seen_ns: now,
        };
        let _ = L4_AFFINITY.insert(&akey, &fresh, 0);
    }
    Ok((slot, backend))
}

/// Picks the source-NAT port of a new flow into `s.state.nat_port_be`: a hash of the flow
/// chooses where to start in the range; a port is taken when its NAT entry is free, already
/// this flow's (seen first on another CPU), or idle past the protocol's timeout.
#[inline(always)]
fn nat_port(s: &mut Scratch, now: u64) -> Result<(), Counter> {
    let cfg = maps::config();
    if cfg.snat_port_count == 0 {
        return Err(Counter::L4NatExhausted);
    }
    let idle = if s.key.proto == PROTO_TCP {
        TCP_IDLE_NS
    } else {
        UDP_IDLE_NS
    };
    let start = hash_flow(&s.key);
    s.reverse = FlowKey {
        src: s.state.backend_addr,
        dst: s.state.nat_addr,
        sport_be: s.state.backend_port_be,
        dport_be: 0,
        proto: s.key.proto,
        _pad: [0; 3],
    };
    let mut i = 0;
    while i < NAT_PROBES {
        let port = cfg.snat_port_min as u32 + (start.wrapping_add(i) % cfg.snat_port_count as u32);
        let port_be = (port as u16).to_be();
        s.reverse.dport_be = port_be;
        let taken = match unsafe { L4_NAT.get(&s.reverse) } {
            None => L4_NAT
                .insert(&s.reverse, &s.nat, BPF_NOEXIST as u64)
                .is_ok(),
            Some(e) => {
                let ours = e.client_addr == s.nat.client_addr
                    && e.client_port_be == s.nat.client_port_be
                    && e.vip_addr == s.nat.vip_addr
                    && e.vip_port_be == s.nat.vip_port_be;
                (ours || now.wrapping_sub(e.last_seen_ns) > idle)
                    && L4_NAT.insert(&s.reverse, &s.nat, 0).is_ok()
            }
        };
        if taken {
            s.state.nat_port_be = port_be;
            return Ok(());
        }
        i += 1;
    }
    Err(Counter::L4NatExhausted)
}

/// Keeps the route just looked up (`s.route`) in the flow entry, as of `now`.
#[inline(always)]
fn cache_route(s: &mut Scratch, now: u64) {
    s.state.route_ifindex = s.route.ifindex;
    s.state.route_smac = s.route.smac;
    s.state.route_dmac = s.route.dmac;
    s.state.refreshed_ns = now;
}

/// Marks the flow's NAT entry as used now, so its port is not given away as idle.
#[inline(always)]
fn refresh_nat(s: &mut Scratch, now: u64) {
    s.reverse = FlowKey {
        src: s.state.backend_addr,
        dst: s.state.nat_addr,
        sport_be: s.state.backend_port_be,
        dport_be: s.state.nat_port_be,
        proto: s.key.proto,
        _pad: [0; 3],
    };
    if let Some(e) = L4_NAT.get_ptr_mut(&s.reverse) {
        unsafe { (*e).last_seen_ns = now };
    }
}

/// Asks the kernel's FIB for the route from `s.state.nat_addr` to `s.state.backend_addr`,
/// leaving by any interface, into `s.route` (with the source address the kernel would pick
/// when `want_src`).
#[inline(always)]
fn route(ctx: &XdpContext, ipv6: bool, want_src: bool, s: &mut Scratch) -> Result<(), Counter> {
    let p = &mut s.fib;
    // SAFETY: plain integers and arrays; all-zero is a valid value.
    *p = unsafe { core::mem::zeroed() };
    p.ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let src = &s.state.nat_addr;
    let dst = &s.state.backend_addr;
    if ipv6 {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = words(src);
        p.__bindgen_anon_4.ipv6_dst = words(dst);
    } else {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[12], src[13], src[14], src[15]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[12], dst[13], dst[14], dst[15]]);
    }
    let flags = if want_src { BPF_FIB_LOOKUP_SRC } else { 0 };
    let ret = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            flags,
        )
    };
    if ret != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No route, or the neighbour is not resolved (BPF_FIB_LKUP_RET_NO_NEIGH): userspace keeps
        // backends' neighbour entries resolved, so this is transient.
        return Err(Counter::L4NoRoute);
    }
    s.route.ifindex = p.ifindex;
    s.route.smac = p.smac;
    s.route.dmac = p.dmac;
    if want_src {
        if ipv6 {
            s.route.src = bytes(unsafe { p.__bindgen_anon_3.ipv6_src });
        } else {
            let a = unsafe { p.__bindgen_anon_3.ipv4_src }.to_ne_bytes();
            s.route.src = lbgw_common::VipKey::v4(a).addr;
        }
    }
    Ok(())
}

/// New addresses and ports of a packet, laid out as they are in the headers so
/// `bpf_csum_diff` can compare them with the packet's bytes.
#[repr(C)]
struct Rewrite {
    /// IPv6 source and destination (IPv4-mapped for IPv4).
    src: [u8; 16],
    dst: [u8; 16],
    /// IPv4 source and destination.
    v4: [u8; 8],
    /// Source and destination ports, network byte order.
    ports: [u8; 4],
}

impl Rewrite {
    #[inline(always)]
    fn new(src: &[u8; 16], dst: &[u8; 16], sport_be: u16, dport_be: u16) -> Self {
        let sp = sport_be.to_ne_bytes();
        let dp = dport_be.to_ne_bytes();
        Self {
            src: *src,
            dst: *dst,
            v4: [
                src[12], src[13], src[14], src[15], dst[12], dst[13], dst[14], dst[15],
            ],
            ports: [sp[0], sp[1], dp[0], dp[1]],
        }
    }
}

/// Rewrites addresses and ports to `s.new`, TTL, checksums and MACs (from `s.route`), and says
/// where the frame goes. Checksums are updated incrementally (RFC 1624) from the sums of the
/// changed bytes that `bpf_csum_diff` computes; all sums are of native-order words, which the
/// one's complement sum allows as long as all of them are (RFC 1071 §2(B)).
#[inline(always)]
fn rewrite(ctx: &XdpContext, l2: &L2, l3: &L3, s: &mut Scratch) -> Result<Verdict, Counter> {
    let ports: *mut [u8; 4] = ptr_at(ctx, l3.l4_offset).ok_or(Counter::DroppedMalformed)?;
    let check_offset = if l3.proto == PROTO_TCP { 16 } else { 6 };
    let check: *mut [u8; 2] =
        ptr_at(ctx, l3.l4_offset + check_offset).ok_or(Counter::DroppedMalformed)?;
    let addr_delta;
    if l3.ipv6 {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::DroppedMalformed)?;
        let ip = unsafe { &mut *ip };
        if ip.hop_limit <= 1 {
            // The kernel answers with ICMPv6 Time Exceeded (RFC 4443 §3.3).
            return Ok(Verdict::Pass(Counter::Passed));
        }
        // Source and destination are adjacent in the header and in `Rewrite`: 32 bytes.
        addr_delta = csum_diff(ip.src_addr.as_mut_ptr(), s.new.src.as_mut_ptr(), 32, 0);
        ip.src_addr = s.new.src;
        ip.dst_addr = s.new.dst;
        ip.hop_limit -= 1;
    } else {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::DroppedMalformed)?;
        let ip = unsafe { &mut *ip };
        if ip.ttl <= 1 {
            // The kernel answers with ICMP Time Exceeded (RFC 792).
            return Ok(Verdict::Pass(Counter::Passed));
        }
        addr_delta = csum_diff(ip.src_addr.as_mut_ptr(), s.new.v4.as_mut_ptr(), 8, 0);
        // TTL shares a 16-bit word with the protocol (RFC 791 §3.1).
        let old = u16::from_ne_bytes([ip.ttl, ip.proto]);
        let new = u16::from_ne_bytes([ip.ttl - 1, ip.proto]);
        let ttl_delta = (!old) as u64 + new as u64;
        ip.check = apply(ip.check, addr_delta + ttl_delta);
        ip.src_addr = [s.new.v4[0], s.new.v4[1], s.new.v4[2], s.new.v4[3]];
        ip.dst_addr = [s.new.v4[4], s.new.v4[5], s.new.v4[6], s.new.v4[7]];
        ip.ttl -= 1;
    }
    // The transport checksum covers the pseudo-header's addresses (RFC 793 §3.1, RFC 768,
    // RFC 8200 §8.1) and the ports.
    let l4_delta = csum_diff(ports as *mut u8, s.new.ports.as_mut_ptr(), 4, addr_delta);
    let old_check = unsafe { *check };
    // An IPv4 UDP checksum of zero means "none" (RFC 768) and stays so; a computed zero is
    // sent as all ones.
    if !(l3.proto == PROTO_UDP && !l3.ipv6 && old_check == [0, 0]) {
        let mut sum = apply(old_check, l4_delta);
        if l3.proto == PROTO_UDP && sum == [0, 0] {
            sum = [0xff, 0xff];
        }
        unsafe { *check = sum };
    }
    unsafe { *ports = s.new.ports };

    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Counter::DroppedMalformed)?;
    unsafe {
        (*eth).dst_addr = s.route.dmac;
        (*eth).src_addr = s.route.smac;
    }
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if s.route.ifindex == ingress {
        Ok(Verdict::Tx)
    } else {
        Ok(Verdict::Redirect(s.route.ifindex))
    }
}

/// `seed` plus the one's complement sum of the change from `len` bytes at `from` to those at
/// `to` (`len` a multiple of 4).
#[inline(always)]
fn csum_diff(from: *mut u8, to: *mut u8, len: u32, seed: u64) -> u64 {
    // SAFETY: both pointers have `len` readable bytes (checked packet data, or the scratch map
    // value); the helper only reads them.
    let sum = unsafe { bpf_csum_diff(from.cast(), len, to.cast(), len, fold32(seed)) };
    // A negative return is an error (bad sizes), which the constant sizes rule out.
    sum.max(0) as u64
}

#[inline(always)]
fn fold32(mut sum: u64) -> u32 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum as u32
}

/// Applies a sum of word changes to a checksum kept as it lies in the packet:
/// HC' = ~(~HC + Σ(~m + m')) (RFC 1624 eqn. 3).
#[inline(always)]
fn apply(check: [u8; 2], delta: u64) -> [u8; 2] {
    let mut sum = (!u16::from_ne_bytes(check)) as u64 + delta;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_ne_bytes()
}

/// A hash of the 5-tuple, the same on every node (so every node picks the same backend for
/// a flow, and a flow moved by ECMP or a VIP failover keeps its backend while rings agree).
#[inline(always)]
fn hash_flow(key: &FlowKey) -> u32 {
    let mut h = hash_addr(0x9e37_79b9, &key.src);
    h = hash_addr(h, &key.dst);
    h = mix(h, ((key.sport_be as u32) << 16) | key.dport_be as u32);
    mix(h, key.proto as u32)
}

#[inline(always)]
fn hash_addr(mut h: u32, addr: &[u8; 16]) -> u32 {
    let mut i = 0;
    while i < 16 {
        h = mix(
            h,
            u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]),
        );
        i += 4;
    }
    h
}

/// One round of murmur3's 32-bit mixing.
#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let mut k = word.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15).wrapping_mul(0x1b87_3593);
    let h = (h ^ k).rotate_left(13);
    let h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    let h = h ^ (h >> 16);
    h.wrapping_mul(0x85eb_ca6b)
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}

#[inline(always)]
fn bytes(words: [u32; 4]) -> [u8; 16] {
    let a = words[0].to_ne_bytes();
    let b = words[1].to_ne_bytes();
    let c = words[2].to_ne_bytes();
    let d = words[3].to_ne_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}
