//! Echo requests to a VIP, answered in place: operators test reachability with ping before
//! anything else. Other ICMP (errors such as fragmentation needed / packet too big, which TCP's
//! path MTU discovery depends on) goes to the kernel.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{CONFIG_F_ECHO, Counter};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    eth::{self, L2},
    ip::L3,
    packet::{Verdict, ptr_at},
};

const ICMP_ECHO_REQUEST: u8 = 8; // RFC 792
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128; // RFC 4443 §4.1
const ICMPV6_ECHO_REPLY: u8 = 129;
/// TTL / hop limit of replies, as Linux's default (net.ipv4.ip_default_ttl).
const REPLY_TTL: u8 = 64;

/// Out of line (a BPF-to-BPF call), so no single stack frame passes the 512-byte limit.
#[inline(never)]
pub fn answer_echo(ctx: &XdpContext, l2: &L2, l3: &L3, flags: u32) -> Verdict {
    let Some(head) = ptr_at::<[u8; 4]>(ctx, l3.l4_offset) else {
        return Verdict::Pass(Counter::VipPassed);
    };
    let head = unsafe { &mut *head };
    let (request, reply) = if l3.ipv6 {
        (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
    } else {
        (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    };
    if flags & CONFIG_F_ECHO == 0 || head[0] != request || head[1] != 0 {
        return Verdict::Pass(Counter::VipPassed);
    }
    if eth::swap_addrs(ctx).is_none() {
        return Verdict::Pass(Counter::Aborted);
    }
    // Only the type changes in the ICMP message; swapping the addresses leaves the IPv6
    // pseudo-header sum as it was. RFC 1624 eqn. 3 updates the checksum for the changed word.
    let sum = u16::from_be_bytes([head[2], head[3]]);
    let sum = csum_replace(
        sum,
        u16::from_be_bytes([request, 0]),
        u16::from_be_bytes([reply, 0]),
    );
    head[0] = reply;
    head[2..4].copy_from_slice(&sum.to_be_bytes());

    if l3.ipv6 {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l2.l3_offset) else {
            return Verdict::Pass(Counter::Aborted);
        };
        let ip = unsafe { &mut *ip };
        core::mem::swap(&mut ip.src_addr, &mut ip.dst_addr);
        ip.hop_limit = REPLY_TTL;
    } else {
        let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l2.l3_offset) else {
            return Verdict::Pass(Counter::Aborted);
        };
        let ip = unsafe { &mut *ip };
        core::mem::swap(&mut ip.src_addr, &mut ip.dst_addr);
        // TTL shares a 16-bit word with the protocol (RFC 791 §3.1).
        let old = u16::from_be_bytes([ip.ttl, ip.proto]);
        let new = u16::from_be_bytes([REPLY_TTL, ip.proto]);
        ip.ttl = REPLY_TTL;
        let check = csum_replace(u16::from_be_bytes(ip.check), old, new);
        ip.check = check.to_be_bytes();
    }
    crate::maps::count(Counter::EchoReplied);
    Verdict::Tx
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
#[inline(always)]
fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
