//! The manifests of `deploy/`, validated offline: every document is parsed into its typed
//! Kubernetes / Gateway API / lbgw type and serialized back, which must contain the document
//! unchanged (a misspelt or misplaced field is dropped by the typed parse and so fails the
//! comparison); kustomizations list files that exist; the RBAC rules grant every call the code
//! makes ([`lbgw::kube::required_permissions`]) and nothing cluster-wide on Leases; the
//! DaemonSet runs `--kubernetes` with the capabilities documented and no CAP_SYS_ADMIN.
use std::path::{Path, PathBuf};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// Every document of every file under deploy/, as JSON, with its file.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    assert!(files.len() >= 8, "deploy/ has its manifests: {files:?}");
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                out.push((file.clone(), value));
            }
        }
    }
    out
}

/// Parses `value` as `T` and checks that serializing it gives `value` back.
fn round_trip<T: DeserializeOwned + Serialize>(file: &Path, value: &Value) -> T {
    let what = format!(
        "{}: {} {}",
        file.display(),
        value["kind"],
        value["metadata"]["name"]
    );
    let typed: T =
        serde_path_to_error::deserialize(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    if let Err(path) = contained(value, &back, String::new()) {
        panic!("{what}: {path} lost or changed by the typed parse (unknown or misplaced field?)");
    }
    typed
}

/// Whether everything in `a` is in `b` (which may add defaults), or the path where not.
fn contained(a: &Value, b: &Value, path: String) -> Result<(), String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => a.iter().try_for_each(|(k, v)| {
            contained(v, b.get(k).unwrap_or(&Value::Null), format!("{path}.{k}"))
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (a, b))| contained(a, b, format!("{path}[{i}]"))),
        (a, b) if a == b => Ok(()),
        _ => Err(if path.is_empty() { ".".into() } else { path }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

/// cert-manager `Certificate` (cert-manager.io/v1), the fields the example uses.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Certificate {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: CertificateSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    dns_names: Vec<String>,
    issuer_ref: IssuerRef,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerRef {
    group: String,
    kind: String,
    name: String,
}

struct Rbac {
    cluster_rules: Vec<PolicyRule>,
    /// Namespace → rules of Roles there.
    namespaced_rules: Vec<(String, PolicyRule)>,
}

fn grants(rule: &PolicyRule, group: &str, resource: &str, verb: &str) -> bool {
    rule.api_groups.iter().flatten().any(|g| g == group)
        && rule.resources.iter().flatten().any(|r| r == resource)
        && rule.verbs.iter().any(|v| v == verb)
}

#[test]
fn every_manifest_parses_into_its_type_without_losing_fields() {
    let mut rbac = Rbac {
        cluster_rules: Vec::new(),
        namespaced_rules: Vec::new(),
    };
    let mut daemonset = None;
    let mut bindings = Vec::new();
    for (file, value) in documents() {
        let kind = value["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no kind", file.display()));
        match kind {
            "Kustomization" => {
                let k: Kustomization = serde_path_to_error::deserialize(value.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                for resource in &k.resources {
                    let path = file.parent().unwrap().join(resource);
                    assert!(
                        path.exists(),
                        "{}: resource {resource} does not exist",
                        file.display()
                    );
                }
            }
            "Namespace" => {
                round_trip::<Namespace>(&file, &value);
            }
            "ServiceAccount" => {
                round_trip::<ServiceAccount>(&file, &value);
            }
            "ClusterRole" => {
                let role: ClusterRole = round_trip(&file, &value);
                rbac.cluster_rules.extend(role.rules.unwrap_or_default());
            }
            "Role" => {
                let role: Role = round_trip(&file, &value);
                let ns = role.metadata.namespace.clone().unwrap_or_default();
                rbac.namespaced_rules.extend(
                    role.rules
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| (ns.clone(), r)),
                );
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = round_trip(&file, &value);
                bindings.push((b.role_ref.name.clone(), b.subjects.unwrap_or_default()));
            }
            "RoleBinding" => {
                let b: RoleBinding = round_trip(&file, &value);
                bindings.push((b.role_ref.name.clone(), b.subjects.unwrap_or_default()));
            }
            "DaemonSet" => daemonset = Some(round_trip::<DaemonSet>(&file, &value)),
            "GatewayClass" => {
                let c: gateway_api::gatewayclasses::GatewayClass = round_trip(&file, &value);
                assert_eq!(
                    c.spec.controller_name,
                    lbgw::config::GATEWAY_CONTROLLER_NAME
                );
            }
            "Gateway" => {
                round_trip::<gateway_api::gateways::Gateway>(&file, &value);
            }
            "HTTPRoute" => {
                round_trip::<gateway_api::httproutes::HttpRoute>(&file, &value);
            }
            "CiliumLoadBalancerIPPool" => {
                // lbgw's own type rejects unknown spec fields.
                round_trip::<lbgw::config::CiliumLoadBalancerIPPool>(
                    &file,
                    &strip_type_meta(&value),
                );
            }
            "Certificate" => {
                round_trip::<Certificate>(&file, &value);
            }
            other => panic!(
                "{}: kind {other} is not validated by this test",
                file.display()
            ),
        }
    }

    // RBAC covers every call the code makes; Leases only in lbgw's namespace.
    let ds = daemonset.expect("a DaemonSet");
    let ds_ns = ds.metadata.namespace.clone().unwrap();
    for p in lbgw::kube::required_permissions() {
        if p.own_namespace {
            assert!(
                rbac.namespaced_rules
                    .iter()
                    .any(|(ns, r)| *ns == ds_ns && grants(r, p.group, &p.resource, p.verb)),
                "no Role in {ds_ns} grants {p:?}"
            );
            assert!(
                !rbac
                    .cluster_rules
                    .iter()
                    .any(|r| grants(r, p.group, &p.resource, p.verb)),
                "cluster-wide {p:?}"
            );
        } else {
            assert!(
                rbac.cluster_rules
                    .iter()
                    .any(|r| grants(r, p.group, &p.resource, p.verb)),
                "no ClusterRole rule grants {p:?}"
            );
        }
    }
    // ... and nothing else: every granted (group, resource, verb) is used.
    let required = lbgw::kube::required_permissions();
    let all_rules = rbac
        .cluster_rules
        .iter()
        .chain(rbac.namespaced_rules.iter().map(|(_, r)| r));
    for rule in all_rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        required
                            .iter()
                            .any(|p| p.group == group && p.resource == *resource && p.verb == verb),
                        "granted but unused: {group}/{resource} {verb}"
                    );
                }
            }
        }
    }
    let sa = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .service_account_name
        .clone()
        .unwrap();
    for (role, subjects) in &bindings {
        assert!(
            subjects.iter().any(|s| s.kind == "ServiceAccount"
                && s.name == sa
                && s.namespace.as_deref() == Some(&ds_ns)),
            "{role} is bound to the DaemonSet's ServiceAccount"
        );
    }

    // The DaemonSet.
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args[..2], ["run", "--kubernetes"]);
    let env: Vec<_> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"NODE_NAME") && env.contains(&"POD_NAMESPACE"),
        "{env:?}"
    );
    let caps = container
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added = caps.add.clone().unwrap_or_default();
    assert_eq!(
        added,
        ["BPF", "NET_ADMIN", "PERFMON", "NET_RAW", "NET_BIND_SERVICE"]
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .unwrap_or_default()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    assert!(pod.volumes.iter().flatten().any(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == "/sys/fs/bpf")
    }));
}

