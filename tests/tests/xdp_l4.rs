//! The L4 forwarder (lbgw-ebpf/src/l4.rs) run on fixture frames through BPF_PROG_TEST_RUN,
//! inside a network namespace whose routes and permanent neighbours `bpf_fib_lookup` answers
//! from (see `lbgw_tests::l4lab`). Every output frame is compared byte for byte with a frame
//! built from scratch by `lbgw_tests::packets` (so its IPv4 header and TCP/UDP checksums are
//! computed independently of the program's incremental updates, RFC 1624), and its checksums
//! are verified on their own as well.
//!
//! The source-NAT port is chosen by a hash of the flow: it is read from the output, checked
//! to lie in the configured range, and then used to build the expected frame.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use lbgw::dataplane::Dataplane;
use lbgw_common::{Counter, PROTO_TCP, PROTO_UDP};
use lbgw_tests::{fixtures::*, l4lab::*, packets::*};

const XDP_REDIRECT: u32 = 4;
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
/// `frags` with Don't Fragment set (RFC 791 §3.1), as TCP stacks send.
const DF: u16 = 0x4000;

fn backend(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::from(BACKEND4[i]), BACKEND_PORT)
}

/// An Ethernet frame carrying an IPv4 packet, padded to the Ethernet minimum.
#[allow(clippy::too_many_arguments)]
fn frame4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    frag: u16,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, None, ETH_P_IP);
    f.extend(ipv4(src, dst, proto, ttl, &[], frag, l4));
    pad60(f)
}

fn frame6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    hop: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, None, ETH_P_IPV6);
    f.extend(ipv6(src, dst, proto, hop, l4));
    f
}

/// A TCP segment from `client`:`sport` to VIP:80, as it arrives from the router.
fn client_tcp4(client: [u8; 4], sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ack = if flags & TCP_ACK != 0 { 7001 } else { 0 };
    frame4(
        LBGW_MAC,
        CLIENT_MAC,
        client,
        VIP,
        PROTO_TCP,
        64,
        DF,
        &tcp(&client, &VIP, sport, VIP_PORT, seq, ack, flags, payload),
    )
}

fn syn4(sport: u16) -> Vec<u8> {
    client_tcp4(CLIENT_IP, sport, 1000, TCP_SYN, &[])
}

