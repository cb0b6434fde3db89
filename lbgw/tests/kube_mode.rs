//! Kubernetes mode against an in-test fake API server (`kube_fake`): real kube-rs clients
//! speaking HTTP/JSON (list, watch with bookmarks, patch status, Leases) to a server on
//! 127.0.0.1:0. The fake is not a real API server; see its module docs for what it implements.
mod kube_fake;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use kube_fake::FakeApi;
use lbgw::{
    config::GATEWAY_CONTROLLER_NAME,
    gateway::GatewayModel,
    kube::{
        DesiredStatus, KubeSource, LeaseOptions, LeaseSet, Ownership, Snapshot, SourceOptions,
        StatusWriter, rendezvous_rank,
        run::{plan, published_vips},
    },
};
use serde_json::{Value, json};
use tokio::{sync::watch, time::timeout};

const WAIT: Duration = Duration::from_secs(10);

fn class(name: &str, controller: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
           "metadata": {"name": name}, "spec": {"controllerName": controller}})
}

fn gateway(name: &str, class: &str, port: u16) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": name, "namespace": "ai"},
           "spec": {"gatewayClassName": class,
                    "listeners": [{"name": "http", "port": port, "protocol": "HTTP",
                                   "hostname": "ai.homelab.internal"}]}})
}

fn route(name: &str, gateway: &str, prefix: &str, backend: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": "ai"},
           "spec": {"parentRefs": [{"name": gateway}],
                    "hostnames": ["ai.homelab.internal"],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                               "backendRefs": [{"name": backend, "port": 8080}]}]}})
}

fn service(name: &str, kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "ai"},
           "spec": {"type": kind, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}})
}

fn endpoints(service: &str, ip: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-1"), "namespace": "ai",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
}

fn pool(cidr: &str) -> Value {
    json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool",
           "metadata": {"name": "homelab"}, "spec": {"blocks": [{"cidr": cidr}]}})
}

/// The objects of a small homelab: lbgw's class and one of another controller, a Gateway of
/// each, a route, a backend Service, a LoadBalancer Service, a pool.
fn seed(api: &FakeApi) {
    api.apply(pool("192.0.2.0/28"));
    api.apply(class("lbgw", GATEWAY_CONTROLLER_NAME));
    api.apply(class("other", "example.com/other-controller"));
    api.apply(gateway("ai-gateway", "lbgw", 8080));
    api.apply(gateway("foreign", "other", 8081));
    api.apply(route("ollama", "ai-gateway", "/ollama", "ollama"));
    api.apply(service("ollama", "ClusterIP"));
    api.apply(endpoints("ollama", "127.0.0.1", 11434));
    api.apply(service("dns", "LoadBalancer"));
}

