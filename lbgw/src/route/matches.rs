//! HTTPRouteMatch: one predicate over path, method, headers and query parameters, and the
//! orderable score of a request that satisfies it.
//!
//! RegularExpression matches (path, header values, query values) use the `regex` crate's
//! RE2-like syntax and must match the *whole* value: a pattern `p` is compiled as
//! `^(?:p)$`. The spec leaves the dialect and semantics implementation-specific; a full match
//! is what Envoy-based implementations do, and it keeps `/v1` from matching `/v1/admin`.

use std::borrow::Cow;

use gateway_api::apis::standard::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesMethod,
    HttpRouteRulesMatchesPathType, HttpRouteRulesMatchesQueryParamsType,
};
use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use super::error::{BuildError, RouteId};

/// How a request path is matched.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// The whole path, case-sensitively.
    Exact(String),
    /// Whole leading path segments, the value as configured (a trailing `/` is ignored).
    Prefix(String),
    /// A regular expression over the whole path.
    Regex(Regex),
}

/// How specific a path match is; larger wins.
///
/// HTTPRouteRule.matches: "precedence must be given to the match having: "Exact" path match.
/// "Prefix" path match with largest number of characters." and "The precedence of
/// RegularExpression path matches are implementation-specific." lbgw puts regexes between
/// the two, longer pattern first (as Envoy Gateway does): below them, a catch-all
/// `PathPrefix /` would shadow every regex route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathScore {
    /// Characters in the prefix, trailing `/` excluded.
    Prefix(usize),
    /// Characters in the pattern as configured.
    Regex(usize),
    Exact,
}

impl PathMatch {
    /// The PathPrefix value, which is what ReplacePrefixMatch replaces.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Self::Prefix(prefix) => Some(prefix),
            _ => None,
        }
    }

    pub(crate) fn score(&self, path: &str) -> Option<PathScore> {
        match self {
            Self::Exact(value) => (value == path).then_some(PathScore::Exact),
            Self::Prefix(value) => {
                let prefix = value.trim_end_matches('/');
                let rest = path.strip_prefix(prefix)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then_some(PathScore::Prefix(prefix.len()))
            }
            Self::Regex(re) => re.is_match(path).then(|| PathScore::Regex(pattern_len(re))),
        }
    }
}

/// Length of the user's pattern inside the `^(?:` … `)$` wrapper.
fn pattern_len(re: &Regex) -> usize {
    re.as_str().len().saturating_sub("^(?:)$".len())
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == value,
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// The summary of a satisfied match, ordered by the spec's precedence; larger wins.
///
/// Field order is the order of HTTPRouteRule.matches' criteria: path, then "Method match.",
/// then "Largest number of header matches.", then "Largest number of query param matches."
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MatchScore {
    pub(crate) path: PathScore,
    pub(crate) method: bool,
    pub(crate) headers: usize,
    pub(crate) query_params: usize,
}

/// A compiled HTTPRouteMatch.
#[derive(Clone, Debug)]
pub(crate) struct RequestMatch {
    pub(crate) path: PathMatch,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query_params: Vec<(String, ValueMatch)>,
}

/// The parts of a request the matches look at, prepared once per lookup.
pub(crate) struct Prepared<'a> {
    pub(crate) path: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl RequestMatch {
    /// HTTPRouteRule.matches: "If no matches are specified, the default is a prefix path match
    /// on "/", which has the effect of matching every HTTP request."
    pub(crate) fn any() -> Self {
        Self {
            path: PathMatch::Prefix("/".to_owned()),
            method: None,
            headers: Vec::new(),
            query_params: Vec::new(),
        }
    }

    pub(crate) fn compile(
        m: &HttpRouteRulesMatches,
        route: &RouteId,
        rule: usize,
        index: usize,
    ) -> Result<Self, BuildError> {
        let regex = |field: String, pattern: &str| {
            anchored(pattern).map_err(|source| BuildError::InvalidRegex {
                route: route.clone(),
                rule,
                index,
                field,
                source: Box::new(source),
            })
        };

        // HTTPRouteMatch.path: "If this field is not specified, a default prefix match on the
        // "/" path is provided." The CRD defaults type to PathPrefix and value to "/".
        let (kind, value) = m
            .path
            .as_ref()
            .map_or((None, None), |p| (p.r#type.as_ref(), p.value.as_deref()));
        let value = value.unwrap_or("/");
        let kind = kind.unwrap_or(&HttpRouteRulesMatchesPathType::PathPrefix);
        // PathMatchType: "PathPrefix and Exact paths must be syntactically valid: - Must begin
        // with the `/` character".
        if *kind != HttpRouteRulesMatchesPathType::RegularExpression && !value.starts_with('/') {
            return Err(BuildError::InvalidPath {
                route: route.clone(),
                rule,
                index,
                value: value.to_owned(),
            });
        }
        let path = match kind {
            HttpRouteRulesMatchesPathType::RegularExpression => {
                PathMatch::Regex(regex("path".to_owned(), value)?)
            }
            HttpRouteRulesMatchesPathType::Exact => PathMatch::Exact(value.to_owned()),
            HttpRouteRulesMatchesPathType::PathPrefix => PathMatch::Prefix(value.to_owned()),
        };

        let mut headers: Vec<(HeaderName, ValueMatch)> = Vec::new();
        for h in m.headers.iter().flatten() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|source| {
                BuildError::InvalidHeaderName {
                    route: route.clone(),
                    rule,
                    field: format!("matches[{index}].headers"),
                    name: h.name.clone(),
                    source,
                }
            })?;
            // HTTPHeaderMatch.name: "If multiple entries specify equivalent header names, only
            // the first entry with an equivalent name MUST be considered for a match.
            // Subsequent entries with an equivalent header name MUST be ignored."
            if headers.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let value = match h.r#type {
                Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                    ValueMatch::Regex(regex(format!("headers[{name}]"), &h.value)?)
                }
                _ => ValueMatch::Exact(h.value.clone()),
            };
            headers.push((name, value));
        }

        let mut query_params: Vec<(String, ValueMatch)> = Vec::new();
        for q in m.query_params.iter().flatten() {
            // HTTPQueryParamMatch.name: "This must be an exact string match." and, as for
            // headers, only the first entry with an equivalent name is considered.
            if query_params.iter().any(|(n, _)| *n == q.name) {
                continue;
            }
            let value = match q.r#type {
                Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                    ValueMatch::Regex(regex(format!("queryParams[{}]", q.name), &q.value)?)
                }
                _ => ValueMatch::Exact(q.value.clone()),
            };
            query_params.push((q.name.clone(), value));
        }

        Ok(Self {
            path,
            method: m.method.as_ref().map(method),
            headers,
            query_params,
        })
    }

    /// The score of `req` against this match, or `None` when it does not match.
    pub(crate) fn score(&self, req: &Prepared<'_>) -> Option<MatchScore> {
        let path = self.path.score(req.path)?;
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return None;
        }
        if !self
            .headers
            .iter()
            .all(|(name, value)| header_matches(req.headers, name, value))
        {
            return None;
        }
        let query_ok = self.query_params.iter().all(|(name, value)| {
            // HTTPQueryParamMatch.name: "it is *recommended* that implementations should match
            // against the first value of the param".
            req.query
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, v)| value.is_match(v))
        });
        query_ok.then_some(MatchScore {
            path,
            method: self.method.is_some(),
            headers: self.headers.len(),
            query_params: self.query_params.len(),
        })
    }
}

