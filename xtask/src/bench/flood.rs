//! `cargo xtask bench-flood`: a flood of UDP packets to a VIP port nothing serves, dropped on
//! the node by lbgw's XDP early drop, and by an nftables drop rule for comparison (issue 4).
//!
//! ```text
//!   lbgw-flood-peer                         lbgw-flood-node
//!   flpeer 192.0.2.253/24  <--veth-->  flnode 192.0.2.254/24   VIP 192.0.2.2 (HTTP :8080)
//!   sender threads, one per CPU            lbgw --iface flnode, or nft prerouting drop
//! ```
//!
//! Two generators, each run against lbgw and against nftables:
//! - *XDP frames* ([`xdpgen`]): `BPF_PROG_TEST_RUN` live frames redirected into the veth, so
//!   the node receives `xdp_frame`s as from a NIC driver and XDP drops them before any
//!   `sk_buff` exists. veth accepts redirected frames only when the receiving side has a native
//!   XDP program, so the nftables run attaches a trivial XDP_PASS program to the node's veth.
//! - *AF_PACKET*: raw sockets (sendmmsg, PACKET_QDISC_BYPASS); every frame is an `sk_buff`
//!   from the start, which veth copies for XDP when its headroom is short — the XDP gain is
//!   mostly gone there, which the rows show.
//!
//! The sender threads enter the peer namespace (setns(2) affects only the calling thread),
//! one pinned to each CPU, bounded in packets and time. On veth the node's receive path runs
//! as softirq on the sender's CPU, so the figure that isolates the drop path is the softirq
//! time per dropped packet (/proc/stat, all CPUs); drops/s is what the two CPUs manage with
//! generator and receiver sharing them. What the node dropped is read from its own counters
//! (`lbgw maps`, the nft rule's counter). Both namespaces are removed on exit and on failure.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::procs::Proc;
use super::xdpgen;

const NODE: &str = "lbgw-flood-node";
const PEER: &str = "lbgw-flood-peer";
const NODE_IF: &str = "flnode";
const PEER_IF: &str = "flpeer";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A port of the VIP that no listener serves.
const UNSERVED_PORT: u16 = 9999;
/// A cap on one flood, whatever the rate.
const MAX_PACKETS: u64 = 50_000_000;

/// Removes the namespaces when dropped.
struct Namespaces;

impl Drop for Namespaces {
    fn drop(&mut self) {
        remove_namespaces();
    }
}

fn remove_namespaces() {
    for ns in [NODE, PEER] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn up() -> Result<Namespaces> {
    // A run killed before it could clean up leaves exactly these names; they are ours.
    remove_namespaces();
    cmd("ip", &["netns", "add", NODE])?;
    let guard = Namespaces;
    cmd("ip", &["netns", "add", PEER])?;
    cmd(
        "ip",
        &[
            "link", "add", NODE_IF, "netns", NODE, "type", "veth", "peer", "name", PEER_IF,
            "netns", PEER,
        ],
    )?;
    for (ns, dev, addr) in [(NODE, NODE_IF, NODE_IP), (PEER, PEER_IF, PEER_IP)] {
        cmd("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        cmd("ip", &["-n", ns, "link", "set", dev, "up"])?;
        cmd(
            "ip",
            &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
        )?;
    }
    Ok(guard)
}

fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let out = cmd("ip", &["-n", ns, "link", "show", "dev", dev])?;
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no MAC for {dev} in {out}"))?;
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

fn ifindex_of(ns: &str, dev: &str) -> Result<i32> {
    let out = cmd("ip", &["-n", ns, "link", "show", "dev", dev])?;
    out.split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .with_context(|| format!("no ifindex in {out}"))
}

/// An Ethernet + IPv4 + UDP frame of 60 bytes (the Ethernet minimum without FCS).
fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let payload = 18;
    let total = 20 + 8 + payload;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&PEER_IP.octets());
    ip[16..20].copy_from_slice(&VIP.octets());
    // RFC 791 header checksum: one's complement of the one's complement sum of 16-bit words.
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&UNSERVED_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    // UDP checksum 0: none (RFC 768, IPv4).
    f.extend_from_slice(&[0, 0]);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

/// How the flood is generated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generator {
    /// One AF_PACKET socket per thread (sendmmsg, 64 frames a call, PACKET_QDISC_BYPASS):
    /// every frame is an `sk_buff` from the start, so the node's XDP program sees it only
    /// after veth made it XDP-compatible (a copy when headroom is short).
    AfPacket,
    /// `BPF_PROG_TEST_RUN` live frames redirected into the veth ([`xdpgen`]): `xdp_frame`s,
    /// as a NIC driver delivers them; the node needs a native XDP program to take them.
    XdpFrames,
}

