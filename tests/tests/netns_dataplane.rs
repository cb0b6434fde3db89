//! End to end through the data plane, in network namespaces joined by a bridge (a LAN): a
//! client host, the node running the real `lbgw` binary with XDP on its `eth0`, and backend
//! hosts. Nothing is configured for the VIPs on the node: ARP is answered by XDP, Gateway
//! traffic reaches the proxy through local routes lbgw adds and its `sk_lookup` program, and
//! L4 Service traffic is forwarded to the backends by XDP.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lbgw_tests::{
    daemon::Lbgw,
    lan::{HttpNameServer, Lan, NameClient, NameServer, ask_udp, in_netns},
    lbgw_bin,
    netns::Netns,
    pins::{Bpffs, Cleanup},
    proxy::{Certificate, tls_secret},
};

const HOST: &str = "ai.homelab.internal";

struct Site {
    _lan: Lan,
    client: Netns,
    node: Netns,
    backends: Vec<Netns>,
    dir: tempfile::TempDir,
}

/// Client .1, node .254, backends .101, .102, … (and the same in 2001:db8::/64).
fn site(backends: usize) -> Site {
    let mut lan = Lan::new();
    let client = lan.host("client", "192.0.2.1", "2001:db8::1");
    let node = lan.host("node", "192.0.2.254", "2001:db8::fe");
    let backends = (0..backends)
        .map(|i| {
            lan.host(
                &format!("b{}", i + 1),
                &format!("192.0.2.{}", 101 + i),
                &format!("2001:db8::{:x}", 0x101 + i),
            )
        })
        .collect();
    // A Kubernetes node forwards (net.ipv4.ip_forward=1), and XDP's FIB lookup needs it.
    lbgw_tests::netns::run(node.cmd("sysctl").args([
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]));
    Site {
        _lan: lan,
        client,
        node,
        backends,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn start_lbgw(site: &Site, config: &str) -> Lbgw {
    start_lbgw_with(site, config, &["--no-pin"])
}

fn start_lbgw_with(site: &Site, config: &str, extra: &[&str]) -> Lbgw {
    let path = site.dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = site.node.cmd(lbgw_bin());
    cmd.args(["run", "--iface", "eth0", "--config"])
        .arg(&path)
        .args([
            "--lb-cidr",
            "192.0.2.16/28",
            "--lb-cidr",
            "192.0.2.48/28",
            "--lb-cidr",
            "2001:db8::100/120",
            "--announce-interval",
            "0",
            "--state",
        ])
        .arg(site.dir.path().join("ipam.json"))
        .args(extra);
    let mut lbgw = Lbgw::spawn(cmd);
    lbgw.wait_for("lbgw ready", Duration::from_secs(60));
    lbgw
}

fn curl(client: &Netns, args: &[&str]) -> (bool, String) {
    let out = client
        .cmd("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The admin endpoint's address, from lbgw's log.
fn admin_addr(lbgw: &Lbgw) -> String {
    let log = lbgw.log();
    log.lines()
        .find_map(|l| l.split("admin endpoint listening on ").nth(1))
        .unwrap_or_else(|| panic!("no admin address:\n{log}"))
        .trim()
        .to_owned()
}

/// `lbgw_worker_connections_total` by worker, from the admin endpoint in `node`.
fn worker_connections(node: &Netns, admin: &str) -> Vec<(String, u64)> {
    let (ok, metrics) = curl(node, &[&format!("{admin}/metrics")]);
    assert!(ok, "{metrics}");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("lbgw_worker_connections_total{worker=\""))
        .filter_map(|l| {
            let (worker, value) = l.split_once("\"} ")?;
            Some((worker.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn maps(node: &Netns) -> String {
    let out = node
        .cmd(lbgw_bin())
        .arg("maps")
        .output()
        .expect("lbgw maps");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gateway_config(cert: &Certificate) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: ai-gateway, namespace: default}}
spec:
  gatewayClassName: lbgw
  addresses: [{{type: IPAddress, value: 192.0.2.20}}, {{type: IPAddress, value: "2001:db8::120"}}]
  listeners:
    - name: https
      protocol: HTTPS
      port: 443
      hostname: {HOST}
      tls: {{certificateRefs: [{{name: ai-tls}}]}}
    - {{name: http, protocol: HTTP, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: other, namespace: default}}
spec:
  gatewayClassName: lbgw
  addresses: [{{type: IPAddress, value: 192.0.2.21}}]
  listeners:
    - {{name: http, protocol: HTTP, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: ollama, namespace: default}}
spec:
  parentRefs: [{{name: ai-gateway}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /ollama}}}}]
      backendRefs: [{{name: ollama, port: 11434}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: other, namespace: default}}
spec:
  parentRefs: [{{name: other}}]
  rules:
    - backendRefs: [{{name: n8n, port: 5678}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ollama, namespace: default}}
spec: {{ports: [{{port: 11434}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: ollama-1, namespace: default, labels: {{kubernetes.io/service-name: ollama}}}}
addressType: IPv4
ports: [{{port: 11434}}]
endpoints: [{{addresses: ["192.0.2.101"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: n8n, namespace: default}}
spec: {{ports: [{{port: 5678}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: n8n-1, namespace: default, labels: {{kubernetes.io/service-name: n8n}}}}
addressType: IPv4
ports: [{{port: 5678}}]
endpoints: [{{addresses: ["192.0.2.101"]}}]
---
{}"#,
        tls_secret("ai-tls", cert)
    )
}

/// client → https://ai.homelab.internal (resolved to the VIP) → XDP → local route →
/// sk_lookup → the proxy on loopback → TLS → HTTPRoute → backend host.
#[test]
fn gateway_traffic_reaches_the_proxy_through_sk_lookup() {
    let site = site(1);
    let cert = Certificate::self_signed(&[HOST]);
    let ca = cert.write(site.dir.path(), "ca.pem");
    let _ollama = HttpNameServer::start(
        &site.backends[0],
        "0.0.0.0:11434".parse().unwrap(),
        "ollama",
    );
    let _n8n = HttpNameServer::start(&site.backends[0], "0.0.0.0:5678".parse().unwrap(), "n8n");
    // Four proxy workers, each with its own socket in the port's SO_REUSEPORT group; the
    // sk_lookup program hands connections to one member of the group.
    let mut lbgw = start_lbgw_with(
        &site,
        &gateway_config(&cert),
        &["--no-pin", "--workers", "4", "--admin", "127.0.0.1:0"],
    );
    let ca = ca.to_str().unwrap();

    for vip in ["192.0.2.20", "[2001:db8::120]"] {
        let resolve = format!("{HOST}:443:{vip}");
        let (ok, out) = curl(
            &site.client,
            &[
                "--cacert",
                ca,
                "--resolve",
                &resolve,
                &format!("https://{HOST}/ollama/api/tags"),
            ],
        );
        assert!(ok, "HTTPS via {vip}: {out}\n{}", lbgw.log());
        // The backend saw the node's address: the proxy connected from the node.
        assert_eq!(out, "ollama /ollama/api/tags 192.0.2.254", "via {vip}");
    }

    // Each Gateway's listeners serve only their own VIP: port 80 of two VIPs, two routes.
    let (ok, out) = curl(&site.client, &["http://192.0.2.20/ollama/x"]);
    assert!(ok && out.starts_with("ollama /ollama/x"), "{out}");
    let (ok, out) = curl(&site.client, &["http://192.0.2.21/ollama/x"]);
    assert!(ok && out.starts_with("n8n /ollama/x"), "{out}");

    // The kernel applies the group's SO_REUSEPORT selection to the socket sk_lookup chose
    // (net/ipv4/inet_hashtables.c inet_lookup_run_sk_lookup): new connections, from new
    // source ports, reach more than one worker, for each address family.
    let admin = admin_addr(&lbgw);
    for vip in ["192.0.2.20", "[2001:db8::120]"] {
        let before = worker_connections(&site.node, &admin);
        for _ in 0..24 {
            let (ok, out) = curl(&site.client, &[&format!("http://{vip}/ollama/x")]);
            assert!(
                ok && out.starts_with("ollama /ollama/x"),
                "via {vip}: {out}"
            );
        }
        let after = worker_connections(&site.node, &admin);
        let served: Vec<u64> = after
            .iter()
            .map(|(w, n)| n - before.iter().find(|(b, _)| b == w).map_or(0, |(_, n)| *n))
            .collect();
        assert_eq!(
            served.iter().sum::<u64>(),
            24,
            "via {vip}: {after:?} - {before:?}"
        );
        assert!(
            served.iter().filter(|&&n| n > 0).count() >= 2,
            "via {vip}, every connection reached one worker: {served:?}"
        );
    }

    // The proxy binds no VIP and no public port: only loopback.
    let ss = site.node.cmd("ss").args(["-Hltn"]).output().expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout);
    for line in ss.lines() {
        let local = line.split_whitespace().nth(3).unwrap_or_default();
        assert!(
            local.starts_with("[::1]:") || local.starts_with("127.0.0.1:"),
            "a listening socket outside loopback: {line}\n{ss}"
        );
    }

    // A port nothing serves: no answer at all (dropped in XDP, not refused by the kernel).
    let started = Instant::now();
    let (ok, out) = curl(
        &site.client,
        &["--max-time", "2", "http://192.0.2.20:8080/"],
    );
    assert!(
        !ok && started.elapsed() >= Duration::from_millis(1900),
        "{out}"
    );
    let counters = maps(&site.node);
    assert!(
        counters.contains("dropped_unserved"),
        "lbgw maps:\n{counters}"
    );

    // On exit lbgw takes its local routes away.
    lbgw.stop(Duration::from_secs(10));
    let routes = site.node.ip(&["route", "show", "table", "local"]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("192.0.2.20"),
        "local route left behind:\n{routes}"
    );
}

fn l4_config() -> String {
    r#"
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations: {lbipam.cilium.io/ips: "192.0.2.53,2001:db8::153"}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports:
    - {name: tcp, port: 7000, protocol: TCP, targetPort: 7001}
    - {name: udp, port: 7000, protocol: UDP, targetPort: 7001}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v4, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: tcp, port: 7001, protocol: TCP}, {name: udp, port: 7001, protocol: UDP}]
endpoints: [{addresses: ["192.0.2.101"]}, {addresses: ["192.0.2.102"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v6, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv6
ports: [{name: tcp, port: 7001, protocol: TCP}, {name: udp, port: 7001, protocol: UDP}]
endpoints: [{addresses: ["2001:db8::101"]}, {addresses: ["2001:db8::102"]}]
"#
    .to_owned()
}

/// client → VIP:7000 (TCP and UDP, IPv4 and IPv6) → XDP Maglev + NAT → two backend hosts.
#[test]
fn l4_service_is_forwarded_in_xdp_to_both_backends() {
    let site = site(2);
    let _b1 = NameServer::start(&site.backends[0], "[::]:7001".parse().unwrap(), "b1");
    let _b2 = NameServer::start(&site.backends[1], "[::]:7001".parse().unwrap(), "b2");
    let lbgw = start_lbgw(&site, &l4_config());
    if std::env::var_os("LBGW_TEST_HOLD").is_some() {
        std::thread::sleep(Duration::from_secs(40));
    }

    for (vip, node_addr) in [
        ("192.0.2.53", "192.0.2.254"),
        ("[2001:db8::153]", "2001:db8::fe"),
    ] {
        let addr: SocketAddr = format!("{vip}:7000").parse().unwrap();
        let answers = in_netns(&site.client, move || {
            let mut tcp = Vec::new();
            let mut clients = Vec::new();
            for _ in 0..24 {
                let mut c = NameClient::connect(addr, Duration::from_secs(3))
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let first = c.ask().map_err(|e| format!("ask {addr}: {e}"))?;
                tcp.push(first);
                clients.push(c);
            }
            // Every connection keeps its backend.
            for (c, first) in clients.iter_mut().zip(&tcp) {
                let again = c.ask().map_err(|e| format!("ask again {addr}: {e}"))?;
                if &again != first {
                    return Err(format!("connection moved from {first} to {again}"));
                }
            }
            let mut udp = Vec::new();
            for _ in 0..24 {
                udp.push(
                    ask_udp(addr, Duration::from_secs(2))
                        .map_err(|e| format!("UDP {addr}: {e}"))?,
                );
            }
            Ok::<_, String>((tcp, udp))
        })
        .join()
        .unwrap();
        let (tcp, udp) = answers.unwrap_or_else(|e| {
            let neigh = site.node.ip(&["neigh"]);
            panic!(
                "{e}\n{}\nlbgw maps:\n{}\nnode neighbours:\n{}",
                lbgw.log(),
                maps(&site.node),
                String::from_utf8_lossy(&neigh.stdout)
            )
        });
        for (proto, answers) in [("TCP", &tcp), ("UDP", &udp)] {
            for b in ["b1", "b2"] {
                assert!(
                    answers.iter().any(|a| a.starts_with(b)),
                    "{proto} via {vip}: {b} never answered: {answers:?}"
                );
            }
            // Source NAT: the backends saw the node, not the client.
            assert!(
                answers
                    .iter()
                    .all(|a| a.ends_with(&format!(" {node_addr}"))),
                "{proto} via {vip}: {answers:?}"
            );
        }
    }
    let counters = maps(&site.node);
    assert!(counters.contains("l4_forwarded"), "lbgw maps:\n{counters}");
    assert!(counters.contains("l4_reversed"), "lbgw maps:\n{counters}");

    // A port the Service does not have: no answer.
    let refused = in_netns(&site.client, || {
        NameClient::connect("192.0.2.53:7002".parse().unwrap(), Duration::from_secs(1)).is_err()
    })
    .join()
    .unwrap();
    assert!(refused);
}

fn arping(site: &Site, ip: &str) -> bool {
    site.client
        .cmd("arping")
        .args(["-c", "1", "-w", "2", "-I", "eth0", ip])
        .output()
        .expect("arping")
        .status
        .success()
}

/// The data plane is pinned: a crashed lbgw (SIGKILL) leaves ARP answered and established
/// L4 flows forwarded; the next lbgw adopts the maps and swaps its program in; a SIGTERMed
/// one leaves it running too; `lbgw cleanup` takes it all away.
#[test]
fn pinned_data_plane_outlives_lbgw_and_is_adopted() {
    let site = site(2);
    let _b1 = NameServer::start(&site.backends[0], "[::]:7001".parse().unwrap(), "b1");
    let _b2 = NameServer::start(&site.backends[1], "[::]:7001".parse().unwrap(), "b2");
    // `ip netns exec` gives lbgw a private /sys, so the pins go to a bpffs of the test's own,
    // mounted where both see it.
    let bpffs = Bpffs::mount(site.dir.path().join("bpffs"));
    let pin_dir = bpffs.path.join("lbgw").to_str().unwrap().to_owned();
    let cleanup = Cleanup {
        node: &site.node,
        pin_dir: pin_dir.clone(),
    };
    let pin = ["--pin-dir", pin_dir.as_str()];
    let mut lbgw = start_lbgw_with(&site, &l4_config(), &pin);
    let vip: SocketAddr = "192.0.2.53:7000".parse().unwrap();
    let connect = || {
        in_netns(&site.client, move || {
            NameClient::connect(vip, Duration::from_secs(3)).and_then(|mut c| {
                let first = c.ask()?;
                Ok((c, first))
            })
        })
        .join()
        .unwrap()
    };
    let (mut held, backend) = connect().unwrap_or_else(|e| panic!("{e}\n{}", lbgw.log()));

    lbgw.kill();
    if !arping(&site, "192.0.2.53") {
        let link = site.node.ip(&["-d", "link", "show", "eth0"]);
        let pins = std::process::Command::new("find")
            .arg(&pin_dir)
            .output()
            .unwrap();
        panic!(
            "ARP not answered with lbgw dead\n{}\n{}\n{}",
            String::from_utf8_lossy(&link.stdout),
            String::from_utf8_lossy(&pins.stdout),
            lbgw.log()
        );
    }
    assert_eq!(
        held.ask().expect("established flow with lbgw dead"),
        backend
    );
    let (_, _) = connect().expect("a new flow with lbgw dead");

    let mut lbgw = start_lbgw_with(&site, &l4_config(), &pin);
    let log = lbgw.log();
    assert!(log.contains("adopted the pinned maps"), "{log}");
    assert!(log.contains("took over the pinned XDP link"), "{log}");
    assert_eq!(
        held.ask().expect("established flow after adoption"),
        backend
    );

    lbgw.stop(Duration::from_secs(10));
    assert_eq!(held.ask().expect("established flow after SIGTERM"), backend);
    assert!(arping(&site, "192.0.2.53"));

    let out = cleanup.run();
    assert!(out.contains("detached"), "lbgw cleanup: {out}");
    let left = std::fs::read_dir(&pin_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "pins left in {pin_dir}");
    assert!(
        held.ask().is_err(),
        "the flow is still forwarded after cleanup"
    );
    assert!(!arping(&site, "192.0.2.53"), "ARP answered after cleanup");
}

fn l4_config_v4(backends: &[&str]) -> String {
    let endpoints: Vec<String> = backends
        .iter()
        .map(|b| format!("{{addresses: [\"{b}\"]}}"))
        .collect();
    format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations: {{lbipam.cilium.io/ips: "192.0.2.53"}}
spec:
  type: LoadBalancer
  ports: [{{name: tcp, port: 7000, protocol: TCP, targetPort: 7001}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v4, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: tcp, port: 7001, protocol: TCP}}]
endpoints: [{}]
"#,
        endpoints.join(", ")
    )
}

const RELOADED_GATEWAY: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: late, namespace: default}
spec:
  gatewayClassName: lbgw
  addresses: [{type: IPAddress, value: 192.0.2.22}]
  listeners:
    - {name: http, protocol: HTTP, port: 8080}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: late, namespace: default}
spec:
  parentRefs: [{name: late}]
  rules:
    - backendRefs: [{name: web, port: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 8081}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8081}]
endpoints: [{addresses: ["192.0.2.101"]}]
"#;

/// A reload adds a third backend: established flows stay on their backends, new flows also
/// reach the new one; the same reload adds a Gateway whose new port reaches the proxy through
/// sk_lookup at once.
#[test]
fn l4_flows_stay_put_while_a_backend_is_added_by_a_reload() {
    let site = site(3);
    let _servers: Vec<NameServer> = site
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| NameServer::start(b, "[::]:7001".parse().unwrap(), &format!("b{}", i + 1)))
        .collect();
    let _web = HttpNameServer::start(&site.backends[0], "0.0.0.0:8081".parse().unwrap(), "web");
    let mut lbgw = start_lbgw(&site, &l4_config_v4(&["192.0.2.101", "192.0.2.102"]));
    let vip: SocketAddr = "192.0.2.53:7000".parse().unwrap();
    let open = move |n: usize| {
        move || -> Result<Vec<(NameClient, String)>, String> {
            (0..n)
                .map(|_| {
                    let mut c = NameClient::connect(vip, Duration::from_secs(3))
                        .map_err(|e| format!("connect: {e}"))?;
                    let name = c.ask().map_err(|e| format!("ask: {e}"))?;
                    Ok((c, name))
                })
                .collect()
        }
    };
    let mut held = in_netns(&site.client, open(24))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", lbgw.log()));
    assert!(held.iter().all(|(_, n)| !n.starts_with("b3")));

    let config = format!(
        "{}{RELOADED_GATEWAY}",
        l4_config_v4(&["192.0.2.101", "192.0.2.102", "192.0.2.103"])
    );
    std::fs::write(site.dir.path().join("config.yaml"), config).unwrap();
    lbgw.signal(libc::SIGHUP);
    lbgw.wait_for("configuration reloaded", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));

    for (c, name) in &mut held {
        let again = c
            .ask()
            .unwrap_or_else(|e| panic!("held flow after reload: {e}"));
        assert_eq!(&again, name, "an established flow moved");
    }
    let fresh = in_netns(&site.client, open(40))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", lbgw.log()));
    assert!(
        fresh.iter().any(|(_, n)| n.starts_with("b3")),
        "no new flow reached the added backend: {:?}",
        fresh.iter().map(|(_, n)| n).collect::<Vec<_>>()
    );

    let (ok, out) = curl(&site.client, &["http://192.0.2.22:8080/late"]);
    assert!(ok && out.starts_with("web /late"), "{out}\n{}", lbgw.log());
}
