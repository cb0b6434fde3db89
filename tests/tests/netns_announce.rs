//! End to end, in network namespaces joined by a veth pair: the real `lbgw` binary runs in a
//! "node" namespace; real clients (iputils `arping`, `ndisc6`, the kernel's own neighbour
//! discovery via `ping`) ask for the VIPs from a "client" namespace.
//!
//! The node namespace has no VIP configured as a local address, so any answer for a VIP can
//! only come from lbgw's XDP program.

use std::{process::Command, time::Duration};

use lbgw_tests::{
    daemon::Lbgw,
    lbgw_bin,
    netns::{Netns, veth},
    require_root,
};

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
    lbipam.cilium.io/ips: "192.0.2.20,2001:db8::120"
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports:
    - name: http
      port: 80
      protocol: TCP
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: ai-gateway
  namespace: ai
spec:
  gatewayClassName: lbgw
  addresses:
    - type: IPAddress
      value: 192.0.2.21
  listeners:
    - name: http
      protocol: HTTP
      port: 80
"#;

/// Unallocated address of the pool: nobody must answer for it.
const UNALLOCATED: &str = "192.0.2.22";
const UNALLOCATED6: &str = "2001:db8::122";

struct Lab {
    node: Netns,
    client: Netns,
    dir: tempfile::TempDir,
}

fn lab() -> Lab {
    require_root();
    let node = Netns::new("node");
    let client = Netns::new("client");
    veth(&node, "node0", &client, "client0");
    node.ip(&["addr", "add", "192.0.2.254/24", "dev", "node0"]);
    node.ip(&["addr", "add", "2001:db8::fe/64", "dev", "node0", "nodad"]);
    client.ip(&["addr", "add", "192.0.2.253/24", "dev", "client0"]);
    client.ip(&["addr", "add", "2001:db8::fd/64", "dev", "client0", "nodad"]);
    // Let the client's kernel learn neighbours from gratuitous ARP (off by default).
    lbgw_tests::netns::run(client.cmd("sysctl").args([
        "-q",
        "-w",
        "net.ipv4.conf.client0.arp_accept=1",
    ]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), CONFIG).unwrap();
    Lab { node, client, dir }
}

fn start_lbgw(lab: &Lab, extra: &[&str]) -> Lbgw {
    let mut cmd = lab.node.cmd(lbgw_bin());
    cmd.args(["run", "--iface", "node0", "--config"])
        .arg(lab.dir.path().join("config.yaml"))
        .args([
            "--lb-cidr",
            "192.0.2.16/28",
            "--lb-cidr",
            "2001:db8::100/120",
            "--no-pin",
            "--state",
        ])
        .arg(lab.dir.path().join("ipam.json"))
        .args(extra);
    let mut lbgw = Lbgw::spawn(cmd);
    lbgw.wait_for("lbgw ready", Duration::from_secs(60));
    lbgw
}

fn arping(lab: &Lab, ip: &str) -> std::process::Output {
    lab.client
        .cmd("arping")
        .args(["-c", "2", "-w", "3", "-I", "client0", ip])
        .output()
        .expect("arping")
}