/// Where a forwarded IPv4 frame went: (source address, source port, backend address,
/// destination port).
fn tuple4(out: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let ip = &out[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let t = &ip[ihl..];
    (
        ip[12..16].try_into().unwrap(),
        u16::from_be_bytes([t[0], t[1]]),
        ip[16..20].try_into().unwrap(),
        u16::from_be_bytes([t[2], t[3]]),
    )
}

fn in_snat_range(port: u16) -> bool {
    let (first, count) = SNAT_PORTS;
    port >= first && u32::from(port) < u32::from(first) + u32::from(count)
}

fn mac_of(backend_ip: [u8; 4]) -> [u8; 6] {
    let i = BACKEND4
        .iter()
        .position(|b| *b == backend_ip)
        .expect("a lab backend");
    BACKEND_MAC[i]
}

/// Runs `input` and checks the verdict, the whole output frame and its checksums.
fn expect(dp: &mut Dataplane, what: &str, input: &[u8], verdict: u32, want: &[u8]) {
    let (got_verdict, out) = run(dp, input);
    assert_eq!(got_verdict, verdict, "{what}: verdict (frame {out:02x?})");
    assert_eq!(
        out, want,
        "{what}: output frame\n  got  {out:02x?}\n  want {want:02x?}"
    );
    if verdict == XDP_REDIRECT || verdict == XDP_TX {
        verify_checksums(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// Forwards an IPv4 TCP SYN from CLIENT_IP:`sport` and returns (backend, NAT port), after
/// checking the frame against one built from scratch with them.
fn forward_syn(lab: &L4Lab, dp: &mut Dataplane, sport: u16) -> ([u8; 4], u16) {
    let input = syn4(sport);
    let (verdict, out) = run(dp, &input);
    assert_eq!(verdict, XDP_REDIRECT, "SYN from port {sport}: {out:02x?}");
    let (src, nat_port, backend, dport) = tuple4(&out);
    assert_eq!((src, dport), (NODE4, BACKEND_PORT), "{out:02x?}");
    assert!(
        in_snat_range(nat_port),
        "NAT port {nat_port} outside {SNAT_PORTS:?}"
    );
    let want = frame4(
        mac_of(backend),
        lab.bk0_mac,
        NODE4,
        backend,
        PROTO_TCP,
        63,
        DF,
        &tcp(
            &NODE4,
            &backend,
            nat_port,
            BACKEND_PORT,
            1000,
            0,
            TCP_SYN,
            &[],
        ),
    );
    assert_eq!(out, want, "SYN from port {sport}");
    verify_checksums(&out).unwrap();
    (backend, nat_port)
}

/// The backend of an IPv4 flow that is already known (a data segment), without checking
/// anything but the verdict.
fn backend_of(dp: &mut Dataplane, sport: u16) -> ([u8; 4], u16) {
    let (verdict, out) = run(dp, &client_tcp4(CLIENT_IP, sport, 1001, TCP_ACK, b"x"));
    assert_eq!(verdict, XDP_REDIRECT, "flow from port {sport}: {out:02x?}");
    let (_, nat_port, backend, _) = tuple4(&out);
    (backend, nat_port)
}

fn tcp_frontend(backends: &[(SocketAddr, bool)]) -> lbgw::l4::Frontend {
    frontend(IpAddr::from(VIP), PROTO_TCP, VIP_PORT, backends)
}

fn vip_forwarded(dp: &Dataplane, vip: IpAddr) -> u64 {
    let (_, per_vip) = dp.counters().unwrap();
    per_vip.iter().find(|v| v.ip == vip).unwrap().forwarded
}

fn counter(dp: &Dataplane, c: Counter) -> u64 {
    dp.counters().unwrap().0.get(c)
}

#[test]
fn tcp_flow_is_source_nated_to_a_backend_and_its_replies_are_translated_back() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[(backend(0), true), (backend(1), true)])]);

    let (backend_ip, nat_port) = forward_syn(&lab, &mut dp, 33000);

    // The next segment of the flow: same backend, same NAT port, payload untouched.
    let payload = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
    let want = frame4(
        mac_of(backend_ip),
        lab.bk0_mac,
        NODE4,
        backend_ip,
        PROTO_TCP,
        63,
        DF,
        &tcp(
            &NODE4,
            &backend_ip,
            nat_port,
            BACKEND_PORT,
            1001,
            7001,
            TCP_ACK | TCP_PSH,
            payload,
        ),
    );
    expect(
        &mut dp,
        "second segment",
        &client_tcp4(CLIENT_IP, 33000, 1001, TCP_ACK | TCP_PSH, payload),
        XDP_REDIRECT,
        &want,
    );

    // The backend's SYN-ACK to the node's NAT port goes back to the client from VIP:80.
    let reply = frame4(
        lab.bk0_mac,
        mac_of(backend_ip),
        backend_ip,
        NODE4,
        PROTO_TCP,
        64,
        DF,
        &tcp(
            &backend_ip,
            &NODE4,
            BACKEND_PORT,
            nat_port,
            7000,
            1001,
            TCP_SYN | TCP_ACK,
            &[],
        ),
    );
    let want = frame4(
        CLIENT_MAC,
        LBGW_MAC,
        VIP,
        CLIENT_IP,
        PROTO_TCP,
        63,
        DF,
        &tcp(
            &VIP,
            &CLIENT_IP,
            VIP_PORT,
            33000,
            7000,
            1001,
            TCP_SYN | TCP_ACK,
            &[],
        ),
    );
    expect(&mut dp, "SYN-ACK reply", &reply, XDP_TX, &want);

    let (global, _) = dp.counters().unwrap();
    assert_eq!(global.get(Counter::L4Forwarded), 2, "{global}");
    assert_eq!(global.get(Counter::L4Reversed), 1, "{global}");
    assert_eq!(global.get(Counter::L4Rebalanced), 0, "{global}");
    assert_eq!(vip_forwarded(&dp, IpAddr::from(VIP)), 2);
}

