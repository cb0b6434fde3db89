//! The proxy over cleartext HTTP, in-process on loopback: routing, header hygiene, filters,
//! weighted backends, error statuses, timeouts and retries.

use std::time::Duration;

use http::{Method, Response, StatusCode};
use lbgw_tests::proxy::{Backend, TestProxy, empty, full, gateway, get, send, service};

const GW: &str = "{name: http, port: 8080, protocol: HTTP}";

/// An HTTPRoute `default/<name>` on Gateway `gw` with `rules` (YAML list items, indented
/// by two spaces).
fn route(name: &str, hostnames: &[&str], rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: {hostnames:?}\n  rules:\n{rules}"
    )
}

fn docs(parts: &[&str]) -> String {
    parts.join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_forwarding_headers_and_without_hop_by_hop_fields() {
    let app = Backend::echo("app").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("app", &[app.addr], None),
        &route(
            "r",
            &["app.example.com"],
            "  - backendRefs: [{name: app, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    let got = send(
        addr,
        Method::GET,
        "app.example.com:8080",
        "/some/path?q=1",
        &[
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
        empty(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "app");
    assert_eq!(got.headers["via"], "1.1 lbgw");

    let seen = app.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(seen[0].uri, "/some/path?q=1");
    assert_eq!(h["host"], "app.example.com:8080");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example.com:8080");
    assert_eq!(h["via"], "1.1 lbgw");
    assert!(
        !h.contains_key("x-private"),
        "Connection-listed field forwarded"
    );
    assert!(!h.contains_key("keep-alive"));

    // Another host has no route: 404 (HTTPRouteRule: "a HTTP 404 status code MUST be
    // returned"), a small text/plain body.
    let got = get(addr, "other.example.com", "/").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(got.body, "404 Not Found\n");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http11_and_h2c_prior_knowledge() {
    let app = Backend::echo("app").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("app", &[app.addr], None),
        &route("r", &[], "  - backendRefs: [{name: app, port: 80}]\n"),
    ]);
    let proxy = TestProxy::start(&yaml);
    let url = format!("http://{}/", proxy.addr(8080));
    let out = lbgw_tests::proxy::curl(&["--http1.1", "-i", &url]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("app"), "{out}");
    let out = lbgw_tests::proxy::curl(&["--http2-prior-knowledge", "-i", &url]).await;
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.to_ascii_lowercase().contains("via: 1.1 lbgw"), "{out}");
    // The backend saw the HTTP/2 request as one received over HTTP/2.
    let seen = app.seen();
    assert_eq!(seen[1].headers["via"], "2 lbgw");
    assert_eq!(seen[1].headers["host"], proxy.addr(8080).to_string());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_invalid_backend_no_endpoints_and_connect_failure() {
    // A port nothing listens on: bind, read, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("empty", &[], None),
        &service("down", &[closed], None),
        &route(
            "r",
            &[],
            "  - matches: [{path: {type: PathPrefix, value: /missing}}]\n    \
               backendRefs: [{name: nosuchservice, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /empty}}]\n    \
               backendRefs: [{name: empty, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /down}}]\n    \
               backendRefs: [{name: down, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    for (path, status) in [
        ("/missing", 500),
        ("/empty", 503),
        ("/down", 502),
        ("/elsewhere", 404),
    ] {
        let got = get(addr, "example.com", path).await;
        assert_eq!(got.status.as_u16(), status, "{path}: {got:?}");
        assert!(got.body.starts_with(&status.to_string()), "{path}: {got:?}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_rewrite_and_redirect() {
    let app = Backend::echo("app").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("app", &[app.addr], None),
        &route(
            "r",
            &[],
            "  - matches: [{path: {type: PathPrefix, value: /api}}]\n    \
               filters:\n    \
               - type: RequestHeaderModifier\n      \
                 requestHeaderModifier:\n        \
                   set: [{name: x-set, value: s}]\n        \
                   add: [{name: x-add, value: a}]\n        \
                   remove: [x-drop]\n    \
               - type: ResponseHeaderModifier\n      \
                 responseHeaderModifier:\n        \
                   set: [{name: x-resp, value: r}]\n        \
                   remove: [x-backend]\n    \
               - type: URLRewrite\n      \
                 urlRewrite:\n        \
                   hostname: internal.example\n        \
                   path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}\n    \
               backendRefs: [{name: app, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /old}}]\n    \
               filters:\n    \
               - type: RequestRedirect\n      \
                 requestRedirect: {scheme: https, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);

    let got = send(
        addr,
        Method::GET,
        "example.com",
        "/api/users?id=3",
        &[("x-set", "client"), ("x-add", "client"), ("x-drop", "1")],
        empty(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["x-resp"], "r");
    assert!(!got.headers.contains_key("x-backend"));
    let seen = app.seen();
    let h = &seen[0].headers;
    assert_eq!(seen[0].uri, "/v2/users?id=3");
    assert_eq!(h["host"], "internal.example");
    assert_eq!(h["x-forwarded-host"], "example.com");
    assert_eq!(h["x-set"], "s");
    let added: Vec<_> = h.get_all("x-add").iter().collect();
    assert_eq!(added, ["client", "a"]);
    assert!(!h.contains_key("x-drop"));

    let got = get(addr, "example.com:8080", "/old/page?x=1").await;
    assert_eq!(got.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(got.headers["location"], "https://example.com/new/page?x=1");
    assert_eq!(app.seen().len(), 1, "a redirect must not reach the backend");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_3_to_1() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("a", &[a.addr], None),
        &service("b", &[b.addr], None),
        &route(
            "r",
            &[],
            "  - backendRefs: [{name: a, port: 80, weight: 3}, {name: b, port: 80, weight: 1}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    const N: usize = 500;
    let mut to_a = 0;
    for _ in 0..N {
        let got = get(addr, "example.com", "/").await;
        assert_eq!(got.status, StatusCode::OK);
        if got.body == "a" {
            to_a += 1;
        }
    }
    assert_eq!(a.seen().len() + b.seen().len(), N);
    let share = to_a as f64 / N as f64;
    // 75 % ± 8 %: with a fair RNG the standard deviation over 500 draws is
    // sqrt(0.75 × 0.25 / 500) ≈ 1.94 %, so ±8 % is about 4 standard deviations (a false
    // failure about once in 16 000 runs).
    assert!((0.67..=0.83).contains(&share), "share of a: {share}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_give_504_and_there_is_none_by_default() {
    let slow = Backend::start(|seen| async move {
        let ms: u64 = seen
            .headers
            .get("x-delay-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(full("slow"))
    })
    .await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("slow", &[slow.addr], None),
        &route(
            "r",
            &[],
            "  - matches: [{path: {type: PathPrefix, value: /request}}]\n    \
               timeouts: {request: 300ms}\n    \
               backendRefs: [{name: slow, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /backend}}]\n    \
               timeouts: {request: 5s, backendRequest: 300ms}\n    \
               backendRefs: [{name: slow, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /none}}]\n    \
               backendRefs: [{name: slow, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    let delayed = |path: &'static str, ms: &'static str| async move {
        let headers = [("x-delay-ms", ms)];
        send(addr, Method::GET, "example.com", path, &headers, empty()).await
    };
    let started = std::time::Instant::now();
    assert_eq!(
        delayed("/request", "3000").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        delayed("/backend", "3000").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(delayed("/request", "0").await.status, StatusCode::OK);
    // No timeout unless configured: 1.5 s is longer than either of the above.
    assert_eq!(delayed("/none", "1500").await.status, StatusCode::OK);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_gets_a_copy_without_affecting_the_response() {
    let app = Backend::echo("app").await;
    let shadow = Backend::start(|_| async {
        // A slow, failing mirror must not delay or change the main response.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
    .await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("app", &[app.addr], None),
        &service("shadow", &[shadow.addr], None),
        &route(
            "r",
            &[],
            "  - filters:\n    \
               - type: RequestMirror\n      \
                 requestMirror: {backendRef: {name: shadow, port: 80}}\n    \
               backendRefs: [{name: app, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    let started = std::time::Instant::now();
    let got = send(
        addr,
        Method::POST,
        "example.com",
        "/m",
        &[],
        full("payload"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "mirror delayed the response"
    );
    let got = get(addr, "example.com", "/n").await;
    assert_eq!(got.status, StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shadow.seen().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = shadow.seen();
    assert_eq!(seen.len(), 2, "mirror backend got {seen:?}");
    let post = seen
        .iter()
        .find(|s| s.method == Method::POST)
        .expect("POST mirrored");
    assert_eq!(post.uri, "/m");
    assert_eq!(post.body, "payload");
    assert_eq!(app.seen().len(), 2);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_and_actual_requests_get_headers() {
    let app = Backend::echo("app").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("app", &[app.addr], None),
        &route(
            "r",
            &[],
            "  - filters:\n    \
               - type: CORS\n      \
                 cors: {allowOrigins: ['https://*.example.com'], allowMethods: [GET, PUT], maxAge: 60}\n    \
               backendRefs: [{name: app, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    let origin = ("origin", "https://app.example.com");
    let got = send(
        addr,
        Method::OPTIONS,
        "api.test",
        "/",
        &[origin, ("access-control-request-method", "PUT")],
        empty(),
    )
    .await;
    assert_eq!(got.status, StatusCode::NO_CONTENT);
    assert_eq!(
        got.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(got.headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(got.headers["access-control-max-age"], "60");
    assert!(app.seen().is_empty(), "preflight reached the backend");
    let got = send(addr, Method::GET, "api.test", "/", &[origin], empty()).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backend_gets_the_host_as_authority() {
    let grpcish = Backend::echo("h2").await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("h2", &[grpcish.addr], Some("kubernetes.io/h2c")),
        &route("r", &[], "  - backendRefs: [{name: h2, port: 80}]\n"),
    ]);
    let proxy = TestProxy::start(&yaml);
    let got = get(proxy.addr(8080), "svc.example.com", "/x?y=z").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "h2");
    let seen = grpcish.seen();
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(seen[0].uri, "http://svc.example.com/x?y=z");
    assert!(!seen[0].headers.contains_key("host"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_listed_codes_per_rule() {
    /// A backend that answers 503 to the first two requests of each path, then 200.
    async fn flaky() -> Backend {
        let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            u32,
        >::new()));
        Backend::start(move |seen| {
            let counts = counts.clone();
            async move {
                let n = {
                    let mut counts = counts.lock().unwrap();
                    let n = counts.entry(seen.uri.path().to_owned()).or_default();
                    *n += 1;
                    *n
                };
                let mut r = Response::new(full("flaky"));
                if n <= 2 {
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                r
            }
        })
        .await
    }
    let flaky = flaky().await;
    let yaml = docs(&[
        &gateway("gw", &[GW]),
        &service("flaky", &[flaky.addr], None),
        &route(
            "r",
            &[],
            "  - matches: [{path: {type: PathPrefix, value: /retry}}]\n    \
               retry: {codes: [503], attempts: 3, backoff: 10ms}\n    \
               backendRefs: [{name: flaky, port: 80}]\n  \
             - matches: [{path: {type: PathPrefix, value: /once}}]\n    \
               backendRefs: [{name: flaky, port: 80}]\n",
        ),
    ]);
    let proxy = TestProxy::start(&yaml);
    let addr = proxy.addr(8080);
    let got = get(addr, "example.com", "/retry").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "flaky");
    let count = |path: &str| flaky.seen().iter().filter(|s| s.uri.path() == path).count();
    assert_eq!(count("/retry"), 3);
    // Without a retry stanza the backend's 503 is the answer.
    let got = get(addr, "example.com", "/once").await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count("/once"), 1);
    proxy.stop().await;
}