impl Generator {
    fn name(self) -> &'static str {
        match self {
            Generator::AfPacket => "AF_PACKET",
            Generator::XdpFrames => "XDP frames",
        }
    }
}

/// What the sender threads did.
struct Sent {
    packets: u64,
    elapsed: Duration,
    /// CPU time of the sender threads. On veth it includes the node's receive path, which
    /// runs as softirq in the sender's context (on `local_bh_enable`), on the sender's CPU.
    thread_cpu: Duration,
}

fn thread_cpu() -> Duration {
    // SAFETY: zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Moves the calling thread into network namespace `ns` (setns(2) affects only this thread).
fn enter_netns(ns: &str) -> Result<()> {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: setns(2) with a namespace fd; it changes only this thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to `cpu` (best effort: a CPU outside the allowed set is skipped).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sends `frame` to `PEER_IF` (ifindex `ifindex`) from inside the peer namespace, one sender
/// thread pinned to each CPU, until `max` packets in all or `duration`, whichever first.
fn flood(
    generator: Generator,
    frame: &[u8],
    ifindex: i32,
    duration: Duration,
    max: u64,
) -> Result<Sent> {
    let threads = cpus();
    let per_thread = max / threads as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|cpu| {
            let frame = frame.to_vec();
            std::thread::spawn(move || -> Result<(u64, Duration)> {
                enter_netns(PEER)?;
                pin_to(cpu);
                match generator {
                    Generator::AfPacket => send_af_packet(&frame, ifindex, duration, per_thread),
                    Generator::XdpFrames => send_xdp_frames(&frame, ifindex, duration, per_thread),
                }
            })
        })
        .collect();
    let mut sent = Sent {
        packets: 0,
        elapsed: Duration::ZERO,
        thread_cpu: Duration::ZERO,
    };
    for handle in handles {
        let (packets, cpu) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
        sent.packets += packets;
        sent.thread_cpu += cpu;
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

/// One sender thread's loop over an AF_PACKET socket; returns (packets, thread CPU time).
fn send_af_packet(
    frame: &[u8],
    ifindex: i32,
    duration: Duration,
    max: u64,
) -> Result<(u64, Duration)> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours; closed once at the end of the thread.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // packet(7): PACKET_QDISC_BYPASS sends straight to the driver, as a generator would.
    // SAFETY: a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: zeroed sockaddr_ll is valid; the fields used are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = 0x0800u16.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: addr is a sockaddr_ll of the size passed.
    if unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    } != 0
    {
        bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
    }
    const BATCH: usize = 64;
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: zeroed mmsghdr is valid; each points at the one iovec of the frame.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut packets = 0u64;
    while packets < max && start.elapsed() < duration {
        // SAFETY: msgs point at `iov` and `frame`, both alive for the call.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            packets += n as u64;
        } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOBUFS) {
            bail!("sendmmsg: {}", std::io::Error::last_os_error());
        }
    }
    Ok((packets, thread_cpu() - cpu_start))
}

/// One sender thread's loop of live-frame test runs; returns (packets, thread CPU time).
fn send_xdp_frames(
    frame: &[u8],
    ifindex: i32,
    duration: Duration,
    max: u64,
) -> Result<(u64, Duration)> {
    /// Frames per test run: short enough runs that the duration is kept to a few ms.
    const RUN: u32 = 16384;
    let generator = xdpgen::Generator::new(ifindex as u32)
        .context("loading the XDP generator program (BPF_PROG_LOAD)")?;
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut packets = 0u64;
    while packets < max && start.elapsed() < duration {
        generator
            .send(frame, RUN)
            .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18+)")?;
        packets += u64::from(RUN);
    }
    Ok((packets, thread_cpu() - cpu_start))
}

/// CPU time so far from /proc/stat's `cpu` line: (busy, softirq) in seconds, over all CPUs.
/// Without CONFIG_IRQ_TIME_ACCOUNTING the kernel samples these per tick (HZ), so they are
/// estimates good to a few ticks.
fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let get = |i: usize| fields.get(i).copied().unwrap_or(0) as f64 / hz;
    // proc(5): user nice system idle iowait irq softirq steal.
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, get(6))
}

/// One measured configuration.
pub struct FloodRow {
    pub generator: &'static str,
    pub name: String,
    pub sent: u64,
    pub dropped: u64,
    pub secs: f64,
    pub busy_ns_per_packet: f64,
    pub softirq_ns_per_packet: f64,
    pub sender_ns_per_packet: f64,
}

