//! Backend resolution: Service ports, EndpointSlices, readiness and ReferenceGrants.

use std::net::SocketAddr;

use super::*;
use crate::route::BackendRef;

fn service_ref(namespace: &str, name: &str, port: Option<u16>) -> BackendRef {
    BackendRef {
        group: String::new(),
        kind: "Service".to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        port,
    }
}

fn table(yaml: &str) -> BackendTable {
    build(yaml).0.backends
}

fn ready(r: Resolution) -> ResolvedBackend {
    match r {
        Resolution::Ready(b) => (*b).clone(),
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn invalid_reason(r: Resolution) -> &'static str {
    match r {
        Resolution::Invalid { reason, .. } => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter()
        .map(|a| a.parse().expect("socket address"))
        .collect()
}

/// Service `app/api` with a named (`http`, 80 → 8080 in the slices) and an unnamed-in-slices
/// second port (`admin`, 9000), and two slices.
const API: &str = "
apiVersion: v1
kind: Service
metadata: {name: api, namespace: app}
spec:
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: admin, port: 9000, appProtocol: kubernetes.io/h2c}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-a, namespace: app, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports:
- {name: http, port: 8080}
- {name: admin, port: 9001}
endpoints:
- {addresses: [10.0.0.2], conditions: {ready: true}}
- {addresses: [10.0.0.1]}
- {addresses: [10.0.0.3], conditions: {ready: false}}
- {addresses: [10.0.0.9, 10.0.0.10], conditions: {ready: true, serving: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-b, namespace: app, labels: {kubernetes.io/service-name: api}}
addressType: IPv6
ports:
- {name: http, port: 8443}
endpoints:
- {addresses: ['2001:db8::1']}
- {addresses: [10.0.0.50]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-fqdn, namespace: app, labels: {kubernetes.io/service-name: api}}
addressType: FQDN
ports:
- {name: http, port: 8080}
endpoints:
- {addresses: [api.example.test]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: not-api, namespace: other, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports:
- {name: http, port: 8080}
endpoints:
- {addresses: [10.9.9.9]}
";

#[test]
fn slice_ports_are_found_by_the_service_port_name() {
    // Each slice carries its own target port for the Service port's name: 8080 for IPv4,
    // 8443 for IPv6. Nil readiness is ready ("a nil value should be interpreted as "true""),
    // ready: false is left out, only the first address of an endpoint is used, an IPv4
    // address in an IPv6 slice, FQDN slices and slices of another namespace are ignored.
    let t = table(API);
    let b = ready(t.resolve("app", &service_ref("app", "api", Some(80))));
    assert_eq!(b.service, ObjectRef::new("Service", "app", "api"));
    assert_eq!(b.port, 80);
    assert_eq!(b.protocol, UpstreamProtocol::Http1);
    assert_eq!(
        b.endpoints,
        addrs(&[
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.9:8080",
            "[2001:db8::1]:8443"
        ])
    );
}

#[test]
fn app_protocol_h2c_selects_http2_prior_knowledge() {
    let t = table(API);
    let b = ready(t.resolve("app", &service_ref("app", "api", Some(9000))));
    assert_eq!(b.protocol, UpstreamProtocol::H2c);
    assert_eq!(
        b.endpoints,
        addrs(&["10.0.0.1:9001", "10.0.0.2:9001", "10.0.0.9:9001"])
    );
}

#[test]
fn unnamed_ports_match_unnamed_slice_ports() {
    let t = table(
        "
apiVersion: v1
kind: Service
metadata: {name: one, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: one-x, namespace: app, labels: {kubernetes.io/service-name: one}}
addressType: IPv4
ports: [{name: '', port: 3000}, {name: other, port: 4000}]
endpoints: [{addresses: [10.1.0.1]}]
",
    );
    let b = ready(t.resolve("app", &service_ref("app", "one", Some(80))));
    assert_eq!(b.endpoints, addrs(&["10.1.0.1:3000"]));
}

#[test]
fn services_without_ready_endpoints() {
    let t = table(
        "
apiVersion: v1
kind: Service
metadata: {name: no-slices, namespace: app}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: not-ready, namespace: app}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: not-ready-1, namespace: app, labels: {kubernetes.io/service-name: not-ready}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: false}}]
---
apiVersion: v1
kind: Service
metadata: {name: other-port, namespace: app}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-port-1, namespace: app, labels: {kubernetes.io/service-name: other-port}}
addressType: IPv4
ports: [{name: grpc, port: 9090}]
endpoints: [{addresses: [10.0.0.1]}]
",
    );
    for name in ["no-slices", "not-ready", "other-port"] {
        assert_eq!(
            t.resolve("app", &service_ref("app", name, Some(80))),
            Resolution::NoReadyEndpoints,
            "{name}"
        );
    }
}

