//! VIP failover between two real `lbgw run --kubernetes` processes, each with XDP on its own
//! "node" namespace's uplink, both bridged to a "LAN" namespace that holds the in-test fake API
//! server (lbgw/tests/kube_fake: not a real API server) and watches the neighbour table.
//!
//! Two VIPs are chosen so that rendezvous hashing prefers a different node for each; each is a
//! LoadBalancer Service whose endpoint is a server on the LAN, load-balanced by the holder's
//! XDP program (Kubernetes mode runs file mode's data plane). A third VIP is a Gateway's, its
//! HTTPRoute served by the holder's proxy, to which its sk_lookup program hands the
//! connections. The LAN's kernel learns each
//! VIP's MAC from the holder's gratuitous ARP alone (no one asks). When the holder of one is
//! killed (SIGKILL: no Lease release, and its data plane is pinned, so its XDP program stays
//! attached), the other node must take the Lease over and announce it: the LAN's entry moves
//! to its MAC within the 3 s failover budget, for IPv4 (gratuitous ARP) and IPv6 (unsolicited
//! Neighbor Advertisement); ARP requests are then answered by the new
//! holder only (the dead node's program stopped answering when its Lease ran out), and new
//! connections to the Service go through the new holder.
#[path = "../../lbgw/tests/kube_fake/mod.rs"]
mod kube_fake;

use std::{
    net::IpAddr,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use lbgw_tests::{
    daemon::Lbgw,
    lan::{HttpNameServer, NameClient, NameServer, in_netns},
    lbgw_bin,
    netns::{Netns, run, veth},
    pins::{Bpffs, Cleanup},
    require_root,
};
use serde_json::json;

/// A TCP listener bound inside `ns` (the socket keeps its namespace after the thread exits).
fn listener_in(ns: &Netns, addr: &str) -> std::net::TcpListener {
    let path = format!("/var/run/netns/{}", ns.name);
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        // SAFETY: setns(2) on a valid namespace fd; only this short-lived thread moves.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        std::net::TcpListener::bind(addr).expect("bind in netns")
    })
    .join()
    .expect("listener thread")
}

fn neighbour_mac(lan: &Netns, ip: IpAddr) -> String {
    let out = lan.ip(&["neigh", "show", &ip.to_string(), "dev", "br0"]);
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

fn service(name: &str, ip: IpAddr) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default",
                        "annotations": {"lbipam.cilium.io/ips": ip.to_string()}},
           "spec": {"type": "LoadBalancer",
                    "ports": [{"name": "echo", "port": 80, "protocol": "TCP", "targetPort": 7001}]}})
}

/// The Service's endpoint: the server on the LAN.
fn endpoints(service: &str) -> serde_json::Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-v4"), "namespace": "default",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": "echo", "port": 7001, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["192.0.2.253"], "conditions": {"ready": true}}]})
}

/// What the server on the LAN answers through `vip`:80: `lan <address it saw>`, the source
/// address the forwarding node's XDP program NATed the connection to.
fn ask_through(lan: &Netns, vip: IpAddr) -> Result<String, String> {
    let addr = std::net::SocketAddr::new(vip, 80);
    in_netns(lan, move || {
        NameClient::connect(addr, Duration::from_secs(3))
            .and_then(|mut c| c.ask())
            .map_err(|e| format!("{addr}: {e}"))
    })
    .join()
    .expect("client thread")
}

/// A Gateway on `vip`:80 whose HTTPRoute leads to the HTTP server on the LAN (Service `web`).
fn gateway_objects(vip: IpAddr) -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "lbgw"},
               "spec": {"controllerName": lbgw::config::GATEWAY_CONTROLLER_NAME}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "ai-gateway", "namespace": "default"},
               "spec": {"gatewayClassName": "lbgw",
                        "addresses": [{"type": "IPAddress", "value": vip.to_string()}],
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                       "hostname": "ai.homelab.internal"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "ollama", "namespace": "default"},
               "spec": {"parentRefs": [{"name": "ai-gateway"}],
                        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/ollama"}}],
                                   "backendRefs": [{"name": "web", "port": 8080}]}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-v4", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["192.0.2.253"], "conditions": {"ready": true}}]}),
    ]
}

