//! HTTPRouteFilter: compiled filters (built from the Gateway API types in `compile`) and the
//! pure computations the proxy applies with them (header modification, path rewriting, redirect `Location`).
//!
//! Path functions take the path alone; the proxy keeps the query string and re-attaches it.

use std::fmt::{self, Write as _};

use gateway_api::apis::standard::httproutes::HttpRouteRulesFiltersCors;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::hostname::normalize_host;

mod compile;
pub(crate) use self::compile::{FilterCtx, compile, convert};

/// A compiled HTTPRouteFilter, applied by the proxy in list order.
#[derive(Clone, Debug)]
pub enum Filter {
    /// Modify the request headers before forwarding.
    RequestHeaderModifier(HeaderModifier),
    /// Modify the response headers before answering the client.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect instead of forwarding.
    RequestRedirect(RequestRedirect),
    /// Rewrite the host and/or path before forwarding.
    UrlRewrite(UrlRewrite),
    /// Also send the request to another backend, ignoring its response.
    RequestMirror(RequestMirror),
    /// CORS, passed through as configured for the proxy to implement.
    Cors(HttpRouteRulesFiltersCors),
    /// An implementation-specific filter lbgw does not know. HTTPRouteFilter.type: "If a
    /// reference to a custom filter type cannot be resolved, the filter MUST NOT be skipped.
    /// Instead, requests that would have been processed by that filter MUST receive a HTTP
    /// error response."
    ExtensionRef {
        /// API group of the referent.
        group: String,
        /// Kind of the referent.
        kind: String,
        /// Name of the referent.
        name: String,
    },
}

/// The `set`, `add` and `remove` lists of a RequestHeaderModifier or ResponseHeaderModifier.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderModifier {
    /// Headers that replace every existing value of their name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers appended to the existing values of their name.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Header names removed.
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Applies the modifier to `headers`. Names compare case-insensitively because
    /// [`HeaderName`] is lower-case.
    ///
    /// `add` appends a field line per value; RFC 9110 §5.3 makes that equivalent to the
    /// comma-joined `my-header: foo,bar,baz` of the spec's example, and it keeps `Set-Cookie`
    /// values apart, which a comma join would corrupt.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// HTTPPathModifier: how a rewrite or redirect changes the request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the part of the path the rule's PathPrefix matched.
    ReplacePrefixMatch(String),
}

impl PathModifier {
    /// The modified path. `matched_prefix` is the PathPrefix value that selected the rule
    /// ([`Match::matched_prefix`](super::Match::matched_prefix)); without one,
    /// ReplacePrefixMatch leaves the path unchanged (build rejects such rules).
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match (self, matched_prefix) {
            (Self::ReplaceFullPath(full), _) => full.clone(),
            (Self::ReplacePrefixMatch(replacement), Some(prefix)) => {
                replace_prefix_match(path, prefix, replacement)
            }
            (Self::ReplacePrefixMatch(_), None) => path.to_owned(),
        }
    }
}

/// Replaces the path segments `prefix` matched with `replacement`.
///
/// HTTPPathModifier.replacePrefixMatch: "Note that this matches the behavior of the PathPrefix
/// match type. This matches full path elements. ... When specified, a trailing `/` is
/// ignored." Both the prefix and the replacement lose a trailing `/`, the rest of the path is
/// appended, and an empty result becomes `/`. `path` must match `prefix`; otherwise it is
/// returned unchanged.
pub fn replace_prefix_match(path: &str, prefix: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let Some(rest) = path.strip_prefix(prefix) else {
        return path.to_owned();
    };
    let mut out = replacement.trim_end_matches('/').to_owned();
    out.push_str(rest);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// A URI scheme a redirect can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http`, well-known port 80.
    Http,
    /// `https`, well-known port 443.
    Https,
}

impl Scheme {
    /// The well-known port of the scheme.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

/// HTTPURLRewriteFilter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// "the value to be used to replace the Host header value during forwarding."
    pub hostname: Option<String>,
    /// The path rewrite.
    pub path: Option<PathModifier>,
}

/// HTTPRequestRedirectFilter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRedirect {
    /// Scheme of the `Location`; the request's when unset.
    pub scheme: Option<Scheme>,
    /// Host of the `Location`; the request's Host (without port) when unset.
    pub hostname: Option<String>,
    /// Path of the `Location`; the request's when unset.
    pub path: Option<PathModifier>,
    /// Port of the `Location`; derived by [`RequestRedirect::location`] when unset.
    pub port: Option<u16>,
    /// Status of the response: 301, 302 (the default), 303, 307 or 308.
    pub status: StatusCode,
}

/// What a redirect needs to know about the request it answers.
#[derive(Clone, Copy, Debug)]
pub struct RedirectRequest<'a> {
    /// The scheme the request arrived with (the listener protocol).
    pub scheme: Scheme,
    /// The request's Host header or `:authority`.
    pub host: &'a str,
    /// The port of the listener the request arrived on.
    pub listener_port: u16,
    /// The request path.
    pub path: &'a str,
    /// The request query string, without `?`; kept in the `Location`.
    pub query: Option<&'a str>,
    /// The PathPrefix value that selected the rule, for ReplacePrefixMatch.
    pub matched_prefix: Option<&'a str>,
}

impl RequestRedirect {
    /// The value of the `Location` header.
    ///
    /// HTTPRequestRedirectFilter.port: "If no port is specified, the redirect port MUST be
    /// derived using the following rules: * If redirect scheme is not-empty, the redirect port
    /// MUST be the well-known port associated with the redirect scheme. Specifically "http" to
    /// port 80 and "https" to port 443. ... * If redirect scheme is empty, the redirect port
    /// MUST be the Gateway Listener port." and "Implementations SHOULD NOT add the port number
    /// in the 'Location' header" for HTTP on port 80 and HTTPS on port 443.
    pub fn location(&self, req: &RedirectRequest<'_>) -> String {
        let scheme = self.scheme.unwrap_or(req.scheme);
        let port = match (self.port, self.scheme) {
            (Some(port), _) => port,
            (None, Some(scheme)) => scheme.default_port(),
            (None, None) => req.listener_port,
        };
        let host = match &self.hostname {
            Some(hostname) => hostname.as_str().into(),
            None => normalize_host(req.host),
        };
        let path = match &self.path {
            Some(modifier) => modifier.apply(req.path, req.matched_prefix),
            None => req.path.to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if port != scheme.default_port() {
            let _ = write!(location, ":{port}");
        }
        location.push_str(&path);
        if let Some(query) = req.query.filter(|q| !q.is_empty()) {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// HTTPRequestMirrorFilter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestMirror {
    /// Where mirrored requests go.
    pub backend: super::BackendRef,
    /// Share of requests mirrored, as numerator / denominator (denominator > 0).
    pub fraction: (u32, u32),
}

impl RequestMirror {
    /// Whether to mirror a request, given a uniformly random `u32`.
    pub fn should_mirror(&self, random: u32) -> bool {
        let (numerator, denominator) = self.fraction;
        (u64::from(random) * u64::from(denominator)) >> 32 < u64::from(numerator)
    }
}

#[cfg(test)]
mod tests;
