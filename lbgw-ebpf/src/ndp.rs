//! IPv6 Neighbor Discovery responder: a Neighbor Solicitation for a VIP this node announces
//! becomes, in place, a solicited Neighbor Advertisement (RFC 4861 §7.2.4).

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};
use lbgw_common::{Counter, VipKey};
use network_types::{eth::EthHdr, ip::Ipv6Hdr};

use crate::{
    csum,
    eth::{self, L2},
    maps,
    packet::{self, Verdict, ptr_at},
};

const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Option type "Target Link-Layer Address" (RFC 4861 §4.6.1).
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// NS/NA body: type, code, checksum, 4 bytes reserved/flags, 16-byte target (RFC 4861 §4.3, §4.4).
const ND_BODY_LEN: usize = 24;
/// The NA lbgw sends: the body plus one Target Link-Layer Address option of 8 bytes.
const NA_LEN: usize = ND_BODY_LEN + 8;
/// NA flags (RFC 4861 §4.4): Solicited and Override, in the first byte of the flags word.
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// ff02::1, all-nodes multicast (RFC 4291 §2.7.1).
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The fields of a solicitation the reply is built from.
struct Solicitation {
    src_ip: [u8; 16],
    src_mac: [u8; 6],
    target: [u8; 16],
}

/// Whether the IPv6 packet is an ICMPv6 Neighbor Solicitation (without validating it yet).
#[inline(always)]
pub fn is_solicitation(ctx: &XdpContext, l2: &L2) -> bool {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l2.l3_offset) else {
        return false;
    };
    let Some(icmp) = ptr_at::<[u8; 1]>(ctx, l2.l3_offset + Ipv6Hdr::LEN) else {
        return false;
    };
    unsafe { (*ip).next_hdr == IPPROTO_ICMPV6 && (*icmp)[0] == ND_NEIGHBOR_SOLICIT }
}

/// Out of line (a BPF-to-BPF call): with the IPv6 checksum inlined, the XDP program's frame
/// would pass the 512-byte stack limit.
#[inline(never)]
pub fn answer(ctx: &XdpContext, l2: &L2) -> Verdict {
    match try_answer(ctx, l2) {
        Ok(()) => {
            maps::count(Counter::NsReplied);
            Verdict::Tx
        }
        Err(reason) => Verdict::Pass(reason),
    }
}

#[inline(always)]
fn try_answer(ctx: &XdpContext, l2: &L2) -> Result<(), Counter> {
    let ns = parse(ctx, l2)?;
    let info = maps::announced_vip(&VipKey::v6(ns.target)).ok_or(Counter::NotAnnounced)?;
    let iface = eth::iface(ctx, l2).ok_or(Counter::WrongIface)?;

    // RFC 4861 §7.2.4: a solicitation from the unspecified address (Duplicate Address
    // Detection) is answered to all-nodes with Solicited clear; otherwise to the solicitor.
    // Override is set: lbgw owns the VIP on this link (it is neither anycast nor proxied).
    let dad = ns.src_ip == [0; 16];
    let (dst_ip, dst_mac, flags) = if dad {
        (ALL_NODES, [0x33, 0x33, 0, 0, 0, 1], NA_FLAG_OVERRIDE)
    } else {
        (ns.src_ip, ns.src_mac, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE)
    };

    // Resize the frame to exactly the NA; the solicitation may have been shorter (no option)
    // or longer (several options). All packet pointers are invalid after this call.
    let want = l2.l3_offset + Ipv6Hdr::LEN + NA_LEN;
    let delta = want as i32 - packet::len(ctx) as i32;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Counter::Aborted);
    }

    let ip: *mut Ipv6Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::Aborted)?;
    let na: *mut [u8; NA_LEN] = ptr_at(ctx, l2.l3_offset + Ipv6Hdr::LEN).ok_or(Counter::Aborted)?;
    let mut body = [0u8; NA_LEN];
    body[0] = ND_NEIGHBOR_ADVERT;
    body[4] = flags;
    let mut i = 0;
    while i < 16 {
        body[8 + i] = ns.target[i];
        i += 1;
    }
    body[24] = ND_OPT_TARGET_LL_ADDR;
    body[25] = 1; // option length in units of 8 bytes
    let mut i = 0;
    while i < 6 {
        body[26 + i] = iface.mac[i];
        i += 1;
    }
    let sum = checksum(&ns.target, &dst_ip, &body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());

    // SAFETY: both pointers were bounds-checked by `ptr_at` after the resize.
    unsafe {
        (*ip).vcf = [0x60, 0, 0, 0];
        (*ip).payload_len = (NA_LEN as u16).to_be_bytes();
        (*ip).next_hdr = IPPROTO_ICMPV6;
        (*ip).hop_limit = 255; // RFC 4861 §7.1.2: receivers drop NAs with any other value.
        (*ip).src_addr = ns.target;
        (*ip).dst_addr = dst_ip;
        *na = body;
    }
    eth::set_addrs(ctx, &dst_mac, &iface.mac).ok_or(Counter::Aborted)?;
    maps::count_vip(&info, |s| &mut s.na_replies);
    Ok(())
}