impl FloodRow {
    fn drop_rate(&self) -> f64 {
        self.dropped as f64 / self.secs
    }
}

fn measure(
    name: &str,
    generator: Generator,
    duration: Duration,
    frame: &[u8],
    ifindex: i32,
    dropped: impl Fn() -> Result<u64>,
) -> Result<FloodRow> {
    let before = dropped()?;
    let (busy0, soft0) = cpu_times();
    let sent = flood(generator, frame, ifindex, duration, MAX_PACKETS)?;
    // Let the node finish what is queued before the counters are read.
    std::thread::sleep(Duration::from_millis(300));
    let (busy1, soft1) = cpu_times();
    let dropped = dropped()? - before;
    let per = |s: f64| {
        if dropped > 0 {
            s * 1e9 / dropped as f64
        } else {
            0.0
        }
    };
    let row = FloodRow {
        generator: generator.name(),
        name: name.to_owned(),
        sent: sent.packets,
        dropped,
        secs: sent.elapsed.as_secs_f64(),
        busy_ns_per_packet: per(busy1 - busy0),
        softirq_ns_per_packet: per(soft1 - soft0),
        sender_ns_per_packet: sent.thread_cpu.as_secs_f64() * 1e9 / sent.packets.max(1) as f64,
    };
    eprintln!(
        "xtask bench-flood: {:<10} {:<30} sent {:>10}  dropped {:>10}  {:>9.0} drops/s  sender {:>5.0} ns/pkt  busy {:>6.0} ns/pkt  softirq {:>6.0} ns/pkt",
        row.generator,
        row.name,
        row.sent,
        row.dropped,
        row.drop_rate(),
        row.sender_ns_per_packet,
        row.busy_ns_per_packet,
        row.softirq_ns_per_packet
    );
    Ok(row)
}

/// The id of the XDP program attached to the node's veth, from `ip link` output.
fn attached_program() -> Result<u32> {
    let out = cmd("ip", &["-n", NODE, "link", "show", "dev", NODE_IF])?;
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .iter()
        .filter(|w| w.starts_with("xdp"))
        .find_map(|w| w.split_once("/id:")?.1.parse().ok())
        // iproute2 6.x: `prog/xdp id N tag ...` on the second line.
        .or_else(|| {
            words
                .windows(3)
                .find(|w| w[0].starts_with("prog/xdp") && w[1] == "id")
                .and_then(|w| w[2].parse().ok())
        })
        .with_context(|| format!("no XDP program on {NODE_IF}: {out}"))
}

/// The VIP's `dropped` column in `lbgw maps`, in the section of the program attached to the
/// node's veth (other lbgw programs may be loaded on this machine).
fn lbgw_dropped(lbgw: &Path) -> Result<u64> {
    let id = attached_program()?;
    let out = cmd(
        "ip",
        &["netns", "exec", NODE, &lbgw.display().to_string(), "maps"],
    )?;
    out.lines()
        .skip_while(|l| !l.starts_with(&format!("program {id} ")))
        .skip(1)
        .take_while(|l| !l.starts_with("program "))
        .find(|l| l.trim_start().starts_with(&format!("{VIP} ")))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no counters for {VIP} of program {id} in `lbgw maps`:\n{out}"))
}

fn nft_dropped() -> Result<u64> {
    let out = cmd(
        "ip",
        &[
            "netns",
            "exec",
            NODE,
            "nft",
            "list",
            "table",
            "inet",
            "lbgwflood",
        ],
    )?;
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no counter in {out}"))
}

