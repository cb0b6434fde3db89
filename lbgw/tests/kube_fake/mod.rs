//! An in-test fake Kubernetes API server: real HTTP/1.1 and JSON on 127.0.0.1:0 (or a listener
//! the test binds in a network namespace), implementing
//! the subset of the API that kube-rs uses in lbgw. It is NOT an API server: no
//! authentication, admission, defaulting, validation, field selectors or server-side-apply
//! field management (an apply patch is merged like a JSON merge patch).
//!
//! What it does implement, as the API conventions describe it:
//! - list (`GET` on a collection): `{"kind": "XList", "metadata": {"resourceVersion"}, "items"}`,
//!   with equality-based `labelSelector`;
//! - watch (`?watch=true&resourceVersion=N`): a chunked stream of newline-separated
//!   `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK", "object"}` events newer than `N`
//!   (the full history is kept, so never `410 Gone`), a BOOKMARK every 500 ms when
//!   `allowWatchBookmarks=true`, closed after `timeoutSeconds`;
//! - get, create (`409 AlreadyExists`), replace (`409 Conflict` when `metadata.resourceVersion`
//!   is stale: optimistic concurrency), delete;
//! - patch (`application/merge-patch+json`, RFC 7386; `application/apply-patch+yaml` treated the
//!   same) on objects and on the `/status` subresource (which changes only `status`);
//! - one global `resourceVersion` counter; `metadata.generation` bumps on non-status writes.
//!
//! Every request is recorded ([`FakeApi::requests`]) so tests can assert what was sent.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A resource type the fake serves.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Resource {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The resources lbgw touches.
pub const RESOURCES: &[Resource] = &[
    Resource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "gateways",
        kind: "Gateway",
        namespaced: true,
    },
    Resource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "gatewayclasses",
        kind: "GatewayClass",
        namespaced: false,
    },
    Resource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "httproutes",
        kind: "HTTPRoute",
        namespaced: true,
    },
    Resource {
        group: "gateway.networking.k8s.io",
        version: "v1beta1",
        plural: "referencegrants",
        kind: "ReferenceGrant",
        namespaced: true,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
    },
    Resource {
        group: "cilium.io",
        version: "v2alpha1",
        plural: "ciliumloadbalancerippools",
        kind: "CiliumLoadBalancerIPPool",
        namespaced: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
    },
];

/// A request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    plural: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(&'static str, String, String), Value>,
    events: Vec<Event>,
    requests: Vec<Recorded>,
}

/// The fake server; it stops when dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find_resource(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

fn resource_of_kind(kind: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("fake API: unknown kind {kind}"))
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().expect("object");
            for (k, v) in fields {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("response")
}

fn status_error(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    full(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// The parsed path: resource, namespace, name, subresource.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let resource = find_resource(rest.first()?)?;
    Some(Target {
        resource,
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        status: rest.get(2) == Some(&"status"),
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    url_decode(
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))?,
    )
    .into()
}

fn url_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let labels = &object["metadata"]["labels"];
        match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')] == v,
            None => !labels[term].is_null(),
        }
    })
}

