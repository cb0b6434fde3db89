//! The configuration and frames the XDP fixture table and the XDP benchmark share.
//!
//! BPF_PROG_TEST_RUN runs the program as if the frame arrived on the loopback device of the
//! caller's namespace (net/bpf/test_run.c), so the interface entries are keyed by `lo`'s ifindex.

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use lbgw::dataplane::{Dataplane, PortAction, ServedPort, Steering, VipEntry};
use lbgw_common::{PROTO_TCP, PROTO_UDP};

use crate::{packets::*, require_root};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const LO_IFINDEX: u32 = 1;
pub const LBGW_MAC: [u8; 6] = [0x02, 0x1b, 0x67, 0x00, 0x00, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0x1e, 0x47, 0x00, 0x02];
pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const CLIENT_IP: [u8; 4] = [192, 0, 2, 1];
pub const VIP: [u8; 4] = [192, 0, 2, 10];
pub const VIP_NOT_ANNOUNCED: [u8; 4] = [192, 0, 2, 11];
pub const POOL_UNALLOCATED: [u8; 4] = [192, 0, 2, 12];
/// An address outside every pool: the node's own traffic, say.
pub const NOT_IN_POOL: [u8; 4] = [198, 51, 100, 7];
pub const VLAN: u16 = 42;
pub const OTHER_VLAN: u16 = 43;

pub fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

pub fn vip6() -> [u8; 16] {
    v6("2001:db8::10")
}
pub fn client6() -> [u8; 16] {
    v6("2001:db8::1")
}

/// A loaded program with the fixture configuration.
pub fn dataplane() -> Dataplane {
    dataplane_from(lbgw::dataplane::object::bytes())
}

/// [`dataplane`] with the eBPF object `object` instead of the embedded one (benchmarks compare
/// builds side by side).
pub fn dataplane_from(object: &[u8]) -> Dataplane {
    require_root();
    let mut dp = Dataplane::load_with(object, &lbgw::dataplane::pin::Pinning::None)
        .expect("load the eBPF object");
    dp.add_iface(LO_IFINDEX, 0, LBGW_MAC).unwrap();
    dp.add_iface(LO_IFINDEX, VLAN, LBGW_MAC).unwrap();
    dp.sync_vips(&[
        VipEntry {
            ip: IpAddr::from(VIP),
            announce: true,
            until: None,
        },
        VipEntry {
            ip: IpAddr::from(VIP_NOT_ANNOUNCED),
            announce: false,
            until: None,
        },
        VipEntry {
            ip: IpAddr::from(vip6()),
            announce: true,
            until: None,
        },
    ])
    .unwrap();
    let served = |ip: IpAddr, proto, port| ServedPort {
        ip,
        proto,
        port,
        action: PortAction::Local,
    };
    dp.set_steering(&Steering {
        early_drop: true,
        echo: true,
        pools: vec![
            ("192.0.2.0".parse().unwrap(), "192.0.2.255".parse().unwrap()),
            (
                "2001:db8::".parse().unwrap(),
                "2001:db8::ffff".parse().unwrap(),
            ),
        ],
        ports: vec![
            served(IpAddr::from(VIP), PROTO_TCP, 443),
            served(IpAddr::from(VIP), PROTO_UDP, 53),
            served(IpAddr::from(vip6()), PROTO_TCP, 443),
        ],
        local_routes: false,
        snat_ports: (0, 0),
    })
    .unwrap();
    dp
}

/// Runs one frame; returns the verdict and the frame as the program left it.
pub fn run(dp: &mut Dataplane, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(input),
        data_out: Some(&mut out),
        ..Default::default()
    };
    let result = dp.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

pub fn arp_request_for(tpa: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
    pad60(arp(
        BROADCAST, CLIENT_MAC, vlan, 1, CLIENT_MAC, CLIENT_IP, [0; 6], tpa,
    ))
}

/// What Linux itself would answer for a local address: op 2, sender = us, target = asker.
/// The request's padding stays (the frame keeps its length).
pub fn arp_reply_to_client(vlan: Option<u16>) -> Vec<u8> {
    pad60(arp(
        CLIENT_MAC, LBGW_MAC, vlan, 2, LBGW_MAC, VIP, CLIENT_MAC, CLIENT_IP,
    ))
}

pub fn ns_frame(
    src: [u8; 16],
    dst: [u8; 16],
    dst_mac: [u8; 6],
    target: [u8; 16],
    slla: bool,
    hop: u8,
) -> Vec<u8> {
    let mut f = eth(dst_mac, CLIENT_MAC, None, ETH_P_IPV6);
    f.extend(ipv6_icmp(
        src,
        dst,
        hop,
        ns_msg(target, slla.then_some(CLIENT_MAC)),
    ));
    f
}

pub fn na_frame(dst_mac: [u8; 6], dst: [u8; 16], flags: u8) -> Vec<u8> {
    let mut f = eth(dst_mac, LBGW_MAC, None, ETH_P_IPV6);
    f.extend(ipv6_icmp(vip6(), dst, 255, na_msg(vip6(), flags, LBGW_MAC)));
    f
}
