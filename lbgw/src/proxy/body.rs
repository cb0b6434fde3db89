//! The body type that flows through the proxy in both directions, and lbgw's own small
//! responses.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// A request or response body: a client's or backend's [`hyper::body::Incoming`] passed
/// through as it streams, or a small body lbgw made.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A streaming body, boxed.
pub fn incoming(body: hyper::body::Incoming) -> ProxyBody {
    body.boxed()
}

/// A streaming body whose data bytes are added to `count` as they pass.
pub fn counted(
    body: hyper::body::Incoming,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> ProxyBody {
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            count.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        frame
    })
    .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A `text/plain` response whose body is the status code and reason, e.g. `404 Not Found`.
pub fn text_response(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
