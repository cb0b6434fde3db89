//! Gateway API HTTPRoute routing: a pure, synchronous core with no I/O.
//!
//! [`RouteTable::build`] compiles Gateways' listeners and HTTPRoutes into a table;
//! [`RouteTable::find`] picks the rule for a request. As in linkerd2-proxy's route crate,
//! every candidate match yields an orderable score and the best one wins, the first in
//! tie-break order (oldest route, then `namespace/name`, then rule and match order) keeping
//! a tie. The filters module has the computations the proxy applies to a matched request.
//!
//! The data path through the module:
//! - `attach`: which listeners a route's parentRefs and the listeners' allowedRoutes admit;
//! - `hostname`: listener and route hostnames, their intersection and precedence;
//! - `matches`: path, method, header and query parameter matches and their scores;
//! - `rule`: what a rule does once matched (filters, weighted backends, timeouts);
//! - `table`: the table and the lookup;
//! - `index`: per listener, the matches by hostname and path, so a lookup scores only the
//!   few that can match (cost grows with the request's labels and segments, not with routes);
//! - `filters`: header modification, path rewriting, redirect `Location`.

mod attach;
mod error;
pub mod filters;
pub mod hostname;
mod index;
mod matches;
pub mod retry;
mod rule;
mod table;
#[cfg(test)]
mod tests;

pub use self::attach::{Attachment, attachment};
pub use self::error::{BuildError, RouteId};
pub use self::filters::{
    Filter, HeaderModifier, PathModifier, RedirectRequest, RequestMirror, RequestRedirect, Scheme,
    UrlRewrite,
};
pub use self::hostname::Hostname;
pub use self::matches::PathMatch;
pub use self::retry::{HttpRouteRetry, RetryError, RetryPolicy};
pub use self::rule::{Backend, BackendRef, Rule, Timeout, Timeouts, pick_weighted};
pub use self::table::{Listener, Match, RouteTable};

use http::{HeaderMap, Method};

/// The Gateway a request arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayRef<'a> {
    /// Namespace of the Gateway.
    pub namespace: &'a str,
    /// Name of the Gateway.
    pub name: &'a str,
}

/// The listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerRef<'a> {
    /// A listener by name (for example once TLS SNI has chosen it).
    Name(&'a str),
    /// The listeners on a port; the request host picks one of them by hostname.
    Port(u16),
}

/// What routing looks at in a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The Gateway.
    pub gateway: GatewayRef<'a>,
    /// The listener.
    pub listener: ListenerRef<'a>,
    /// Host header or `:authority`; its port is ignored and its case does not matter.
    pub host: &'a str,
    /// The path, as received (the proxy decides about normalization before routing).
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestParts<'a> {
    /// Takes host, path, query, method and headers from a request head. The host comes from
    /// the URI (HTTP/2 `:authority`, or an absolute-form HTTP/1 target) or else the Host
    /// header.
    pub fn from_http(
        gateway: GatewayRef<'a>,
        listener: ListenerRef<'a>,
        head: &'a http::request::Parts,
    ) -> Self {
        let host = head
            .uri
            .host()
            .or_else(|| {
                head.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default();
        Self {
            gateway,
            listener,
            host,
            path: head.uri.path(),
            query: head.uri.query(),
            method: &head.method,
            headers: &head.headers,
        }
    }
}
