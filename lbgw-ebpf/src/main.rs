//! lbgw's XDP program: answers ARP and IPv6 Neighbor Solicitations for the VIPs this node
//! announces, before the kernel stack sees them, and passes everything else untouched.
//!
//! Layout, following the data path:
//! - `packet.rs`: bounds-checked access to the frame (the verifier's rules live there);
//! - `eth.rs`: Ethernet and 802.1Q parsing;
//! - `arp.rs`: ARP request → reply (RFC 826);
//! - `ndp.rs`: Neighbor Solicitation → Neighbor Advertisement (RFC 4861 §7.2);
//! - `ip.rs`: IPv4 / IPv6 headers down to the transport ports;
//! - `steer.rs`: what happens to IP traffic for the pools: served VIP ports pass, the rest of
//!   the pools is dropped early;
//! - `l4.rs`: L4 LoadBalancer Services: Maglev, connection tracking, NAT, forwarding;
//! - `icmp.rs`: echo requests to a VIP answered in place (RFC 792, RFC 4443 §4);
//! - `csum.rs`: the Internet checksum (RFC 1071);
//! - `maps.rs`: the maps userspace fills and reads;
//! - `sk_lookup.rs`: connections to a Gateway listener's (VIP, port) handed to the proxy's
//!   listening socket (`lbgw_sk_lookup`, attached to the network namespace).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod arp;
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod eth;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod ip;
#[cfg(target_arch = "bpf")]
mod l4;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod ndp;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod sk_lookup;
#[cfg(target_arch = "bpf")]
mod steer;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action, helpers::bpf_redirect, macros::xdp, programs::XdpContext,
    };
    use lbgw_common::Counter;

    use crate::{arp, eth, l4, maps, ndp, packet::Verdict, steer};

    #[xdp]
    pub fn lbgw_xdp(ctx: XdpContext) -> u32 {
        let mut verdict = try_lbgw_xdp(&ctx);
        if let Verdict::Forward(service, stats_index) = verdict {
            verdict = l4::forward(&ctx, service, stats_index);
        }
        match verdict {
            Verdict::Tx => xdp_action::XDP_TX,
            Verdict::Pass(reason) => {
                maps::count(reason);
                xdp_action::XDP_PASS
            }
            Verdict::Drop(reason) => {
                maps::count(reason);
                xdp_action::XDP_DROP
            }
            // SAFETY: a helper call with plain integer arguments; it returns XDP_REDIRECT.
            Verdict::Redirect(ifindex) => unsafe { bpf_redirect(ifindex, 0) as u32 },
            Verdict::Forward(..) | Verdict::Reply => xdp_action::XDP_ABORTED,
        }
    }

    /// Passes every frame: the baseline for per-packet cost measurements, and the program a
    /// lab attaches to the peer of a veth so native-mode XDP_TX frames are not dropped.
    #[xdp]
    pub fn lbgw_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[inline(always)]
    fn try_lbgw_xdp(ctx: &XdpContext) -> Verdict {
        let l2 = match eth::parse(ctx) {
            Ok(l2) => l2,
            Err(reason) => return Verdict::Pass(reason),
        };
        match l2.ether_type {
            eth::ETH_P_ARP => arp::answer(ctx, &l2),
            eth::ETH_P_IPV6 if ndp::is_solicitation(ctx, &l2) => ndp::answer(ctx, &l2),
            eth::ETH_P_IP | eth::ETH_P_IPV6 => match steer::classify(ctx, &l2, true) {
                Verdict::Reply => match l4::reverse(ctx, &l2) {
                    Some(verdict) => verdict,
                    None => steer::classify(ctx, &l2, false),
                },
                verdict => verdict,
            },
            _ => Verdict::Pass(Counter::Passed),
        }
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach a real panic; this only satisfies the linker.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Built for the host only by workspace-wide tooling; the real object is bpfel-unknown-none.
}