#[test]
fn missing_services_ports_and_kinds_are_invalid() {
    let t = table(API);
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("app", "nope", Some(80)))),
        "BackendNotFound"
    );
    // Port 8080 is a target port, not a Service port; 53 is UDP only.
    for port in [8080, 53] {
        assert_eq!(
            invalid_reason(t.resolve("app", &service_ref("app", "api", Some(port)))),
            "BackendNotFound"
        );
    }
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("app", "api", None))),
        "UnsupportedValue"
    );
    let mut bucket = service_ref("app", "api", Some(80));
    bucket.group = "storage.example.com".to_owned();
    bucket.kind = "Bucket".to_owned();
    assert_eq!(invalid_reason(t.resolve("app", &bucket)), "InvalidKind");
}

const GRANT_TARGET: &str = "
apiVersion: v1
kind: Service
metadata: {name: shared, namespace: backends}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: private, namespace: backends}
spec: {ports: [{name: http, port: 80}]}
";

#[test]
fn cross_namespace_refs_need_a_reference_grant() {
    // ReferenceGrant: from HTTPRoutes of namespace app, to the Service named shared.
    let grant = "
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: app-to-shared, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]
  to: [{group: '', kind: Service, name: shared}]
";
    let t = table(&docs(&[GRANT_TARGET, grant]));
    assert_eq!(
        t.resolve("app", &service_ref("backends", "shared", Some(80))),
        Resolution::NoReadyEndpoints
    );
    // Not the Service named in `to`, not the namespace named in `from`.
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("backends", "private", Some(80)))),
        "RefNotPermitted"
    );
    assert_eq!(
        invalid_reason(t.resolve("web", &service_ref("backends", "shared", Some(80)))),
        "RefNotPermitted"
    );
    // A grant in the wrong namespace (the referrer's) allows nothing.
    let misplaced = grant.replace("namespace: backends", "namespace: app");
    let t = table(&docs(&[GRANT_TARGET, &misplaced]));
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("backends", "shared", Some(80)))),
        "RefNotPermitted"
    );
    // Without `to.name`, every Service of the namespace.
    let all = grant.replace(", name: shared", "");
    let t = table(&docs(&[GRANT_TARGET, &all]));
    assert_eq!(
        t.resolve("app", &service_ref("backends", "private", Some(80))),
        Resolution::NoReadyEndpoints
    );
    // A grant for Gateways does not cover HTTPRoutes.
    let gateways = grant.replace("kind: HTTPRoute", "kind: Gateway");
    let t = table(&docs(&[GRANT_TARGET, &gateways]));
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("backends", "shared", Some(80)))),
        "RefNotPermitted"
    );
}

#[test]
fn external_name_services_are_not_backends() {
    let t = table(
        "
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: app}
spec: {type: ExternalName, externalName: example.com, ports: [{port: 80}]}
",
    );
    assert_eq!(
        invalid_reason(t.resolve("app", &service_ref("app", "ext", Some(80)))),
        "UnsupportedValue"
    );
}
