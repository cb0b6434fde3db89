//! Ethernet II and IEEE 802.1Q parsing.

use aya_ebpf::programs::XdpContext;
use lbgw_common::{Counter, IfaceInfo, IfaceKey};
use network_types::eth::EthHdr;

use crate::{maps, packet::ptr_at};

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IEEE 802.1Q customer VLAN tag.
const ETH_P_8021Q: u16 = 0x8100;
/// IEEE 802.1ad service VLAN tag (outer tag of QinQ).
const ETH_P_8021AD: u16 = 0x88a8;
/// The 12 low bits of the tag control information are the VLAN id (IEEE 802.1Q §9.6).
const VLAN_VID_MASK: u16 = 0x0fff;

/// What the layer-2 header told us.
pub struct L2 {
    /// EtherType of the payload (after at most one VLAN tag), host order.
    pub ether_type: u16,
    /// Offset of the layer-3 header.
    pub l3_offset: usize,
    /// VLAN id of the tag, 0 when untagged.
    pub vlan_id: u32,
}

/// Parses the Ethernet header and at most one VLAN tag.
///
/// Frames with stacked tags are passed: lbgw answers on the VLAN a frame arrived on, and
/// QinQ would need the outer provider's view of which VLAN that is.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<L2, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::Passed)?;
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l3_offset = EthHdr::LEN;
    let mut vlan_id = 0;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        // TCI (2 bytes) then the inner EtherType (2 bytes).
        let tag: *const [u8; 4] = ptr_at(ctx, EthHdr::LEN).ok_or(Counter::Malformed)?;
        let tag = unsafe { *tag };
        vlan_id = (u16::from_be_bytes([tag[0], tag[1]]) & VLAN_VID_MASK) as u32;
        ether_type = u16::from_be_bytes([tag[2], tag[3]]);
        l3_offset += 4;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            return Err(Counter::StackedVlan);
        }
    }
    Ok(L2 {
        ether_type,
        l3_offset,
        vlan_id,
    })
}

/// The interface configuration for the frame's ingress interface and VLAN, if lbgw answers there.
#[inline(always)]
pub fn iface(ctx: &XdpContext, l2: &L2) -> Option<IfaceInfo> {
    let key = IfaceKey {
        ifindex: ctx.ingress_ifindex() as u32,
        vlan_id: l2.vlan_id,
    };
    maps::iface(&key)
}

/// Writes the Ethernet addresses of a reply; the EtherType and any VLAN tag stay as they were.
#[inline(always)]
pub fn set_addrs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        (*eth).dst_addr = *dst;
        (*eth).src_addr = *src;
    }
    Some(())
}

/// Swaps the Ethernet source and destination: a reply goes back where the request came from.
#[inline(always)]
pub fn swap_addrs(ctx: &XdpContext) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        let src = (*eth).src_addr;
        (*eth).src_addr = (*eth).dst_addr;
        (*eth).dst_addr = src;
    }
    Some(())
}
