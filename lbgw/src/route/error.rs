//! Why part of the configuration could not be compiled into the routing table.

use std::fmt;

/// The namespace and name of an HTTPRoute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId {
    /// `metadata.namespace`, `default` when unset.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A part of the configuration [`RouteTable::build`](super::RouteTable::build) left out.
///
/// Errors in a rule drop that rule only; the route's other rules keep serving, as the spec's
/// `PartiallyInvalid` condition implies. `rule` is the index in `spec.rules`, `index` the
/// index in that rule's `matches`, and `backend` the index in its `backendRefs`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A RegularExpression match does not compile.
    #[error("HTTPRoute {route} rule {rule} match {index}: invalid regular expression in {field}")]
    InvalidRegex {
        route: RouteId,
        rule: usize,
        index: usize,
        /// `path`, `headers[NAME]` or `queryParams[NAME]`.
        field: String,
        #[source]
        source: Box<regex::Error>,
    },

    /// An Exact or PathPrefix path that does not start with `/`.
    #[error("HTTPRoute {route} rule {rule} match {index}: path {value:?} does not start with '/'")]
    InvalidPath {
        route: RouteId,
        rule: usize,
        index: usize,
        value: String,
    },

    /// A header name in a match or a header filter is not a valid HTTP field name.
    #[error("HTTPRoute {route} rule {rule}: invalid header name {name:?} in {field}")]
    InvalidHeaderName {
        route: RouteId,
        rule: usize,
        /// Where the name appears, e.g. `matches[0].headers` or `filters[1].requestHeaderModifier.set`.
        field: String,
        name: String,
        #[source]
        source: http::header::InvalidHeaderName,
    },

    /// A header value in a header filter is not a valid HTTP field value.
    #[error("HTTPRoute {route} rule {rule}: invalid value for header {name:?} in {field}")]
    InvalidHeaderValue {
        route: RouteId,
        rule: usize,
        field: String,
        name: String,
        #[source]
        source: http::header::InvalidHeaderValue,
    },

    /// A value the implementation must reject with reason `UnsupportedValue`, or a filter
    /// whose `type` names a configuration block that is missing.
    #[error("HTTPRoute {route} rule {rule}: unsupported value {value:?} for {field}")]
    UnsupportedValue {
        route: RouteId,
        rule: usize,
        field: String,
        value: String,
    },

    /// Filters, matches and backends of a rule that cannot be combined.
    #[error("HTTPRoute {route} rule {rule}: incompatible configuration: {reason}")]
    IncompatibleFilters {
        route: RouteId,
        rule: usize,
        reason: String,
    },

    /// A `timeouts` value that is not a GEP-2257 duration, or a backendRequest timeout longer
    /// than the request timeout.
    #[error("HTTPRoute {route} rule {rule}: invalid timeouts.{field} {value:?}: {reason}")]
    InvalidTimeout {
        route: RouteId,
        rule: usize,
        field: &'static str,
        value: String,
        reason: String,
    },

    /// A backendRef with an out-of-range port or weight.
    #[error("HTTPRoute {route} rule {rule} backendRef {backend}: {reason}")]
    InvalidBackend {
        route: RouteId,
        rule: usize,
        backend: usize,
        reason: String,
    },

    /// Listeners of one Gateway that share port, protocol and hostname; none of them is
    /// used ("The implementation MUST NOT pick one conflicting Listener as the winner").
    #[error(
        "Gateway {gateway}: listeners {listeners:?} conflict on port {port} hostname {hostname}"
    )]
    ConflictedListeners {
        /// `namespace/name` of the Gateway.
        gateway: String,
        port: u16,
        hostname: String,
        listeners: Vec<String>,
    },
}
