//! Tests of the configuration loader: parsing and object rules here, files in `files.rs`.
mod files;

use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The error messages, each with its causes.
fn messages(err: &ConfigError) -> Vec<String> {
    err.errors().iter().map(|e| error_chain(e)).collect()
}

fn parse(text: &str) -> Config {
    match Config::from_yaml("test.yaml", text) {
        Ok(config) => config,
        Err(err) => panic!("unexpected error: {}", error_chain(&err)),
    }
}

fn parse_err(text: &str) -> Vec<String> {
    match Config::from_yaml("test.yaml", text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => messages(&err),
    }
}

const ALL_KINDS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: lbgw}
spec: {controllerName: lbgw.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web}
spec:
  gatewayClassName: lbgw
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: apps}
spec:
  parentRefs: [{name: web, namespace: default}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: grant, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: net}
spec: {type: LoadBalancer, ports: [{port: 53, protocol: UDP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: net}
addressType: IPv4
endpoints: [{addresses: [198.51.100.53]}]
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
data: {tls.crt: c2VjcmV0LWNlcnQ=, tls.key: c2VjcmV0LWtleQ==}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: blue}
spec:
  blocks: [{cidr: 192.0.2.0/28}]
"#;

#[test]
fn loads_every_kind_with_its_source() {
    let config = parse(ALL_KINDS);
    let ids = |ids: Vec<&ObjectRef>| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(config.gateway_classes.iter().map(|o| &o.id).collect()),
        ["GatewayClass lbgw"]
    );
    assert_eq!(
        ids(config.gateways.iter().map(|o| &o.id).collect()),
        ["Gateway default/web"]
    );
    assert_eq!(
        ids(config.http_routes.iter().map(|o| &o.id).collect()),
        ["HTTPRoute apps/route"]
    );
    assert_eq!(
        ids(config.reference_grants.iter().map(|o| &o.id).collect()),
        ["ReferenceGrant apps/grant"]
    );
    assert_eq!(
        ids(config.services.iter().map(|o| &o.id).collect()),
        ["Service net/dns"]
    );
    assert_eq!(
        ids(config.endpoint_slices.iter().map(|o| &o.id).collect()),
        ["EndpointSlice net/dns-1"]
    );
    assert_eq!(
        ids(config.secrets.iter().map(|o| &o.id).collect()),
        ["Secret default/tls"]
    );
    assert_eq!(
        ids(config.ip_pools.iter().map(|o| &o.id).collect()),
        ["CiliumLoadBalancerIPPool blue"]
    );
    let gateway = &config.gateways[0];
    assert_eq!(gateway.source.file, Path::new("test.yaml"));
    assert_eq!(gateway.source.document, 2);
    assert_eq!(gateway.object.spec.listeners[0].port, 80);
    assert_eq!(config.ip_pools[0].source.document, 8);
}

#[test]
fn namespace_defaults_to_default_and_is_filled_in() {
    let config = parse(ALL_KINDS);
    assert_eq!(config.gateways[0].id.namespace, "default");
    assert_eq!(
        config.gateways[0].object.metadata.namespace.as_deref(),
        Some("default")
    );
    assert_eq!(
        config.secrets[0].object.metadata.namespace.as_deref(),
        Some("default")
    );
    assert_eq!(
        config.services[0].object.metadata.namespace.as_deref(),
        Some("net")
    );
    // Cluster-scoped kinds have no namespace.
    assert_eq!(config.gateway_classes[0].id.namespace, "");
    assert_eq!(
        config.ip_pools[0].id.to_string(),
        "CiliumLoadBalancerIPPool blue"
    );
}

#[test]
fn debug_output_does_not_show_secret_data() {
    let config = parse(ALL_KINDS);
    let debug = format!("{config:?}");
    assert!(debug.contains("Secret default/tls"), "{debug}");
    assert!(
        !debug.contains("secret-cert") && !debug.contains("c2VjcmV0"),
        "{debug}"
    );
}

#[test]
fn unknown_kinds_and_foreign_groups_are_ignored() {
    let config = parse(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec: {this: is not checked}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: knative}
spec: {template: {}}
---
apiVersion: example.com/v1
kind: Gizmo
---
apiVersion: v1
kind: Service
metadata: {name: real}
"#,
    );
    assert_eq!(config.services.len(), 1);
    assert_eq!(config.services[0].id.name, "real");
}

#[test]
fn empty_documents_and_comments_are_skipped() {
    let config = parse(
        "---\n# only a comment\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n",
    );
    assert_eq!(config.secrets.len(), 1);
    assert_eq!(config.secrets[0].source.document, 3);
    assert!(parse("").secrets.is_empty());
}

