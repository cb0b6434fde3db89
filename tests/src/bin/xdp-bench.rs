//! Per-packet cost of lbgw's XDP program for each verdict, measured in the kernel with
//! BPF_PROG_TEST_RUN (`cargo xtask bench-xdp`). Prints figures; asserts only verdicts.
//!
//! `xdp-bench [--rounds N] [LABEL=OBJECT ...]` compares eBPF objects (builds of lbgw-ebpf)
//! side by side: every case is measured N times for each object in turn (so drift and other
//! load hit all of them alike) and the median is printed in one column per object. Without
//! objects it measures the embedded one.
//!
//! BPF_PROG_TEST_RUN with `repeat` runs the program again on the same, already rewritten buffer
//! (net/bpf/test_run.c), so a repeated ARP request would be measured as a repeated ARP *reply*.
//! Idempotent verdicts are timed with `repeat` (the kernel's mean per repetition). Rewriting
//! verdicts are timed one run per call, each paired with a run of the trivial `lbgw_pass`
//! program, and reported as the median paired difference added to the trivial program's
//! `repeat` figure: single calls carry a timer overhead that the pairing cancels.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use lbgw_tests::{fixtures::*, l4lab, packets::*};

const CALLS: usize = 100_000;
const REPEAT: u32 = 1_000_000;

/// One BPF_PROG_TEST_RUN call with repeat=1; the kernel's duration of that single run.
fn once(program: &mut Xdp, frame: &[u8], out: &mut [u8], expect: u32) -> f64 {
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(out),
        ..Default::default()
    };
    let r = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, expect, "unexpected verdict");
    r.duration.as_nanos() as f64
}

/// Alternates single runs of the trivial program and of the case, so that drift and noise hit
/// both alike; returns (median of the trivial runs, median of the paired differences).
fn paired(pass: &mut Xdp, program: &mut Xdp, frame: &[u8], expect: u32) -> (f64, f64) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut base = Vec::with_capacity(CALLS);
    let mut diff = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let b = once(pass, frame, &mut out, XDP_PASS);
        let c = once(program, frame, &mut out, expect);
        base.push(b);
        diff.push(c - b);
    }
    (median(&mut base), median(&mut diff))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The kernel's mean duration of one repetition over `REPEAT` repetitions.
fn repeated(program: &mut Xdp, frame: &[u8], expect: u32) -> f64 {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: REPEAT,
        ..Default::default()
    };
    let r = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, expect);
    r.duration.as_nanos() as f64
}

/// An eBPF object under test.
struct Object {
    label: String,
    bytes: Vec<u8>,
}

/// `[--rounds N] [LABEL=PATH | PATH ...]`; no object: the embedded one.
fn args() -> (usize, Vec<Object>) {
    let mut rounds = 1;
    let mut objects = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--rounds N");
            continue;
        }
        let (label, path) = arg.split_once('=').unwrap_or((&arg, &arg));
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        objects.push(Object {
            label: label.to_owned(),
            bytes,
        });
    }
    if objects.is_empty() {
        objects.push(Object {
            label: "ns/packet".to_owned(),
            bytes: lbgw::dataplane::object::bytes().to_vec(),
        });
    }
    (rounds.max(1), objects)
}

/// Measures `f(object index, round)` for every round and object in turn; the median per object.
fn alternate(rounds: usize, objects: usize, mut f: impl FnMut(usize, usize) -> f64) -> Vec<f64> {
    let mut all = vec![Vec::with_capacity(rounds); objects];
    for round in 0..rounds {
        for (i, v) in all.iter_mut().enumerate() {
            v.push(f(i, round));
        }
    }
    all.iter_mut().map(|v| median(v)).collect()
}

fn row(name: &str, values: &[f64]) {
    print!("  {name:<58}");
    for v in values {
        print!(" {v:>9.1}");
    }
    println!();
}

