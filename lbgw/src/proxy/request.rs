//! One request's journey: listener check, route, filters, backend, upstream, response.
//!
//! - GEP-3567: on HTTPS, a request for a host that another listener (another certificate)
//!   serves is answered 421 Misdirected Request, since HTTP/2 connection coalescing can send
//!   it on a connection made for another name.
//! - Routing: [`RouteTable::find`](crate::route::RouteTable::find); no match is 404.
//! - Filters: the rule's, then the chosen backendRef's ([`super::filters`]).
//! - Backend: weighted pick, resolved to endpoints: invalid → 500, no ready endpoint → 503.
//! - Upstream: connect failure → 502; GEP-1742 timeouts → 504. Neither `timeouts.request` nor
//!   `timeouts.backendRequest` has a default: without them a request waits as long as the
//!   backend takes. Both bound the wait for the response head, not the body, so a long
//!   stream (SSE) that has started is never cut.
//! - Bodies stream both ways. A small request body of known length is buffered only when a
//!   retry or a mirror needs to send it again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::uri::{Authority, PathAndQuery};
use http::{Extensions, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use super::body::{self, ProxyBody};
use super::error::{ProxyError, Side};
use super::exchange::Exchange;
use super::filters::{Applied, FilterRequest};
use super::headers::{self, Forwarded};
use super::limits::ConnState;
use super::metrics::EndpointLabels;
use super::mirror::{self, MirrorRequest};
use super::outlier::Outcome;
use super::retry::{self, RetryPolicy};
use super::upgrade;
use super::{Conn, Shared, tls};
use crate::gateway::{ListenerProtocol, Resolution, ResolvedBackend};
use crate::route::hostname::normalize_host;
use crate::route::{GatewayRef, ListenerRef, Match, RedirectRequest, RequestParts, Timeout};

/// Largest request body buffered so that a retry or a mirror can send it again.
const MAX_REPLAY_BODY: u64 = 64 * 1024;
/// How long a client may take to send a body that is buffered for retries or mirrors (the
/// rule's `timeouts.request` cuts it shorter when set); on expiry the answer is 408.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one request; errors become small text responses. The exchange record follows
/// the response body (metrics, access log).
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    state: Arc<ConnState>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let method = req.method().clone();
    // A clone of the URI shares its bytes: no copy of the path unless it is logged.
    let uri = req.uri().clone();
    let path = uri.path();
    let mut exchange = Exchange::start(&shared, &conn, state, &req);
    let response = match proxy(&shared, &conn, req, &mut exchange).await {
        Ok(response) => {
            tracing::trace!(%method, %path, status = %response.status(), "request");
            response
        }
        Err(err) => {
            let chain = crate::config::error_chain(&err);
            match err.side() {
                Side::Downstream => tracing::debug!(peer = %conn.peer, %method, %path, "{chain}"),
                Side::Upstream | Side::Internal => {
                    tracing::warn!(peer = %conn.peer, %method, %path, "{chain}")
                }
            }
            exchange.failure = Some(chain);
            err.response()
        }
    };
    exchange.respond(response)
}

/// The request body, as far as lbgw holds it.
enum RequestBody {
    /// No body at all.
    Empty,
    /// The whole body, read before forwarding; can be sent again.
    Buffered(Bytes),
    /// Streams through (counted); can be sent once.
    Streaming(Option<ProxyBody>),
}