#[test]
fn every_error_is_reported() {
    let errors = parse_err(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: x}]}\n---\nkind: Service\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
    );
    assert_eq!(
        errors,
        [
            "test.yaml: Service default/a: spec.ports[0].port: invalid type: string \"x\", expected i32",
            "test.yaml: document 2: missing apiVersion",
            "Service default/a is defined twice: in test.yaml (document 1) and in test.yaml (document 3)",
        ]
    );
    let err = Config::from_yaml("test.yaml", "kind: A\n---\nkind: B\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 configuration errors:\n  test.yaml: document 1: missing apiVersion\n  test.yaml: document 2: missing apiVersion"
    );
}

#[test]
fn list_documents_are_expanded() {
    let config = parse(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n",
    );
    assert_eq!(config.services[0].source.item, Some(0));
    assert_eq!(config.secrets[0].source.item, Some(1));
    assert_eq!(
        config.secrets[0].source.to_string(),
        "test.yaml (document 1, items[1])"
    );
    assert_eq!(
        parse_err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: a}\n"),
        ["test.yaml: document 1: items[0]: missing kind"]
    );
}

#[test]
fn yaml_merge_keys_are_applied() {
    let config = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: &common {team: net}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n  labels:\n    <<: {team: net, tier: edge}\n    tier: core\n",
    );
    let labels = config.services[1]
        .object
        .metadata
        .labels
        .clone()
        .unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("net"));
    assert_eq!(labels.get("tier").map(String::as_str), Some("core"));
}

#[test]
fn ip_pool_fields() {
    let config = parse(
        r#"
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: a}
spec:
  blocks: [{cidr: 192.0.2.0/28}, {start: 192.0.2.100, stop: 192.0.2.110}]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: b}
spec:
  allowFirstLastIPs: "No"
  disabled: true
  cidrs: [{cidr: "2001:db8::/64"}]
  serviceSelector: {matchLabels: {color: blue}}
"#,
    );
    let a = &config.ip_pools[0].object.spec;
    assert_eq!(
        a.allow_first_last_ips,
        AllowFirstLastIps::Yes,
        "Cilium's default is Yes"
    );
    assert!(!a.disabled);
    assert_eq!(a.blocks[1].start.as_deref(), Some("192.0.2.100"));
    let b = &config.ip_pools[1].object.spec;
    assert_eq!(b.allow_first_last_ips, AllowFirstLastIps::No);
    assert!(b.disabled);
    let blocks: Vec<_> = b
        .all_blocks()
        .map(|(field, block)| (field, block.cidr.clone()))
        .collect();
    assert_eq!(
        blocks,
        [("spec.cidrs[0]".to_owned(), Some("2001:db8::/64".to_owned()))]
    );
}

#[test]
fn ip_pool_typos_and_bad_values_are_errors() {
    let path = fixture("bad-pool-field.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!(
            "{}: CiliumLoadBalancerIPPool typo: spec.allowFirstLastIPs: unknown variant `Maybe`, expected `Yes` or `No`",
            path.display()
        )]
    );
    let errors = parse_err(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {allowFirstLastIps: 'No'}\n",
    );
    assert_eq!(
        errors,
        [
            "test.yaml: CiliumLoadBalancerIPPool p: spec.allowFirstLastIps: unknown field `allowFirstLastIps`, \
          expected one of `blocks`, `cidrs`, `allowFirstLastIPs`, `disabled`, `serviceSelector`"
        ]
    );
}

#[test]
fn object_ref_display_order_and_serde() {
    let a = ObjectRef::new("Gateway", "ai", "web");
    let b = ObjectRef::new("Service", "ai", "dns");
    assert_eq!(a.to_string(), "Gateway ai/web");
    assert_eq!(
        ObjectRef::new("GatewayClass", "", "lbgw").to_string(),
        "GatewayClass lbgw"
    );
    assert!(a < b);
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, r#"{"kind":"Gateway","namespace":"ai","name":"web"}"#);
    assert_eq!(serde_json::from_str::<ObjectRef>(&json).unwrap(), a);
}