fn lbgw_config(dir: &Path) -> Result<PathBuf> {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: flood, namespace: default}}\n\
         spec:\n  gatewayClassName: lbgw\n  addresses: [{{type: IPAddress, value: {VIP}}}]\n\
         \x20 listeners:\n  - {{name: http, port: 8080, protocol: HTTP}}\n"
    );
    let path = dir.join("flood.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// Starts lbgw on the node's veth in `mode` and waits until its program is attached.
fn start_lbgw(lbgw: &Path, config: &Path, dir: &Path, mode: &str) -> Result<Proc> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NODE])
        .arg(lbgw)
        .args([
            "run",
            "--iface",
            NODE_IF,
            "--xdp-mode",
            mode,
            "--lb-cidr",
            "192.0.2.0/28",
            "--no-pin",
        ])
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(dir.join(format!("ipam-{mode}.json")));
    let log = dir.join(format!("lbgw-{mode}.log"));
    let mut proc = Proc::spawn("lbgw", cmd, &log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        proc.check_alive()
            .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        if lbgw_dropped(lbgw).is_ok() {
            return Ok(proc);
        }
        if Instant::now() > deadline {
            bail!(
                "lbgw did not program {VIP} within 30 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Attaches the trivial native XDP_PASS program to the node's veth (from a thread inside the
/// node namespace), so veth accepts redirected frames when lbgw is not running; detached when
/// the returned fd is closed.
fn attach_pass_on_node() -> Result<std::os::fd::OwnedFd> {
    let ifindex = ifindex_of(NODE, NODE_IF)? as u32;
    std::thread::spawn(move || -> Result<std::os::fd::OwnedFd> {
        enter_netns(NODE)?;
        xdpgen::attach_pass(ifindex).context("attaching an XDP_PASS program to the node's veth")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
}

fn add_nft_rule() -> Result<()> {
    let nft = |args: &[&str]| {
        let mut all = vec!["netns", "exec", NODE, "nft"];
        all.extend_from_slice(args);
        cmd("ip", &all)
    };
    nft(&["add", "table", "inet", "lbgwflood"])?;
    nft(&[
        "add",
        "chain",
        "inet",
        "lbgwflood",
        "pre",
        "{ type filter hook prerouting priority raw; }",
    ])?;
    let vip = VIP.to_string();
    let port = UNSERVED_PORT.to_string();
    nft(&[
        "add",
        "rule",
        "inet",
        "lbgwflood",
        "pre",
        "ip",
        "daddr",
        &vip,
        "udp",
        "dport",
        &port,
        "counter",
        "drop",
    ])?;
    Ok(())
}

pub fn run(quick: bool) -> Result<()> {
    if !Path::new("/usr/sbin/nft").exists() {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "nftables"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("installing nftables failed (apt-get install nftables)");
        }
    }
    let lbgw = {
        let status = Command::new(crate::cargo())
            .current_dir(crate::workspace_root())
            .args(["build", "--release", "-p", "lbgw", "--bin", "lbgw"])
            .status()?;
        if !status.success() {
            bail!("building lbgw failed");
        }
        crate::target_dir().join("release").join("lbgw")
    };
    let duration = Duration::from_secs(if quick { 3 } else { 10 });
    let dir = std::env::temp_dir().join(format!("lbgw-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _scratch = super::Scratch(dir.clone());
    let _ns = up()?;
    let frame = frame(mac_of(NODE, NODE_IF)?, mac_of(PEER, PEER_IF)?);
    let ifindex = ifindex_of(PEER, PEER_IF)?;
    let config = lbgw_config(&dir)?;
    let mut rows = Vec::new();

    let proc = start_lbgw(&lbgw, &config, &dir, "native")?;
    for generator in [Generator::XdpFrames, Generator::AfPacket] {
        rows.push(measure(
            "lbgw XDP early drop (native)",
            generator,
            duration,
            &frame,
            ifindex,
            || lbgw_dropped(&lbgw),
        )?);
    }
    drop(proc);
    let proc = start_lbgw(&lbgw, &config, &dir, "generic")?;
    rows.push(measure(
        "lbgw XDP early drop (generic)",
        Generator::AfPacket,
        duration,
        &frame,
        ifindex,
        || lbgw_dropped(&lbgw),
    )?);
    drop(proc);

    add_nft_rule()?;
    let pass = attach_pass_on_node()?;
    rows.push(measure(
        "nftables prerouting drop",
        Generator::XdpFrames,
        duration,
        &frame,
        ifindex,
        nft_dropped,
    )?);
    drop(pass);
    rows.push(measure(
        "nftables prerouting drop",
        Generator::AfPacket,
        duration,
        &frame,
        ifindex,
        nft_dropped,
    )?);

    println!(
        "\n| generator | configuration | sent | dropped | drops/s | vs nftables | receive (softirq) ns/pkt | nftables' receive cost vs this | sender threads ns/pkt | machine busy ns/pkt |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let nft = rows
            .iter()
            .find(|n| n.generator == r.generator && n.name.starts_with("nftables"));
        let (rate_ratio, cost_ratio) = match nft {
            Some(n) if n.drop_rate() > 0.0 && r.softirq_ns_per_packet > 0.0 => (
                r.drop_rate() / n.drop_rate(),
                n.softirq_ns_per_packet / r.softirq_ns_per_packet,
            ),
            _ => (0.0, 0.0),
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2}× | {:.0} | {:.2}× | {:.0} | {:.0} |",
            r.generator,
            r.name,
            r.sent,
            r.dropped,
            r.drop_rate(),
            rate_ratio,
            r.softirq_ns_per_packet,
            cost_ratio,
            r.sender_ns_per_packet,
            r.busy_ns_per_packet,
        );
    }
    Ok(())
}