async fn proxy(
    shared: &Shared,
    conn: &Conn,
    mut req: Request<Incoming>,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let upgrading = headers::is_websocket_upgrade(req.version(), req.headers());
    let downstream_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let host = authority(&parts);
    check_misdirected(conn, &host)?;

    // Route, then filters: the rule's, then those of the backendRef picked by weight.
    let m = route(conn, &parts).ok_or_else(|| ProxyError::NoRoute {
        host: host.clone(),
        path: parts.uri.path().to_owned(),
    })?;
    if exchange.logged() {
        exchange.listener = format!(
            "{}/{}/{}",
            m.listener.gateway_namespace, m.listener.gateway_name, m.listener.name
        );
    }
    exchange.served_by = Some(shared.route_metrics.get(&conn.model, m.route, None));
    exchange.rule = Some(m.rule_index);
    // A clone of the URI shares its bytes: path and query are borrowed from it, not copied.
    let uri = parts.uri.clone();
    let (path, query) = (uri.path(), uri.query());
    let mut applied = Applied::default();
    let mut filter_req = FilterRequest {
        method: &parts.method,
        headers: &mut parts.headers,
        redirect: RedirectRequest {
            scheme: m.listener.scheme,
            host: &host,
            listener_port: m.listener.port,
            path,
            query,
            matched_prefix: m.matched_prefix(),
        },
    };
    if let Some(response) = applied.apply(&m.rule.filters, &mut filter_req)? {
        return Ok(response);
    }
    let backend = m
        .rule
        .pick_backend(fastrand::u32(..))
        .ok_or(ProxyError::NoBackend)?;
    if let Some(response) = applied.apply(&backend.filters, &mut filter_req)? {
        return Ok(response);
    }
    exchange.served_by = Some(shared.route_metrics.get(
        &conn.model,
        m.route,
        Some(&backend.backend),
    ));
    let resolved = resolve(conn, &m, &backend.backend)?;

    // The upstream request.
    // Without a path rewrite the target is the client's, shared rather than rebuilt.
    let target = match (applied.rewrite_path, uri.path_and_query()) {
        (None, Some(target)) => target.clone(),
        _ => applied
            .path_and_query(path, query, m.matched_prefix())
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError::BadRequest(e.to_string()))?,
    };
    let upstream_host: Option<Authority> = applied.rewrite_host.unwrap_or(&host).parse().ok();
    // Only CORS looks at the request (its Origin) once the response is back.
    let request_headers = match applied.cors {
        Some(_) => parts.headers.clone(),
        None => http::HeaderMap::new(),
    };
    let head = upstream_head(conn, parts, &host, target, upgrading);
    let retry = retry_policy(&m);
    let mut body = request_body(
        incoming,
        &head,
        retry.is_some() || !applied.mirrors.is_empty(),
        m.rule.timeouts.request,
        &exchange.bytes_in,
    )
    .await?;
    for mirror_filter in &applied.mirrors {
        if mirror_filter.should_mirror(fastrand::u32(..)) {
            send_mirror(
                shared,
                conn,
                &m,
                mirror_filter,
                &head,
                &body,
                &upstream_host,
            );
        }
    }
    // A streamed body is gone after the first attempt.
    let retry = match body {
        RequestBody::Streaming(_) => None,
        _ => retry,
    };
    let backend_timeout = m.rule.timeouts.backend_request;
    // Without retries there is one attempt: it takes the head instead of copying it.
    let reuse_head = retry.is_some();
    let mut head = Some(head);
    let (head_ref, body_ref) = (&mut head, &mut body);
    let resolved_ref: &ResolvedBackend = &resolved;
    let host_ref = upstream_host.as_ref();
    let last_endpoint = std::sync::Mutex::new(None);
    let last_ref = &last_endpoint;
    let response = with_timeout(
        m.rule.timeouts.request,
        retry::run(retry, move |_| {
            let request = build_request(head_ref, body_ref, reuse_head);
            let endpoint = shared.outliers.pick(&resolved_ref.endpoints);
            async move {
                let request = request?;
                let endpoint = endpoint.ok_or(ProxyError::NoReadyEndpoints)?;
                if let Ok(mut last) = last_ref.lock() {
                    *last = Some(endpoint);
                }
                // Built in place, not as a local first: a local would keep a slot of its own
                // in this future beside the one it is moved into.
                let result = with_timeout(
                    backend_timeout,
                    shared
                        .upstreams
                        .send(endpoint, resolved_ref.protocol, host_ref, request),
                    |after| ProxyError::BackendTimeout { endpoint, after },
                )
                .await;
                observe_attempt(shared, endpoint, &result);
                result
            }
        }),
        ProxyError::RequestTimeout,
    )
    .await;
    exchange.endpoint = last_endpoint.lock().ok().and_then(|e| *e);
    let mut response = response?;

    // The response.
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(downstream)) = (switching, downstream_upgrade) {
        upgrade::tunnel(downstream, hyper::upgrade::on(&mut response));
    }
    let upstream_version = response.version();
    headers::remove_hop_by_hop(response.headers_mut(), switching && upgrading);
    headers::append_via(response.headers_mut(), upstream_version);
    // hyper answers with the version the client spoke.
    *response.version_mut() = Version::default();
    Ok(applied.finish(response, &request_headers))
}