/// `GET /ollama/api/tags` through the Gateway's VIP (the holder's sk_lookup program hands the
/// connection to its proxy): the LAN server's answer `gw <path> <address it saw>`.
fn get_through_gateway(lan: &Netns, vip: IpAddr) -> String {
    let out = lan
        .cmd("curl")
        .args(["-s", "-m", "3", "-H", "Host: ai.homelab.internal"])
        .arg(format!("http://{vip}/ollama/api/tags"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `lbgw_xdp_vip_announced` for `vip` in the node's `/metrics`: whether its XDP program
/// answers for the VIP.
fn announced_metric(node: &Netns, lbgw: &Lbgw, vip: IpAddr) -> String {
    let log = lbgw.log();
    let admin = log
        .lines()
        .find_map(|l| l.split("admin endpoint listening on ").nth(1))
        .expect("admin address in the log")
        .trim()
        .to_owned();
    let out = node
        .cmd("curl")
        .args(["-s", "-m", "3"])
        .arg(format!("{admin}/metrics"))
        .output()
        .unwrap();
    let needle = format!("lbgw_xdp_vip_announced{{vip=\"{vip}\"}} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(str::to_owned))
        .unwrap_or_else(|| format!("no {needle} in /metrics"))
}

/// The MACs that answered `arping -c 3` for `ip` on the LAN.
fn arp_answers(lan: &Netns, ip: IpAddr) -> String {
    let out = lan
        .cmd("arping")
        .args(["-c", "3", "-w", "4", "-I", "br0", &ip.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

fn holder(api: &kube_fake::FakeApi, vip: IpAddr) -> String {
    api.get("Lease", "lbgw", &lbgw::kube::lease_name_for_vip(vip))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_fails_over_with_gratuitous_arp() {
    require_root();
    let lan = Netns::new("lan");
    let node_a = Netns::new("nodea");
    let node_b = Netns::new("nodeb");
    veth(&node_a, "eth0", &lan, "pa");
    veth(&node_b, "eth0", &lan, "pb");
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    lan.ip(&["link", "set", "pa", "master", "br0"]);
    lan.ip(&["link", "set", "pb", "master", "br0"]);
    lan.ip(&["addr", "add", "192.0.2.253/24", "dev", "br0"]);
    lan.ip(&["addr", "add", "2001:db8::fd/64", "dev", "br0", "nodad"]);
    node_a.ip(&["addr", "add", "192.0.2.101/24", "dev", "eth0"]);
    node_b.ip(&["addr", "add", "192.0.2.102/24", "dev", "eth0"]);
    // Nodes forward (XDP's FIB lookup refuses to route otherwise, as the kernel would).
    for node in [&node_a, &node_b] {
        run(node
            .cmd("sysctl")
            .args(["-q", "-w", "net.ipv4.conf.all.forwarding=1"]));
    }
    let _server = NameServer::start(&lan, "192.0.2.253:7001".parse().unwrap(), "lan");
    let _web = HttpNameServer::start(&lan, "192.0.2.253:8080".parse().unwrap(), "gw");
    // Learn neighbours from gratuitous ARP (off by default).
    run(lan
        .cmd("sysctl")
        .args(["-q", "-w", "net.ipv4.conf.br0.arp_accept=1"]));

    // One VIP preferred by each node.
    let nodes = ["node-a", "node-b"];
    let candidates: Vec<IpAddr> = (20..30)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect();
    let pick = |node: &str| {
        *candidates
            .iter()
            .find(|v| lbgw::kube::rendezvous_rank(**v, nodes)[0] == node)
            .expect("a VIP for each node")
    };
    let (vip_a, vip_b) = (pick("node-a"), pick("node-b"));
    // The Gateway's VIP, also preferred by node-a.
    let vip_gw = *candidates
        .iter()
        .filter(|v| **v != vip_a)
        .find(|v| lbgw::kube::rendezvous_rank(**v, nodes)[0] == "node-a")
        .expect("a second VIP for node-a");
    // And an IPv6 VIP preferred by node-a, for the unsolicited Neighbor Advertisement.
    let vip6_a: IpAddr = (0x20..0x30)
        .map(|i| format!("2001:db8::{i:x}").parse().unwrap())
        .find(|v| lbgw::kube::rendezvous_rank(*v, nodes)[0] == "node-a")
        .expect("an IPv6 VIP for node-a");

    let api = kube_fake::FakeApi::start_on(listener_in(&lan, "192.0.2.253:0"));
    for (name, vip) in [("web-a", vip_a), ("web-b", vip_b)] {
        api.apply(service(name, vip));
        api.apply(endpoints(name));
    }
    for object in gateway_objects(vip_gw) {
        api.apply(object);
    }
    let mut v6 = service("web-a6", vip6_a);
    v6["spec"]["ipFamilies"] = json!(["IPv6"]);
    api.apply(v6);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n\
             current-context: fake\n",
            api.addr
        ),
    )
    .unwrap();
    // Pinned, as in a DaemonSet: a killed lbgw leaves its XDP program attached.
    let bpffs = Bpffs::mount(dir.path().join("bpffs"));
    let _cleanup_a = Cleanup {
        node: &node_a,
        pin_dir: bpffs.dir("a"),
    };
    let _cleanup_b = Cleanup {
        node: &node_b,
        pin_dir: bpffs.dir("b"),
    };
    let start = |ns: &Netns, node: &str, pin_dir: String| {
        let mut cmd = ns.cmd(lbgw_bin());
        cmd.args([
            "run",
            "--kubernetes",
            "--node-name",
            node,
            "--iface",
            "eth0",
            "--pin-dir",
            &pin_dir,
            "--admin",
            "127.0.0.1:0",
        ])
        .args([
            "--lb-cidr",
            "192.0.2.16/28",
            "--lb-cidr",
            "2001:db8::/120",
            "--announce-interval",
            "0",
            "--kubeconfig",
        ])
        .arg(&kubeconfig);
        let mut lbgw = Lbgw::spawn(cmd);
        lbgw.wait_for("lbgw ready", Duration::from_secs(60));
        lbgw
    };
    let mut a = start(&node_a, "node-a", bpffs.dir("a"));
    let mut b = start(&node_b, "node-b", bpffs.dir("b"));
    let (mac_a, mac_b) = (node_a.mac("eth0"), node_b.mac("eth0"));

    // Spread, and announced: the LAN learned each VIP from its preferred node's GARP.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(neighbour_mac(&lan, vip_a).contains(&mac_a)
        && neighbour_mac(&lan, vip_b).contains(&mac_b))
    {
        assert!(
            Instant::now() < deadline,
            "VIPs not announced by their nodes: {vip_a} {:?} (holder {:?}), {vip_b} {:?} (holder {:?})\n--- a:\n{}\n--- b:\n{}",
            neighbour_mac(&lan, vip_a),
            holder(&api, vip_a),
            neighbour_mac(&lan, vip_b),
            holder(&api, vip_b),
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (holder(&api, vip_a), holder(&api, vip_b)),
        ("node-a".into(), "node-b".into())
    );
    // Each Service is forwarded by its holder's XDP program, source-NATed to the node.
    assert_eq!(
        ask_through(&lan, vip_a),
        Ok("lan 192.0.2.101".into()),
        "--- a:\n{}",
        a.log()
    );
    assert_eq!(
        ask_through(&lan, vip_b),
        Ok("lan 192.0.2.102".into()),
        "--- b:\n{}",
        b.log()
    );

    // The Gateway is served by node-a's proxy, through sk_lookup.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = get_through_gateway(&lan, vip_gw);
        if got == "gw /ollama/api/tags 192.0.2.101" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Gateway on {vip_gw}: {got:?} (holder {:?})\n--- a:\n{}",
            holder(&api, vip_gw),
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The LAN resolves the IPv6 VIP (NS answered by node-a's XDP program).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !neighbour_mac(&lan, vip6_a).contains(&mac_a) {
        assert!(
            Instant::now() < deadline,
            "{vip6_a} not resolved to node-a: {:?} (holder {:?})\n--- a:\n{}",
            neighbour_mac(&lan, vip6_a),
            holder(&api, vip6_a),
            a.log()
        );
        let _ = lan
            .cmd("ping")
            .args(["-6", "-c", "1", "-W", "1", &vip6_a.to_string()])
            .output();
    }

    // Each node's /metrics says which VIPs it answers for.
    assert_eq!(announced_metric(&node_a, &a, vip_a), "1");
    assert_eq!(announced_metric(&node_b, &b, vip_a), "0");
    assert_eq!(announced_metric(&node_b, &b, vip_b), "1");

    // node-a crashes.
    a.kill();
    let killed = Instant::now();
    for (vip, how) in [
        (vip_a, "gratuitous ARP"),
        (vip_gw, "gratuitous ARP"),
        (vip6_a, "unsolicited NA"),
    ] {
        // node-b's announcement updates the LAN's entry (for IPv6 the override flag of the
        // NA, RFC 4861 §7.2.5, replaces the address learned from node-a).
        while !neighbour_mac(&lan, vip).contains(&mac_b) {
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "{vip} not taken over: {:?}\n--- b:\n{}",
                neighbour_mac(&lan, vip),
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let failover = killed.elapsed();
        eprintln!("{vip} failed over with {how} after SIGKILL: {failover:?}");
        assert!(
            failover < Duration::from_secs(3),
            "failover took {failover:?}"
        );
        assert_eq!(holder(&api, vip), "node-b");
    }
    // ARP requests are answered by the new holder only: node-a's program is still attached
    // (pinned), but its Lease ran out, and so did its answers.
    let text = arp_answers(&lan, vip_a);
    assert!(text.contains(&mac_b), "arping {vip_a}: {text}");
    assert!(
        !text.contains(&mac_a),
        "the dead node still answers: {text}"
    );
    assert_eq!(announced_metric(&node_b, &b, vip_a), "1");
    // The Gateway is served by node-b's proxy now.
    assert_eq!(
        get_through_gateway(&lan, vip_gw),
        "gw /ollama/api/tags 192.0.2.102",
        "--- b:\n{}",
        b.log()
    );
    // New connections to the Service go through node-b.
    assert_eq!(
        ask_through(&lan, vip_a),
        Ok("lan 192.0.2.102".into()),
        "--- b:\n{}",
        b.log()
    );

    let status = b.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", b.log());
    assert_eq!(holder(&api, vip_a), "", "released on shutdown");
}
