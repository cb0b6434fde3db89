//! `lbgw run --no-xdp`: the real binary serving the proxy from a YAML file on loopback,
//! and stopping gracefully on SIGTERM.

use std::process::Command;
use std::time::Duration;

use http::{Response, StatusCode};
use lbgw_tests::daemon::Lbgw;
use lbgw_tests::lbgw_bin;
use lbgw_tests::proxy::{Backend, POOL, full, gateway, get, service};

/// A free port: bound, read and closed again (the Gateway's port comes from the YAML).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_no_xdp_serves_and_drains_on_sigterm() {
    let slow = Backend::start(|seen| async move {
        if seen.uri.path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Response::new(full("done"))
    })
    .await;
    let port = free_port();
    let listener = format!("{{name: http, port: {port}, protocol: HTTP}}");
    let yaml = [
        gateway("gw", &[&listener]),
        service("app", &[slow.addr], None),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: r, namespace: default}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: app, port: 80}]\n"
            .to_owned(),
    ]
    .join("\n---\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.yaml");
    std::fs::write(&config, yaml).unwrap();

    let mut cmd = Command::new(lbgw_bin());
    cmd.args(["run", "--no-xdp", "--bind", "127.0.0.1", "--lb-cidr", POOL])
        .arg("--config")
        .arg(&config)
        .arg("--state")
        .arg(dir.path().join("ipam.json"));
    let mut lbgw = Lbgw::spawn(cmd);
    let needle = format!("proxy listening on 127.0.0.1:{port}");
    let mut lbgw = tokio::task::spawn_blocking(move || {
        lbgw.wait_for(&needle, Duration::from_secs(20));
        lbgw
    })
    .await
    .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let got = get(addr, "example.com", "/").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "done");

    // A request in flight when SIGTERM arrives still gets its answer.
    let in_flight = tokio::spawn(async move { get(addr, "example.com", "/slow").await });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while slow.seen().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slow.seen().len() >= 2,
        "the slow request did not reach the backend within 5 s"
    );
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = lbgw.stop(Duration::from_secs(10));
        (status, lbgw.log())
    })
    .await
    .unwrap();
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, StatusCode::OK, "{log}");
    assert_eq!(got.body, "done");
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    // Stopped accepting: nothing listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn run_needs_an_interface_unless_no_xdp() {
    let out = Command::new(lbgw_bin())
        .args(["run", "--config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--iface"), "{err}");
    let out = Command::new(lbgw_bin())
        .args(["run", "--no-xdp", "--iface", "lo", "--config", "/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--no-xdp with --iface");
}
