//! Files and directories, the fixtures of `lbgw/tests/fixtures/` and the example of `examples/`.
use std::{fs, path::PathBuf};

use super::*;

#[test]
fn malformed_field_names_file_object_and_path() {
    let path = fixture("bad-field-type.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!(
            "{}: Gateway default/web: spec.listeners[0].port: invalid type: string \"x\", expected i32",
            path.display()
        )]
    );
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "spec.listeners[0].port")
    );
}

#[test]
fn missing_required_field_is_reported_at_its_parent() {
    let errors = parse_err(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec: {listeners: []}\n",
    );
    assert_eq!(
        errors,
        ["test.yaml: Gateway n/g: spec: missing field `gatewayClassName`"]
    );
    let errors =
        parse_err("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n");
    assert_eq!(
        errors,
        ["test.yaml: Gateway default/g: missing field `spec`"]
    );
}

#[test]
fn documents_without_apiversion_kind_or_name_name_file_and_document() {
    let path = fixture("bad-missing-kind.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!("{}: document 2: missing kind", path.display())]
    );
    assert_eq!(
        parse_err("kind: Service\nmetadata: {name: x}\n"),
        ["test.yaml: document 1: missing apiVersion"]
    );
    assert_eq!(
        parse_err("apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n"),
        ["test.yaml: document 1: Service without metadata.name"]
    );
    assert_eq!(
        parse_err("apiVersion: 1\nkind: Service\n"),
        ["test.yaml: document 1: apiVersion must be a string"]
    );
    assert_eq!(
        parse_err("- just\n- a list\n"),
        ["test.yaml: document 1: not an object (expected a mapping with apiVersion and kind)"]
    );
}

#[test]
fn yaml_syntax_error_names_file_document_and_line() {
    let path = fixture("bad-yaml.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    let messages = messages(&err);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let prefix = format!("{}: document 2: invalid YAML: ", path.display());
    assert!(messages[0].starts_with(&prefix), "{}", messages[0]);
    assert!(messages[0].contains("line 10"), "{}", messages[0]);
}

#[test]
fn unsupported_version_of_a_known_kind_is_an_error() {
    let path = fixture("bad-version.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!(
            "{}: Gateway legacy/old: unsupported apiVersion \"gateway.networking.k8s.io/v1alpha2\" \
             (supported: gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1)",
            path.display()
        )]
    );
    assert_eq!(
        parse_err("apiVersion: v2\nkind: Service\nmetadata: {name: s}\n"),
        ["test.yaml: Service default/s: unsupported apiVersion \"v2\" (supported: v1)"]
    );
}

#[test]
fn duplicate_objects_name_both_files() {
    let (a, b) = (fixture("duplicate-a.yaml"), fixture("duplicate-b.yaml"));
    let err = load(&[a.clone(), b.clone()]).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!(
            "Service default/dns is defined twice: in {} (document 1) and in {} (document 1)",
            a.display(),
            b.display()
        )]
    );
    // Same name in another namespace or of another kind is not a duplicate.
    let config = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: other}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
    );
    assert_eq!((config.services.len(), config.secrets.len()), (2, 1));
}

#[test]
fn directories_are_read_non_recursively_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n");
    fs::write(dir.path().join("b.yaml"), svc("from-b")).unwrap();
    fs::write(dir.path().join("a.yml"), svc("from-a")).unwrap();
    fs::write(
        dir.path().join("c.json"),
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "from-c"}}"#,
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), svc("from-txt")).unwrap();
    fs::write(dir.path().join(".hidden.yaml"), svc("from-hidden")).unwrap();
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    fs::write(dir.path().join("sub.yaml/d.yaml"), svc("from-sub")).unwrap();
    let config = load(&[dir.path().to_path_buf()]).unwrap();
    let mut names: Vec<_> = config.services.iter().map(|s| s.id.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["from-a", "from-b", "from-c"]);
    let a = config
        .services
        .iter()
        .find(|s| s.id.name == "from-a")
        .unwrap();
    assert_eq!(a.source.file, dir.path().join("a.yml"));
    // A file named explicitly is read whatever its extension.
    let config = load(&[dir.path().join("notes.txt")]).unwrap();
    assert_eq!(config.services[0].id.name, "from-txt");
}

#[test]
fn a_file_reached_twice_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
    )
    .unwrap();
    let config = load(&[file.clone(), dir.path().to_path_buf(), file]).unwrap();
    assert_eq!(config.services.len(), 1);
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let path = PathBuf::from("/nonexistent/lbgw-test/config.yaml");
    let err = load(std::slice::from_ref(&path)).unwrap_err();
    assert!(matches!(&err, ConfigError::Io { path: p, .. } if *p == path));
    assert_eq!(
        messages(&err),
        ["/nonexistent/lbgw-test/config.yaml: No such file or directory (os error 2)"]
    );
}

#[test]
fn homelab_example_loads() {
    let config = load(&[example("homelab.yaml")]).unwrap();
    assert_eq!(config.gateways.len(), 1);
    assert_eq!(config.gateways[0].id.to_string(), "Gateway ai/ai-gateway");
    let listeners = &config.gateways[0].object.spec.listeners;
    let ports: Vec<_> = listeners
        .iter()
        .map(|l| (l.port, l.protocol.as_str(), l.hostname.as_deref()))
        .collect();
    assert_eq!(
        ports,
        [
            (443, "HTTPS", Some("ai.homelab.internal")),
            (80, "HTTP", Some("ai.homelab.internal"))
        ]
    );
    let routes: Vec<_> = config
        .http_routes
        .iter()
        .map(|r| r.id.name.as_str())
        .collect();
    assert_eq!(routes, ["https-redirect", "n8n", "ollama", "vllm"]);
    assert_eq!(config.managed_gateways().count(), 1);
    let services: Vec<_> = config
        .managed_services()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(services, ["Service default/dns"]);
    assert_eq!(config.endpoint_slices.len(), 5);
    assert!(config.secrets.is_empty(), "no key material in examples");
    assert_eq!(
        config.ip_pools[0].object.spec.allow_first_last_ips,
        AllowFirstLastIps::No
    );
}