impl FakeApi {
    /// Starts the server on 127.0.0.1, an ephemeral port.
    pub async fn start() -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::start_on(listener)
    }

    /// Starts the server on a bound listener (e.g. one created inside a network namespace).
    pub fn start_on(listener: std::net::TcpListener) -> FakeApi {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (events, _) = broadcast::channel(4096);
        let state = (inner.clone(), events.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state.0, state.1, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApi {
            addr,
            inner,
            events,
            task,
        }
    }

    /// A kube client for this server (plain HTTP, no credentials).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Creates or replaces an object (as `kubectl apply` would, without field management):
    /// `apiVersion`, `kind` and `metadata.name` are required.
    pub fn apply(&self, mut object: Value) {
        let resource = resource_of_kind(object["kind"].as_str().expect("kind"));
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let namespace = if resource.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        if resource.namespaced {
            object["metadata"]["namespace"] = namespace.clone().into();
        }
        let mut inner = self.inner.lock().expect("lock");
        let key = (resource.plural, namespace.clone(), name);
        let (kind, generation, status) = match inner.objects.get(&key) {
            Some(old) => (
                "MODIFIED",
                old["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
                old.get("status").cloned(),
            ),
            None => ("ADDED", 1, None),
        };
        object["metadata"]["generation"] = generation.into();
        if object.get("status").is_none()
            && let Some(status) = status
        {
            object["status"] = status;
        }
        commit(&mut inner, &self.events, resource, key, Some(object), kind);
    }

    /// Deletes an object.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let resource = resource_of_kind(kind);
        let mut inner = self.inner.lock().expect("lock");
        let key = (resource.plural, namespace.to_owned(), name.to_owned());
        commit(&mut inner, &self.events, resource, key, None, "DELETED");
    }

    /// The stored object.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_of_kind(kind);
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .get(&(resource.plural, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let resource = resource_of_kind(kind);
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .iter()
            .filter(|(k, _)| k.0 == resource.plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("lock").requests.clone()
    }
}

/// Stores (or removes, when `object` is `None`) and records the event.
fn commit(
    inner: &mut Inner,
    events: &broadcast::Sender<Event>,
    resource: &'static Resource,
    key: (&'static str, String, String),
    object: Option<Value>,
    kind: &'static str,
) -> Option<Value> {
    inner.rv += 1;
    let rv = inner.rv;
    let object = match object {
        Some(mut object) => {
            object["apiVersion"] = resource.api_version().into();
            object["kind"] = resource.kind.into();
            object["metadata"]["resourceVersion"] = rv.to_string().into();
            if object["metadata"]["uid"].is_null() {
                object["metadata"]["uid"] = format!("uid-{rv}").into();
                object["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            inner.objects.insert(key.clone(), object.clone());
            object
        }
        None => {
            let mut old = inner.objects.remove(&key)?;
            old["metadata"]["resourceVersion"] = rv.to_string().into();
            old
        }
    };
    let event = Event {
        rv,
        plural: resource.plural,
        namespace: key.1,
        kind,
        object: object.clone(),
    };
    inner.events.push(event.clone());
    let _ = events.send(event);
    Some(object)
}

async fn handle(
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Event>,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(&bytes).unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    inner.lock().expect("lock").requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    let Some(target) = parse_path(&path) else {
        return status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let resource = target.resource;
    let namespace = target.namespace.clone().unwrap_or_default();
    let not_found = |name: &str| {
        status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", resource.plural),
        )
    };

    match (&method, &target.name) {
        (&Method::GET, None) if query_param(&query, "watch").as_deref() == Some("true") => {
            watch(inner, events, resource, target.namespace, &query)
        }
        (&Method::GET, None) => {
            let selector = query_param(&query, "labelSelector").unwrap_or_default();
            let inner = inner.lock().expect("lock");
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|(k, _)| {
                    k.0 == resource.plural && (target.namespace.is_none() || k.1 == namespace)
                })
                .map(|(_, v)| v)
                .filter(|v| labels_match(v, &selector))
                .cloned()
                .collect();
            full(
                StatusCode::OK,
                &json!({"apiVersion": resource.api_version(), "kind": format!("{}List", resource.kind),
                        "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
            )
        }
        (&Method::GET, Some(name)) => {
            let inner = inner.lock().expect("lock");
            match inner
                .objects
                .get(&(resource.plural, namespace, name.clone()))
            {
                Some(o) => full(StatusCode::OK, o),
                None => not_found(name),
            }
        }
        (&Method::POST, None) => {
            let mut object = body;
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
                return status_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".into(),
                );
            };
            let mut inner = inner.lock().expect("lock");
            let key = (resource.plural, namespace.clone(), name.clone());
            if inner.objects.contains_key(&key) {
                return status_error(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", resource.plural),
                );
            }
            if resource.namespaced {
                object["metadata"]["namespace"] = namespace.into();
            }
            object["metadata"]["generation"] = 1.into();
            let stored = commit(&mut inner, &events, resource, key, Some(object), "ADDED");
            full(StatusCode::CREATED, &stored.unwrap_or_default())
        }
        (&Method::PUT, Some(name)) => {
            let mut inner = inner.lock().expect("lock");
            let key = (resource.plural, namespace, name.clone());
            let Some(old) = inner.objects.get(&key).cloned() else {
                return not_found(name);
            };
            let sent_rv = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !sent_rv.is_empty()
                && sent_rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("")
            {
                return status_error(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        resource.plural
                    ),
                );
            }
            let mut object = body;
            object["metadata"]["uid"] = old["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = (if object.get("spec") != old.get("spec") {
                generation + 1
            } else {
                generation
            })
            .into();
            let stored = commit(&mut inner, &events, resource, key, Some(object), "MODIFIED");
            full(StatusCode::OK, &stored.unwrap_or_default())
        }
        (&Method::PATCH, Some(name)) => {
            let mut inner = inner.lock().expect("lock");
            let key = (resource.plural, namespace, name.clone());
            let Some(mut object) = inner.objects.get(&key).cloned() else {
                return not_found(name);
            };
            if target.status {
                // The status subresource ignores everything but `status`.
                merge(
                    &mut object,
                    &json!({"status": body.get("status").cloned().unwrap_or(Value::Null)}),
                );
            } else {
                merge(&mut object, &body);
                if body.get("spec").is_some() {
                    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
                    object["metadata"]["generation"] = (generation + 1).into();
                }
            }
            let stored = commit(&mut inner, &events, resource, key, Some(object), "MODIFIED");
            full(StatusCode::OK, &stored.unwrap_or_default())
        }
        (&Method::DELETE, Some(name)) => {
            let mut inner = inner.lock().expect("lock");
            let key = (resource.plural, namespace, name.clone());
            match commit(&mut inner, &events, resource, key, None, "DELETED") {
                Some(old) => full(StatusCode::OK, &old),
                None => not_found(name),
            }
        }
        _ => status_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {path}"),
        ),
    }
}

/// A watch: past events newer than `resourceVersion`, then live ones, BOOKMARKs every 500 ms,
/// closed after `timeoutSeconds` (default 30 s).
fn watch(
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Event>,
    resource: &'static Resource,
    namespace: Option<String>,
    query: &str,
) -> Response<Body> {
    let from: u64 = query_param(query, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query_param(query, "allowWatchBookmarks").as_deref() == Some("true");
    let timeout: u64 = query_param(query, "timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let matches = move |e: &Event| {
        e.plural == resource.plural && namespace.as_ref().is_none_or(|ns| &e.namespace == ns)
    };
    // Subscribe before reading the history, so no event falls between the two.
    let mut live = events.subscribe();
    let (past, mut last) = {
        let inner = inner.lock().expect("lock");
        let past: Vec<Event> = inner
            .events
            .iter()
            .filter(|e| e.rv > from && matches(e))
            .cloned()
            .collect();
        (past, inner.rv.max(from))
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let line = |kind: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    tokio::spawn(async move {
        for e in &past {
            if tx.send(line(e.kind, &e.object)).await.is_err() {
                return;
            }
        }
        let sent_up_to = past.last().map_or(from, |e| e.rv);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                event = live.recv() => match event {
                    Ok(e) if e.rv > sent_up_to && matches(&e) => {
                        last = last.max(e.rv);
                        if tx.send(line(e.kind, &e.object)).await.is_err() { return; }
                    }
                    Ok(e) => last = last.max(e.rv),
                    Err(broadcast::error::RecvError::Lagged(_)) => return, // the client re-lists
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let object = json!({"kind": resource.kind, "apiVersion": resource.api_version(),
                                        "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", &object)).await.is_err() { return; }
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(http_body_util::BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
}
