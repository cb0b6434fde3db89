//! `lbgw check` end to end: the binary on the example and the fixtures of `tests/fixtures/`,
//! asserting exit codes and exact messages. Runs with the package directory as working
//! directory (as cargo does), so paths in messages are relative.
use std::{path::Path, process::Command};

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str], state: &Path, env_cidr: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lbgw"));
    cmd.arg("check").args(args).arg("--state").arg(state);
    cmd.env("LBGW_LOG", "warn").env_remove("CILIUM_LB_CIDR");
    if let Some(cidr) = env_cidr {
        cmd.env("CILIUM_LB_CIDR", cidr);
    }
    let out = cmd.output().expect("running lbgw check");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn homelab_example_is_valid_and_check_never_writes_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ipam.json");
    let out = check(&["-c", "../examples/homelab.yaml"], &state, None);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    // The HTTPS listener's Secret is deliberately not in the example: a warning, not an error
    // (see tests/route.rs).
    assert!(
        out.stderr
            .lines()
            .all(|l| l.starts_with("lbgw: warning: Gateway ai/ai-gateway listener https: ")),
        "{}",
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "VIP plan (pools from CiliumLoadBalancerIPPool objects):"
    );
    assert!(
        lines[2].starts_with("  Gateway ai/ai-gateway  192.0.2.2 "),
        "{}",
        out.stdout
    );
    assert!(lines[2].ends_with("homelab  requested"), "{}", out.stdout);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("Service default/dns"))
            .count(),
        2,
        "{}",
        out.stdout
    );
    assert!(!state.exists(), "check must not write the state");
}

#[test]
fn previous_state_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ipam.json");
    std::fs::write(
        &state,
        r#"{"version": 1, "allocations": [
            {"ip": "192.0.2.9", "owner": {"kind": "Service", "namespace": "default", "name": "dns"}, "pool": "homelab"},
            {"ip": "2001:db8::153", "owner": {"kind": "Service", "namespace": "default", "name": "dns"}, "pool": "homelab"}]}"#,
    )
    .unwrap();
    let out = check(&["-c", "../examples/homelab.yaml"], &state, None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("  Service default/dns    192.0.2.9      homelab  kept\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  Service default/dns    2001:db8::153  homelab  kept\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn allocation_errors_go_to_stderr_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        &["-c", "tests/fixtures/conflicts.yaml"],
        &dir.path().join("s.json"),
        None,
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout
            .contains("Service default/first  198.51.100.15  v4-only  requested"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr,
        "lbgw: Gateway default/named: spec.addresses[0].type: address type \"Hostname\" is not supported (lbgw assigns IPAddress addresses only)\n\
         lbgw: Service default/second requests 198.51.100.15 (spec.loadBalancerIP) but Service default/first requests it too and was created earlier, so Service default/first gets it\n\
         lbgw: Service default/v6 wants IPv6 but no pool has IPv6 addresses\n\
         lbgw: warning: Gateway default/named: Programmed=False AddressNotAssigned: IPAM assigned no address (see the VIP plan)\n"
    );
}

#[test]
fn configuration_errors_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-c",
        "tests/fixtures/bad-field-type.yaml",
        "-c",
        "tests/fixtures/bad-missing-kind.yaml",
        "-c",
        "tests/fixtures/duplicate-a.yaml",
        "-c",
        "tests/fixtures/duplicate-b.yaml",
    ];
    let out = check(&args, &dir.path().join("s.json"), None);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "lbgw: tests/fixtures/bad-field-type.yaml: Gateway default/web: spec.listeners[0].port: invalid type: string \"x\", expected i32\n\
         lbgw: tests/fixtures/bad-missing-kind.yaml: document 2: missing kind\n\
         lbgw: Service default/dns is defined twice: in tests/fixtures/duplicate-a.yaml (document 1) and in tests/fixtures/duplicate-b.yaml (document 1)\n"
    );
}

#[test]
fn pool_errors_name_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.json");
    let out = check(&["-c", "tests/fixtures/bad-pool.yaml"], &state, None);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "lbgw: tests/fixtures/bad-pool.yaml: CiliumLoadBalancerIPPool lab: spec.blocks[1].cidr: invalid CIDR \"192.0.2.0/33\": invalid IP address syntax\n\
         lbgw: tests/fixtures/bad-pool.yaml: CiliumLoadBalancerIPPool lab: spec.serviceSelector.matchExpressions[0].operator: unknown operator \"Equals\" (expected In, NotIn, Exists or DoesNotExist)\n"
    );
    let out = check(
        &["-c", "../examples/homelab.yaml"],
        &state,
        Some("192.0.2.0/24, bogus"),
    );
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "lbgw: CILIUM_LB_CIDR: invalid CIDR \"bogus\": invalid IP address syntax\n"
    );
    let out = check(
        &[
            "-c",
            "../examples/homelab.yaml",
            "--lb-cidr",
            "192.0.2.0/33",
        ],
        &state,
        Some("192.0.2.0/24"),
    );
    assert_eq!(
        out.stderr,
        "lbgw: --lb-cidr: invalid CIDR \"192.0.2.0/33\": invalid IP address syntax\n"
    );
}

#[test]
fn env_pool_replaces_pool_objects() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        &["-c", "../examples/homelab.yaml"],
        &dir.path().join("s.json"),
        Some("192.0.2.0/24,2001:db8::/64"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("VIP plan (pools from CILIUM_LB_CIDR):\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("192.0.2.2") && out.stdout.contains("CILIUM_LB_CIDR  requested"),
        "{}",
        out.stdout
    );
}

#[test]
fn corrupt_state_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ipam.json");
    std::fs::write(&state, "not json").unwrap();
    let out = check(&["-c", "../examples/homelab.yaml"], &state, None);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "lbgw: IPAM state {} is corrupt: expected ident at line 1 column 2\n",
            state.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "not json",
        "left untouched"
    );
}