#[test]
fn gateways_of_other_controllers_are_not_lbgws() {
    let gateway = |name: &str, class: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec: {{gatewayClassName: {class}, listeners: []}}\n---\n"
        )
    };
    // Without GatewayClass objects every Gateway is lbgw's.
    let config = parse(&(gateway("a", "anything") + &gateway("b", "other")));
    assert_eq!(config.managed_gateways().count(), 2);
    let classes = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: lbgw}\nspec: {controllerName: lbgw.io/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: cilium}\nspec: {controllerName: io.cilium/gateway-controller}\n---\n";
    let config = parse(
        &(classes.to_owned()
            + &gateway("mine", "lbgw")
            + &gateway("theirs", "cilium")
            + &gateway("typo", "lbgww")),
    );
    let managed: Vec<_> = config
        .managed_gateways()
        .map(|g| g.id.name.as_str())
        .collect();
    assert_eq!(managed, ["mine"]);
    let theirs = &config
        .gateways
        .iter()
        .find(|g| g.id.name == "theirs")
        .unwrap()
        .object;
    assert_eq!(
        config.gateway_unmanaged_reason(theirs).unwrap(),
        "its GatewayClass \"cilium\" belongs to controller \"io.cilium/gateway-controller\", not \"lbgw.io/gateway-controller\""
    );
    let typo = &config
        .gateways
        .iter()
        .find(|g| g.id.name == "typo")
        .unwrap()
        .object;
    assert_eq!(
        config.gateway_unmanaged_reason(typo).unwrap(),
        "its GatewayClass \"lbgww\" is not in the configuration"
    );
}

#[test]
fn services_of_other_types_and_classes_are_not_lbgws() {
    let config = parse(
        r#"
apiVersion: v1
kind: Service
metadata: {name: plain}
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata: {name: ours}
spec: {type: LoadBalancer, loadBalancerClass: lbgw.io/l2}
---
apiVersion: v1
kind: Service
metadata: {name: bgp}
spec: {type: LoadBalancer, loadBalancerClass: io.cilium/bgp-control-plane}
---
apiVersion: v1
kind: Service
metadata: {name: internal}
spec: {ports: [{port: 80}]}
"#,
    );
    let managed: Vec<_> = config
        .managed_services()
        .map(|s| s.id.name.as_str())
        .collect();
    assert_eq!(managed, ["ours", "plain"]);
    let reason = |name: &str| {
        Config::service_unmanaged_reason(
            &config
                .services
                .iter()
                .find(|s| s.id.name == name)
                .unwrap()
                .object,
        )
    };
    assert_eq!(
        reason("internal").unwrap(),
        "it is of type ClusterIP, not LoadBalancer"
    );
    assert_eq!(
        reason("bgp").unwrap(),
        "its loadBalancerClass is \"io.cilium/bgp-control-plane\", not \"lbgw.io/l2\""
    );
}

const RETRY_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: web}]
  rules:
  - backendRefs: [{name: app, port: 80}]
  - backendRefs: [{name: app, port: 80}]
    retry: RETRY
"#;

#[test]
fn http_route_retry_stanzas_are_kept_beside_the_typed_route() {
    let config =
        parse(&RETRY_ROUTE.replace("RETRY", "{codes: [502, 503], attempts: 3, backoff: 10ms}"));
    let id = ObjectRef::new("HTTPRoute", "apps", "r");
    assert_eq!(
        config.http_route_retries,
        BTreeMap::from([(
            (id.clone(), 1),
            RetryPolicy {
                codes: vec![
                    http::StatusCode::BAD_GATEWAY,
                    http::StatusCode::SERVICE_UNAVAILABLE
                ],
                attempts: 3,
                backoff: std::time::Duration::from_millis(10),
            }
        )])
    );
    // An empty stanza gets the defaults; `retry: null` is no stanza.
    let config = parse(&RETRY_ROUTE.replace("RETRY", "{}"));
    assert_eq!(config.http_route_retries[&(id, 1)].attempts, 1);
    assert!(
        parse(&RETRY_ROUTE.replace("RETRY", "null"))
            .http_route_retries
            .is_empty()
    );
}

#[test]
fn invalid_http_route_retry_stanzas_name_file_object_and_field() {
    let err = |retry: &str| parse_err(&RETRY_ROUTE.replace("RETRY", retry));
    assert_eq!(
        err("{codes: [200]}"),
        [
            "test.yaml: HTTPRoute apps/r: spec.rules[1].retry.codes: retry code 200 is not in 400..=599"
        ]
    );
    assert_eq!(
        err("{attempts: -1}"),
        [
            "test.yaml: HTTPRoute apps/r: spec.rules[1].retry.attempts: retry attempts -1 out of range"
        ]
    );
    let backoff = err("{backoff: 10 seconds}");
    assert_eq!(backoff.len(), 1);
    assert!(
        backoff[0].starts_with(
            "test.yaml: HTTPRoute apps/r: spec.rules[1].retry.backoff: retry backoff \"10 seconds\": "
        ),
        "{backoff:?}"
    );
    assert_eq!(
        err("{codes: [x]}"),
        [
            "test.yaml: HTTPRoute apps/r: spec.rules[1].retry.codes[0]: invalid type: string \"x\", expected i64"
        ]
    );
}
