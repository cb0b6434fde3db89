//! Table-level tests: Gateways and HTTPRoutes written as YAML, requests in, chosen rule out.

mod attachment;
mod index;
mod precedence;

use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;
use http::{HeaderMap, HeaderValue, Method};
use k8s_openapi::api::core::v1::Namespace;
use serde::Deserialize;

use super::*;

/// A Gateway `infra/gw` with one HTTP listener on port 80 that admits routes from all
/// namespaces.
const GATEWAY: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: lbgw
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
";

/// An HTTPRoute `ns/name` attached to `infra/gw`, with `spec` (flow YAML, without
/// parentRefs) and an optional creation timestamp.
fn route(id: &str, created: Option<&str>, spec: &str) -> String {
    let (ns, name) = id.split_once('/').expect("ns/name");
    let created = created
        .map(|c| format!(", creationTimestamp: '{c}'"))
        .unwrap_or_default();
    let spec = spec.trim();
    let spec = spec
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(spec);
    let sep = if spec.is_empty() { "" } else { ", " };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: {ns}{created}}}\n\
         spec: {{parentRefs: [{{name: gw, namespace: infra}}]{sep}{spec}}}\n"
    )
}

/// Builds a table from YAML documents (Gateway, HTTPRoute and Namespace objects).
fn build(docs: &[String]) -> (RouteTable, Vec<BuildError>) {
    let (mut gateways, mut routes, mut namespaces) = (
        Vec::<Gateway>::new(),
        Vec::<HttpRoute>::new(),
        Vec::<Namespace>::new(),
    );
    for doc in docs {
        let value = serde_yaml_ng::Value::deserialize(serde_yaml_ng::Deserializer::from_str(doc))
            .expect("test YAML");
        match value["kind"].as_str() {
            Some("Gateway") => gateways.push(serde_yaml_ng::from_value(value).expect("Gateway")),
            Some("HTTPRoute") => routes.push(serde_yaml_ng::from_value(value).expect("HTTPRoute")),
            Some("Namespace") => {
                namespaces.push(serde_yaml_ng::from_value(value).expect("Namespace"))
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    RouteTable::build(&gateways, &routes, &namespaces, &Default::default())
}

/// Builds a table of [`GATEWAY`] and `routes`, asserting no build errors.
fn table(routes: &[String]) -> RouteTable {
    let mut docs = vec![GATEWAY.to_owned()];
    docs.extend_from_slice(routes);
    let (table, errors) = build(&docs);
    assert!(errors.is_empty(), "{errors:?}");
    table
}

/// A request to `infra/gw`; also the request of the match-level tests (`matches/tests.rs`).
pub(super) struct Req {
    pub(super) listener: ListenerRef<'static>,
    pub(super) host: &'static str,
    pub(super) path: &'static str,
    pub(super) query: Option<&'static str>,
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
}

pub(super) fn get(host: &'static str, path: &'static str) -> Req {
    Req {
        listener: ListenerRef::Port(80),
        host,
        path,
        query: None,
        method: Method::GET,
        headers: HeaderMap::new(),
    }
}

impl Req {
    pub(super) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }
    pub(super) fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
    pub(super) fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn listener(mut self, l: ListenerRef<'static>) -> Self {
        self.listener = l;
        self
    }

    fn find<'t>(&self, table: &'t RouteTable) -> Option<Match<'t>> {
        table.find(&RequestParts {
            gateway: GatewayRef {
                namespace: "infra",
                name: "gw",
            },
            listener: self.listener,
            host: self.host,
            path: self.path,
            query: self.query,
            method: &self.method,
            headers: &self.headers,
        })
    }

    /// `ns/name` of the chosen route and the rule index.
    fn route(&self, table: &RouteTable) -> Option<(String, usize)> {
        self.find(table)
            .map(|m| (m.route.to_string(), m.rule_index))
    }
}

fn chose(id: &str, rule: usize) -> Option<(String, usize)> {
    Some((id.to_owned(), rule))
}

#[test]
fn request_parts_from_an_http_head() {
    let (head, ()) = http::Request::get("/a/b?x=1")
        .header("host", "Example.com:8080")
        .body(())
        .expect("request")
        .into_parts();
    let parts = RequestParts::from_http(
        GatewayRef {
            namespace: "infra",
            name: "gw",
        },
        ListenerRef::Port(80),
        &head,
    );
    assert_eq!(
        (parts.host, parts.path, parts.query),
        ("Example.com:8080", "/a/b", Some("x=1"))
    );
    let t = table(&[route("app/r", None, "{hostnames: [example.com]}")]);
    assert_eq!(
        t.find(&parts).map(|m| m.route.to_string()),
        Some("app/r".into())
    );

    let (h2, ()) = http::Request::get("https://h2.example/p")
        .body(())
        .expect("request")
        .into_parts();
    let parts = RequestParts::from_http(parts.gateway, parts.listener, &h2);
    assert_eq!(
        (parts.host, parts.path, parts.query),
        ("h2.example", "/p", None)
    );
}
