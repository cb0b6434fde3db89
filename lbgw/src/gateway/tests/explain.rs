//! `lbgw route` explanations.

use http::{HeaderMap, HeaderValue, Method, Uri};

use super::*;
use crate::gateway::explain::{Explanation, Request, RequestError, explain};

/// Two Gateways listening on port 80: `infra/a` (VIP 192.0.2.10, route `infra/shop` with a
/// weighted split and a header match) and `infra/b` (VIP 192.0.2.20, route `infra/docs`).
const TWO: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: infra}
spec:
  gatewayClassName: lbgw
  addresses: [{type: IPAddress, value: 192.0.2.10}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b, namespace: infra}
spec:
  gatewayClassName: lbgw
  addresses: [{type: IPAddress, value: 192.0.2.20}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: infra}
spec:
  parentRefs: [{name: a}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop}, headers: [{name: x-beta, value: '1'}]}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: beta, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /shop}}]
    backendRefs: [{name: api, port: 80, weight: 3}, {name: gone, port: 80, weight: 1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: docs, namespace: infra}
spec:
  parentRefs: [{name: b}]
  rules: [{matches: [{path: {type: Exact, value: /docs}}], backendRefs: [{name: beta, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: infra}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: infra, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: beta, namespace: infra}
spec: {ports: [{name: http, port: 80}]}
";

fn run(yaml: &str, url: &str, headers: &[(&str, &str)], gateway: Option<&str>) -> Explanation {
    let config = config(yaml);
    let (model, status) = GatewayModel::build(&config, &plan(&config));
    let url: Uri = url.parse().expect("URL");
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let gateway = gateway.map(|g| {
        let (namespace, name) = g.split_once('/').expect("ns/name");
        GatewayId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    });
    let req = Request::new(&url, &Method::GET, &map, gateway.as_ref()).expect("request");
    explain(&model, &status, &config, &req)
}

#[test]
fn weighted_backends_with_their_resolution() {
    let e = run(
        TWO,
        "http://shop.example.test/shop/cart",
        &[],
        Some("infra/a"),
    );
    assert!(e.matched);
    assert_eq!(e.answer, None);
    assert_eq!(
        e.lines,
        vec![
            "Gateway infra/a listener http (HTTP port 80, hostname *), addresses 192.0.2.10",
            "route HTTPRoute infra/shop rule 1 match 0: {\"path\":{\"type\":\"PathPrefix\",\"value\":\"/shop\"}}",
            "backends:",
            "  Service infra/api port 80  weight 3 (75%)",
            "    → 10.0.0.1:8080 (HTTP/1.1)",
            "  Service infra/gone port 80  weight 1 (25%)",
            "    → invalid (BackendNotFound): Service infra/gone does not exist: 500",
        ]
    );
}

#[test]
fn headers_select_rules_and_filters_are_computed() {
    let e = run(
        TWO,
        "http://192.0.2.10/shop/cart?x=1",
        &[("X-Beta", "1")],
        None,
    );
    assert!(e.matched);
    assert_eq!(
        e.lines[1].split(':').next(),
        Some("route HTTPRoute infra/shop rule 0 match 0")
    );
    assert_eq!(
        e.lines[2..4],
        [
            "filters:",
            "  URLRewrite: path /shop/cart → /cart (ReplacePrefixMatch)",
        ]
    );
    // The only backend has no endpoints.
    assert_eq!(e.answer, Some(503));
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("    → no ready endpoints: 503")
    );
}

#[test]
fn the_vip_or_the_routes_choose_the_gateway() {
    // By address: 192.0.2.20 is infra/b's, which has no /shop route.
    let e = run(TWO, "http://192.0.2.20/shop", &[], None);
    assert!(!e.matched);
    assert_eq!(e.answer, Some(404));
    assert!(
        e.lines[0].starts_with("Gateway infra/b listener http"),
        "{e}"
    );
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("no route matches: 404")
    );
    // By host name: both Gateways serve it; the one whose routes match is shown.
    let e = run(TWO, "http://docs.example.test/docs", &[], None);
    assert!(e.matched);
    assert!(
        e.lines[0].starts_with("2 Gateways serve this host on port 80"),
        "{e}"
    );
    assert!(
        e.lines[1].starts_with("Gateway infra/b listener http"),
        "{e}"
    );
}

#[test]
fn no_listener_on_the_port() {
    let e = run(TWO, "https://shop.example.test/shop", &[], None);
    assert!(!e.matched);
    assert_eq!(e.answer, None);
    assert_eq!(
        e.lines,
        vec![
            "no programmed listener on port 443: no route matches (the connection would be refused)"
        ]
    );
}

#[test]
fn redirects_answer_with_their_location() {
    let yaml = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: lbgw
  listeners: [{name: http, port: 8080, protocol: HTTP, hostname: www.example.test}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: up, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 308}}]}]
";
    let e = run(yaml, "http://WWW.example.test:8080/a?b=c", &[], None);
    assert!(e.matched);
    assert_eq!(e.answer, Some(308));
    assert_eq!(
        e.lines[3],
        "  RequestRedirect: 308 Location: https://www.example.test/a?b=c"
    );
    // Another host: no listener hostname matches on a port that is served.
    let e = run(yaml, "http://api.example.test:8080/", &[], None);
    assert_eq!(e.answer, Some(404));
    assert!(!e.matched);
}

#[test]
fn urls_must_be_http_or_https() {
    let url: Uri = "ftp://example.test/".parse().expect("URL");
    let headers = HeaderMap::new();
    assert!(matches!(
        Request::new(&url, &Method::GET, &headers, None),
        Err(RequestError::Scheme(_))
    ));
    let url: Uri = "/relative".parse().expect("URL");
    assert!(Request::new(&url, &Method::GET, &headers, None).is_err());
}