#[test]
fn udp_checksums_zero_stays_zero_and_present_is_updated() {
    let lab = L4Lab::new();
    let dns = frontend(
        IpAddr::from(VIP),
        PROTO_UDP,
        53,
        &[(SocketAddr::new(IpAddr::from(BACKEND4[0]), 5353), true)],
    );
    let mut dp = lab.dataplane(&[dns]);
    let b = BACKEND4[0];

    for (sport, checksum) in [(34000u16, false), (34001, true)] {
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        let input = frame4(
            LBGW_MAC,
            CLIENT_MAC,
            CLIENT_IP,
            VIP,
            PROTO_UDP,
            64,
            0,
            &udp(&CLIENT_IP, &VIP, sport, 53, query, checksum),
        );
        let (verdict, out) = run(&mut dp, &input);
        assert_eq!(verdict, XDP_REDIRECT, "{out:02x?}");
        let (_, nat_port, _, _) = tuple4(&out);
        assert!(in_snat_range(nat_port), "NAT port {nat_port}");
        let want = frame4(
            BACKEND_MAC[0],
            lab.bk0_mac,
            NODE4,
            b,
            PROTO_UDP,
            63,
            0,
            &udp(&NODE4, &b, nat_port, 5353, query, checksum),
        );
        assert_eq!(out, want, "query, checksum {checksum}");
        verify_checksums(&out).unwrap();
        if !checksum {
            assert_eq!(
                out[14 + 20 + 6..14 + 20 + 8],
                [0, 0],
                "no checksum stays none"
            );
        }

        // The answer; with a checksum, one whose translated checksum computes to zero, which
        // must be sent as all ones (RFC 768). The last two payload bytes are chosen for that.
        let mut answer = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
        if checksum {
            let probe = udp(&VIP, &CLIENT_IP, 53, sport, &answer, false);
            let sum = inet_checksum(&[
                &pseudo_header(&VIP, &CLIENT_IP, PROTO_UDP, probe.len()),
                &probe,
            ]);
            let n = answer.len();
            answer[n - 2..].copy_from_slice(&sum.to_be_bytes());
        }
        let reply = frame4(
            lab.bk0_mac,
            BACKEND_MAC[0],
            b,
            NODE4,
            PROTO_UDP,
            64,
            0,
            &udp(&b, &NODE4, 5353, nat_port, &answer, checksum),
        );
        let want = frame4(
            CLIENT_MAC,
            LBGW_MAC,
            VIP,
            CLIENT_IP,
            PROTO_UDP,
            63,
            0,
            &udp(&VIP, &CLIENT_IP, 53, sport, &answer, checksum),
        );
        if checksum {
            assert_eq!(want[14 + 20 + 6..14 + 20 + 8], [0xff, 0xff], "fixture");
        }
        expect(&mut dp, "UDP answer", &reply, XDP_TX, &want);
    }
    assert_eq!(counter(&dp, Counter::L4Reversed), 2);
}