/// The authority as the client sent it (port included): `:authority` or an absolute-form
/// target, else the Host header. Forwarded as Host and in X-Forwarded-Host.
fn authority(parts: &http::request::Parts) -> String {
    match parts.uri.authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The backendRef's endpoints: invalid → 500, no ready endpoint → 503 (HTTPRouteRule
/// backendRefs).
fn resolve(
    conn: &Conn,
    m: &Match<'_>,
    backend: &crate::route::BackendRef,
) -> Result<Arc<ResolvedBackend>, ProxyError> {
    match conn.model.backends.resolve(&m.route.namespace, backend) {
        Resolution::Ready(resolved) => Ok(resolved),
        Resolution::NoReadyEndpoints => Err(ProxyError::NoReadyEndpoints),
        Resolution::Invalid { reason, message } => {
            Err(ProxyError::InvalidBackend { reason, message })
        }
    }
}

/// The head of the upstream request: the filtered headers without hop-by-hop fields and
/// Host (set per protocol by `upstream`), with the forwarding headers, and `target` as path.
fn upstream_head(
    conn: &Conn,
    mut parts: http::request::Parts,
    host: &str,
    target: PathAndQuery,
    upgrading: bool,
) -> Request<()> {
    headers::remove_hop_by_hop(&mut parts.headers, upgrading);
    parts.headers.remove(HOST);
    headers::add_forwarded(
        &mut parts.headers,
        &Forwarded {
            client: conn.peer.ip(),
            proto: if conn.tls.is_some() { "https" } else { "http" },
            host: (!host.is_empty()).then_some(host),
            version: parts.version,
        },
    );
    let mut head = Request::new(());
    *head.method_mut() = parts.method;
    *head.uri_mut() = target.into();
    *head.headers_mut() = parts.headers;
    head
}

/// Passive health: how an attempt went for its endpoint, and connect errors counted.
fn observe_attempt(
    shared: &Shared,
    endpoint: std::net::SocketAddr,
    result: &Result<Response<ProxyBody>, ProxyError>,
) {
    let outcome = match result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(ProxyError::Connect { .. }) => {
            shared
                .metrics
                .upstream_connect_errors
                .get_or_create(&EndpointLabels {
                    endpoint: endpoint.to_string(),
                })
                .inc();
            Outcome::Failure
        }
        Err(_) => Outcome::Failure,
    };
    shared.outliers.report(endpoint, outcome, &shared.metrics);
}

/// Takes the request body: empty, buffered whole when `replay` needs it and it is small with
/// a known length, else streaming (its bytes counted into `bytes_in` as they pass).
async fn request_body(
    incoming: Incoming,
    head: &Request<()>,
    replay: bool,
    request_timeout: Timeout,
    bytes_in: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<RequestBody, ProxyError> {
    if incoming.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let length = content_length(head.headers());
    if replay && length.is_some_and(|n| n <= MAX_REPLAY_BODY) {
        let limit = match request_timeout {
            Timeout::After(after) => after.min(BODY_READ_TIMEOUT),
            Timeout::Unset | Timeout::Disabled => BODY_READ_TIMEOUT,
        };
        let bytes = tokio::time::timeout(limit, incoming.collect())
            .await
            .map_err(|_| ProxyError::ClientBodyTimeout(limit))?
            .map_err(ProxyError::ClientBody)?
            .to_bytes();
        bytes_in.store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        return Ok(RequestBody::Buffered(bytes));
    }
    Ok(RequestBody::Streaming(Some(body::counted(
        incoming,
        Arc::clone(bytes_in),
    ))))
}

/// GEP-3567: the listener that would serve `host` on this connection's port must be the one
/// TLS chose; otherwise the client reused a connection made for another certificate.
fn check_misdirected(conn: &Conn, host: &str) -> Result<(), ProxyError> {
    let Some(chosen) = conn.tls else {
        return Ok(());
    };
    let port = conn.port();
    let host = normalize_host(host);
    let serving = conn.listeners.iter().map(|&i| (i, &port.listeners[i]));
    if tls::select_listener(serving, Some(&host)) == Some(chosen) {
        return Ok(());
    }
    Err(ProxyError::Misdirected {
        host: host.into_owned(),
        listener: port.listeners[chosen].name.clone(),
    })
}

/// The best rule for the request. Over TLS the listener is the one SNI chose; in cleartext
/// each Gateway serving the connection is asked by port, in order, the first match winning.
fn route<'m>(conn: &'m Conn, parts: &http::request::Parts) -> Option<Match<'m>> {
    let port = conn.port();
    let find = |index: usize, by_name: bool| {
        let l = &port.listeners[index];
        let gateway = GatewayRef {
            namespace: &l.gateway.namespace,
            name: &l.gateway.name,
        };
        let listener = if by_name {
            ListenerRef::Name(&l.name)
        } else {
            ListenerRef::Port(l.port)
        };
        conn.model
            .routes
            .find(&RequestParts::from_http(gateway, listener, parts))
    };
    if let Some(chosen) = conn.tls {
        return find(chosen, true);
    }
    let mut asked = Vec::new();
    for &i in &conn.listeners {
        let l = &port.listeners[i];
        if l.protocol != ListenerProtocol::Http || asked.contains(&&l.gateway) {
            continue;
        }
        asked.push(&l.gateway);
        if let Some(m) = find(i, false) {
            return Some(m);
        }
    }
    None
}