/// Validates a Neighbor Solicitation as RFC 4861 §7.1.1 asks (hop limit 255, code 0, length
/// at least 24, target not multicast) and reads what the reply needs. Extension headers before
/// ICMPv6 are not followed: NDP messages carry none in practice and the kernel handles the rest.
#[inline(always)]
fn parse(ctx: &XdpContext, l2: &L2) -> Result<Solicitation, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::Malformed)?;
    let ip: *const Ipv6Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::Passed)?;
    let ip = unsafe { &*ip };
    if ip.next_hdr != IPPROTO_ICMPV6 {
        return Err(Counter::Passed);
    }
    let icmp: *const [u8; ND_BODY_LEN] = match ptr_at(ctx, l2.l3_offset + Ipv6Hdr::LEN) {
        Some(p) => p,
        None => {
            // Too short for a solicitation; could still be another ICMPv6 message.
            let head: *const [u8; 1] =
                ptr_at(ctx, l2.l3_offset + Ipv6Hdr::LEN).ok_or(Counter::Passed)?;
            return Err(if unsafe { (*head)[0] } == ND_NEIGHBOR_SOLICIT {
                Counter::Malformed
            } else {
                Counter::Passed
            });
        }
    };
    let icmp = unsafe { &*icmp };
    if icmp[0] != ND_NEIGHBOR_SOLICIT {
        return Err(Counter::Passed);
    }
    let payload_len = u16::from_be_bytes(ip.payload_len) as usize;
    if ip.hop_limit != 255 || icmp[1] != 0 || payload_len < ND_BODY_LEN {
        return Err(Counter::Malformed);
    }
    let mut target = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        target[i] = icmp[8 + i];
        i += 1;
    }
    if target[0] == 0xff {
        return Err(Counter::Malformed);
    }
    // The solicitation must be addressed to the target itself or to its solicited-node
    // multicast group ff02::1:ffXX:XXXX (RFC 4291 §2.7.1); anything else is not for us.
    let dst = ip.dst_addr;
    let solicited_node = dst[0] == 0xff
        && dst[1] == 0x02
        && dst[2..11] == [0, 0, 0, 0, 0, 0, 0, 0, 0]
        && dst[11] == 1
        && dst[12] == 0xff
        && dst[13..16] == target[13..16];
    if dst != target && !solicited_node {
        return Err(Counter::Malformed);
    }
    Ok(Solicitation {
        src_ip: ip.src_addr,
        src_mac: unsafe { (*eth).src_addr },
        target,
    })
}

/// ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and the message.
#[inline(always)]
fn checksum(src: &[u8; 16], dst: &[u8; 16], body: &[u8; NA_LEN]) -> u16 {
    let mut acc = csum::add_bytes(0, src);
    acc = csum::add_bytes(acc, dst);
    acc += NA_LEN as u32; // upper-layer packet length
    acc += IPPROTO_ICMPV6 as u32; // next header
    acc = csum::add_bytes(acc, body);
    csum::finish(acc)
}