#[test]
fn ipv6_tcp_is_forwarded_and_reversed() {
    let lab = L4Lab::new();
    let b6 = backend6();
    let fe = frontend(
        IpAddr::from(vip6()),
        PROTO_TCP,
        VIP_PORT,
        &[(SocketAddr::new(IpAddr::from(b6), BACKEND_PORT), true)],
    );
    let mut dp = lab.dataplane(&[fe]);
    let (client, vip, node) = (client6(), vip6(), node6());

    let input = frame6(
        LBGW_MAC,
        CLIENT_MAC,
        client,
        vip,
        PROTO_TCP,
        64,
        &tcp(&client, &vip, 35000, VIP_PORT, 1000, 0, TCP_SYN, &[]),
    );
    let (verdict, out) = run(&mut dp, &input);
    assert_eq!(verdict, XDP_REDIRECT, "{out:02x?}");
    let nat_port = u16::from_be_bytes([out[54], out[55]]);
    assert!(in_snat_range(nat_port), "NAT port {nat_port}");
    let want = frame6(
        BACKEND_MAC[0],
        lab.bk0_mac,
        node,
        b6,
        PROTO_TCP,
        63,
        &tcp(&node, &b6, nat_port, BACKEND_PORT, 1000, 0, TCP_SYN, &[]),
    );
    assert_eq!(out, want, "\n  got  {out:02x?}\n  want {want:02x?}");
    verify_checksums(&out).unwrap();

    let reply = frame6(
        lab.bk0_mac,
        BACKEND_MAC[0],
        b6,
        node,
        PROTO_TCP,
        64,
        &tcp(
            &b6,
            &node,
            BACKEND_PORT,
            nat_port,
            9000,
            1001,
            TCP_SYN | TCP_ACK,
            b"hi",
        ),
    );
    let want = frame6(
        CLIENT_MAC,
        LBGW_MAC,
        vip,
        client,
        PROTO_TCP,
        63,
        &tcp(
            &vip,
            &client,
            VIP_PORT,
            35000,
            9000,
            1001,
            TCP_SYN | TCP_ACK,
            b"hi",
        ),
    );
    expect(&mut dp, "IPv6 reply", &reply, XDP_TX, &want);
    assert_eq!(vip_forwarded(&dp, IpAddr::from(vip6())), 1);
    assert_eq!(counter(&dp, Counter::L4Reversed), 1);
}

#[test]
fn local_traffic_policy_keeps_the_client_address_and_translates_replies() {
    let lab = L4Lab::new();
    let mut fe = tcp_frontend(&[(backend(0), true)]);
    fe.snat = false;
    let mut dp = lab.dataplane(&[fe]);
    let b = BACKEND4[0];

    let want = frame4(
        BACKEND_MAC[0],
        lab.bk0_mac,
        CLIENT_IP,
        b,
        PROTO_TCP,
        63,
        DF,
        &tcp(&CLIENT_IP, &b, 36000, BACKEND_PORT, 1000, 0, TCP_SYN, &[]),
    );
    expect(&mut dp, "DNAT-only SYN", &syn4(36000), XDP_REDIRECT, &want);

    // The backend answers the client directly (through this node, its route to the client).
    let reply = frame4(
        lab.bk0_mac,
        BACKEND_MAC[0],
        b,
        CLIENT_IP,
        PROTO_TCP,
        64,
        DF,
        &tcp(
            &b,
            &CLIENT_IP,
            BACKEND_PORT,
            36000,
            5000,
            1001,
            TCP_SYN | TCP_ACK,
            &[],
        ),
    );
    let want = frame4(
        CLIENT_MAC,
        LBGW_MAC,
        VIP,
        CLIENT_IP,
        PROTO_TCP,
        63,
        DF,
        &tcp(
            &VIP,
            &CLIENT_IP,
            VIP_PORT,
            36000,
            5000,
            1001,
            TCP_SYN | TCP_ACK,
            &[],
        ),
    );
    expect(&mut dp, "DNAT-only reply", &reply, XDP_TX, &want);

    // Traffic from the backend that is no reply of a flow is left to the stack. (To an address
    // outside the pools: the fixture client lies in the pool, where early drop would take it.)
    let other = frame4(
        lab.bk0_mac,
        BACKEND_MAC[0],
        b,
        NOT_IN_POOL,
        PROTO_TCP,
        64,
        DF,
        &tcp(
            &b,
            &NOT_IN_POOL,
            BACKEND_PORT,
            36000,
            5000,
            1001,
            TCP_ACK,
            &[],
        ),
    );
    expect(&mut dp, "not a reply", &other, XDP_PASS, &other);
}

