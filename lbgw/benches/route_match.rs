//! Route matching cost for 10 / 100 / 1,000 / 10,000 HTTPRoutes on one listener.
//!
//! ```sh
//! cargo bench -p lbgw --bench route_match
//! ```
//!
//! The table looks like a busy shared gateway: ten routes per hostname (`app<k>.example.com`),
//! every 25th route also on a wildcard (`*.team<t>.example.com`), routes from 50 namespaces,
//! and per route three rules: a path prefix with a header match, a plain path prefix, and an
//! exact health-check path with a method match. Requests carry a browser-like set of headers.

use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;
use http::{HeaderMap, HeaderValue, Method};
use lbgw::config::HttpRouteRetries;
use lbgw::route::{GatewayRef, ListenerRef, RequestParts, RouteTable};

const SIZES: &[usize] = &[10, 100, 1_000, 10_000];

const GATEWAY: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: lbgw
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
";

fn route(i: usize) -> HttpRoute {
    let wildcard = if i.is_multiple_of(25) {
        format!(", '*.team{}.example.com'", i % 7)
    } else {
        String::new()
    };
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: ns{ns}}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  hostnames: ['app{host}.example.com'{wildcard}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api/r{i}}}, headers: [{{name: x-tenant, value: t{tenant}}}]}}]
    backendRefs: [{{name: api{i}, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /r{i}}}}}]
    backendRefs: [{{name: web{i}, port: 80}}]
  - matches: [{{path: {{type: Exact, value: /r{i}/healthz}}, method: GET}}]
    backendRefs: [{{name: health{i}, port: 80}}]
",
        ns = i % 50,
        host = i / 10,
        tenant = i % 5,
    );
    serde_yaml_ng::from_str(&yaml).expect("route YAML")
}

fn table(n: usize) -> RouteTable {
    let gateway: Gateway = serde_yaml_ng::from_str(GATEWAY).expect("gateway YAML");
    let routes: Vec<HttpRoute> = (0..n).map(route).collect();
    let (table, errors) = RouteTable::build(&[gateway], &routes, &[], &HttpRouteRetries::new());
    assert!(errors.is_empty(), "{errors:?}");
    table
}

fn headers(tenant: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9"),
        ("cookie", "session=6f1c0e1d2b; theme=dark"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        "x-tenant",
        HeaderValue::from_str(&format!("t{tenant}")).expect("header"),
    );
    h
}

fn lookup(table: &RouteTable, host: &str, path: &str, headers: &HeaderMap) -> bool {
    find(table, host, path, headers, false)
}

/// `scan`: every candidate scored, as before the index (`RouteTable::find_by_scan`).
fn find(table: &RouteTable, host: &str, path: &str, headers: &HeaderMap, scan: bool) -> bool {
    let req = RequestParts {
        gateway: GatewayRef {
            namespace: "infra",
            name: "gw",
        },
        listener: ListenerRef::Port(80),
        host,
        path,
        query: Some("page=2&sort=desc"),
        method: &Method::GET,
        headers,
    };
    if scan {
        table.find_by_scan(&req).is_some()
    } else {
        table.find(&req).is_some()
    }
}

/// A request for a route in the middle of the table, through its header-matched rule.
#[divan::bench(args = SIZES)]
fn api_with_header(bencher: divan::Bencher, n: usize) {
    let table = table(n);
    let i = n / 2;
    let host = format!("app{}.example.com:443", i / 10);
    let path = format!("/api/r{i}/orders/1234/items");
    let headers = headers(i % 5);
    assert!(lookup(&table, &host, &path, &headers));
    bencher.bench_local(|| lookup(&table, divan::black_box(&host), &path, &headers));
}

/// A request through a wildcard hostname to a plain path prefix.
#[divan::bench(args = SIZES)]
fn wildcard_host(bencher: divan::Bencher, n: usize) {
    let table = table(n);
    let host = "cdn.team0.example.com".to_owned();
    let path = "/r0/static/app.js".to_owned();
    let headers = headers(0);
    assert!(lookup(&table, &host, &path, &headers));
    bencher.bench_local(|| lookup(&table, divan::black_box(&host), &path, &headers));
}

/// The first request without the index: every candidate of the listener scored.
#[divan::bench(args = SIZES)]
fn api_with_header_scan(bencher: divan::Bencher, n: usize) {
    let table = table(n);
    let i = n / 2;
    let host = format!("app{}.example.com:443", i / 10);
    let path = format!("/api/r{i}/orders/1234/items");
    let headers = headers(i % 5);
    assert!(find(&table, &host, &path, &headers, true));
    bencher.bench_local(|| find(&table, divan::black_box(&host), &path, &headers, true));
}

/// A request that matches no route (a 404).
#[divan::bench(args = SIZES)]
fn no_match(bencher: divan::Bencher, n: usize) {
    let table = table(n);
    let host = "unknown.example.org".to_owned();
    let path = "/wp-login.php".to_owned();
    let headers = headers(0);
    assert!(!lookup(&table, &host, &path, &headers));
    bencher.bench_local(|| lookup(&table, divan::black_box(&host), &path, &headers));
}

fn main() {
    divan::main();
}