/// Compiles `pattern` to match whole values only. The pattern is first compiled on its own so
/// that one such as `a)|(b` cannot escape the anchoring group.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern)?;
    Regex::new(&format!("^(?:{pattern})$"))
}

fn method(m: &HttpRouteRulesMatchesMethod) -> Method {
    match m {
        HttpRouteRulesMatchesMethod::Get => Method::GET,
        HttpRouteRulesMatchesMethod::Head => Method::HEAD,
        HttpRouteRulesMatchesMethod::Post => Method::POST,
        HttpRouteRulesMatchesMethod::Put => Method::PUT,
        HttpRouteRulesMatchesMethod::Delete => Method::DELETE,
        HttpRouteRulesMatchesMethod::Connect => Method::CONNECT,
        HttpRouteRulesMatchesMethod::Options => Method::OPTIONS,
        HttpRouteRulesMatchesMethod::Trace => Method::TRACE,
        HttpRouteRulesMatchesMethod::Patch => Method::PATCH,
    }
}

/// HTTPHeaderMatch.name: "When a header is repeated in an HTTP request, it is
/// implementation-specific behavior as to how this is represented. Generally, proxies should
/// follow the guidance from the RFC ... with special handling for "Set-Cookie"."
///
/// Repeated fields are combined as RFC 9110 §5.3 does (values joined by `,`), `Cookie` as
/// RFC 9113 §8.2.3 does (joined by `; `), and `Set-Cookie`, which cannot be combined, matches
/// when any one of its values does. A value that is not UTF-8 never matches.
fn header_matches(headers: &HeaderMap, name: &HeaderName, value: &ValueMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    if *name == http::header::SET_COOKIE {
        return headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| value.is_match(v)));
    }
    let Ok(first) = first.to_str() else {
        return false;
    };
    let separator = if *name == http::header::COOKIE {
        "; "
    } else {
        ","
    };
    let mut combined = Cow::Borrowed(first);
    for v in values {
        let Ok(v) = v.to_str() else {
            return false;
        };
        let c = combined.to_mut();
        c.push_str(separator);
        c.push_str(v);
    }
    value.is_match(&combined)
}

/// Splits a query string into `(name, value)` pairs, percent-decoding both (`+` is left as
/// is: it means a space only in HTML form encoding). A pair without `=` has an empty value;
/// bytes that do not decode to UTF-8 are compared undecoded.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap_or(Cow::Borrowed(s))
}

#[cfg(test)]
mod tests;
