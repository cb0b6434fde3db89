//! Steering of IP traffic addressed to the LoadBalancer pools, at the earliest hook:
//! - not in a pool: not lbgw's business, passed with nothing but a range check;
//! - a pool address no object holds: dropped (nothing can answer it);
//! - a VIP: ICMP echo answered in place; TCP/UDP/SCTP to a served port passed to the stack
//!   (where a Gateway listener or, later, the L4 forwarder takes it); other ports and
//!   protocols dropped; ICMP errors (fragmentation needed, packet too big) and fragments
//!   passed, so that PMTU discovery and reassembly keep working in the kernel.
//!
//! Everything but ARP/NDP is off until userspace sets `Config::flags`.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{
    CONFIG_F_EARLY_DROP, CONFIG_F_ECHO, Counter, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PortKey, VipInfo,
};

use crate::{
    eth::L2,
    icmp,
    ip::{self, IPPROTO_ICMP, IPPROTO_ICMPV6},
    maps,
    packet::{Verdict, ptr_at},
};

#[inline(always)]
pub fn classify(ctx: &XdpContext, l2: &L2) -> Verdict {
    let cfg = maps::config();
    if cfg.flags & (CONFIG_F_EARLY_DROP | CONFIG_F_ECHO) == 0 {
        return Verdict::Pass(Counter::Passed);
    }
    let l3 = match ip::parse(ctx, l2) {
        Ok(l3) => l3,
        // Not a well-formed IP header: the kernel counts and drops it.
        Err(reason) => return Verdict::Pass(reason),
    };
    if !maps::in_pool(&l3.dst, cfg.pool_count) {
        return Verdict::Pass(Counter::Passed);
    }
    let early_drop = cfg.flags & CONFIG_F_EARLY_DROP != 0;
    let Some(vip) = maps::vip(&l3.dst) else {
        return if early_drop {
            Verdict::Drop(Counter::DroppedUnallocated)
        } else {
            Verdict::Pass(Counter::Passed)
        };
    };
    let verdict = to_vip(ctx, l2, &l3, &vip, cfg.flags);
    match verdict {
        Verdict::Tx => maps::count_vip(&vip, |s| &mut s.echo_replies),
        Verdict::Pass(_) => maps::count_vip(&vip, |s| &mut s.passed),
        Verdict::Drop(Counter::DroppedUnserved) => {
            maps::count_vip(&vip, |s| &mut s.dropped_unserved)
        }
        Verdict::Drop(_) => {}
    }
    verdict
}

#[inline(always)]
fn to_vip(ctx: &XdpContext, l2: &L2, l3: &ip::L3, _vip: &VipInfo, flags: u32) -> Verdict {
    let early_drop = flags & CONFIG_F_EARLY_DROP != 0;
    let drop_or_pass = |reason| {
        if early_drop {
            Verdict::Drop(reason)
        } else {
            Verdict::Pass(Counter::VipPassed)
        }
    };
    if !l3.has_ports {
        // A non-first fragment: the kernel reassembles it, and drops it if nothing wants it.
        return Verdict::Pass(Counter::VipPassed);
    }
    match l3.proto {
        IPPROTO_ICMP if !l3.ipv6 => icmp::answer_echo(ctx, l2, l3, flags),
        IPPROTO_ICMPV6 if l3.ipv6 => icmp::answer_echo(ctx, l2, l3, flags),
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            // Source and destination ports lead all three transport headers.
            let Some(ports) = ptr_at::<[u8; 4]>(ctx, l3.l4_offset) else {
                return drop_or_pass(Counter::DroppedMalformed);
            };
            let ports = unsafe { *ports };
            let key = PortKey {
                addr: l3.dst.addr,
                port_be: u16::from_ne_bytes([ports[2], ports[3]]),
                proto: l3.proto,
                _pad: 0,
            };
            match maps::port(&key) {
                Some(_) => Verdict::Pass(Counter::VipPassed),
                None => drop_or_pass(Counter::DroppedUnserved),
            }
        }
        _ => drop_or_pass(Counter::DroppedUnserved),
    }
}
