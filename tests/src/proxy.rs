//! Helpers for the proxy tests: the proxy started in-process from YAML on ephemeral ports,
//! small hyper backends on 127.0.0.1:0 that record what they receive, certificates made
//! with rcgen, and an HTTP client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lbgw::config::Config;
use lbgw::gateway::GatewayModel;
use lbgw::ipam::{self, Pools, State};
use lbgw::proxy::{Proxy, ProxyOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The LB-IPAM pool the tests allocate Gateway addresses from; documentation addresses
/// (RFC 5737) that nothing ever sends to: the proxy binds 127.0.0.1 and, since no VIP is
/// local, serves every listener there.
pub const POOL: &str = "192.0.2.0/24";

/// Body type of test backends and clients.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub fn empty() -> TestBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// The proxy, running in-process.
pub struct TestProxy {
    addrs: Vec<(u16, SocketAddr)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Builds the Gateway model of `yaml` as `lbgw run` does (IPAM from [`POOL`], no state).
pub fn model(yaml: &str) -> GatewayModel {
    let config = Config::from_yaml("test.yaml", yaml)
        .unwrap_or_else(|e| panic!("test YAML: {}", lbgw::config::error_chain(&e)));
    let pools = Pools::resolve(&[POOL.to_owned()], None, &config).expect("pool");
    let plan = ipam::allocate(&pools, &config, &State::new(Vec::new()));
    let (model, _status) = GatewayModel::build(&config, &plan);
    assert!(!model.ports.is_empty(), "no listener is programmed");
    model
}

impl TestProxy {
    /// Starts the proxy for `yaml`, every Gateway port on an ephemeral port of 127.0.0.1.
    pub fn start(yaml: &str) -> Self {
        let model = Arc::new(ArcSwap::from_pointee(model(yaml)));
        let opts = ProxyOptions {
            bind: Some([127, 0, 0, 1].into()),
            ephemeral_ports: true,
            drain_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let proxy = Proxy::bind(model, &opts).expect("bind");
        let addrs = proxy.local_addrs();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(proxy.serve(async {
            let _ = rx.await;
        }));
        Self {
            addrs,
            shutdown: Some(tx),
            task,
        }
    }

    /// The local address serving Gateway port `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("gateway port {port} not bound: {:?}", self.addrs))
    }

    /// Stops the proxy and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("proxy drained within 10 s");
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a backend received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// Request target (path and query; absolute for HTTP/2).
    pub uri: http::Uri,
    /// Version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>> + Send + Sync>;

/// A backend on 127.0.0.1:0 (HTTP/1.1 and h2c) that records requests.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// A backend that answers 200 with `name` as body and an `x-backend: name` header.
    pub async fn echo(name: &'static str) -> Self {
        Self::start(move |_| async move {
            let mut r = Response::new(full(name));
            r.headers_mut().insert("x-backend", name.parse().unwrap());
            r
        })
        .await
    }

    /// A backend answering with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |seen| Box::pin(handler(seen)));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let handler = Arc::clone(&handler);
                        let recorded = Arc::clone(&recorded);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri,
                                version: parts.version,
                                headers: parts.headers,
                                body: body.unwrap_or_default(),
                            };
                            recorded.lock().unwrap().push(seen.clone());
                            Ok::<_, Infallible>(handler(seen).await)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Gateway `default/<name>` (class `lbgw`) with the given listeners as flow YAML items.
pub fn gateway(name: &str, listeners: &[&str]) -> String {
    let listeners: Vec<String> = listeners.iter().map(|l| format!("  - {l}")).collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  gatewayClassName: lbgw\n  listeners:\n{}\n",
        listeners.join("\n")
    )
}

/// A Service `default/<name>` with port 80 (named `http`) whose ready endpoints are
/// `endpoints`, one EndpointSlice each; `app_protocol` e.g. `kubernetes.io/h2c`.
pub fn service(name: &str, endpoints: &[SocketAddr], app_protocol: Option<&str>) -> String {
    let app = app_protocol.map_or(String::new(), |p| format!(", appProtocol: {p}"));
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80{app}}}\n"
    );
    for (i, ep) in endpoints.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports:\n- {{name: http, port: {}}}\n\
             endpoints:\n- {{addresses: ['{}'], conditions: {{ready: true}}}}\n",
            ep.port(),
            ep.ip()
        ));
    }
    out
}

/// A `kubernetes.io/tls` Secret `default/<name>`.
pub fn tls_secret(name: &str, cert: &Certificate) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {}\n  tls.key: {}\n",
        serde_json::to_string(&cert.cert_pem).unwrap(),
        serde_json::to_string(&cert.key_pem).unwrap(),
    )
}

/// A self-signed certificate (its own CA) for some DNS names.
pub struct Certificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl Certificate {
    /// A self-signed ECDSA P-256 certificate for `names`.
    pub fn self_signed(names: &[&str]) -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the certificate to a file in `dir`, for `curl --cacert`.
    pub fn write(&self, dir: &std::path::Path, file: &str) -> std::path::PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.cert_pem).expect("write certificate");
        path
    }
}

/// An HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A response, read whole.
#[derive(Debug)]
pub struct Got {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, as text.
    pub body: String,
}

/// Sends `method` `path` with `Host: host` (and `headers`) to `addr`, reading the whole
/// response.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    // Head and body under one deadline: a body that never ends must not hang the test.
    let (parts, body) = tokio::time::timeout(Duration::from_secs(20), async {
        let response = client()
            .request(req.body(body).unwrap())
            .await
            .expect("request");
        let (parts, body) = response.into_parts();
        (parts, body.collect().await.expect("body").to_bytes())
    })
    .await
    .expect("response within 20 s");
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` with `Host: host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    send(addr, Method::GET, host, path, &[], empty()).await
}

/// Runs `curl` with `args` (plus `--silent --show-error --max-time 20`), returning its
/// stdout; panics when curl fails.
pub async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl (Debian package curl) must be installed");
    assert!(
        output.status.success(),
        "curl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
