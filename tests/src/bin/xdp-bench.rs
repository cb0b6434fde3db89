//! Per-packet cost of lbgw's XDP program for each verdict, measured in the kernel with
//! BPF_PROG_TEST_RUN (`cargo xtask bench-xdp`). Prints figures; asserts only verdicts.
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

fn main() {
    let mut dp = dataplane();
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
    println!("XDP per-packet cost via BPF_PROG_TEST_RUN on this machine (ns per packet)\n");
    println!("repeat={REPEAT}, kernel mean per repetition (idempotent verdicts):");
    println!("  {:<46} {floor:>7.1}", "trivial XDP_PASS program (floor)");
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
        println!(
            "  {name:<46} {:>7.1}",
            repeated(dp.program(), frame, verdict)
        );
    }
    let echo = frame4(VIP, 1, &icmp_echo(8, 1, 1, b"lbgw"));
    println!(
        "\n{CALLS} single runs each paired with the trivial program; extra = median paired \
         difference,\nestimate = floor + extra, single = median single-call figure:"
    );
    println!(
        "  {:<46} {:>7} {:>9} {:>9}",
        "case", "extra", "estimate", "single"
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
        let (base_single, extra) = paired(pass, dp.program(), frame, verdict);
        println!(
            "  {name:<46} {extra:>7.1} {:>9.1} {:>9.1}",
            floor + extra,
            base_single + extra
        );
    }
    l4_rows(pass, floor);
}

/// The L4 forwarder, in a lab namespace whose FIB routes to the backends (see
/// `lbgw_tests::l4lab`): a new flow (Maglev pick, source-NAT port, connection and NAT entries,
/// FIB lookup with source), a known flow (connection-table hit, FIB lookup) and a backend's
/// reply (NAT-table hit, FIB lookup). New flows need a new 5-tuple per run, so that row pairs
/// `NEW_FLOWS` distinct SYNs with runs of the trivial program.
fn l4_rows(pass: &mut Xdp, floor: f64) {
    const XDP_REDIRECT: u32 = 4;
    const NEW_FLOWS: u16 = 4000;
    let lab = l4lab::L4Lab::new();
    let backends: Vec<_> = l4lab::BACKEND4
        .iter()
        .map(|b| (std::net::SocketAddr::from((*b, 8080)), true))
        .collect();
    let frontend = l4lab::frontend(VIP.into(), lbgw_common::PROTO_TCP, 80, &backends);
    let mut dp = lab.dataplane(&[frontend]);
    let syn = |sport: u16| {
        let mut f = eth(LBGW_MAC, CLIENT_MAC, None, ETH_P_IP);
        let t = tcp(&CLIENT_IP, &VIP, sport, 80, 1, 0, TCP_SYN, &[]);
        f.extend(ipv4(CLIENT_IP, VIP, 6, 64, &[], 0x4000, &t));
        pad60(f)
    };

    let mut out = vec![0u8; 256];
    let mut base = Vec::new();
    let mut diff = Vec::new();
    for sport in 1024..1024 + NEW_FLOWS {
        let frame = syn(sport);
        let b = once(pass, &frame, &mut out, XDP_PASS);
        let c = once(dp.program(), &frame, &mut out, XDP_REDIRECT);
        base.push(b);
        diff.push(c - b);
    }
    let (base_new, extra_new) = (median(&mut base), median(&mut diff));

    // The known flow is the last new one; its forwarded frame names the backend and NAT port.
    let known = syn(1024 + NEW_FLOWS - 1);
    let (verdict, fwd) = run(&mut dp, &known);
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
    let reply = pad60(reply);

    println!("\nL4 forwarder (3 backends, source NAT, FIB lookup in a lab namespace):");
    println!(
        "  {:<46} {extra_new:>7.1} {:>9.1} {:>9.1}",
        format!("forward+NAT, new flow ({NEW_FLOWS} SYNs, XDP_REDIRECT)"),
        floor + extra_new,
        base_new + extra_new
    );
    // Replies leave by the interface the client's packets came in on (here `lo`, the test
    // run's ingress): XDP_TX.
    let rows: [(&str, &[u8], u32); 2] = [
        ("forward, known flow (XDP_REDIRECT)", &known, XDP_REDIRECT),
        ("reverse NAT, backend reply (XDP_TX)", &reply, XDP_TX),
    ];
    for (name, frame, verdict) in rows {
        let (base_single, extra) = paired(pass, dp.program(), frame, verdict);
        println!(
            "  {name:<46} {extra:>7.1} {:>9.1} {:>9.1}",
            floor + extra,
            base_single + extra
        );
    }
}