/// lbgw's pool type has no apiVersion/kind fields (the loader reads them from the header).
fn strip_type_meta(value: &Value) -> Value {
    let mut v = value.clone();
    if let Value::Object(map) = &mut v {
        map.remove("apiVersion");
        map.remove("kind");
    }
    v
}

/// The example is a configuration lbgw accepts (file mode reads the same objects), and its
/// routes attach to the Gateway.
#[test]
fn example_is_accepted_by_lbgw() {
    let dir = deploy_dir();
    let config = lbgw::config::load(&[
        dir.join("base/gatewayclass.yaml"),
        dir.join("examples/ai-homelab"),
    ])
    .unwrap_or_else(|e| panic!("{}", lbgw::config::error_chain(&e)));
    assert_eq!(config.managed_gateways().count(), 1);
    assert_eq!(config.http_routes.len(), 4);
    let pools = lbgw::ipam::Pools::resolve(&[], None, &config).unwrap();
    let plan = lbgw::ipam::allocate(&pools, &config, &lbgw::ipam::State::default());
    assert!(plan.is_ok(), "{:?}", plan.errors);
    let (_, status) = lbgw::gateway::GatewayModel::build(&config, &plan);
    for route in &status.routes {
        assert!(
            route.parents.iter().all(|p| p.accepted()),
            "{} not accepted: {status}",
            route.id
        );
    }
}