/// GEP-1731 retry stanza of the rule (HTTPRouteRule.retry, kept by the config loader
/// although the standard-channel types drop it), run by [`retry::run`].
fn retry_policy<'a>(m: &Match<'a>) -> Option<&'a RetryPolicy> {
    m.rule.retry.as_ref()
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The upstream request for one attempt. A streamed body goes with the first attempt only
/// (there is no retry then). With `reuse`, the head is copied for a later attempt; without,
/// the one attempt takes it.
fn build_request(
    head: &mut Option<Request<()>>,
    body: &mut RequestBody,
    reuse: bool,
) -> Result<Request<ProxyBody>, ProxyError> {
    let body = match body {
        RequestBody::Empty => body::empty(),
        RequestBody::Buffered(bytes) => body::full(bytes.clone()),
        RequestBody::Streaming(incoming) => incoming.take().unwrap_or_else(body::empty),
    };
    let mut request = match (reuse, head.as_ref()) {
        (true, Some(head)) => {
            let mut request = Request::new(body);
            *request.method_mut() = head.method().clone();
            *request.uri_mut() = head.uri().clone();
            *request.headers_mut() = head.headers().clone();
            request
        }
        _ => head
            .take()
            .ok_or_else(|| ProxyError::BadRequest("request head already sent".to_owned()))?
            .map(|()| body),
    };
    // Nothing of the client connection (hyper's upgrade handle among others) travels on.
    *request.extensions_mut() = Extensions::new();
    Ok(request)
}

fn send_mirror(
    shared: &Shared,
    conn: &Conn,
    m: &Match<'_>,
    filter: &crate::route::RequestMirror,
    head: &Request<()>,
    body: &RequestBody,
    host: &Option<Authority>,
) {
    let body = match body {
        RequestBody::Empty => None,
        RequestBody::Buffered(bytes) => Some(bytes.clone()),
        RequestBody::Streaming(_) => {
            tracing::debug!("request body streams; not mirrored");
            return;
        }
    };
    let resolved = match conn
        .model
        .backends
        .resolve(&m.route.namespace, &filter.backend)
    {
        Resolution::Ready(resolved) => resolved,
        other => {
            tracing::debug!(backend = ?filter.backend, "mirror backend unusable: {other:?}");
            return;
        }
    };
    let Some(endpoint) = shared.outliers.pick(&resolved.endpoints) else {
        return;
    };
    let mut request = Request::new(());
    *request.method_mut() = head.method().clone();
    *request.uri_mut() = head.uri().clone();
    *request.headers_mut() = head.headers().clone();
    mirror::spawn(
        Arc::clone(&shared.upstreams),
        MirrorRequest {
            request,
            body,
            host: host.clone(),
            endpoint,
            protocol: resolved.protocol,
        },
    );
}

/// `fut`, failing with `elapsed` once `timeout` has passed. Not an `async fn`: that would hold
/// `fut` and the `Timeout` wrapping it side by side, and the request's future, which nests
/// two of these, would grow by that much (it is moved as a whole when hyper stores it).
fn with_timeout<T, F>(
    timeout: Timeout,
    fut: F,
    elapsed: impl FnOnce(Duration) -> ProxyError,
) -> impl Future<Output = Result<T, ProxyError>>
where
    F: Future<Output = Result<T, ProxyError>>,
{
    use futures_util::FutureExt as _;
    use futures_util::future::Either;
    match timeout {
        Timeout::After(after) => Either::Left(tokio::time::timeout(after, fut).map(
            move |result| match result {
                Ok(result) => result,
                Err(_) => Err(elapsed(after)),
            },
        )),
        Timeout::Unset | Timeout::Disabled => Either::Right(fut),
    }
}