#[test]
fn session_affinity_keeps_a_client_on_one_backend() {
    let lab = L4Lab::new();
    let mut fe = tcp_frontend(&[(backend(0), true), (backend(1), true), (backend(2), true)]);
    fe.affinity_timeout = Some(10_800);
    let mut dp = lab.dataplane(&[fe]);

    let mut backends = BTreeSet::new();
    for sport in 40000..40050 {
        backends.insert(forward_syn(&lab, &mut dp, sport).0);
    }
    assert_eq!(backends.len(), 1, "one client, many ports: {backends:?}");

    // Different clients are still spread (20 clients on one of 3 backends: p ≈ 3^-19).
    let mut per_client = BTreeSet::new();
    for host in 20..40u8 {
        let client = [192, 0, 2, host];
        let (verdict, out) = run(&mut dp, &client_tcp4(client, 40000, 1000, TCP_SYN, &[]));
        assert_eq!(verdict, XDP_REDIRECT);
        per_client.insert(tuple4(&out).2);
    }
    assert!(per_client.len() > 1, "clients all on {per_client:?}");
}

#[test]
fn new_flows_spread_evenly_over_two_backends() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[(backend(0), true), (backend(1), true)])]);
    let mut per_backend: BTreeMap<[u8; 4], u32> = BTreeMap::new();
    let mut nat_ports = BTreeSet::new();
    const FLOWS: u16 = 2000;
    for sport in 20000..20000 + FLOWS {
        let (verdict, out) = run(&mut dp, &syn4(sport));
        assert_eq!(verdict, XDP_REDIRECT);
        let (_, nat_port, backend, _) = tuple4(&out);
        *per_backend.entry(backend).or_default() += 1;
        nat_ports.insert((backend, nat_port));
    }
    assert_eq!(per_backend.len(), 2, "{per_backend:?}");
    for (b, n) in &per_backend {
        let share = f64::from(*n) / f64::from(FLOWS);
        assert!(
            (0.45..=0.55).contains(&share),
            "backend {b:?} got {n} of {FLOWS} flows"
        );
    }
    // Every flow got its own (backend, NAT port): replies are told apart.
    assert_eq!(nat_ports.len(), usize::from(FLOWS));
    assert_eq!(counter(&dp, Counter::L4Forwarded), u64::from(FLOWS));
    assert_eq!(vip_forwarded(&dp, IpAddr::from(VIP)), u64::from(FLOWS));
}

const STICKY_FLOWS: std::ops::Range<u16> = 21000..21300;

fn open_flows(lab: &L4Lab, dp: &mut Dataplane) -> BTreeMap<u16, ([u8; 4], u16)> {
    STICKY_FLOWS
        .map(|sport| (sport, forward_syn(lab, dp, sport)))
        .collect()
}

#[test]
fn flows_keep_their_backend_when_a_backend_is_added() {
    let lab = L4Lab::new();
    let two = [(backend(0), true), (backend(1), true)];
    let mut dp = lab.dataplane(&[tcp_frontend(&two)]);
    let before = open_flows(&lab, &mut dp);

    let three = [(backend(0), true), (backend(1), true), (backend(2), true)];
    update(&mut dp, &[tcp_frontend(&three)]);
    for (&sport, &was) in &before {
        assert_eq!(
            backend_of(&mut dp, sport),
            was,
            "flow from port {sport} moved"
        );
    }
    let mut to_third = 0;
    for sport in 22000..22300 {
        if forward_syn(&lab, &mut dp, sport).0 == BACKEND4[2] {
            to_third += 1;
        }
    }
    // Maglev gives the new backend a third of the ring: about 100 of 300 new flows.
    assert!(
        (60..=140).contains(&to_third),
        "{to_third} of 300 new flows on the new backend"
    );
    assert_eq!(counter(&dp, Counter::L4Rebalanced), 0);
}

#[test]
fn removing_a_backend_rebalances_only_its_flows() {
    let lab = L4Lab::new();
    let three = [(backend(0), true), (backend(1), true), (backend(2), true)];
    let mut dp = lab.dataplane(&[tcp_frontend(&three)]);
    let before = open_flows(&lab, &mut dp);
    let on_removed = before.values().filter(|(b, _)| *b == BACKEND4[2]).count();
    assert!(on_removed > 50, "{on_removed} of 300 flows on backend 3");

    update(&mut dp, &[tcp_frontend(&three[..2])]);
    for (&sport, &(was, was_port)) in &before {
        let (now, port) = backend_of(&mut dp, sport);
        if was == BACKEND4[2] {
            assert_ne!(
                now, BACKEND4[2],
                "flow from port {sport} still on the removed backend"
            );
            assert!(in_snat_range(port));
        } else {
            assert_eq!((now, port), (was, was_port), "flow from port {sport} moved");
        }
    }
    // Each moved flow is re-balanced once, then known again.
    assert_eq!(counter(&dp, Counter::L4Rebalanced), on_removed as u64);
    for &sport in before.keys() {
        backend_of(&mut dp, sport);
    }
    assert_eq!(counter(&dp, Counter::L4Rebalanced), on_removed as u64);
}

