//! Gratuitous ARP and unsolicited Neighbor Advertisements, sent from userspace when a VIP is
//! claimed and again at an interval, so that switches and hosts that cached another owner (or
//! forgot the VIP) learn this node's MAC without having to ask.
//!
//! Replies to requests are the XDP program's job; this module only speaks unprompted.

use std::{io, net::IpAddr, os::fd::AsRawFd};

/// Errors sending announcements.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("opening an AF_PACKET socket")]
    Socket(#[source] io::Error),
    #[error("sending an announcement for {ip} on ifindex {ifindex}")]
    Send {
        ip: IpAddr,
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1 and its multicast MAC 33:33:00:00:00:01 (RFC 2464 §7).
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The frame announcing `ip` from `mac`, optionally tagged with `vlan_id` (0 = untagged).
pub fn frame(ip: IpAddr, mac: [u8; 6], vlan_id: u16) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => gratuitous_arp(v4.octets(), mac, vlan_id),
        IpAddr::V6(v6) => unsolicited_na(v6.octets(), mac, vlan_id),
    }
}

fn ethernet(dst: [u8; 6], src: [u8; 6], vlan_id: u16, ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(90);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if vlan_id != 0 {
        f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        f.extend_from_slice(&(vlan_id & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An ARP Announcement (RFC 5227 §3): a broadcast ARP request whose sender and target
/// protocol addresses are both the VIP, with a zero target hardware address.
pub fn gratuitous_arp(vip: [u8; 4], mac: [u8; 6], vlan_id: u16) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, mac, vlan_id, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip);
    f
}

/// An unsolicited Neighbor Advertisement (RFC 4861 §7.2.6): to all-nodes, Solicited clear,
/// Override set, with the Target Link-Layer Address option.
pub fn unsolicited_na(vip: [u8; 16], mac: [u8; 6], vlan_id: u16) -> Vec<u8> {
    let mut body = [0u8; 32];
    body[0] = 136; // Neighbor Advertisement
    body[4] = 0x20; // Override
    body[8..24].copy_from_slice(&vip);
    body[24] = 2; // Target Link-Layer Address
    body[25] = 1; // length in 8-byte units
    body[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(&vip, &ALL_NODES, &body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = ethernet(ALL_NODES_MAC, mac, vlan_id, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.push(58); // ICMPv6
    f.push(255); // RFC 4861 §7.1.2: hop limit must be 255
    f.extend_from_slice(&vip);
    f.extend_from_slice(&ALL_NODES);
    f.extend_from_slice(&body);
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3) over the IPv6 pseudo-header (RFC 8200 §8.1) and `msg`.
pub fn icmpv6_checksum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = pair[0] as u64;
            let lo = pair.get(1).copied().unwrap_or(0) as u64;
            acc += (hi << 8) | lo;
        }
    };
    add(src);
    add(dst);
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one interface.
pub struct Announcer {
    socket: std::os::fd::OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    /// Opens the socket (needs CAP_NET_RAW, which root has).
    pub fn new(ifindex: u32, mac: [u8; 6]) -> Result<Self, AnnounceError> {
        // SAFETY: plain socket(2); protocol 0 means the socket receives nothing, only sends.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(AnnounceError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Self {
            socket,
            ifindex,
            mac,
        })
    }

    /// Announces `ip` once, untagged or on `vlan_id`.
    pub fn announce(&self, ip: IpAddr, vlan_id: u16) -> Result<(), AnnounceError> {
        let frame = frame(ip, self.mac, vlan_id);
        // SAFETY: all-zero is a valid sockaddr_ll; we fill the fields sendto needs.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and address are valid for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(AnnounceError::Send {
                ip,
                ifindex: self.ifindex,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0, 0x01];

    #[test]
    fn gratuitous_arp_is_an_rfc5227_announcement() {
        let f = gratuitous_arp([192, 0, 2, 10], MAC, 0);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "an ARP request");
        assert_eq!(&f[22..28], &MAC, "sender hardware address");
        assert_eq!(&f[28..32], &[192, 0, 2, 10], "sender protocol address");
        assert_eq!(&f[32..38], &[0; 6], "target hardware address zero");
        assert_eq!(
            &f[38..42],
            &[192, 0, 2, 10],
            "target protocol address = sender"
        );
    }

    #[test]
    fn vlan_tagged_announcement_carries_the_tag() {
        let f = gratuitous_arp([192, 0, 2, 10], MAC, 42);
        assert_eq!(f.len(), 46);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 42]);
        assert_eq!(&f[16..18], &[0x08, 0x06]);
    }

    #[test]
    fn unsolicited_na_checksum_verifies() {
        let vip: [u8; 16] = "2001:db8::10"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let f = unsolicited_na(vip, MAC, 0);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &ALL_NODES_MAC);
        assert_eq!(f[14 + 7], 255, "hop limit");
        let msg = &f[54..];
        assert_eq!(msg[0], 136);
        assert_eq!(msg[4], 0x20, "Override set, Solicited clear");
        // Summing a message whose checksum field is filled in yields zero (RFC 1071).
        let src: [u8; 16] = f[22..38].try_into().unwrap();
        let dst: [u8; 16] = f[38..54].try_into().unwrap();
        assert_eq!(icmpv6_checksum(&src, &dst, msg), 0);
    }
}
