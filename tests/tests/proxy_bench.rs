//! Throughput of the proxy with h2load against an in-process backend, directly and through
//! lbgw, over HTTP/1.1 and h2c. Ignored by default (it measures, it does not test); run it
//! in release mode:
//!
//! ```sh
//! cargo test --release -p lbgw-tests --test proxy_bench -- --ignored --nocapture
//! ```
//!
//! Everything shares the machine's cores: h2load, the backend and the proxy.

use std::time::Duration;

use lbgw_tests::proxy::{Backend, TestProxy, gateway, service};

async fn h2load(url: &str, h1: bool) -> String {
    let mut cmd = tokio::process::Command::new("h2load");
    cmd.args(["-n", "20000", "-c", "20", "-m", "10"]);
    if h1 {
        // HTTP/1.1 has no multiplexing; -m would pipeline, which browsers do not do.
        cmd.args(["--h1", "-m", "1"]);
    }
    cmd.arg(url);
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("h2load within 120 s")
        .expect("h2load (Debian package nghttp2-client)");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(out.contains("20000 succeeded"), "{out}");
    out.lines()
        .filter(|l| l.starts_with("finished in") || l.starts_with("status codes"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --ignored --nocapture in release mode"]
async fn h2load_throughput() {
    let backend = Backend::echo("app").await;
    let yaml = [
        gateway("gw", &["{name: http, port: 8080, protocol: HTTP}"]),
        service("app", &[backend.addr], None),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: r, namespace: default}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: app, port: 80}]\n"
            .to_owned(),
    ]
    .join("\n---\n");
    let proxy = TestProxy::start(&yaml);
    let direct = format!("http://{}/", backend.addr);
    let proxied = format!("http://{}/", proxy.addr(8080));
    for (name, url) in [("direct", &direct), ("via lbgw", &proxied)] {
        for h1 in [true, false] {
            let proto = if h1 { "HTTP/1.1" } else { "h2c" };
            println!("{name:>9} {proto:>8}: {}", h2load(url, h1).await);
        }
    }
    proxy.stop().await;
}