#[test]
fn a_backend_that_is_not_ready_keeps_its_flows_and_gets_no_new_ones() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[(backend(0), true), (backend(1), true)])]);
    let before = open_flows(&lab, &mut dp);
    assert!(before.values().any(|(b, _)| *b == BACKEND4[1]));

    update(
        &mut dp,
        &[tcp_frontend(&[(backend(0), true), (backend(1), false)])],
    );
    for (&sport, &was) in &before {
        assert_eq!(
            backend_of(&mut dp, sport),
            was,
            "flow from port {sport} moved"
        );
    }
    for sport in 23000..23300 {
        assert_eq!(forward_syn(&lab, &mut dp, sport).0, BACKEND4[0]);
    }
    assert_eq!(counter(&dp, Counter::L4Rebalanced), 0);

    // None ready: known flows still go on, new ones are dropped.
    update(
        &mut dp,
        &[tcp_frontend(&[(backend(0), false), (backend(1), false)])],
    );
    let (sport, &(was, _)) = before.iter().next().unwrap();
    assert_eq!(backend_of(&mut dp, *sport).0, was);
    let input = syn4(24000);
    expect(&mut dp, "new flow, nothing ready", &input, XDP_DROP, &input);
    assert_eq!(counter(&dp, Counter::L4NoBackend), 1);
}

#[test]
fn no_backend_drops_and_counts() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[])]);
    let input = syn4(25000);
    expect(&mut dp, "no backend", &input, XDP_DROP, &input);
    let (global, per_vip) = dp.counters().unwrap();
    assert_eq!(global.get(Counter::L4NoBackend), 1, "{global}");
    assert_eq!(global.get(Counter::L4Forwarded), 0, "{global}");
    let vip = per_vip.iter().find(|v| v.ip == IpAddr::from(VIP)).unwrap();
    assert_eq!((vip.forwarded, vip.dropped_unserved), (0, 1));
}