async fn wait_snapshot(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    f: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let found = match timeout(WAIT, rx.wait_for(|s| s.generation > 0 && f(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    match found {
        Some(s) => s,
        None => panic!(
            "no snapshot with {what} within {WAIT:?}; last: {:?}",
            rx.borrow().config
        ),
    }
}

fn names<T>(list: &[lbgw::config::Sourced<T>]) -> Vec<String> {
    list.iter().map(|o| o.id.to_string()).collect()
}

/// Created, changed and deleted objects are followed by the snapshots: routes, backends and
/// VIPs change accordingly; the foreign controller's Gateway never enters.
#[tokio::test]
async fn snapshots_follow_created_changed_and_deleted_objects() {
    let api = FakeApi::start().await;
    seed(&api);
    let source = KubeSource::spawn(api.client(), SourceOptions::default());
    let mut rx = source.snapshots();
    let first = wait_snapshot(&mut rx, "the seed", |s| !s.config.services.is_empty()).await;
    assert_eq!(names(&first.config.gateways), ["Gateway ai/ai-gateway"]);
    assert_eq!(names(&first.config.gateway_classes), ["GatewayClass lbgw"]);
    assert_eq!(names(&first.config.http_routes), ["HTTPRoute ai/ollama"]);
    assert_eq!(
        names(&first.config.ip_pools),
        ["CiliumLoadBalancerIPPool homelab"]
    );
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let (_, p) = plan(&first.config, &[], None);
    let owners: BTreeSet<String> = p.vips().iter().map(|v| v.owner.to_string()).collect();
    assert_eq!(
        owners,
        [
            "Gateway ai/ai-gateway".to_owned(),
            "Service ai/dns".to_owned()
        ]
        .into()
    );

    // A changed route: the model routes the new prefix.
    api.apply(route("ollama", "ai-gateway", "/llm", "ollama"));
    let s = wait_snapshot(&mut rx, "the changed route", |s| {
        s.config.http_routes.iter().any(|r| {
            serde_json::to_string(&r.object.spec.rules)
                .unwrap_or_default()
                .contains("/llm")
        })
    })
    .await;
    let (_, p) = plan(&s.config, &[], None);
    let (model, status) = GatewayModel::build(&s.config, &p);
    assert!(status.is_ok(), "{status}");
    assert_eq!(
        model.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        [8080]
    );

    // A new LoadBalancer Service gets a VIP; deleting one releases it.
    api.apply(service("vllm", "LoadBalancer"));
    api.delete("Service", "ai", "dns");
    let s = wait_snapshot(&mut rx, "vllm and no dns", |s| {
        names(&s.config.services).contains(&"Service ai/vllm".to_owned())
            && !names(&s.config.services).contains(&"Service ai/dns".to_owned())
    })
    .await;
    let (_, p) = plan(&s.config, &[], None);
    let owners: BTreeSet<String> = p.vips().iter().map(|v| v.owner.to_string()).collect();
    assert_eq!(
        owners,
        [
            "Gateway ai/ai-gateway".to_owned(),
            "Service ai/vllm".to_owned()
        ]
        .into()
    );

    // Deleting the route and lbgw's class: the Gateway is no longer lbgw's.
    api.delete("HTTPRoute", "ai", "ollama");
    api.delete("GatewayClass", "", "lbgw");
    let s = wait_snapshot(&mut rx, "no route, no Gateway", |s| {
        s.config.http_routes.is_empty() && s.config.gateways.is_empty()
    })
    .await;
    let (_, p) = plan(&s.config, &[], None);
    assert!(
        p.vips().iter().all(|v| v.owner.kind == "Service"),
        "{:?}",
        p.vips()
    );

    // An invalid object is left out and reported; the others stay.
    let mut bad = pool("192.0.2.64/28");
    bad["metadata"]["name"] = "typo".into();
    bad["spec"]["allowFirstLastIps"] = "No".into();
    api.apply(bad);
    let s = wait_snapshot(&mut rx, "the invalid pool reported", |s| {
        !s.errors.is_empty()
    })
    .await;
    assert!(
        s.errors[0].contains("CiliumLoadBalancerIPPool typo"),
        "{:?}",
        s.errors
    );
    assert_eq!(
        names(&s.config.ip_pools),
        ["CiliumLoadBalancerIPPool homelab"]
    );

    // The watches ran with bookmarks, from the listed resourceVersion.
    let watches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .collect();
    assert!(watches.len() >= 8, "one watch per kind: {}", watches.len());
    assert!(
        watches
            .iter()
            .all(|r| r.query.contains("allowWatchBookmarks=true"))
    );
}

/// The leader's status: Gateway addresses, conditions and attachedRoutes; GatewayClass
/// Accepted; HTTPRoute parents (another controller's entry kept); Service ingress. Sent as
/// merge patches on /status, and not again when nothing changed; the addresses read back
/// from status give every node the same VIPs.
#[tokio::test]
async fn status_is_written_minimally_and_read_back_as_allocations() {
    let api = FakeApi::start().await;
    seed(&api);
    let mut foreign = route("ollama", "ai-gateway", "/ollama", "ollama");
    foreign["status"] = json!({"parents": [{
        "parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]});
    api.apply(foreign);
    let source = KubeSource::spawn(api.client(), SourceOptions::default());
    let mut rx = source.snapshots();
    let s = wait_snapshot(&mut rx, "the seed", |s| !s.config.services.is_empty()).await;
    let (pools, p) = plan(&s.config, &[], None);
    assert!(
        published_vips(&s.config, &pools, &p).is_empty(),
        "nothing published yet"
    );
    let (_, report) = GatewayModel::build(&s.config, &p);
    let desired = DesiredStatus::compute(&s.config, &p, &report);
    let writer = StatusWriter::new(api.client(), source.stores().clone());
    assert_eq!(
        writer.apply(&desired).await,
        4,
        "GatewayClass, Gateway, HTTPRoute, Service"
    );

    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 4);
    for patch in &patches {
        assert!(patch.path.ends_with("/status"), "{}", patch.path);
        assert_eq!(patch.content_type, "application/merge-patch+json");
    }
    let gw_vip = p
        .ips_of(&lbgw::config::ObjectRef::new("Gateway", "ai", "ai-gateway"))
        .next()
        .unwrap();
    let dns_vip = p
        .ips_of(&lbgw::config::ObjectRef::new("Service", "ai", "dns"))
        .next()
        .unwrap();

    let gw = api.get("Gateway", "ai", "ai-gateway").unwrap();
    assert_eq!(
        gw["status"]["addresses"],
        json!([{"type": "IPAddress", "value": gw_vip.to_string()}])
    );
    let cond = |list: &Value, t: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        cond(&gw["status"]["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(
        cond(&gw["status"]["conditions"], "Programmed")["status"],
        "True"
    );
    assert_eq!(
        cond(&gw["status"]["conditions"], "Programmed")["observedGeneration"],
        1
    );
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
    assert_eq!(
        cond(&listener["conditions"], "ResolvedRefs")["status"],
        "True"
    );
    assert!(cond(&listener["conditions"], "Accepted")["lastTransitionTime"].is_string());

    let class = api.get("GatewayClass", "", "lbgw").unwrap();
    assert_eq!(
        cond(&class["status"]["conditions"], "Accepted")["status"],
        "True"
    );
    assert!(
        api.get("GatewayClass", "", "other")
            .unwrap()
            .get("status")
            .is_none()
    );
    assert!(
        api.get("Gateway", "ai", "foreign")
            .unwrap()
            .get("status")
            .is_none()
    );

    let r = api.get("HTTPRoute", "ai", "ollama").unwrap();
    let parents = r["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(parents[0]["controllerName"], "example.com/other-controller");
    assert_eq!(parents[1]["controllerName"], GATEWAY_CONTROLLER_NAME);
    assert_eq!(parents[1]["parentRef"]["name"], "ai-gateway");
    assert_eq!(
        cond(&parents[1]["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(
        cond(&parents[1]["conditions"], "ResolvedRefs")["status"],
        "True"
    );

    let svc = api.get("Service", "ai", "dns").unwrap();
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"],
        json!([{"ip": dns_vip.to_string()}])
    );
    assert!(
        api.get("Service", "ai", "ollama").unwrap()["status"].is_null(),
        "ClusterIP untouched"
    );

    // The status comes back through the watches: nothing more to write, and a follower with
    // no state of its own computes the same VIPs, all published.
    let s = wait_snapshot(&mut rx, "the written status", |s| {
        s.config.services.iter().any(|svc| {
            svc.object
                .status
                .as_ref()
                .is_some_and(|st| st.load_balancer.is_some())
        }) && s.config.http_routes.iter().any(|r| {
            r.object
                .status
                .as_ref()
                .is_some_and(|st| st.parents.len() == 2)
        }) && s.config.gateways.iter().any(|g| {
            g.object
                .status
                .as_ref()
                .is_some_and(|st| st.addresses.is_some())
        })
    })
    .await;
    let (pools2, p2) = plan(&s.config, &[], None);
    assert_eq!(p2.vips(), p.vips());
    assert_eq!(
        published_vips(&s.config, &pools2, &p2),
        [gw_vip, dns_vip].into()
    );
    let (_, report) = GatewayModel::build(&s.config, &p2);
    let desired = DesiredStatus::compute(&s.config, &p2, &report);
    assert_eq!(
        writer.apply(&desired).await,
        0,
        "idempotent: nothing changed"
    );

    // A second pool block added before the Gateway's address: the published address stays.
    api.apply(pool("192.0.2.0/27"));
    let s = wait_snapshot(&mut rx, "the bigger pool", |s| {
        serde_json::to_string(&s.config.ip_pools[0].object.spec)
            .unwrap()
            .contains("/27")
    })
    .await;
    let (_, p3) = plan(&s.config, &[], None);
    assert_eq!(p3.vips(), p.vips(), "allocations survive from status");
}

fn lease_opts(node: &str) -> LeaseOptions {
    LeaseOptions::new("lbgw", node)
}

async fn wait_ownership(
    rx: &mut watch::Receiver<Ownership>,
    what: &str,
    within: Duration,
    f: impl Fn(&Ownership) -> bool,
) -> Ownership {
    let found = match timeout(within, rx.wait_for(|o| f(o))).await {
        Ok(Ok(o)) => Some(o.clone()),
        _ => None,
    };
    match found {
        Some(o) => o,
        None => panic!("{what}: not within {within:?}; last {:?}", *rx.borrow()),
    }
}

/// Holders of the VIP Leases as stored by the API server.
fn holders(api: &FakeApi) -> Vec<(String, String)> {
    api.list("Lease")
        .into_iter()
        .filter(|l| {
            l["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("lbgw-vip-")
        })
        .map(|l| {
            (
                l["metadata"]["annotations"]["lbgw.io/vip"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// Two nodes contend for six VIP Leases: one owner per VIP, each VIP with the node rendezvous
/// hashing prefers, one leader. A node that dies (its task aborted, Leases left to expire)
/// loses its VIPs to the other within the 3 s failover budget; a node that shuts down
/// gracefully hands them over at once.
#[tokio::test]
async fn two_nodes_spread_vips_and_fail_over() {
    let api = FakeApi::start().await;
    let vips: BTreeSet<IpAddr> = (1..=6)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect();
    let expected_a: BTreeSet<IpAddr> = vips
        .iter()
        .copied()
        .filter(|v| rendezvous_rank(*v, ["node-a", "node-b"])[0] == "node-a")
        .collect();
    assert!(
        !expected_a.is_empty() && expected_a.len() < vips.len(),
        "the test's VIPs spread"
    );
    let expected_b: BTreeSet<IpAddr> = vips.difference(&expected_a).copied().collect();

    let a = LeaseSet::spawn(api.client(), lease_opts("node-a"));
    let b = LeaseSet::spawn(api.client(), lease_opts("node-b"));
    a.set_vips(vips.clone());
    b.set_vips(vips.clone());
    let (mut ra, mut rb) = (a.ownership(), b.ownership());
    wait_ownership(&mut ra, "node-a holds its share", WAIT, |o| {
        o.vips == expected_a
    })
    .await;
    let ob = wait_ownership(&mut rb, "node-b holds its share", WAIT, |o| {
        o.vips == expected_b
    })
    .await;
    let oa = ra.borrow().clone();
    assert!(
        oa.leader != ob.leader,
        "exactly one leader: a {} b {}",
        oa.leader,
        ob.leader
    );
    let stored = holders(&api);
    assert_eq!(stored.len(), vips.len());
    for (vip, holder) in &stored {
        let vip: IpAddr = vip.parse().unwrap();
        let want = if expected_a.contains(&vip) {
            "node-a"
        } else {
            "node-b"
        };
        assert_eq!(holder, want, "Lease of {vip}");
    }

    // node-a dies: no release, its Leases expire.
    drop(a);
    let died = Instant::now();
    wait_ownership(&mut rb, "node-b takes over", WAIT, |o| {
        o.vips == vips && o.leader
    })
    .await;
    let failover = died.elapsed();
    assert!(
        failover < Duration::from_secs(3),
        "failover took {failover:?}"
    );
    eprintln!("failover after a crash: {failover:?}");

    // node-a comes back: its VIPs are handed back to it.
    let a = LeaseSet::spawn(api.client(), lease_opts("node-a"));
    a.set_vips(vips.clone());
    let mut ra = a.ownership();
    wait_ownership(&mut ra, "node-a gets its share back", WAIT, |o| {
        o.vips == expected_a
    })
    .await;
    wait_ownership(&mut rb, "node-b keeps its share", WAIT, |o| {
        o.vips == expected_b
    })
    .await;

    // node-b shuts down gracefully: released Leases move within a few polls.
    let stopped = Instant::now();
    b.shutdown().await;
    wait_ownership(&mut ra, "node-a takes everything", WAIT, |o| {
        o.vips == vips && o.leader
    })
    .await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(1),
        "graceful hand-over took {handover:?}"
    );
    eprintln!("hand-over after a graceful shutdown: {handover:?}");

    // An ineligible node (uplink down) releases its Leases.
    a.set_eligible(false);
    wait_ownership(&mut ra, "node-a releases", WAIT, |o| {
        o.vips.is_empty() && !o.leader
    })
    .await;
    assert!(
        holders(&api).iter().all(|(_, h)| h.is_empty()),
        "{:?}",
        holders(&api)
    );
    a.shutdown().await;
}

/// A backend answering every request with `200 backend saw <path>`.
async fn backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
                let body = format!("backend saw {path}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// `GET path` with `Host: ai.homelab.internal` on 127.0.0.1:port: the status line and body.
async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(Ok(mut stream)) = timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return "connect failed".into();
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: ai.homelab.internal\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(2), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    format!("{status} | {body}")
}

/// Waits until `GET path` on `port` reaches the backend (within [`WAIT`]).
async fn served_soon(port: u16, path: &str, what: &str) {
    let start = Instant::now();
    loop {
        let got = get(port, path).await;
        if got.starts_with("HTTP/1.1 200") {
            assert_eq!(got, format!("HTTP/1.1 200 OK | backend saw {path}"));
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what} is not served on port {port}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The binary end to end, without XDP: `lbgw run --kubernetes --no-xdp` against the fake API
/// writes status, holds the leader and VIP Leases, proxies by the watched HTTPRoute, follows a
/// route change and a new listener port without restart, and releases its Leases on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbgw_run_kubernetes_end_to_end() {
    let api = FakeApi::start().await;
    let backend = backend().await;
    // A free port for the Gateway listener (the proxy binds Gateway ports as configured).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    seed(&api);
    api.apply(gateway("ai-gateway", "lbgw", port));
    api.apply(endpoints("ollama", "127.0.0.1", backend.port()));

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
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbgw"))
        .args([
            "run",
            "--kubernetes",
            "--no-xdp",
            "--bind",
            "127.0.0.1",
            "--node-name",
            "node-1",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("LBGW_LOG", "info")
        .env_remove("CILIUM_LB_CIDR")
        .env_remove("POD_NAMESPACE")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    eventually("Gateway status.addresses written", || {
        api.get("Gateway", "ai", "ai-gateway")
            .is_some_and(|g| g["status"]["addresses"][0]["value"].is_string())
    })
    .await;
    let vip = api.get("Gateway", "ai", "ai-gateway").unwrap()["status"]["addresses"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the leader and VIP Leases held by node-1", || {
        let leases = api.list("Lease");
        let held = |name: &str| {
            leases
                .iter()
                .any(|l| l["metadata"]["name"] == name && l["spec"]["holderIdentity"] == "node-1")
        };
        held("lbgw-leader") && held(&format!("lbgw-vip-{vip}"))
    })
    .await;
    assert_eq!(
        get(port, "/ollama/api/tags").await,
        "HTTP/1.1 200 OK | backend saw /ollama/api/tags"
    );

    api.apply(route("ollama", "ai-gateway", "/llm", "ollama"));
    served_soon(port, "/llm/x", "the changed route").await;
    assert!(get(port, "/ollama/x").await.starts_with("HTTP/1.1 404"));

    // A listener on a new port is bound at once (the same reload path as file mode).
    let port2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut two = gateway("ai-gateway", "lbgw", port);
    two["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "http-2", "port": port2, "protocol": "HTTP",
                     "hostname": "ai.homelab.internal"}));
    api.apply(two);
    served_soon(port2, "/llm/y", "the new listener port").await;
    assert!(get(port, "/llm/x").await.starts_with("HTTP/1.1 200"));

    // SIGTERM: Leases released, clean exit.
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = timeout(WAIT, child.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let held: Vec<Value> = api
        .list("Lease")
        .into_iter()
        .filter(|l| l["spec"]["holderIdentity"].is_string())
        .collect();
    assert!(
        held.is_empty(),
        "Leases still held after shutdown: {held:?}"
    );
}
