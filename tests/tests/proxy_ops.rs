//! Running lbgw for real (`lbgw run --no-xdp` on loopback): hot reload under load (SIGHUP and
//! file changes), invalid configurations rejected, the admin endpoint (metrics, health,
//! config, status), the access log, passive outlier detection, SIGTERM drain, and the
//! hardening limits (slowloris, oversized heads, HTTP/2 rapid reset).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use lbgw_tests::daemon::Lbgw;
use lbgw_tests::lbgw_bin;
use lbgw_tests::proxy::{
    Backend, Certificate, POOL, client, empty, full, gateway, get, service, tls_secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A free port: bound, read and closed again (Gateway ports come from the YAML).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// lbgw serving a config directory, with its admin endpoint.
struct Running {
    lbgw: Lbgw,
    admin: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `lbgw run --no-xdp` on 127.0.0.1 for `yaml` with `--admin 127.0.0.1:0` and
    /// `extra` flags; waits until it is ready.
    async fn start(yaml: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).unwrap();
        let config = config_dir.join("gw.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = Command::new(lbgw_bin());
        cmd.args(["run", "--no-xdp", "--bind", "127.0.0.1", "--lb-cidr", POOL])
            .args(["--admin", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .arg("--state")
            .arg(dir.path().join("ipam.json"))
            .args(extra);
        let lbgw = Lbgw::spawn(cmd);
        let lbgw = tokio::task::spawn_blocking(move || {
            let mut lbgw = lbgw;
            lbgw.wait_for("lbgw ready", Duration::from_secs(20));
            lbgw
        })
        .await
        .unwrap();
        let log = lbgw.log();
        let admin = log
            .lines()
            .find_map(|l| l.split("admin endpoint listening on http://").nth(1))
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"));
        Self {
            lbgw,
            admin,
            config,
            _dir: dir,
        }
    }

    /// Waits until `needle` occurs `count` times in the log.
    async fn wait_count(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.lbgw.log();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count}× {needle:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let got = get(self.admin, "admin", path).await;
        (got.status, got.body)
    }

    /// Rewrites the configuration file (write to a temporary file, then rename, as editors
    /// and ConfigMap updates do).
    fn write_config(&self, yaml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

const ROUTE_HEAD: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
    metadata: {name: r, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n";

/// Gateway `gw` on `port` (and `extra_port` when given), Service `app` on `app`, Service
/// `ws` on `ws`; the route sends `/ws` to `ws` and the rest to `app`, setting
/// `x-generation: <generation>` on responses.
fn reload_yaml(
    port: u16,
    extra_port: Option<u16>,
    app: SocketAddr,
    ws: SocketAddr,
    generation: usize,
) -> String {
    let l1 = format!("{{name: http, port: {port}, protocol: HTTP}}");
    let l2 = extra_port.map(|p| format!("{{name: extra, port: {p}, protocol: HTTP}}"));
    let mut listeners = vec![l1.as_str()];
    if let Some(l2) = &l2 {
        listeners.push(l2);
    }
    let route = format!(
        "{ROUTE_HEAD}  - matches: [{{path: {{type: PathPrefix, value: /ws}}}}]\n    \
         backendRefs: [{{name: ws, port: 80}}]\n  \
         - filters:\n    - type: ResponseHeaderModifier\n      \
         responseHeaderModifier: {{set: [{{name: x-generation, value: \"{generation}\"}}]}}\n    \
         backendRefs: [{{name: app, port: 80}}]\n"
    );
    [
        gateway("gw", &listeners),
        service("app", &[app], None),
        service("ws", &[ws], None),
        route,
    ]
    .join("\n---\n")
}

/// A backend answering `/events` with an endless SSE stream (one event every 50 ms), `/slow`
/// after 1.5 s, and anything else at once.
async fn app_backend() -> Backend {
    Backend::start(|seen| async move {
        match seen.uri.path() {
            "/events" => {
                let stream = futures_util::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let event = Bytes::from(format!("data: {n}\n\n"));
                    Some((
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(event)),
                        n + 1,
                    ))
                });
                let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                r
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Response::new(full("slow done"))
            }
            _ => Response::new(full("app")),
        }
    })
    .await
}

/// A WebSocket echo server accepting any number of connections.
async fn ws_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_drop_nothing() {
    let app = app_backend().await;
    let (ws_addr, ws_task) = ws_backend().await;
    let (port, extra) = (free_port(), free_port());
    let lb = Running::start(
        &reload_yaml(port, None, app.addr, ws_addr, 0),
        &["--no-watch", "--access-log", "off"],
    )
    .await;
    let addr = local(port);

    // Load: two keep-alive clients sending requests back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get(format!("http://{addr}/"))
                        .header("host", "example.com")
                        .body(empty())
                        .unwrap();
                    let result = tokio::time::timeout(Duration::from_secs(5), async {
                        let r = client.request(req).await?;
                        let status = r.status();
                        r.into_body().collect().await?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                    })
                    .await;
                    match result {
                        Ok(Ok(StatusCode::OK)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed request: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    // An SSE stream and a WebSocket, open through all reloads.
    let sse = client()
        .request(
            Request::get(format!("http://{addr}/events"))
                .header("host", "example.com")
                .body(empty())
                .unwrap(),
        )
        .await
        .expect("SSE response");
    assert_eq!(sse.status(), StatusCode::OK);
    let mut sse = sse.into_body();
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("WebSocket handshake within 5 s")
    .expect("WebSocket handshake");

    let mut last_event = String::new();
    for generation in 1..=20 {
        // Odd generations add a listener port, even ones remove it again.
        let extra_port = (generation % 2 == 1).then_some(extra);
        lb.write_config(&reload_yaml(
            port, extra_port, app.addr, ws_addr, generation,
        ));
        lb.lbgw.signal(libc::SIGHUP);
        lb.wait_count(
            "configuration reloaded",
            generation,
            Duration::from_secs(10),
        )
        .await;

        // New requests see the new configuration, also on kept-alive connections.
        let got = get(addr, "example.com", "/").await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(
            got.headers.get("x-generation").unwrap(),
            &generation.to_string()
        );
        let extra_open = tokio::net::TcpStream::connect(local(extra)).await.is_ok();
        assert_eq!(extra_open, extra_port.is_some(), "generation {generation}");

        // The stream goes on...
        let frame = tokio::time::timeout(Duration::from_secs(5), sse.frame())
            .await
            .expect("an SSE event within 5 s")
            .expect("the SSE stream is open")
            .expect("no SSE error");
        let event = String::from_utf8_lossy(&frame.into_data().unwrap()).into_owned();
        assert!(event.starts_with("data: "), "{event:?}");
        assert_ne!(event, last_event);
        last_event = event;
        // ...and so does the WebSocket.
        let text = format!("after reload {generation}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .expect("a message")
            .expect("no WebSocket error");
        assert_eq!(echo, Message::text(text));
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests ({ok} succeeded)");
    assert!(ok >= 20, "only {ok} requests");
    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_config_reloads_total{result=\"ok\"} 20"),
        "{metrics}"
    );
    ws_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_rejected_and_the_old_one_keeps_serving() {
    let app = app_backend().await;
    let (ws_addr, ws_task) = ws_backend().await;
    let port = free_port();
    // The file watch (on by default) picks up the changes; no SIGHUP.
    let lb = Running::start(
        &reload_yaml(port, None, app.addr, ws_addr, 1),
        &["--watch-debounce", "100ms"],
    )
    .await;
    let addr = local(port);
    assert_eq!(get(addr, "example.com", "/").await.status, StatusCode::OK);

    // A route whose backendRef port is not a number.
    let invalid = reload_yaml(port, None, app.addr, ws_addr, 2).replace(
        "backendRefs: [{name: app, port: 80}]",
        "backendRefs: [{name: app, port: eighty}]",
    );
    lb.write_config(&invalid);
    lb.wait_count("configuration rejected", 1, Duration::from_secs(10))
        .await;
    let log = lb.lbgw.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration rejected"))
        .unwrap();
    assert!(line.contains("gw.yaml"), "the line names the file: {line}");
    assert!(
        line.contains("HTTPRoute default/r"),
        "and the object: {line}"
    );
    assert!(line.contains("port"), "and the field: {line}");
    let got = get(addr, "example.com", "/").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers.get("x-generation").unwrap(), "1");

    // Fixed: applied.
    lb.write_config(&reload_yaml(port, None, app.addr, ws_addr, 3));
    lb.wait_count("configuration reloaded", 1, Duration::from_secs(10))
        .await;
    let got = get(addr, "example.com", "/").await;
    assert_eq!(got.headers.get("x-generation").unwrap(), "3");
    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    ws_task.abort();
}

/// A route `r` on Gateway `gw` (port) to Service `app` with `endpoints`, and a TLS Secret
/// (to see it redacted).
fn metrics_yaml(port: u16, endpoints: &[SocketAddr], secret: &str) -> String {
    metrics_yaml_for(port, endpoints, secret, None)
}

/// [`metrics_yaml`] with the route for `hostname` only (other hosts get lbgw's own 404).
fn metrics_yaml_for(
    port: u16,
    endpoints: &[SocketAddr],
    secret: &str,
    hostname: Option<&str>,
) -> String {
    let listener = format!("{{name: http, port: {port}, protocol: HTTP}}");
    let mut docs = vec![
        gateway("gw", &[&listener]),
        service("app", endpoints, None),
        format!(
            "{}{}  rules:\n  - backendRefs: [{{name: app, port: 80}}]\n",
            ROUTE_HEAD.trim_end_matches("  rules:\n"),
            hostname.map_or(String::new(), |h| format!("  hostnames: [{h}]\n")),
        ),
    ];
    if !secret.is_empty() {
        docs.push(secret.to_owned());
    }
    docs.join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_access_log_outliers_and_drain() {
    let app = app_backend().await;
    // An endpoint that refuses connections: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cert = Certificate::self_signed(&["example.com"]);
    let secret = tls_secret("cert", &cert);
    let port = free_port();
    let lb = Running::start(
        &metrics_yaml_for(port, &[app.addr, dead], &secret, Some("example.com")),
        &[
            "--outlier-consecutive-failures",
            "2",
            "--outlier-base-ejection",
            "60s",
            "--drain-timeout",
            "5s",
        ],
    )
    .await;
    let addr = local(port);
    assert_eq!(lb.admin_get("/healthz").await.0, StatusCode::OK);
    assert_eq!(lb.admin_get("/readyz").await.0, StatusCode::OK);

    // Until the dead endpoint is ejected some requests get 502; after, none.
    let mut bad_gateway = 0;
    for _ in 0..40 {
        match get(addr, "example.com", "/").await.status {
            StatusCode::OK => {}
            StatusCode::BAD_GATEWAY => bad_gateway += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(bad_gateway, 2, "two connect failures eject the endpoint");
    for _ in 0..30 {
        assert_eq!(get(addr, "example.com", "/").await.status, StatusCode::OK);
    }
    // No route for this host: counted with empty route and backend.
    for _ in 0..3 {
        let status = get(addr, "unknown.example.net", "/").await.status;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    let (_, metrics) = lb.admin_get("/metrics").await;
    let has = |needle: &str| assert!(metrics.contains(needle), "{needle}\n{metrics}");
    has("lbgw_http_requests_total{route=\"default/r\",backend=\"default/app:80\",code=\"5xx\"} 2");
    has("lbgw_http_requests_total{route=\"default/r\",backend=\"default/app:80\",code=\"2xx\"} 68");
    has(
        "lbgw_http_time_to_first_byte_seconds_count{route=\"default/r\",backend=\"default/app:80\"} 70",
    );
    has("lbgw_http_request_duration_seconds_bucket{");
    has("lbgw_http_requests_total{route=\"\",backend=\"\",code=\"4xx\"} 3");
    has(&format!(
        "lbgw_upstream_connect_errors_total{{endpoint=\"{dead}\"}} 2"
    ));
    has(&format!(
        "lbgw_upstream_ejections_total{{endpoint=\"{dead}\"}} 1"
    ));
    has("lbgw_upstream_ejected 1");
    has("lbgw_connections_total ");
    has("# TYPE lbgw_active_connections gauge");
    lb.wait_count(
        "endpoint ejected after consecutive failures",
        1,
        Duration::from_secs(1),
    )
    .await;

    // /config: the effective objects, the Secret's key material redacted.
    let (code, config) = lb.admin_get("/config").await;
    assert_eq!(code, StatusCode::OK);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["httpRoutes"][0]["object"]["metadata"]["name"], "r");
    let secret = config["secrets"][0]["object"].to_string();
    assert!(secret.contains("<redacted>"), "{secret}");
    assert!(!secret.contains("PRIVATE KEY"), "{secret}");

    // /status and `lbgw status`.
    let (_, status) = lb.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["routes"][0]["route"], "default/r");
    let endpoints = status["routes"][0]["backends"][0]["endpoints"].to_string();
    assert!(endpoints.contains("ejected"), "{endpoints}");
    assert!(endpoints.contains("healthy"), "{endpoints}");
    let out = Command::new(lbgw_bin())
        .args(["status", "--admin", &lb.admin.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("default/r"), "{table}");
    assert!(table.contains(&dead.to_string()), "{table}");
    assert!(table.contains(&format!("127.0.0.1:{port}")), "{table}");

    // The access log (text, stdout): one line per request.
    let log = lb.lbgw.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("access ") && l.contains("status=502"))
        .unwrap_or_else(|| panic!("no access line for a 502:\n{log}"));
    for field in [
        "listener=default/gw/http",
        "route=default/r",
        "rule=0",
        "backend=default/app:80",
        &format!("endpoint={dead}"),
        "failure=",
        "ttfb_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(
        log.lines().any(|l| l.starts_with("access ")
            && l.contains("status=200")
            && l.contains("bytes_out=3")),
        "{log}"
    );

    // SIGTERM drains an in-flight slow request to completion.
    let mut lb = lb;
    let in_flight = tokio::spawn(async move { get(addr, "example.com", "/slow").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.seen().iter().any(|s| s.uri.path() == "/slow") {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (exit, log) = tokio::task::spawn_blocking(move || {
        let exit = lb.lbgw.stop(Duration::from_secs(10));
        (exit, lb.lbgw.log())
    })
    .await
    .unwrap();
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, StatusCode::OK, "{log}");
    assert_eq!(got.body, "slow done");
    assert!(exit.success(), "{exit}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown_with_an_endless_stream() {
    let app = app_backend().await;
    let port = free_port();
    let lb = Running::start(
        &metrics_yaml(port, &[app.addr], ""),
        &["--drain-timeout", "1s"],
    )
    .await;
    let sse = client()
        .request(
            Request::get(format!("http://{}/events", local(port)))
                .header("host", "example.com")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let mut lb = lb;
    let started = Instant::now();
    let (exit, log) = tokio::task::spawn_blocking(move || {
        let exit = lb.lbgw.stop(Duration::from_secs(10));
        (exit, lb.lbgw.log())
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        started.elapsed()
    );
    assert!(log.contains("proxy drain timed out after 1s"), "{log}");
    drop(sse);
}

/// Reads from `stream` until EOF or error; `true` when the server closed it within `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_oversized_heads_and_idle_connections_are_cut_off() {
    let app = app_backend().await;
    let port = free_port();
    let lb = Running::start(
        &metrics_yaml(port, &[app.addr], ""),
        &[
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "1s",
            "--max-headers",
            "30",
            "--access-log",
            "off",
        ],
    )
    .await;
    let addr = local(port);

    // Slowloris: a request head trickled one byte every 100 ms is cut off by the header
    // read timeout, while another client is served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let started = Instant::now();
        for byte in head {
            if slow.write_all(&[*byte]).await.is_err() {
                return (started.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A closed connection shows as a read of 0 (or a 408 first).
            let mut buf = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
                && (n == 0 || buf.starts_with(b"HTTP/1.1 408"))
            {
                return (started.elapsed(), true);
            }
        }
        (started.elapsed(), false)
    });
    for _ in 0..10 {
        assert_eq!(get(addr, "example.com", "/").await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (elapsed, cut) = trickle.await.unwrap();
    assert!(cut, "the slow client was not cut off ({elapsed:?})");
    assert!(
        elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );

    // Too many header fields: 431.
    let mut req = Request::get(format!("http://{addr}/")).header("host", "example.com");
    for i in 0..40 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let response = client().request(req.body(empty()).unwrap()).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // An idle HTTP/1.1 keep-alive connection is closed (by the header read timeout, which
    // also runs while hyper waits for the next request)...
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "idle connection left open"
    );
    // ...and so is an idle HTTP/2 connection (GOAWAY), by the idle timeout...
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let req = Request::get(format!("http://{addr}/")).body(()).unwrap();
    let (response, _) = h2.send_request(req, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("idle h2 connection closed within 5 s")
        .unwrap()
        .expect("closed gracefully");
    drop(h2);
    // ...but a stream longer than both is not cut.
    let sse = client()
        .request(
            Request::get(format!("http://{addr}/events"))
                .header("host", "example.com")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = sse.into_body();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("event within 2 s")
            .expect("stream open")
            .expect("no error");
        assert!(frame.is_data());
    }
    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_connections_closed_total{reason=\"idle_timeout\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_client_is_disconnected_while_others_are_served() {
    let app = app_backend().await;
    let port = free_port();
    let lb = Running::start(
        &metrics_yaml(port, &[app.addr], ""),
        // h2's own limit on streams reset before they are accepted also stops this client
        // (GOAWAY ENHANCE_YOUR_CALM); it is lifted here so that lbgw's premature-reset
        // check is what is tested.
        &[
            "--max-premature-resets",
            "50",
            "--h2-max-pending-accept-reset-streams",
            "1000000",
            "--access-log",
            "off",
        ],
    )
    .await;
    let addr = local(port);

    // A well-behaved client, served throughout.
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (served, stop) = (served.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(get(addr, "example.com", "/").await.status, StatusCode::OK);
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The attacker: HEADERS then RST_STREAM(CANCEL), over and over, on one connection.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    const ATTEMPTS: usize = 20_000;
    let mut sent = 0;
    let attack = tokio::time::timeout(Duration::from_secs(30), async {
        while sent < ATTEMPTS {
            h2 = match h2.ready().await {
                Ok(h2) => h2,
                Err(_) => break,
            };
            let req = Request::get(format!("http://{addr}/slow"))
                .body(())
                .unwrap();
            let Ok((response, mut stream)) = h2.send_request(req, true) else {
                break;
            };
            // Let the request reach the proxy now and then, so that it is accepted
            // before it is reset (the case h2's own pending-accept limit does not see).
            if sent % 8 == 0 {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stream.send_reset(h2::Reason::CANCEL);
            drop(response);
            sent += 1;
        }
    })
    .await;
    assert!(attack.is_ok(), "the attack loop did not end within 30 s");
    let closed = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the attacker's connection ends")
        .unwrap();
    assert!(
        sent < ATTEMPTS,
        "the attacker reset {sent} streams without being disconnected ({closed:?})"
    );
    stop.store(true, Ordering::Relaxed);
    good.await.unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    assert_eq!(get(addr, "example.com", "/").await.status, StatusCode::OK);
    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_connections_closed_total{reason=\"premature_resets\"} 1"),
        "{metrics}"
    );
}

/// Runs curl for `https://example.com:<port>/` against 127.0.0.1 trusting `ca`; its exit
/// status and output.
async fn curl_https(port: u16, ca: &std::path::Path) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("example.com:{port}:127.0.0.1")])
        .arg(format!("https://example.com:{port}/"))
        .output()
        .await
        .expect("curl (Debian package curl) must be installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_serves_new_handshakes_and_tls_failures_are_counted() {
    let app = app_backend().await;
    let port = free_port();
    let yaml = |cert: &Certificate| {
        let listener = format!(
            "{{name: https, port: {port}, protocol: HTTPS, hostname: example.com, \
             tls: {{certificateRefs: [{{name: cert}}]}}}}"
        );
        [
            gateway("gw", &[&listener]),
            service("app", &[app.addr], None),
            format!("{ROUTE_HEAD}  - backendRefs: [{{name: app, port: 80}}]\n"),
            tls_secret("cert", cert),
        ]
        .join("\n---\n")
    };
    let (old, new) = (
        Certificate::self_signed(&["example.com"]),
        Certificate::self_signed(&["example.com"]),
    );
    let lb = Running::start(&yaml(&old), &["--no-watch", "--access-log", "off"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (
        old.write(dir.path(), "old.pem"),
        new.write(dir.path(), "new.pem"),
    );
    let (ok, out) = curl_https(port, &old_ca).await;
    assert!(ok, "{out}");
    assert_eq!(out, "app");

    // A connection made with the old certificate stays usable across the rotation.
    let tcp = tokio::net::TcpStream::connect(local(port)).await.unwrap();
    // The test certificates are their own CA, which webpki refuses as a server
    // certificate; the client pins the old certificate instead.
    let pinned = rustls_pemfile_certs(&old.cert_pem).remove(0);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: pinned,
            provider,
        }))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let mut kept = connector
        .connect("example.com".try_into().unwrap(), tcp)
        .await
        .expect("TLS with the old certificate");

    lb.write_config(&yaml(&new));
    lb.lbgw.signal(libc::SIGHUP);
    lb.wait_count("configuration reloaded", 1, Duration::from_secs(10))
        .await;
    let (ok, out) = curl_https(port, &new_ca).await;
    assert!(ok, "new handshakes present the new certificate: {out}");
    let (ok, _) = curl_https(port, &old_ca).await;
    assert!(!ok, "the old certificate is no longer presented");

    kept.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), kept.read_to_string(&mut response))
        .await
        .expect("answer within 5 s")
        .ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_tls_handshake_failures_total{reason=\"alert_received\"} 1"),
        "the client that rejected the old certificate: {metrics}"
    );
}

/// Accepts exactly one server certificate (signatures still verified).
#[derive(Debug)]
struct Pinned {
    cert: rustls::pki_types::CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("PEM certificate"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_the_others_served() {
    let app = app_backend().await;
    let port = free_port();
    let lb = Running::start(
        &metrics_yaml(port, &[app.addr], ""),
        &["--max-connections", "2", "--access-log", "off"],
    )
    .await;
    let addr = local(port);
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Both are accepted before the third arrives.
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(5)).await,
        "the third connection is closed"
    );
    drop(first);
    // A slot is free again once the first connection is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let req = Request::get(format!("http://{addr}/"))
            .header("host", "example.com")
            .body(empty())
            .unwrap();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await
            && r.status() == StatusCode::OK
        {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = lb.admin_get("/metrics").await;
    assert!(
        metrics.contains("lbgw_connections_closed_total{reason=\"connection_limit\"}"),
        "{metrics}"
    );
    drop(second);
}
