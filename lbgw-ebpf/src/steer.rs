//! Steering of IP traffic addressed to the LoadBalancer pools, at the earliest hook:
//! - not in a pool: not lbgw's business, passed with nothing but a range check;
//! - a pool address no object holds: dropped (nothing can answer it);
//! - a VIP: ICMP echo answered in place; TCP/UDP/SCTP to a Gateway listener's port passed to
//!   the stack (where the `sk_lookup` program hands it to the proxy); to an L4 Service port
//!   forwarded to a backend (`l4.rs`); other ports and protocols dropped; ICMP errors (fragmentation needed, packet too big) and fragments
//!   passed, so that PMTU discovery and reassembly keep working in the kernel.
//!
//! Everything but ARP/NDP is off until userspace sets `Config::flags`.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{
    CONFIG_F_EARLY_DROP, CONFIG_F_L4_DNAT_ONLY, Counter, PORT_ACTION_L4, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP, PortKey,
};

use crate::{
    eth::L2,
    icmp,
    ip::{self, IPPROTO_ICMP, IPPROTO_ICMPV6},
    l4, maps,
    packet::{Verdict, ptr_at},
};

/// Out of line (a BPF-to-BPF call), so no single stack frame passes the 512-byte limit.
///
/// With `replies`, a packet that may be an L4 backend's reply is answered with
/// [`Verdict::Reply`] before anything else is looked at; the program then calls
/// `l4::reverse`, and classifies again without `replies` when it was no reply.
#[inline(never)]
pub fn classify(ctx: &XdpContext, l2: &L2, replies: bool) -> Verdict {
    let cfg = maps::config();
    if cfg.pool_count == 0 {
        return Verdict::Pass(Counter::Passed);
    }
    let l3 = match ip::parse(ctx, l2) {
        Ok(l3) => l3,
        // Not a well-formed IP header: the kernel counts and drops it.
        Err(reason) => return Verdict::Pass(reason),
    };
    // Replies of L4 Service backends come back to the node (source NAT) or to the client
    // address (destination NAT only), never to a pool address: look for them first.
    if replies
        && (cfg.snat_port_count != 0 || cfg.flags & CONFIG_F_L4_DNAT_ONLY != 0)
        && l4::maybe_reply(ctx, &l3, &cfg)
    {
        return Verdict::Reply;
    }
    if !maps::in_pool(&l3.dst, cfg.pool_count) {
        return Verdict::Pass(Counter::Passed);
    }
    let early_drop = cfg.flags & CONFIG_F_EARLY_DROP != 0;
    let drop_or_pass = |reason| {
        if early_drop {
            Verdict::Drop(reason)
        } else {
            Verdict::Pass(Counter::VipPassed)
        }
    };

    // The hot path first: a served port is one lookup, its entry names the VIP's counters.
    let is_transport = matches!(l3.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP);
    if is_transport && l3.has_ports {
        // Source and destination ports lead all three transport headers.
        if let Some(ports) = ptr_at::<[u8; 4]>(ctx, l3.l4_offset) {
            let ports = unsafe { *ports };
            let key = PortKey {
                addr: l3.dst.addr,
                port_be: u16::from_ne_bytes([ports[2], ports[3]]),
                proto: l3.proto,
                _pad: 0,
            };
            if let Some(served) = maps::port(&key) {
                if served.action == PORT_ACTION_L4 {
                    return Verdict::Forward(served.target, served.stats_index);
                }
                maps::count_vip_slot(served.stats_index, |s| &mut s.passed);
                return Verdict::Pass(Counter::VipPassed);
            }
        }
    }

    let Some(vip) = maps::vip(&l3.dst) else {
        return drop_or_pass(Counter::DroppedUnallocated);
    };
    let verdict = if !l3.has_ports {
        // A non-first fragment: the kernel reassembles it, and drops it if nothing wants it.
        Verdict::Pass(Counter::VipPassed)
    } else if is_transport {
        // Not served (the lookup above missed), or too short to carry its ports.
        match ptr_at::<[u8; 4]>(ctx, l3.l4_offset) {
            Some(_) => drop_or_pass(Counter::DroppedUnserved),
            None => drop_or_pass(Counter::DroppedMalformed),
        }
    } else {
        match l3.proto {
            IPPROTO_ICMP if !l3.ipv6 => icmp::answer_echo(ctx, l2, &l3, cfg.flags),
            IPPROTO_ICMPV6 if l3.ipv6 => icmp::answer_echo(ctx, l2, &l3, cfg.flags),
            _ => drop_or_pass(Counter::DroppedUnserved),
        }
    };
    match verdict {
        Verdict::Tx => maps::count_vip(&vip, |s| &mut s.echo_replies),
        Verdict::Pass(_) => maps::count_vip(&vip, |s| &mut s.passed),
        Verdict::Drop(Counter::DroppedUnserved) => {
            maps::count_vip(&vip, |s| &mut s.dropped_unserved)
        }
        Verdict::Drop(_) | Verdict::Redirect(_) | Verdict::Forward(..) | Verdict::Reply => {}
    }
    verdict
}
