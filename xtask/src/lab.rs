//! The throwaway lab `cargo xtask run` uses when no interface is given: two network
//! namespaces joined by a veth pair, like a node and a client on one LAN.
//!
//! ```text
//!   lbgw-lab-client                      lbgw-lab-node
//!   client0 192.0.2.253/24  <--veth-->   lbgw0 192.0.2.254/24  (lbgw's XDP program)
//!           2001:db8::fd/64                    2001:db8::fe/64
//! ```
//!
//! The LAN uses the documentation prefixes (RFC 5737, RFC 3849), which the example pools
//! are carved from. Everything is removed when lbgw exits, on Ctrl-C, and on errors.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub const NODE: &str = "lbgw-lab-node";
pub const CLIENT: &str = "lbgw-lab-client";
const NODE_IF: &str = "lbgw0";
const CLIENT_IF: &str = "client0";

/// Deletes the lab's namespaces when dropped.
struct Lab;

impl Drop for Lab {
    fn drop(&mut self) {
        remove_namespaces();
        eprintln!("xtask: lab removed");
    }
}

fn remove_namespaces() {
    for ns in [NODE, CLIENT] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .context("running ip")?;
    if !status.success() {
        bail!("ip {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running ip netns exec")?;
    if !status.success() {
        bail!("in {ns}: {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn up() -> Result<Lab> {
    // A lab left by a killed run has exactly these names; it is ours to replace.
    remove_namespaces();
    ip(&["netns", "add", NODE])?;
    let lab = Lab;
    ip(&["netns", "add", CLIENT])?;
    ip(&[
        "link", "add", NODE_IF, "netns", NODE, "type", "veth", "peer", "name", CLIENT_IF, "netns",
        CLIENT,
    ])?;
    for (ns, dev, v4, v6) in [
        (NODE, NODE_IF, "192.0.2.254/24", "2001:db8::fe/64"),
        (CLIENT, CLIENT_IF, "192.0.2.253/24", "2001:db8::fd/64"),
    ] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "addr", "add", v4, "dev", dev])?;
        ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
    }
    Ok(lab)
}

/// Creates the lab, runs lbgw in the node namespace until it exits (Ctrl-C), removes the lab.
/// With `example_secret`, the example's HTTPS listener gets a throwaway self-signed
/// certificate (the Secret `ai/ai-homelab-tls`, which `examples/` leaves out on purpose).
pub fn run(bin: &Path, config: &[PathBuf], example_secret: bool, extra: &[String]) -> Result<()> {
    let bin = bin
        .canonicalize()
        .with_context(|| format!("{} not built", bin.display()))?;
    let lab = up()?;
    in_ns(
        NODE,
        &["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=0"],
    )
    .ok();
    // Like a Kubernetes node: forwarding on, which XDP's FIB lookup for L4 Services needs.
    in_ns(
        NODE,
        &[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )
    .ok();
    let state = std::env::temp_dir().join(format!("lbgw-lab-{}.json", std::process::id()));
    let secret = std::env::temp_dir().join(format!("lbgw-lab-{}-secret.yaml", std::process::id()));
    let mut config = config.to_vec();
    if example_secret {
        crate::cert::write_secret(&secret, "ai", "ai-homelab-tls", "ai.homelab.internal")?;
        config.push(secret.clone());
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NODE])
        .arg(&bin)
        .args(["run", "--iface", NODE_IF]);
    for c in &config {
        cmd.arg("--config").arg(c);
    }
    // `ip netns exec` gives lbgw a /sys of its own, where pins would not outlive it anyway.
    cmd.arg("--state").arg(&state).arg("--no-pin").args(extra);
    eprintln!(
        "xtask: lab is up. lbgw runs in namespace {NODE} on {NODE_IF}; the client is namespace {CLIENT}.\n\
         Try, in another terminal (the VIPs are in lbgw's log below; `lbgw check` prints the plan):\n  \
         ip netns exec {CLIENT} arping -c 3 -I {CLIENT_IF} <IPv4 VIP>\n  \
         ip netns exec {CLIENT} ping -c 3 <VIP>\n  \
         ip netns exec {CLIENT} ndisc6 <IPv6 VIP> {CLIENT_IF}\n  \
         ip netns exec {CLIENT} ip neigh\n  \
         ip netns exec {CLIENT} curl -si -H 'Host: ai.homelab.internal' http://<gateway VIP>/ollama\n  \
         ip netns exec {CLIENT} curl -sik --resolve ai.homelab.internal:443:<gateway VIP> https://ai.homelab.internal/ollama\n  \
         ip netns exec {NODE} {} maps\n\
         Ctrl-C stops lbgw and removes the lab.",
        bin.display()
    );
    let mut child = cmd.spawn().context("starting lbgw")?;
    // `ip netns exec` execs lbgw, so the child is lbgw itself. SIGINT/SIGTERM sent to xtask
    // (Ctrl-C, or a script) are passed on to it; xtask then waits for lbgw to detach and exit
    // and removes the lab.
    forward_signals_to(child.id());
    let status = child.wait().context("waiting for lbgw")?;
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(&secret);
    drop(lab);
    if !status.success() && status.code() != Some(130) {
        bail!("lbgw exited with {status}");
    }
    Ok(())
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid is our own child's.
        unsafe { libc::kill(pid, signal) };
    }
}

fn forward_signals_to(pid: u32) {
    CHILD.store(pid as i32, std::sync::atomic::Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `forward` only does async-signal-safe work.
        unsafe { libc::signal(signal, forward as *const () as libc::sighandler_t) };
    }
}
