//! The hostname/path index gives the same answer as scoring every candidate: many routes
//! with overlapping exact and wildcard hostnames, exact, prefix and regex paths, header and
//! method matches and tied timestamps, against requests built from the same pieces.

use super::*;

/// Two listeners: any host on port 80, `*.example.com` on port 8080.
const TWO_LISTENERS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: lbgw
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: wild, port: 8080, hostname: '*.example.com', protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
";

const HOSTS: &[&str] = &[
    "example.com",
    "a.example.com",
    "b.example.com",
    "x.a.example.com",
    "example.org",
    "a.example.org",
];
const ROUTE_HOSTS: &[&str] = &[
    "example.com",
    "a.example.com",
    "'*.example.com'",
    "'*.a.example.com'",
    "'*.com'",
    "a.example.org",
    "'*.example.org'",
];
const PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/",
    "/api/v1",
    "/api/v1/users",
    "/apix",
    "/static/app.js",
    "/x//y",
];
const PATH_MATCHES: &[&str] = &[
    "{type: PathPrefix, value: /}",
    "{type: PathPrefix, value: /api}",
    "{type: PathPrefix, value: /api/}",
    "{type: PathPrefix, value: /api/v1}",
    "{type: Exact, value: /api}",
    "{type: Exact, value: /static/app.js}",
    "{type: RegularExpression, value: '/api/v[0-9]+/.*'}",
    "{type: PathPrefix, value: /x}",
];

/// A deterministic pseudo-random sequence (a 64-bit LCG, Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn random_route(rng: &mut Lcg, i: usize) -> String {
    let hostnames: Vec<&str> = (0..rng.below(3))
        .map(|_| ROUTE_HOSTS[rng.below(ROUTE_HOSTS.len())])
        .collect();
    let rules: Vec<String> = (0..1 + rng.below(3))
        .map(|_| {
            let matches: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    let mut m = format!("path: {}", PATH_MATCHES[rng.below(PATH_MATCHES.len())]);
                    if rng.below(3) == 0 {
                        m.push_str(", headers: [{name: x-tenant, value: t1}]");
                    }
                    if rng.below(4) == 0 {
                        m.push_str(", method: POST");
                    }
                    format!("{{{m}}}")
                })
                .collect();
            format!("{{matches: [{}]}}", matches.join(", "))
        })
        .collect();
    // Few distinct timestamps, so ties fall through to namespace/name.
    let created = format!("2026-01-0{}T00:00:00Z", 1 + rng.below(3));
    route(
        &format!("ns{}/r{i}", rng.below(4)),
        Some(&created),
        &format!(
            "{{hostnames: [{}], rules: [{}]}}",
            hostnames.join(", "),
            rules.join(", ")
        ),
    )
}

#[test]
fn index_agrees_with_a_scan_of_every_candidate() {
    let mut rng = Lcg(7);
    let mut docs = vec![TWO_LISTENERS.to_owned()];
    docs.extend((0..300).map(|i| random_route(&mut rng, i)));
    let (table, errors) = build(&docs);
    assert!(errors.is_empty(), "{errors:?}");

    let mut matched = 0;
    for port in [80, 8080] {
        for host in HOSTS {
            for path in PATHS {
                for (method, tenant) in [
                    (Method::GET, None),
                    (Method::POST, Some("t1")),
                    (Method::GET, Some("t1")),
                ] {
                    let mut req = get(host, path)
                        .listener(ListenerRef::Port(port))
                        .method(method);
                    if let Some(t) = tenant {
                        req = req.header("x-tenant", t);
                    }
                    let parts = RequestParts {
                        gateway: GatewayRef {
                            namespace: "infra",
                            name: "gw",
                        },
                        listener: req.listener,
                        host: req.host,
                        path: req.path,
                        query: req.query,
                        method: &req.method,
                        headers: &req.headers,
                    };
                    let key = |m: Match<'_>| {
                        (
                            m.route.to_string(),
                            m.rule_index,
                            m.match_index,
                            m.hostname.to_string(),
                        )
                    };
                    let indexed = table.find(&parts).map(key);
                    let scanned = table.find_by_scan(&parts).map(key);
                    assert_eq!(indexed, scanned, "port {port} host {host} path {path}");
                    matched += usize::from(indexed.is_some());
                }
            }
        }
    }
    // The generated table must exercise both outcomes.
    assert!(matched > 100, "only {matched} requests matched");
    assert!(
        matched < 2 * HOSTS.len() * PATHS.len() * 3,
        "every request matched"
    );
}