#[test]
fn arp_and_ndp_for_vips_are_answered_with_lbgws_mac() {
    let lab = lab();
    let node_mac = lab.node.mac("node0");
    let mut lbgw = start_lbgw(&lab, &["--announce-interval", "0"]);

    for vip in ["192.0.2.20", "192.0.2.21"] {
        let out = arping(&lab, vip);
        let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            out.status.success(),
            "arping {vip} got no reply:\n{stdout}\n{}",
            lbgw.log()
        );
        assert!(
            stdout.contains(&node_mac),
            "arping {vip}: reply without lbgw's MAC {node_mac}:\n{stdout}"
        );
    }

    let out = arping(&lab, UNALLOCATED);
    assert!(
        !out.status.success(),
        "an unallocated pool address was answered:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = lab
        .client
        .cmd("ndisc6")
        .args(["-1", "-r", "3", "-w", "1000", "2001:db8::120", "client0"])
        .output()
        .expect("ndisc6");
    let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        out.status.success(),
        "ndisc6 got no NA:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&node_mac),
        "NA without lbgw's MAC {node_mac}:\n{stdout}"
    );

    let out = lab
        .client
        .cmd("ndisc6")
        .args(["-1", "-r", "2", "-w", "500", UNALLOCATED6, "client0"])
        .output()
        .expect("ndisc6");
    assert!(
        !out.status.success(),
        "an unallocated IPv6 pool address was answered"
    );

    // The client's own kernel resolves the VIPs, so its neighbour table shows them with
    // lbgw's MAC; the echo requests are answered by the XDP program itself.
    for (flag, vip) in [("-4", "192.0.2.20"), ("-6", "2001:db8::120")] {
        let ping = lab
            .client
            .cmd("ping")
            .args([flag, "-c", "2", "-W", "2", vip])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "ping {vip} got no reply:\n{}",
            String::from_utf8_lossy(&ping.stdout)
        );
        let neigh = lab.client.ip(&[flag, "neigh", "show", vip]);
        let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
        assert!(
            neigh.contains(&node_mac),
            "neighbour table of the client for {vip}: {neigh:?}"
        );
    }

    // A port nothing serves gets no answer at all: the SYN is dropped in XDP (no RST).
    let curl = lab
        .client
        .cmd("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--connect-timeout",
            "1",
            "http://192.0.2.20:8080/",
        ])
        .output()
        .unwrap();
    assert_eq!(
        curl.status.code(),
        Some(28),
        "curl to an unserved port must time out"
    );

    // `lbgw maps` finds the loaded program through the kernel and prints its per-VIP counters.
    // Other tests may have programs loaded too; one of the listed programs is this one.
    let maps = lab
        .node
        .cmd(lbgw_bin())
        .arg("maps")
        .output()
        .expect("lbgw maps");
    let maps = String::from_utf8_lossy(&maps.stdout);
    // Columns: VIP, ARP replies, NA replies, echo, dropped, passed.
    let count =
        |cols: &[&str], i: usize| cols.get(i).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    assert!(
        maps.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&"192.0.2.20")
                && count(&cols, 1) >= 2
                && count(&cols, 3) >= 2
                && count(&cols, 4) >= 1
        }),
        "lbgw maps does not show the ARP replies, echo replies and drops for 192.0.2.20:\n{maps}"
    );

    let status = lbgw.stop(Duration::from_secs(10));
    assert!(
        status.success(),
        "lbgw exited with {status}:\n{}",
        lbgw.log()
    );
    let log = lbgw.log();
    assert!(log.contains("XDP program detached"), "{log}");
    // The exit report counts what was answered: two arpings per VIP at least.
    assert!(
        log.lines().any(|l| l.contains("ip=192.0.2.20")
            && l.contains("arp_replies=")
            && !l.contains("arp_replies=0")),
        "no ARP replies counted for 192.0.2.20:\n{log}"
    );
    let link = lab.node.ip(&["link", "show", "node0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP still attached after exit"
    );
}

#[test]
fn vips_are_announced_with_gratuitous_arp_and_unsolicited_na_on_start() {
    let lab = lab();
    // Let the client's kernel create neighbour entries from unsolicited NAs: Linux 5.19+ does
    // so only on a router (forwarding on) with accept_untracked_na (RFC 9131), off by default.
    lbgw_tests::netns::run(lab.client.cmd("sysctl").args([
        "-q",
        "-w",
        "net.ipv6.conf.client0.forwarding=1",
        "net.ipv6.conf.client0.accept_untracked_na=1",
    ]));
    let node_mac = lab.node.mac("node0");
    let _lbgw = start_lbgw(&lab, &["--announce-interval", "1"]);
    // No question was asked: the entries can only come from lbgw's announcements.
    for (flag, vip) in [("-4", "192.0.2.21"), ("-6", "2001:db8::120")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let neigh = lab.client.ip(&[flag, "neigh", "show", vip]);
            let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
            if neigh.contains(&node_mac) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no neighbour entry for {vip} from lbgw's announcement: {neigh:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn bad_environment_is_one_clear_line() {
    let lab = lab();
    let config = lab.dir.path().join("config.yaml");

    let out = lab
        .node
        .cmd(lbgw_bin())
        .args([
            "run",
            "--iface",
            "nosuch0",
            "--lb-cidr",
            "192.0.2.16/28",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interface \"nosuch0\" not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Without privileges (an unprivileged uid, no capabilities).
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(lbgw_bin())
        .args([
            "run",
            "--iface",
            "lo",
            "--lb-cidr",
            "192.0.2.16/28",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lbgw needs root, or the capabilities"),
        "{stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected: {stderr}"
    );
}