#[test]
fn fragments_expiring_ttl_strays_and_truncated_headers() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[(backend(0), true)])]);
    let syn = tcp(&CLIENT_IP, &VIP, 26000, VIP_PORT, 1, 0, TCP_SYN, &[]);

    // A first fragment (MF set): its ports cannot balance the rest of the datagram.
    let fragment = frame4(
        LBGW_MAC, CLIENT_MAC, CLIENT_IP, VIP, PROTO_TCP, 64, 0x2000, &syn,
    );
    expect(&mut dp, "first fragment", &fragment, XDP_DROP, &fragment);
    assert_eq!(counter(&dp, Counter::L4Fragment), 1);

    // TTL 1: the kernel must answer Time Exceeded (RFC 792), so the frame passes untouched.
    let expiring = frame4(LBGW_MAC, CLIENT_MAC, CLIENT_IP, VIP, PROTO_TCP, 1, DF, &syn);
    expect(&mut dp, "TTL 1", &expiring, XDP_PASS, &expiring);
    let expiring6 = frame6(
        LBGW_MAC,
        CLIENT_MAC,
        client6(),
        vip6(),
        PROTO_TCP,
        1,
        &tcp(&client6(), &vip6(), 26000, VIP_PORT, 1, 0, TCP_SYN, &[]),
    );
    // (No IPv6 frontend here: an unserved IPv6 port is dropped before L4, so serve one.)
    let mut fe6 = frontend(
        IpAddr::from(vip6()),
        PROTO_TCP,
        VIP_PORT,
        &[(
            SocketAddr::new(IpAddr::from(backend6()), BACKEND_PORT),
            true,
        )],
    );
    fe6.snat = true;
    update(&mut dp, &[tcp_frontend(&[(backend(0), true)]), fe6]);
    expect(&mut dp, "hop limit 1", &expiring6, XDP_PASS, &expiring6);

    // To the source-NAT range but no NAT entry: the node's own traffic, left to the stack.
    let stray = frame4(
        lab.bk0_mac,
        BACKEND_MAC[0],
        BACKEND4[0],
        NODE4,
        PROTO_TCP,
        64,
        DF,
        &tcp(
            &BACKEND4[0],
            &NODE4,
            BACKEND_PORT,
            SNAT_PORTS.0 + 5,
            1,
            1,
            TCP_ACK,
            &[],
        ),
    );
    expect(&mut dp, "stray to the NAT range", &stray, XDP_PASS, &stray);

    // A TCP header cut after 8 bytes, ports readable, checksum not: dropped.
    let mut truncated = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
    truncated.extend(ipv4(CLIENT_IP, VIP, PROTO_TCP, 64, &[], DF, &syn[..8]));
    expect(&mut dp, "truncated TCP", &truncated, XDP_DROP, &truncated);

    // A backend's reply whose TTL expires here passes too (not counted as reversed).
    let (b, nat_port) = forward_syn(&lab, &mut dp, 27000);
    let reply = frame4(
        lab.bk0_mac,
        BACKEND_MAC[0],
        b,
        NODE4,
        PROTO_TCP,
        1,
        DF,
        &tcp(
            &b,
            &NODE4,
            BACKEND_PORT,
            nat_port,
            1,
            2,
            TCP_SYN | TCP_ACK,
            &[],
        ),
    );
    expect(&mut dp, "reply with TTL 1", &reply, XDP_PASS, &reply);

    let (global, per_vip) = dp.counters().unwrap();
    // Only the SYN from port 27000 was forwarded; the expiring packets passed.
    assert_eq!(global.get(Counter::L4Forwarded), 1, "{global}");
    assert_eq!(global.get(Counter::L4Reversed), 0, "{global}");
    assert_eq!(global.get(Counter::VipPassed), 2, "{global}");
    assert_eq!(global.get(Counter::DroppedMalformed), 1, "{global}");
    let vip = per_vip.iter().find(|v| v.ip == IpAddr::from(VIP)).unwrap();
    assert_eq!((vip.forwarded, vip.passed), (1, 1));
}

#[test]
fn unroutable_backends_are_dropped_as_no_route() {
    let lab = L4Lab::new();
    // 10.9.0.9 is on bk0's subnet but has no neighbour entry: bpf_fib_lookup cannot resolve
    // it (BPF_FIB_LKUP_RET_NO_NEIGH), and userspace is what keeps backends resolved.
    let unresolved = SocketAddr::new(IpAddr::from([10, 9, 0, 9]), BACKEND_PORT);
    let mut dp = lab.dataplane(&[tcp_frontend(&[(unresolved, true)])]);
    let input = syn4(28000);
    expect(&mut dp, "unresolved next hop", &input, XDP_DROP, &input);
    assert_eq!(counter(&dp, Counter::L4NoRoute), 1);

    // With forwarding off the FIB refuses every lookup (BPF_FIB_LKUP_RET_FWD_DISABLED): the
    // node must be a router for the forwarder to work.
    update(&mut dp, &[tcp_frontend(&[(backend(0), true)])]);
    sysctl(&lab, "net.ipv4.ip_forward=0");
    expect(&mut dp, "forwarding disabled", &input, XDP_DROP, &input);
    assert_eq!(counter(&dp, Counter::L4NoRoute), 2);
    sysctl(&lab, "net.ipv4.ip_forward=1");
    forward_syn(&lab, &mut dp, 28000);
    assert_eq!(counter(&dp, Counter::L4Forwarded), 1);
}

fn sysctl(lab: &L4Lab, setting: &str) {
    lbgw_tests::netns::run(lab.netns().cmd("sysctl").args(["-q", "-w", setting]));
}