fn main() {
    let (rounds, objects) = args();
    let mut dps: Vec<_> = objects.iter().map(|o| dataplane_from(&o.bytes)).collect();
    // The object's maps are pinned by name: load it with a private pin directory, removed
    // right away (the loaded maps live on through their fds), so nothing is left on bpffs.
    let pins =
        std::path::Path::new("/sys/fs/bpf").join(format!("lbgw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&pins).expect("pin directory on bpffs");
    let loaded = aya::EbpfLoader::new()
        .default_map_pin_directory(&pins)
        .load(lbgw::dataplane::object::bytes());
    let _ = std::fs::remove_dir_all(&pins);
    let mut ebpf = loaded.expect("load object");
    let pass: &mut Xdp = ebpf
        .program_mut(lbgw_common::names::PASS_PROGRAM)
        .expect("lbgw_pass")
        .try_into()
        .expect("xdp");
    pass.load().expect("load lbgw_pass");

    let (snm, snm_mac) = solicited_node(vip6());
    let ns = ns_frame(client6(), snm, snm_mac, vip6(), true, 255);
    let mut tcp = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
    tcp.extend(ipv4_tcp(CLIENT_IP, VIP, 443));
    let arp = arp_request_for(VIP, None);
    let arp_other = arp_request_for(POOL_UNALLOCATED, None);

    let floor = repeated(pass, &tcp, XDP_PASS);
    println!("XDP per-packet cost via BPF_PROG_TEST_RUN on this machine (ns per packet)");
    println!("median of {rounds} round(s), objects measured in turn\n");
    print!("  {:<58}", "case");
    for o in &objects {
        print!(" {:>9}", o.label);
    }
    println!();
    println!("repeat={REPEAT}, kernel mean per repetition (idempotent verdicts):");
    row(
        "trivial XDP_PASS program (floor)",
        &vec![floor; objects.len()],
    );
    let arp_reply = pad60(lbgw_tests::packets::arp(
        LBGW_MAC, CLIENT_MAC, None, 2, CLIENT_MAC, CLIENT_IP, LBGW_MAC, VIP,
    ));
    let arp_not_announced = arp_request_for(VIP_NOT_ANNOUNCED, None);
    let arp_lan_host = arp_request_for(NOT_IN_POOL, None);
    let frame4 = |dst: [u8; 4], proto: u8, payload: &[u8]| {
        let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
        f.extend(ipv4(CLIENT_IP, dst, proto, 64, &[], 0x4000, payload));
        pad60(f)
    };
    let outside = frame4(NOT_IN_POOL, 6, &ports(443, 20));
    let unserved = frame4(VIP, 6, &ports(8080, 20));
    let unallocated = frame4(POOL_UNALLOCATED, 6, &ports(443, 20));
    let idempotent: [(&str, &[u8], u32); 8] = [
        ("IPv4 TCP to a served VIP port, pass", &tcp, XDP_PASS),
        ("IPv4 TCP outside the pools, pass", &outside, XDP_PASS),
        (
            "IPv4 TCP to an unserved VIP port, drop",
            &unserved,
            XDP_DROP,
        ),
        (
            "IPv4 TCP to an unallocated pool address, drop",
            &unallocated,
            XDP_DROP,
        ),
        ("ARP reply (parse only), pass", &arp_reply, XDP_PASS),
        (
            "ARP for a LAN host outside the pools, pass",
            &arp_lan_host,
            XDP_PASS,
        ),
        ("ARP for an unallocated address, pass", &arp_other, XDP_PASS),
        (
            "ARP for a VIP not announced here, pass",
            &arp_not_announced,
            XDP_PASS,
        ),
    ];
    for (name, frame, verdict) in idempotent {
        let v = alternate(rounds, objects.len(), |i, _| {
            repeated(dps[i].program(), frame, verdict)
        });
        row(name, &v);
    }
    let echo = frame4(VIP, 1, &icmp_echo(8, 1, 1, b"lbgw"));
    println!(
        "\n{CALLS} single runs each paired with the trivial program; estimate = floor + median \
         paired difference:"
    );
    let rows: [(&str, &[u8], u32); 5] = [
        ("ARP request for a VIP -> reply (XDP_TX)", &arp, XDP_TX),
        ("ICMP echo to a VIP -> reply (XDP_TX)", &echo, XDP_TX),
        ("NS for a VIP -> NA (XDP_TX)", &ns, XDP_TX),
        (
            "ARP for an unallocated address (XDP_PASS)",
            &arp_other,
            XDP_PASS,
        ),
        ("IPv4 TCP to a VIP, pass-through (XDP_PASS)", &tcp, XDP_PASS),
    ];
    for (name, frame, verdict) in rows {
        let v = alternate(rounds, objects.len(), |i, _| {
            floor + paired(pass, dps[i].program(), frame, verdict).1
        });
        row(name, &v);
    }
    drop(dps);
    l4_rows(pass, floor, rounds, &objects);
}

/// The L4 forwarder, in a lab namespace whose FIB routes to the backends (see
/// `lbgw_tests::l4lab`): a new flow (Maglev pick, source-NAT port, connection and NAT entries,
/// FIB lookup with source), a known flow (connection-table hit, route from the flow entry) and
/// a backend's reply (NAT-table hit). New flows need a new 5-tuple per run, so that row pairs
/// `NEW_FLOWS` distinct SYNs with runs of the trivial program. With source NAT configured
/// every TCP/UDP packet is also checked against the NAT port range: the classification rows
/// are repeated here with it.
fn l4_rows(pass: &mut Xdp, floor: f64, rounds: usize, objects: &[Object]) {
    const XDP_REDIRECT: u32 = 4;
    const NEW_FLOWS: u16 = 4000;
    let lab = l4lab::L4Lab::new();
    let backends: Vec<_> = l4lab::BACKEND4
        .iter()
        .map(|b| (std::net::SocketAddr::from((*b, 8080)), true))
        .collect();
    let frontend = l4lab::frontend(VIP.into(), lbgw_common::PROTO_TCP, 80, &backends);
    let mut dps: Vec<_> = objects
        .iter()
        .map(|o| lab.dataplane_from(&o.bytes, std::slice::from_ref(&frontend)))
        .collect();
    let syn = |sport: u16| {
        let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
        let t = tcp(&CLIENT_IP, &VIP, sport, 80, 1, 0, TCP_SYN, &[]);
        f.extend(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x4000, &t));
        pad60(f)
    };

    println!(
        "\nL4 forwarder (3 backends, source NAT ports {:?}, FIB in a lab namespace):",
        l4lab::SNAT_PORTS
    );
    let mut out = vec![0u8; 256];
    // A fresh data plane per round: 4000 more flows would start to exhaust the NAT ports.
    let new = alternate(rounds, objects.len(), |i, _| {
        dps[i] = lab.dataplane_from(&objects[i].bytes, std::slice::from_ref(&frontend));
        let mut base = Vec::new();
        let mut diff = Vec::new();
        for sport in 1024..1024 + NEW_FLOWS {
            let frame = syn(sport);
            let b = once(pass, &frame, &mut out, XDP_PASS);
            let c = once(dps[i].program(), &frame, &mut out, XDP_REDIRECT);
            base.push(b);
            diff.push(c - b);
        }
        floor + median(&mut diff)
    });
    row(
        &format!("forward+NAT, new flow ({NEW_FLOWS} SYNs, XDP_REDIRECT), estimate"),
        &new,
    );

    // The known flow is the last new one; its forwarded frame names the backend and NAT port.
    let known = syn(1024 + NEW_FLOWS - 1);
    let mut replies = Vec::new();
    for dp in dps.iter_mut() {
        let (verdict, fwd) = run(dp, &known);
        assert_eq!(verdict, XDP_REDIRECT);
        let backend: [u8; 4] = fwd[30..34].try_into().expect("IPv4 destination");
        let nat_port = u16::from_be_bytes([fwd[34], fwd[35]]);
        let mut reply = eth(lab.bk0_mac, [2, 0, 0, 0, 9, 2], None, ETH_P_IP);
        let t = tcp(
            &backend,
            &l4lab::NODE4,
            8080,
            nat_port,
            9,
            2,
            TCP_SYN | TCP_ACK,
            &[],
        );
        reply.extend(ipv4(backend, l4lab::NODE4, 6, 64, &[], 0x4000, &t));
        replies.push(pad60(reply));
    }
    let v = alternate(rounds, objects.len(), |i, _| {
        floor + paired(pass, dps[i].program(), &known, XDP_REDIRECT).1
    });
    row("forward, known flow (XDP_REDIRECT), estimate", &v);
    // Replies leave by the interface the client's packets came in on (here `lo`, the test
    // run's ingress): XDP_TX.
    let v = alternate(rounds, objects.len(), |i, _| {
        floor + paired(pass, dps[i].program(), &replies[i], XDP_TX).1
    });
    row("reverse NAT, backend reply (XDP_TX), estimate", &v);

    let frame4 = |dst: [u8; 4], dport: u16| {
        let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
        f.extend(ipv4(CLIENT_IP, dst, 6, 64, &[], 0x4000, &ports(dport, 20)));
        pad60(f)
    };
    let outside = frame4(NOT_IN_POOL, 443);
    let unserved = frame4(VIP, 8080);
    let idempotent: [(&str, &[u8], u32); 2] = [
        (
            "with source NAT: IPv4 TCP outside the pools, pass",
            &outside,
            XDP_PASS,
        ),
        (
            "with source NAT: IPv4 TCP to an unserved VIP port, drop",
            &unserved,
            XDP_DROP,
        ),
    ];
    for (name, frame, verdict) in idempotent {
        let v = alternate(rounds, objects.len(), |i, _| {
            repeated(dps[i].program(), frame, verdict)
        });
        row(name, &v);
    }
}
