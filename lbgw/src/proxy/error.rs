//! Everything that can go wrong in the proxy, with where it came from (the client, a backend,
//! or lbgw itself), whether retrying the backend request is safe, and the status the client
//! gets for it.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Response, StatusCode};

use super::body::{self, ProxyBody};

/// Boxed error of a body or a connector.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which side of the proxy an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: its connection, its TLS handshake, what it asked for.
    Downstream,
    /// A backend: connecting to it, or its answer.
    Upstream,
    /// lbgw: binding, configuration that cannot be served.
    Internal,
}

/// A proxy error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener socket could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A proxy worker thread (or its runtime) could not be started.
    #[error("starting a proxy worker thread")]
    Worker(#[source] std::io::Error),
    /// The TLS handshake with a client failed.
    #[error("TLS handshake with {peer}")]
    Handshake {
        /// The client.
        peer: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No certificate for the name the client asked for (SNI).
    #[error("no HTTPS listener with a certificate for server name {sni:?}")]
    NoCertificate {
        /// The server name, when the client sent one.
        sni: Option<String>,
    },
    /// GEP-3567: a request whose host is served by another listener (with another
    /// certificate) than the one its TLS connection was made for.
    #[error("misdirected request: host {host:?} is not served by listener {listener:?}")]
    Misdirected {
        /// The request host.
        host: String,
        /// The listener TLS chose.
        listener: String,
    },
    /// No rule matches the request.
    #[error("no route for {host:?} {path:?}")]
    NoRoute {
        /// The request host.
        host: String,
        /// The request path.
        path: String,
    },
    /// The request cannot be forwarded as it is (for example a rewritten path that is not a
    /// valid URI).
    #[error("request cannot be forwarded: {0}")]
    BadRequest(String),
    /// Reading the client's request body failed (it went away, or sent a malformed body).
    #[error("reading the request body")]
    ClientBody(#[source] hyper::Error),
    /// The client did not send the (small, buffered for retries or mirrors) request body
    /// within the body read timeout or the rule's `timeouts.request`: 408 Request Timeout.
    #[error("request body not received within {0:?}")]
    ClientBodyTimeout(Duration),
    /// The matched rule has no backend that can take traffic (none configured, or every
    /// weight 0), and no filter answered.
    #[error("rule has no backend with a non-zero weight")]
    NoBackend,
    /// The backend reference does not resolve (missing Service, port, ReferenceGrant...).
    #[error("invalid backend: {reason}: {message}")]
    InvalidBackend {
        /// The Gateway API condition reason.
        reason: &'static str,
        /// Details.
        message: String,
    },
    /// An implementation-specific filter lbgw does not know; HTTPRouteFilter.type: "requests
    /// that would have been processed by that filter MUST receive a HTTP error response."
    #[error("unsupported filter {group}/{kind} {name}")]
    UnsupportedFilter {
        /// API group.
        group: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The backend Service has no ready endpoint.
    #[error("backend has no ready endpoints")]
    NoReadyEndpoints,
    /// Connecting to the backend failed; nothing was sent, so a retry is safe.
    #[error("connecting to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The backend connection failed after the request was (maybe) sent.
    #[error("request to {endpoint} failed")]
    Upstream {
        /// The endpoint.
        endpoint: SocketAddr,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// GEP-1742 `timeouts.backendRequest` elapsed before the backend answered.
    #[error("backend {endpoint} did not answer within {after:?}")]
    BackendTimeout {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// GEP-1742 `timeouts.request` elapsed before the response started.
    #[error("no response within the request timeout {0:?}")]
    RequestTimeout(Duration),
}

impl ProxyError {
    /// Where the error came from.
    pub fn side(&self) -> Side {
        match self {
            Self::Handshake { .. }
            | Self::NoCertificate { .. }
            | Self::Misdirected { .. }
            | Self::NoRoute { .. }
            | Self::BadRequest(_)
            | Self::ClientBody(_)
            | Self::ClientBodyTimeout(_) => Side::Downstream,
            Self::Connect { .. }
            | Self::Upstream { .. }
            | Self::BackendTimeout { .. }
            | Self::RequestTimeout(_) => Side::Upstream,
            Self::Bind { .. }
            | Self::Worker(_)
            | Self::NoBackend
            | Self::InvalidBackend { .. }
            | Self::UnsupportedFilter { .. }
            | Self::NoReadyEndpoints => Side::Internal,
        }
    }

    /// Whether the backend request may be sent again. A failed connect sent nothing; a
    /// backend timeout is retried as GEP-1731 describes ("retried approximately 100
    /// milliseconds after timing out"); other upstream failures may have reached the backend
    /// but GEP-1731 lets "connection errors" be retried too, so only errors that are not
    /// about the backend at all are unsafe.
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Upstream { .. } | Self::BackendTimeout { .. }
        )
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NoReadyEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::BackendTimeout { .. } | Self::RequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Bind { .. }
            | Self::Worker(_)
            | Self::Handshake { .. }
            | Self::NoCertificate { .. }
            | Self::NoBackend
            | Self::InvalidBackend { .. }
            | Self::UnsupportedFilter { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The small `text/plain` response for the client: the status line's reason, not the
    /// error's details, which go to the log.
    pub fn response(&self) -> Response<ProxyBody> {
        body::text_response(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        // HTTPBackendRef: invalid → 500, no ready endpoints → 503 (HTTPRouteRule.backendRefs).
        let cases = [
            (
                ProxyError::InvalidBackend {
                    reason: "BackendNotFound",
                    message: String::new(),
                },
                500,
                false,
            ),
            (ProxyError::NoReadyEndpoints, 503, false),
            (
                ProxyError::Connect {
                    endpoint: ([127, 0, 0, 1], 1).into(),
                    source: "refused".into(),
                },
                502,
                true,
            ),
            (
                ProxyError::RequestTimeout(Duration::from_secs(1)),
                504,
                false,
            ),
            (
                ProxyError::ClientBodyTimeout(Duration::from_secs(1)),
                408,
                false,
            ),
            (
                ProxyError::Misdirected {
                    host: "a".into(),
                    listener: "b".into(),
                },
                421,
                false,
            ),
        ];
        for (err, status, retry) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.retry_safe(), retry, "{err}");
        }
    }
}
