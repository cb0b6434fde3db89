//! ARP responder (RFC 826): a request for a VIP this node announces becomes, in place, the
//! reply the kernel would have sent had the VIP been a local address.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{CONFIG_F_LOCAL_ROUTES, Counter, VipKey};
use network_types::arp::ArpHdr;

use crate::{
    eth::{self, L2},
    maps,
    packet::{Verdict, ptr_at},
};

/// `ar_hrd` for Ethernet (RFC 826, IANA "Hardware Types").
const ARPHRD_ETHER: u16 = 1;
/// `ar_pro` for IPv4.
const ETH_P_IP: u16 = 0x0800;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;

/// Out of line (a BPF-to-BPF call), so no single stack frame passes the 512-byte limit.
#[inline(never)]
pub fn answer(ctx: &XdpContext, l2: &L2) -> Verdict {
    match try_answer(ctx, l2) {
        Ok(()) => {
            maps::count(Counter::ArpReplied);
            Verdict::Tx
        }
        Err(Counter::ArpDroppedNotOwner) => {
            maps::count(Counter::ArpDroppedNotOwner);
            Verdict::Drop(Counter::ArpDroppedNotOwner)
        }
        Err(reason) => Verdict::Pass(reason),
    }
}

#[inline(always)]
fn try_answer(ctx: &XdpContext, l2: &L2) -> Result<(), Counter> {
    let arp: *mut ArpHdr = ptr_at(ctx, l2.l3_offset).ok_or(Counter::Malformed)?;
    // SAFETY: `ptr_at` checked that the whole header lies inside the frame.
    let req = unsafe { &mut *arp };
    if req.htype() != ARPHRD_ETHER || req.ptype() != ETH_P_IP || req.hlen != 6 || req.plen != 4 {
        return Err(Counter::Malformed);
    }
    if req.oper() != ARPOP_REQUEST {
        // Replies (including gratuitous ones) are for the kernel's neighbour table.
        return Err(Counter::Passed);
    }
    let sender_ip = req.spa;
    let vip = req.tpa;
    if sender_ip == vip {
        // A gratuitous ARP request (RFC 5227 §3 "ARP Announcement") from a host claiming the
        // address: not a question. Passing it lets the kernel log the conflict.
        return Err(Counter::Passed);
    }
    let key = VipKey::v4(vip);
    // Most ARP on a LAN is about other hosts: a range check against the pools (when userspace
    // has written them) settles those without a hash lookup.
    let pools = maps::config().pool_count;
    if pools > 0 && !maps::in_pool(&key, pools) {
        return Err(Counter::Passed);
    }
    let Some(info) = maps::vip(&key) else {
        return Err(Counter::NotAnnounced);
    };
    if !maps::announces(&info) {
        // Another node owns the VIP (or this node's Lease on it ran out). With local routes for the VIPs the kernel would answer
        // for it too (arp_ignore=0 answers for any local address, net/ipv4/arp.c), and two
        // nodes would claim it: the request is dropped instead.
        if maps::config().flags & CONFIG_F_LOCAL_ROUTES != 0 {
            return Err(Counter::ArpDroppedNotOwner);
        }
        return Err(Counter::NotAnnounced);
    }
    let iface = eth::iface(ctx, l2).ok_or(Counter::WrongIface)?;

    // An ARP probe (RFC 5227 §2.1.1) has sender 0.0.0.0 and is answered like any request:
    // the prober then sees the address is in use. The reply goes to the sender's hardware
    // address with target protocol address 0.0.0.0, as Linux does (net/ipv4/arp.c).
    let sender_mac = req.sha;
    req.set_oper(ARPOP_REPLY);
    req.tha = sender_mac;
    req.tpa = sender_ip;
    req.sha = iface.mac;
    req.spa = vip;
    eth::set_addrs(ctx, &sender_mac, &iface.mac).ok_or(Counter::Malformed)?;
    maps::count_vip(&info, |s| &mut s.arp_replies);
    Ok(())
}
