//! Per-packet cost of lbgw's XDP program for each verdict, measured in the kernel with
//! BPF_PROG_TEST_RUN (`cargo xtask bench-xdp`).
//!
//! BPF_PROG_TEST_RUN with `repeat` runs the program again on the same, already rewritten buffer
//! (net/bpf/test_run.c), so a repeated ARP request would be measured as a repeated ARP *reply*.
//! Rewriting verdicts are therefore timed one run per call: the kernel's own per-run duration,
//! median over many calls. The trivial `lbgw_pass` program measured the same way is the floor
//! (timer and dispatch overhead). Idempotent cases are also timed with `repeat`, for comparison
//! with figures quoted elsewhere.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use lbgw_tests::{fixtures::*, packets::*};

const CALLS: usize = 200_000;
const REPEAT: u32 = 1_000_000;

fn single_runs(program: &mut Xdp, frame: &[u8], expect: u32) -> (f64, f64) {
    let mut samples = Vec::with_capacity(CALLS);
    let mut out = vec![0u8; frame.len() + 256];
    for _ in 0..CALLS {
        let mut opts = TestRunOptions::default();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let r = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.return_value, expect, "unexpected verdict");
        samples.push(r.duration.as_nanos() as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (samples[samples.len() / 2], mean)
}

fn repeated(program: &mut Xdp, frame: &[u8], expect: u32) -> f64 {
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts = TestRunOptions::default();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.repeat = REPEAT;
    let r = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, expect);
    // The kernel reports the mean duration of one repetition.
    r.duration.as_nanos() as f64
}

fn main() {
    let mut dp = dataplane();
    let mut ebpf = aya::Ebpf::load(lbgw::dataplane::object::bytes()).expect("load object");
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

    println!(
        "XDP per-packet cost, BPF_PROG_TEST_RUN, {CALLS} single runs per row (median / mean, ns):"
    );
    println!("{:<44} {:>8} {:>8}", "case", "median", "mean");
    let rows: [(&str, &[u8], u32, bool); 5] = [
        ("baseline: trivial XDP_PASS program", &tcp, XDP_PASS, true),
        (
            "ARP request for a VIP -> reply (XDP_TX)",
            &arp,
            XDP_TX,
            false,
        ),
        ("NS for a VIP -> NA (XDP_TX)", &ns, XDP_TX, false),
        (
            "ARP for an unallocated address (XDP_PASS)",
            &arp_other,
            XDP_PASS,
            false,
        ),
        (
            "IPv4 TCP to a VIP, pass-through (XDP_PASS)",
            &tcp,
            XDP_PASS,
            false,
        ),
    ];
    for (name, frame, verdict, baseline) in rows {
        let program = if baseline { &mut *pass } else { dp.program() };
        let (median, mean) = single_runs(program, frame, verdict);
        println!("{name:<44} {median:>8.1} {mean:>8.1}");
    }
    println!("\nIdempotent cases with repeat={REPEAT} (kernel mean per repetition, ns):");
    let base = repeated(pass, &tcp, XDP_PASS);
    let tcp_ns = repeated(dp.program(), &tcp, XDP_PASS);
    let other = repeated(dp.program(), &arp_other, XDP_PASS);
    println!("{:<44} {base:>8.1}", "baseline: trivial XDP_PASS program");
    println!("{:<44} {tcp_ns:>8.1}", "IPv4 TCP pass-through");
    println!("{:<44} {other:>8.1}", "ARP for an unallocated address");
}
