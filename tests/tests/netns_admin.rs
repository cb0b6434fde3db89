//! `lbgw run` with XDP in a network namespace lab, seen through its admin endpoint: the eBPF
//! counters in `/metrics` move when a client asks for a VIP, `/readyz` reports the attached
//! data plane, and a reload (SIGHUP) that adds a Service puts its VIP into the XDP maps.

use std::time::{Duration, Instant};

use lbgw_tests::{
    daemon::Lbgw,
    lbgw_bin,
    netns::{Netns, veth},
    require_root,
};

fn service(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations: {{lbipam.cilium.io/ips: \"{ip}\"}}\nspec:\n  type: LoadBalancer\n  \
         ports: [{{name: http, port: 80, protocol: TCP}}]\n"
    )
}

/// `curl` inside `ns` (the admin endpoint listens on the node namespace's loopback).
fn curl(ns: &Netns, url: &str) -> (bool, String) {
    let out = ns
        .cmd("curl")
        .args(["--silent", "--show-error", "--max-time", "5", "--fail", url])
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn arping(ns: &Netns, ip: &str) -> bool {
    ns.cmd("arping")
        .args(["-c", "2", "-w", "3", "-I", "client0", ip])
        .output()
        .expect("arping")
        .status
        .success()
}

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn xdp_counters_in_metrics_and_vips_follow_reloads() {
    require_root();
    let node = Netns::new("node");
    let client = Netns::new("client");
    veth(&node, "node0", &client, "client0");
    node.ip(&["link", "set", "lo", "up"]);
    node.ip(&["addr", "add", "192.0.2.254/24", "dev", "node0"]);
    client.ip(&["addr", "add", "192.0.2.253/24", "dev", "client0"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, service("web", "192.0.2.20")).unwrap();

    let mut cmd = node.cmd(lbgw_bin());
    cmd.args(["run", "--iface", "node0", "--config"])
        .arg(&config)
        .args(["--lb-cidr", "192.0.2.16/28", "--state"])
        .arg(dir.path().join("ipam.json"))
        .args([
            "--admin",
            "127.0.0.1:0",
            "--no-watch",
            "--announce-interval",
            "0",
        ]);
    let mut lbgw = Lbgw::spawn(cmd);
    lbgw.wait_for("lbgw ready", Duration::from_secs(60));
    let log = lbgw.log();
    let admin = log
        .lines()
        .find_map(|l| l.split("admin endpoint listening on ").nth(1))
        .unwrap_or_else(|| panic!("no admin address:\n{log}"))
        .trim()
        .to_owned();

    let (ready, _) = curl(&node, &format!("{admin}/readyz"));
    assert!(ready, "/readyz after the XDP program attached");

    assert!(arping(&client, "192.0.2.20"), "{}", lbgw.log());
    let (_, metrics) = curl(&node, &format!("{admin}/metrics"));
    let arp = sample(
        &metrics,
        "lbgw_xdp_vip_arp_replies_total{vip=\"192.0.2.20\"}",
    );
    assert!(arp.is_some_and(|n| n >= 1), "{metrics}");
    let replied = sample(&metrics, "lbgw_xdp_events_total{counter=\"arp_replied\"}");
    assert!(replied.is_some_and(|n| n >= 1), "{metrics}");

    // Not served yet: nobody answers for .21.
    assert!(!arping(&client, "192.0.2.21"));
    std::fs::write(
        &config,
        [service("web", "192.0.2.20"), service("api", "192.0.2.21")].join("---\n"),
    )
    .unwrap();
    lbgw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lbgw.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", lbgw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(arping(&client, "192.0.2.21"), "{}", lbgw.log());
    let (_, status) = curl(&node, &format!("{admin}/status"));
    assert!(status.contains("Service default/api"), "{status}");

    let out = node
        .cmd(lbgw_bin())
        .args(["status", "--admin", admin.trim_start_matches("http://")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("192.0.2.21"), "{table}");
    let exit = lbgw.stop(Duration::from_secs(15));
    assert!(exit.success(), "{exit}\n{}", lbgw.log());
}
