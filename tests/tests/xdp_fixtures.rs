//! The XDP program run on fixture frames through BPF_PROG_TEST_RUN (aya's `TestRun`): each row
//! is {description, input frame, expected verdict, expected output frame}, compared byte for
//! byte, in the style of Katran's tester and Cilium's bpf/tests.
//!

use std::net::IpAddr;

use lbgw::dataplane::VipEntry;
use lbgw_common::Counter;
use lbgw_tests::{fixtures::*, packets::*};

struct Case {
    name: &'static str,
    input: Vec<u8>,
    verdict: u32,
    /// The expected frame after the program; `None` = must be unchanged.
    output: Option<Vec<u8>>,
}

fn cases() -> Vec<Case> {
    let (snm, snm_mac) = solicited_node(vip6());
    let mut tcp = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
    tcp.extend(ipv4_tcp(CLIENT_IP, VIP, 443));
    let mut truncated_arp = arp_request_for(VIP, None);
    truncated_arp.truncate(14 + 20);
    let mut bad_hlen = arp_request_for(VIP, None);
    bad_hlen[18] = 8;
    let mut qinq = eth(BROADCAST, CLIENT_MAC, Some(VLAN), 0x8100);
    qinq.extend_from_slice(&[0, 7, 0x08, 0x06]);
    qinq.extend_from_slice(&arp_request_for(VIP, None)[14..42]);
    let mut ns_truncated = ns_frame(client6(), snm, snm_mac, vip6(), true, 255);
    ns_truncated.truncate(14 + 40 + 12);
    let mut ns_code1 = ns_frame(client6(), snm, snm_mac, vip6(), true, 255);
    ns_code1[14 + 40 + 1] = 1;

    vec![
        Case {
            name: "ARP request for an announced VIP is answered in place",
            input: arp_request_for(VIP, None),
            verdict: XDP_TX,
            output: Some(arp_reply_to_client(None)),
        },
        Case {
            name: "ARP request for a VIP not announced by this node passes",
            input: arp_request_for(VIP_NOT_ANNOUNCED, None),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "ARP request for an unallocated pool address passes",
            input: arp_request_for(POOL_UNALLOCATED, None),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "ARP request for a LAN host outside the pools passes",
            input: arp_request_for(NOT_IN_POOL, None),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "ARP probe (sender 0.0.0.0, RFC 5227) for a VIP is answered to the prober",
            input: pad60(arp(
                BROADCAST, CLIENT_MAC, None, 1, CLIENT_MAC, [0; 4], [0; 6], VIP,
            )),
            verdict: XDP_TX,
            output: Some(pad60(arp(
                CLIENT_MAC, LBGW_MAC, None, 2, LBGW_MAC, VIP, CLIENT_MAC, [0; 4],
            ))),
        },
        Case {
            name: "ARP reply for a VIP passes (the kernel's neighbour table decides)",
            input: pad60(arp(
                LBGW_MAC, CLIENT_MAC, None, 2, CLIENT_MAC, VIP, LBGW_MAC, CLIENT_IP,
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "gratuitous ARP announcing the VIP from another host passes",
            input: pad60(arp(
                BROADCAST, CLIENT_MAC, None, 1, CLIENT_MAC, VIP, [0; 6], VIP,
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "truncated ARP passes",
            input: truncated_arp,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "ARP with a wrong hardware length passes",
            input: bad_hlen,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            // BPF_PROG_TEST_RUN refuses frames shorter than ETH_HLEN, as no driver delivers them.
            name: "bare Ethernet header with the ARP EtherType passes",
            input: eth(BROADCAST, CLIENT_MAC, None, ETH_P_ARP),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "802.1Q-tagged ARP request on a configured VLAN is answered on that VLAN",
            input: arp_request_for(VIP, Some(VLAN)),
            verdict: XDP_TX,
            output: Some(arp_reply_to_client(Some(VLAN))),
        },
        Case {
            name: "802.1Q-tagged ARP request on another VLAN passes",
            input: arp_request_for(VIP, Some(OTHER_VLAN)),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "QinQ (stacked tags) passes",
            input: qinq,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "IPv4 TCP to the VIP passes untouched",
            input: tcp,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "TCP to a served VIP port passes",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x4000, &ports(443, 20))),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "TCP to a VIP port nothing serves is dropped",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x4000, &ports(8080, 20))),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "UDP to a served VIP port passes, another UDP port is dropped",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 17, 64, &[], 0, &ports(53, 8))),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "UDP to an unserved VIP port is dropped",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 17, 64, &[], 0, &ports(54, 8))),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "traffic to an unallocated pool address is dropped",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                POOL_UNALLOCATED,
                6,
                64,
                &[],
                0x4000,
                &ports(443, 20),
            )),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "traffic outside every pool passes untouched",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                NOT_IN_POOL,
                6,
                64,
                &[],
                0x4000,
                &ports(8080, 20),
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "IPv4 options are skipped to find the port (served)",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                VIP,
                6,
                64,
                &[1, 1, 1, 0],
                0x4000,
                &ports(443, 20),
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "IPv4 options are skipped to find the port (unserved)",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                VIP,
                6,
                64,
                &[1, 1, 1, 0],
                0x4000,
                &ports(8443, 20),
            )),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "a non-first IPv4 fragment to a VIP passes (the kernel reassembles)",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x00b9, &[0xab; 16])),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "a VIP packet truncated before its ports is dropped",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x4000, &[0x9c, 0x40])),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "other protocols to a VIP (GRE) are dropped",
            input: ip4_frame(ipv4(CLIENT_IP, VIP, 47, 64, &[], 0, &[0; 8])),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "ICMP echo request to a VIP is answered in place",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                VIP,
                1,
                57,
                &[],
                0,
                &icmp_echo(8, 0x1234, 7, b"lbgw ping"),
            )),
            verdict: XDP_TX,
            output: Some(ip4_reply_frame(ipv4(
                VIP,
                CLIENT_IP,
                1,
                64,
                &[],
                0,
                &icmp_echo(0, 0x1234, 7, b"lbgw ping"),
            ))),
        },
        Case {
            name: "ICMP fragmentation needed to a VIP passes (PMTU discovery)",
            input: ip4_frame(ipv4(
                CLIENT_IP,
                VIP,
                1,
                64,
                &[],
                0,
                &[3, 4, 0, 0, 0, 0, 5, 0xdc],
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "IPv6 TCP to a served VIP port passes",
            input: ip6_frame(ipv6(client6(), vip6(), 6, 64, &ports(443, 20))),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "IPv6 TCP to an unserved VIP port is dropped",
            input: ip6_frame(ipv6(client6(), vip6(), 6, 64, &ports(80, 20))),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "IPv6 to an unallocated pool address is dropped",
            input: ip6_frame(ipv6(client6(), v6("2001:db8::77"), 6, 64, &ports(443, 20))),
            verdict: XDP_DROP,
            output: None,
        },
        Case {
            name: "IPv6 fragment header to a VIP passes",
            input: ip6_frame(ipv6(
                client6(),
                vip6(),
                44,
                64,
                &[6, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "ICMPv6 echo request to a VIP is answered in place",
            input: ip6_frame(ipv6_icmp(
                client6(),
                vip6(),
                57,
                icmp_echo(128, 0x4242, 1, b"lbgw ping6"),
            )),
            verdict: XDP_TX,
            output: Some(ip6_reply_frame(ipv6_icmp(
                vip6(),
                client6(),
                64,
                icmp_echo(129, 0x4242, 1, b"lbgw ping6"),
            ))),
        },
        Case {
            name: "ICMPv6 packet too big to a VIP passes (PMTU discovery)",
            input: ip6_frame(ipv6_icmp(
                client6(),
                vip6(),
                64,
                vec![2, 0, 0, 0, 0, 0, 5, 0xdc],
            )),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "multicast NS for a VIP (with SLLA) is answered with a solicited NA",
            input: ns_frame(client6(), snm, snm_mac, vip6(), true, 255),
            verdict: XDP_TX,
            output: Some(na_frame(CLIENT_MAC, client6(), 0x60)),
        },
        Case {
            name: "unicast NS for a VIP without options (NUD) grows into an NA",
            input: ns_frame(client6(), vip6(), LBGW_MAC, vip6(), false, 255),
            verdict: XDP_TX,
            output: Some(na_frame(CLIENT_MAC, client6(), 0x60)),
        },
        Case {
            name: "DAD NS (source ::) is answered to all-nodes with Solicited clear",
            input: ns_frame([0; 16], snm, snm_mac, vip6(), false, 255),
            verdict: XDP_TX,
            output: Some(na_frame([0x33, 0x33, 0, 0, 0, 1], v6("ff02::1"), 0x20)),
        },
        Case {
            name: "NS for an address not announced passes",
            input: ns_frame(
                client6(),
                solicited_node(v6("2001:db8::99")).0,
                snm_mac,
                v6("2001:db8::99"),
                true,
                255,
            ),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "NS with hop limit below 255 passes (RFC 4861 §7.1.1)",
            input: ns_frame(client6(), snm, snm_mac, vip6(), true, 64),
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "NS with a non-zero code passes",
            input: ns_code1,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "truncated NS passes",
            input: ns_truncated,
            verdict: XDP_PASS,
            output: None,
        },
        Case {
            name: "NS sent to an unrelated multicast group passes",
            input: ns_frame(client6(), v6("ff02::1:ff00:99"), snm_mac, vip6(), true, 255),
            verdict: XDP_PASS,
            output: None,
        },
    ]
}

fn ip4_frame(packet: Vec<u8>) -> Vec<u8> {
    let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
    f.extend(packet);
    pad60(f)
}

fn ip4_reply_frame(packet: Vec<u8>) -> Vec<u8> {
    let mut f = eth(CLIENT_MAC, LBGW_MAC, None, ETH_P_IP);
    f.extend(packet);
    pad60(f)
}

fn ip6_frame(packet: Vec<u8>) -> Vec<u8> {
    let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IPV6);
    f.extend(packet);
    f
}

fn ip6_reply_frame(packet: Vec<u8>) -> Vec<u8> {
    let mut f = eth(CLIENT_MAC, LBGW_MAC, None, ETH_P_IPV6);
    f.extend(packet);
    f
}

#[test]
fn fixture_table() {
    let mut dp = dataplane();
    let mut failures = Vec::new();
    for case in cases() {
        let (verdict, out) = run(&mut dp, &case.input);
        let want = case.output.as_ref().unwrap_or(&case.input);
        if verdict != case.verdict || &out != want {
            failures.push(format!(
                "{}:\n  verdict {verdict} (want {})\n  got  {:02x?}\n  want {:02x?}",
                case.name, case.verdict, out, want
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn na_checksum_verifies_and_counters_move() {
    let mut dp = dataplane();
    let (snm, snm_mac) = solicited_node(vip6());
    let (verdict, out) = run(
        &mut dp,
        &ns_frame(client6(), snm, snm_mac, vip6(), true, 255),
    );
    assert_eq!(verdict, XDP_TX);
    // RFC 1071: summing a message with its checksum in place yields 0 after complement.
    let (src, dst, msg) = (&out[22..38], &out[38..54], &out[54..]);
    assert_eq!(
        inet_checksum(&[
            src,
            dst,
            &(msg.len() as u32).to_be_bytes(),
            &[0, 0, 0, 58],
            msg
        ]),
        0
    );

    let (verdict, _) = run(&mut dp, &arp_request_for(VIP, None));
    assert_eq!(verdict, XDP_TX);
    let (verdict, _) = run(&mut dp, &arp_request_for(POOL_UNALLOCATED, None));
    assert_eq!(verdict, XDP_PASS);

    let (global, per_vip) = dp.counters().unwrap();
    assert_eq!(global.get(Counter::ArpReplied), 1);
    assert_eq!(global.get(Counter::NsReplied), 1);
    assert_eq!(global.get(Counter::NotAnnounced), 1);
    let v4 = per_vip.iter().find(|v| v.ip == IpAddr::from(VIP)).unwrap();
    assert_eq!((v4.arp_replies, v4.na_replies), (1, 0));
    let v6 = per_vip
        .iter()
        .find(|v| v.ip == IpAddr::from(vip6()))
        .unwrap();
    assert_eq!((v6.arp_replies, v6.na_replies), (0, 1));
}

#[test]
fn vip_removed_from_the_plan_is_no_longer_answered() {
    let mut dp = dataplane();
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_TX);
    dp.sync_vips(&[VipEntry {
        ip: IpAddr::from(vip6()),
        announce: true,
        until: None,
    }])
    .unwrap();
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_PASS);
    // The VIP that stayed kept its slot and still answers.
    let (snm, snm_mac) = solicited_node(vip6());
    assert_eq!(
        run(
            &mut dp,
            &ns_frame(client6(), snm, snm_mac, vip6(), true, 255)
        )
        .0,
        XDP_TX
    );
}

/// Kubernetes mode: a VIP is answered until the end of its Lease only, so a program left
/// attached by an lbgw that died stops answering before another node may take the VIP over.
#[test]
fn a_vip_is_answered_until_its_lease_ends() {
    use std::time::{Duration, Instant};
    let mut dp = dataplane();
    let (snm, snm_mac) = solicited_node(vip6());
    let ns = ns_frame(client6(), snm, snm_mac, vip6(), true, 255);
    let set = |dp: &mut lbgw::dataplane::Dataplane, until: Instant| {
        dp.sync_vips(&[
            VipEntry {
                ip: IpAddr::from(VIP),
                announce: true,
                until: Some(until),
            },
            VipEntry {
                ip: IpAddr::from(vip6()),
                announce: true,
                until: Some(until),
            },
        ])
        .unwrap();
    };
    set(&mut dp, Instant::now() + Duration::from_secs(30));
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_TX);
    assert_eq!(run(&mut dp, &ns).0, XDP_TX);
    // The Lease ended (not renewed): neither ARP nor NDP is answered any more.
    set(&mut dp, Instant::now());
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_PASS);
    assert_ne!(run(&mut dp, &ns).0, XDP_TX);
    // Renewed: answered again.
    set(&mut dp, Instant::now() + Duration::from_secs(30));
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_TX);
    // And the deadline is a real clock: 300 ms from now it is answered, 400 ms later not.
    set(&mut dp, Instant::now() + Duration::from_millis(300));
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_TX);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(run(&mut dp, &arp_request_for(VIP, None)).0, XDP_PASS);
    let (global, _) = dp.counters().unwrap();
    assert_eq!(global.get(Counter::ArpReplied), 3);
    assert_eq!(global.get(Counter::NotAnnounced), 3);
}
