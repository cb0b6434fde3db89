//! HTTPS listeners: TLS termination with certificates made at test time, SNI choosing
//! between an exact and a wildcard listener, HTTP/2 by ALPN, and 421 for misdirected
//! requests (GEP-3567). curl is the client: `--resolve` sends the names to 127.0.0.1.

use lbgw_tests::proxy::{Backend, Certificate, TestProxy, gateway, service, tls_secret};

const FOO: &str = "{name: foo, port: 8443, protocol: HTTPS, hostname: foo.example.com, \
                   tls: {certificateRefs: [{name: foo-cert}]}}";
const WILD: &str = "{name: wild, port: 8443, protocol: HTTPS, hostname: '*.example.com', \
                    tls: {certificateRefs: [{name: wild-cert}]}}";

struct Setup {
    proxy: TestProxy,
    backend: Backend,
    dir: tempfile::TempDir,
    port: u16,
}

async fn setup() -> Setup {
    let backend = Backend::echo("app").await;
    let exact = Certificate::self_signed(&["foo.example.com"]);
    let wild = Certificate::self_signed(&["*.example.com"]);
    let yaml = [
        gateway("gw", &[FOO, WILD]),
        tls_secret("foo-cert", &exact),
        tls_secret("wild-cert", &wild),
        service("app", &[backend.addr], None),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: r, namespace: default}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: app, port: 80}]\n"
            .to_owned(),
    ]
    .join("\n---\n");
    let proxy = TestProxy::start(&yaml);
    let dir = tempfile::tempdir().unwrap();
    exact.write(dir.path(), "foo.pem");
    wild.write(dir.path(), "wild.pem");
    let port = proxy.addr(8443).port();
    Setup {
        proxy,
        backend,
        dir,
        port,
    }
}

impl Setup {
    /// curl `https://<host>:<port>/` trusting only `ca`; (exit success, stdout, stderr).
    async fn curl(&self, host: &str, ca: &str, extra: &[&str]) -> (bool, String, String) {
        let ca = self.dir.path().join(ca);
        let resolve = format!("{host}:{}:127.0.0.1", self.port);
        let url = format!("https://{host}:{}/", self.port);
        let output = tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "-i"])
            .arg("--cacert")
            .arg(&ca)
            .args(["--resolve", &resolve])
            .args(extra)
            .arg(&url)
            .output()
            .await
            .expect("curl must be installed");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_with_the_sni_chosen_certificate() {
    let s = setup().await;
    // Exact listener: its own certificate, HTTP/2 by ALPN.
    let (ok, out, err) = s.curl("foo.example.com", "foo.pem", &["--http2"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.ends_with("app"), "{out}");
    // Another name under the wildcard: the wildcard's certificate, HTTP/1.1 when asked.
    let (ok, out, err) = s.curl("bar.example.com", "wild.pem", &["--http1.1"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // foo.example.com is served with the exact listener's certificate, not the wildcard's,
    // although the wildcard's would match the name too: the wildcard CA fails to verify.
    let (ok, _, err) = s.curl("foo.example.com", "wild.pem", &["--http2"]).await;
    assert!(!ok, "foo.example.com was served the wildcard certificate");
    assert!(err.contains("certificate"), "{err}");

    let seen = s.backend.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
    assert_eq!(seen[0].headers["via"], "2 lbgw");
    assert_eq!(
        seen[0].headers["host"].to_str().unwrap(),
        format!("foo.example.com:{}", s.port)
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_12_is_accepted_and_tls_11_refused() {
    let s = setup().await;
    let (ok, out, err) = s
        .curl(
            "foo.example.com",
            "foo.pem",
            &["--tlsv1.2", "--tls-max", "1.2"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains(" 200"), "{out}");
    // OpenSSL refuses TLS 1.1 itself at its default security level; level 0 lets curl
    // offer it, so the refusal seen here is lbgw's: an alert from the server.
    let (ok, _, err) = s
        .curl(
            "foo.example.com",
            "foo.pem",
            &[
                "--tlsv1.1",
                "--tls-max",
                "1.1",
                "--ciphers",
                "DEFAULT@SECLEVEL=0",
            ],
        )
        .await;
    assert!(!ok, "TLS 1.1 handshake succeeded");
    assert!(err.contains("alert"), "{err}");
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_listeners_host_is_misdirected() {
    let s = setup().await;
    // TLS for foo.example.com, then a request for bar.example.com, which the wildcard
    // listener (another certificate) serves: 421 (GEP-3567, RFC 9110 §15.5.20).
    let (ok, out, err) = s
        .curl(
            "foo.example.com",
            "foo.pem",
            &["--http1.1", "-H", "Host: bar.example.com"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    // On the wildcard listener's connection a foo.example.com request is misdirected too:
    // the exact listener serves that name.
    let (ok, out, err) = s
        .curl(
            "bar.example.com",
            "wild.pem",
            &["--http1.1", "-H", "Host: foo.example.com"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    assert!(s.backend.seen().is_empty());
    s.proxy.stop().await;
}
