//! IPv4 and IPv6 headers, read as far as steering needs: the destination, the transport
//! protocol and where the transport header starts.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{Counter, VipKey};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    eth::{ETH_P_IP, L2},
    packet::ptr_at,
};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 Fragment extension header (RFC 8200 §4.5).
const IPPROTO_FRAGMENT: u8 = 44;
/// IPv4 fragment offset bits of the flags/offset field (RFC 791 §3.1).
const IP_OFFSET_MASK: u16 = 0x1fff;
/// IPv4 "more fragments" flag.
const IP_MF: u16 = 0x2000;

/// What the network header told us.
pub struct L3 {
    /// Destination, keyed like the VIP map. (The source is read where it is needed, by the L4
    /// forwarder: carrying it here costs the classifier's frame stack space.)
    pub dst: VipKey,
    pub ipv6: bool,
    /// Transport protocol (IPv6: the first next header; extension headers are not followed).
    pub proto: u8,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// False for non-first fragments (and IPv6 fragment headers): no ports to look at.
    pub has_ports: bool,
    /// Part of a fragmented datagram (any fragment, the first included).
    pub fragment: bool,
}

/// Parses the IP header after `l2`. `Err` means the header is too short or not IP at all.
#[inline(always)]
pub fn parse(ctx: &XdpContext, l2: &L2) -> Result<L3, Counter> {
    if l2.ether_type == ETH_P_IP {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::Passed)?;
        let ip = unsafe { &*ip };
        let vihl = ip.vihl;
        let ihl = (vihl & 0x0f) as usize * 4;
        if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
            return Err(Counter::Passed);
        }
        let frag = u16::from_be_bytes(ip.frags);
        Ok(L3 {
            dst: VipKey::v4(ip.dst_addr),
            ipv6: false,
            proto: ip.proto,
            // IHL counts options too (RFC 791 §3.1): the transport header follows them.
            l4_offset: l2.l3_offset + ihl,
            has_ports: frag & IP_OFFSET_MASK == 0,
            fragment: frag & (IP_OFFSET_MASK | IP_MF) != 0,
        })
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::Passed)?;
        let ip = unsafe { &*ip };
        Ok(L3 {
            dst: VipKey::v6(ip.dst_addr),
            ipv6: true,
            proto: ip.next_hdr,
            l4_offset: l2.l3_offset + Ipv6Hdr::LEN,
            has_ports: ip.next_hdr != IPPROTO_FRAGMENT,
            fragment: ip.next_hdr == IPPROTO_FRAGMENT,
        })
    }
}

/// Writes the source address of the IP header after `l2`, keyed like the VIP map, into
/// `out`. Written in place in each branch: a 16-byte value returned from two branches is
/// merged byte by byte in registers, and the spills cost ~100 bytes of the caller's stack.
#[inline(always)]
pub fn source_into(ctx: &XdpContext, l2: &L2, ipv6: bool, out: &mut [u8; 16]) -> Option<()> {
    if ipv6 {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l2.l3_offset)?;
        *out = unsafe { (*ip).src_addr };
    } else {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l2.l3_offset)?;
        *out = VipKey::v4(unsafe { (*ip).src_addr }).addr;
    }
    Some(())
}
