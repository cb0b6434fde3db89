//! `lbgw route` and the Gateway status of `lbgw check`, end to end: the binary on
//! `tests/fixtures/gateway.yaml` and the homelab example, with TLS Secrets generated at test
//! time. Runs with the package directory as working directory (as cargo does).
use std::{path::Path, process::Command};

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn lbgw(command: &str, args: &[&str], state: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lbgw"));
    cmd.arg(command).args(args).arg("--state").arg(state);
    cmd.env("LBGW_LOG", "warn").env_remove("CILIUM_LB_CIDR");
    let out = cmd.output().expect("running lbgw");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const FIXTURE: &str = "tests/fixtures/gateway.yaml";

fn route(extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["-c", FIXTURE];
    args.extend_from_slice(extra);
    lbgw("route", &args, &dir.path().join("ipam.json"))
}

/// A `kubernetes.io/tls` Secret for `*.example.test`, `ai.homelab.internal`, as YAML.
fn tls_secret(namespace: &str, name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![
        "*.example.test".to_owned(),
        "ai.homelab.internal".to_owned(),
    ])
    .unwrap()
    .self_signed(&key)
    .unwrap();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n",
        cert.pem(),
        key.serialize_pem()
    )
}

#[test]
fn explains_the_matching_rule_filters_and_backends() {
    let out = route(&["--url", "http://shop.example.test/api/items"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout,
        "Gateway infra/web listener http (HTTP port 80, hostname *), addresses 192.0.2.10\n\
         route HTTPRoute app/shop rule 1 match 0: {\"path\":{\"type\":\"PathPrefix\",\"value\":\"/api\"}}\n\
         filters:\n  \
         RequestHeaderModifier: set x-via: lbgw\n\
         backends:\n  \
         Service app/api port 8080  weight 3 (75%)\n    \
         → 10.0.0.1:9090, 10.0.0.2:9090 (HTTP/1.1)\n  \
         Service other/api-v2 port 80  weight 1 (25%)\n    \
         → invalid (RefNotPermitted): Service other/api-v2 is in another namespace and no ReferenceGrant there allows HTTPRoutes of app to refer to it: 500\n"
    );
}

#[test]
fn headers_methods_and_the_vip_select() {
    // The VIP as URL host picks the Gateway; the Host header is routed on; x-canary picks
    // rule 0, whose Service speaks h2c.
    let out = route(&[
        "--url",
        "http://192.0.2.10/api/items",
        "-H",
        "Host: shop.example.test",
        "-H",
        "X-Canary: 1",
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("route HTTPRoute app/shop rule 0 match 0: ")
            && out.stdout.contains("→ [2001:db8::7]:50051 (h2c)\n"),
        "{}",
        out.stdout
    );
    // Rule 2 matches POST only; its Service has no ready endpoints.
    let out = route(&[
        "--url",
        "http://shop.example.test/maintenance",
        "-X",
        "post",
        "--gateway",
        "infra/web",
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.ends_with("    → no ready endpoints: 503\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn no_match_is_a_404_and_exit_code_1() {
    for url in [
        "http://shop.example.test/maintenance",
        "http://other.example.test/api",
    ] {
        let out = route(&["--url", url]);
        assert_eq!(out.code, Some(1), "{url}: {}", out.stdout);
        assert!(
            out.stdout.ends_with("\nno route matches: 404\n"),
            "{url}: {}",
            out.stdout
        );
    }
    // A Gateway without that listener port.
    let out = route(&["--url", "http://shop.example.test:8080/api"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stdout,
        "no programmed listener on port 8080: no route matches (the connection would be refused)\n"
    );
    // --gateway names a Gateway that does not serve.
    let out = route(&[
        "--url",
        "http://shop.example.test/api",
        "--gateway",
        "infra/other",
    ]);
    assert_eq!(out.code, Some(1));
}

#[test]
fn unprogrammed_listeners_say_why_and_what_they_would_serve() {
    let out = route(&["--url", "https://shop.example.test/api"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "Gateway infra/web listener https (port 443) is not programmed: \
         ResolvedRefs=False RefNotPermitted: Secret certs/web-tls is in another namespace and no ReferenceGrant there allows the reference; \
         Programmed=False Invalid: no valid certificate"
    );
    assert_eq!(lines[1], "were listener https programmed:");
    assert!(lines[2].starts_with("  route HTTPRoute app/shop rule 1 match 0"));

    // With the Secret and a ReferenceGrant from Gateways of infra, it serves.
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("tls.yaml");
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
                 metadata: {name: infra-gateways, namespace: certs}\n\
                 spec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]\n  \
                 to: [{group: '', kind: Secret, name: web-tls}]\n";
    std::fs::write(
        &extra,
        format!("{}---\n{grant}", tls_secret("certs", "web-tls")),
    )
    .unwrap();
    let out = lbgw(
        "route",
        &[
            "-c",
            FIXTURE,
            "-c",
            extra.to_str().unwrap(),
            "--url",
            "https://shop.example.test/api",
        ],
        &dir.path().join("ipam.json"),
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(
            "Gateway infra/web listener https (HTTPS port 443, hostname *.example.test)"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_requests_are_errors() {
    let out = route(&["--url", "ftp://shop.example.test/"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "lbgw: URL \"ftp://shop.example.test/\" must start with http:// or https://\n"
    );
    let out = route(&["--url", "http://shop.example.test/", "-H", "no colon"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "lbgw: header \"no colon\" is not `Name: value`\n"
    );
}

#[test]
fn check_reports_status_and_fails_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ipam.json");
    let out = lbgw("check", &["-c", FIXTURE], &state);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "    listener https  HTTPS port 443 hostname *.example.test  attached routes: 1\n\
             \x20     Accepted         True   Accepted\n\
             \x20     Conflicted       False  NoConflicts\n\
             \x20     ResolvedRefs     False  RefNotPermitted: Secret certs/web-tls is in another namespace and no ReferenceGrant there allows the reference\n\
             \x20     Programmed       False  Invalid: no valid certificate\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "  HTTPRoute app/orphan\n    parentRefs[0] Gateway infra/web sectionName grpc\n\
             \x20     Accepted         False  NoMatchingParent: Gateway infra/web has no listener with name grpc\n"
        ),
        "{}",
        out.stdout
    );
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 6, "{}", out.stderr);
    assert!(warnings.iter().all(|w| w.starts_with("lbgw: warning: ")));
    assert!(warnings.contains(
        &"lbgw: warning: Gateway infra/web listener postgres: Accepted=False UnsupportedProtocol: protocol \"TCP\" is not supported (lbgw serves HTTP and HTTPS)"
    ));

    let out = lbgw("check", &["-c", FIXTURE, "--strict"], &state);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().count(), 6, "{}", out.stderr);
}

#[test]
fn homelab_https_listener_is_reported_until_its_secret_exists() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ipam.json");
    let out = lbgw("check", &["-c", "../examples/homelab.yaml"], &state);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr,
        "lbgw: warning: Gateway ai/ai-gateway listener https: ResolvedRefs=False InvalidCertificateRef: Secret ai/ai-homelab-tls does not exist\n\
         lbgw: warning: Gateway ai/ai-gateway listener https: Programmed=False Invalid: no valid certificate\n"
    );
    assert!(
        out.stdout.contains(
            "    listener https  HTTPS port 443 hostname ai.homelab.internal  attached routes: 3\n"
        ),
        "{}",
        out.stdout
    );

    // With the Secret next to it (as the example's comment says), everything is programmed.
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, tls_secret("ai", "ai-homelab-tls")).unwrap();
    let args = [
        "-c",
        "../examples/homelab.yaml",
        "-c",
        secret.to_str().unwrap(),
        "--strict",
    ];
    let out = lbgw("check", &args, &state);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr, "");
    let out = lbgw(
        "route",
        &[
            "-c",
            "../examples/homelab.yaml",
            "-c",
            secret.to_str().unwrap(),
            "--url",
            "https://ai.homelab.internal/vllm/v1/models",
        ],
        &state,
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("  URLRewrite: path /vllm/v1/models → /v1/models (ReplacePrefixMatch)\n")
            && out
                .stdout
                .contains("    → 198.51.100.11:8000, 198.51.100.12:8000 (HTTP/1.1)\n"),
        "{}",
        out.stdout
    );
}
