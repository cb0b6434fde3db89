//! Equivalent configurations of the three proxies: TLS 1.3 with the same certificate, cipher
//! suites and key exchange group, HTTP/2 and HTTP/1.1 by ALPN, two workers, and keep-alive
//! connections to the same backend.

use std::net::SocketAddr;
use std::path::Path;

/// Worker processes (nginx), threads (HAProxy) and tokio worker threads (lbgw).
pub const WORKERS: usize = 2;

/// rustls' TLS 1.3 suites in its default order (the ring provider), for OpenSSL's
/// `Ciphersuites` syntax.
const TLS13_SUITES: &str =
    "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
/// rustls' default groups with the ring provider: X25519 first, then P-256 and P-384.
const GROUPS: &str = "X25519:P-256:P-384";

/// nginx: `worker_processes 2`, an upstream keep-alive pool, no access log, buffering kept
/// in memory (a 10 MB body is not spooled to disk: `proxy_max_temp_file_size 0`).
pub fn nginx(dir: &Path, port: u16, backend: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes {WORKERS};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream backend {{
        server {backend};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=1024;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites {TLS13_SUITES};
        ssl_ecdh_curve {GROUPS};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffers 16 64k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"#
    )
}

/// HAProxy: `nbthread 2`, HTTP keep-alive on both sides with `http-reuse always`.
pub fn haproxy(dir: &Path, port: u16, backend: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"global
    nbthread {WORKERS}
    maxconn 4096
    ssl-default-bind-ciphersuites {TLS13_SUITES}
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
frontend bench
    bind 127.0.0.1:{port} ssl crt {d}/haproxy.pem alpn h2,http/1.1 curves {GROUPS}
    default_backend backend
backend backend
    http-reuse always
    server app {backend} maxconn 10000
"#
    )
}

/// lbgw: a Gateway with one HTTPS listener (no hostname: every SNI, and none, is served), its
/// certificate Secret, an HTTPRoute to a Service whose one endpoint is the backend.
pub fn lbgw(port: u16, backend: SocketAddr, cert_pem: &str, key_pem: &str) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: lbgw
  listeners:
  - name: https
    port: {port}
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs: [{{kind: Secret, name: bench-tls}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-tls, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: {cert}
  tls.key: {key}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - backendRefs: [{{name: backend, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  ports:
  - {{name: http, port: 80}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-0, namespace: default, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports:
- {{name: http, port: {bport}}}
endpoints:
- {{addresses: ['{bip}'], conditions: {{ready: true}}}}
"#,
        cert = json(cert_pem),
        key = json(key_pem),
        bport = backend.port(),
        bip = backend.ip(),
    )
}