/// Now on `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn neigh(lab: &L4Lab, args: &[&str]) {
    let mut all = vec!["neigh"];
    all.extend_from_slice(args);
    lab.netns().ip(&all);
}

#[test]
fn known_flows_use_their_cached_route_until_it_expires_then_pick_up_a_new_neighbour() {
    let lab = L4Lab::new();
    let mut dp = lab.dataplane(&[tcp_frontend(&[(backend(0), true)])]);
    let (b, nat_port) = forward_syn(&lab, &mut dp, 29000);
    assert_eq!(b, BACKEND4[0]);
    let segment = client_tcp4(CLIENT_IP, 29000, 1001, TCP_ACK, b"x");
    let forwarded = |mac: [u8; 6]| {
        frame4(
            mac,
            lab.bk0_mac,
            NODE4,
            b,
            PROTO_TCP,
            63,
            DF,
            &tcp(
                &NODE4,
                &b,
                nat_port,
                BACKEND_PORT,
                1001,
                7001,
                TCP_ACK,
                b"x",
            ),
        )
    };
    // The route cache's clock is the test's: entries "refreshed" a minute from now stay
    // fresh however slowly this runs (one entry per CPU map and one shared).
    assert_eq!(
        dp.set_l4_route_time(monotonic_ns() + 60_000_000_000)
            .unwrap(),
        2
    );

    // The backend moved to a new MAC: the flow keeps the cached one while it is fresh...
    let new_mac = [0x02, 0, 0, 0, 0x09, 0xaa];
    let b_ip = IpAddr::from(b).to_string();
    neigh(
        &lab,
        &[
            "replace",
            &b_ip,
            "lladdr",
            "02:00:00:00:09:aa",
            "dev",
            "bk0",
            "nud",
            "permanent",
        ],
    );
    let cached = forwarded(BACKEND_MAC[0]);
    expect(&mut dp, "fresh cache", &segment, XDP_REDIRECT, &cached);
    // ... and does not consult the FIB at all: without any neighbour entry it goes on.
    neigh(&lab, &["del", &b_ip, "dev", "bk0"]);
    expect(
        &mut dp,
        "fresh cache, no neighbour",
        &segment,
        XDP_REDIRECT,
        &cached,
    );
    assert_eq!(counter(&dp, Counter::L4NoRoute), 0);

    // Two seconds later (past L4_ROUTE_TTL_NS) the FIB is asked again: no neighbour now, so
    // the packet is dropped as no route, and the flow keeps its entry.
    let ttl = lbgw_common::L4_ROUTE_TTL_NS;
    assert!(ttl < 2_000_000_000);
    dp.set_l4_route_time(monotonic_ns() - 2_000_000_000)
        .unwrap();
    expect(
        &mut dp,
        "expired, no neighbour",
        &segment,
        XDP_DROP,
        &segment,
    );
    assert_eq!(counter(&dp, Counter::L4NoRoute), 1);

    // With the neighbour back at its new MAC, the next packet looks up the route (the entry
    // was not refreshed by the failed lookup) and goes to the new MAC: same backend, same
    // NAT port, nothing re-balanced.
    neigh(
        &lab,
        &[
            "replace",
            &b_ip,
            "lladdr",
            "02:00:00:00:09:aa",
            "dev",
            "bk0",
            "nud",
            "permanent",
        ],
    );
    expect(
        &mut dp,
        "refreshed route",
        &segment,
        XDP_REDIRECT,
        &forwarded(new_mac),
    );
    // ... and cached: held fresh again, the new MAC outlives the neighbour entry.
    dp.set_l4_route_time(monotonic_ns() + 60_000_000_000)
        .unwrap();
    neigh(&lab, &["del", &b_ip, "dev", "bk0"]);
    expect(
        &mut dp,
        "re-cached route",
        &segment,
        XDP_REDIRECT,
        &forwarded(new_mac),
    );
    assert_eq!(counter(&dp, Counter::L4NoRoute), 1);
    assert_eq!(counter(&dp, Counter::L4Rebalanced), 0);
    assert_eq!(counter(&dp, Counter::L4Forwarded), 5);
}
