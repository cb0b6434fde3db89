//! HTTPRouteRule: what a matched request gets (filters, backends, timeouts), compiled and
//! validated together with the rule's matches.

use std::time::Duration;

use gateway_api::apis::standard::httproutes::{
    HttpRouteRules, HttpRouteRulesFilters, HttpRouteRulesTimeouts,
};

use super::retry::RetryPolicy;

use super::error::{BuildError, RouteId};
use super::filters::{self, Filter, FilterCtx, PathModifier};
use super::matches::{PathMatch, RequestMatch};

/// A compiled HTTPRouteRule, without its matches.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `name`, when set.
    pub name: Option<String>,
    /// Filters in list order ("implementations SHOULD implement filters in the order they are
    /// specified").
    pub filters: Vec<Filter>,
    /// The backendRefs. Empty means every matching request gets a 500 unless a filter (a
    /// redirect) answers it: "If *all* entries in BackendRefs are invalid, and there are also
    /// no filters specified in this route rule, *all* traffic which matches this rule MUST
    /// receive a 500 status code."
    pub backends: Vec<Backend>,
    /// GEP-1742 timeouts.
    pub timeouts: Timeouts,
    /// GEP-1731 retries (`retry`, experimental channel; see
    /// [`Config::http_route_retries`](crate::config::Config::http_route_retries)).
    pub retry: Option<RetryPolicy>,
}

impl Rule {
    /// Picks a backend by weight given a uniformly random `u32`; see [`pick_weighted`].
    pub fn pick_backend(&self, random: u32) -> Option<&Backend> {
        pick_weighted(self.backends.iter().map(|b| b.weight), random).map(|i| &self.backends[i])
    }
}

/// A reference to the object traffic goes to (normally a Service).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendRef {
    /// API group, `""` (core) by default.
    pub group: String,
    /// Kind, `Service` by default.
    pub kind: String,
    /// Namespace, the route's by default; a cross-namespace reference needs a ReferenceGrant,
    /// which the proxy checks when it resolves the reference.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Port; required for a Service, and a reference without one is invalid (500s).
    pub port: Option<u16>,
}

impl BackendRef {
    /// `None` when `port` is out of range.
    pub(crate) fn new(
        group: Option<&str>,
        kind: Option<&str>,
        namespace: &str,
        name: &str,
        port: Option<i32>,
    ) -> Option<Self> {
        let port = match port {
            Some(p) => Some(u16::try_from(p).ok().filter(|p| *p != 0)?),
            None => None,
        };
        Some(Self {
            group: group.unwrap_or("").to_owned(),
            kind: kind.unwrap_or("Service").to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        })
    }
}

/// A weighted backendRef and its own filters.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The object.
    pub backend: BackendRef,
    /// HTTPBackendRef.weight: "If unspecified, weight defaults to 1." 0 receives no traffic.
    pub weight: u32,
    /// Filters applied only to requests sent to this backend, after the rule's.
    pub filters: Vec<Filter>,
}

/// A GEP-1742 timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Timeout {
    /// Not configured: "When this field is unspecified, request timeout behavior is
    /// implementation-specific."
    #[default]
    Unset,
    /// "Setting a timeout to the zero duration (e.g. "0s") SHOULD disable the timeout
    /// completely."
    Disabled,
    /// Give up after this long.
    After(Duration),
}

/// HTTPRouteTimeouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// "the maximum duration for a gateway to respond to an HTTP request."
    pub request: Timeout,
    /// "a timeout for an individual request from the gateway to a backend."
    pub backend_request: Timeout,
}

/// Picks an index by weight, given a uniformly random `u32`.
///
/// HTTPBackendRef.weight: "Weight specifies the proportion of requests forwarded to the
/// referenced backend. This is computed as weight/(sum of all weights in this BackendRefs
/// list)." and "If weight is set to 0, no traffic should be forwarded for this entry." With
/// every weight 0 there is no choice (the proxy answers 500). `random` is scaled to the total
/// by multiply-and-shift, so each index gets its share within 1/2^32.
pub fn pick_weighted<I>(weights: I, random: u32) -> Option<usize>
where
    I: IntoIterator<Item = u32>,
    I::IntoIter: Clone,
{
    let weights = weights.into_iter();
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut target = (u64::from(random) * total) >> 32;
    for (i, w) in weights.enumerate() {
        let w = u64::from(w);
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    None
}

/// A rule with its matches, as kept in the table.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    /// Index in `spec.rules`.
    pub(crate) index: usize,
    pub(crate) matches: Vec<RequestMatch>,
    pub(crate) rule: Rule,
}

/// Compiles `spec.rules[index]` of `route`, whose namespace backendRefs default to.
pub(crate) fn compile(
    r: &HttpRouteRules,
    route: &RouteId,
    index: usize,
) -> Result<CompiledRule, BuildError> {
    let matches = match r.matches.as_deref() {
        None | Some([]) => vec![RequestMatch::any()],
        Some(ms) => ms
            .iter()
            .enumerate()
            .map(|(i, m)| RequestMatch::compile(m, route, index, i))
            .collect::<Result<_, _>>()?,
    };
    let incompatible = |reason: String| BuildError::IncompatibleFilters {
        route: route.clone(),
        rule: index,
        reason,
    };
    let compile_filters =
        |list: &[HttpRouteRulesFilters], field: &str| -> Result<Vec<Filter>, BuildError> {
            let filters = list
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let ctx = FilterCtx {
                        route,
                        rule: index,
                        field: format!("{field}[{i}]"),
                        namespace: &route.namespace,
                    };
                    filters::compile(f, &ctx)
                })
                .collect::<Result<Vec<_>, _>>()?;
            check_filter_set(&filters, &matches)
                .map_err(|reason| incompatible(format!("{field}: {reason}")))?;
            Ok(filters)
        };

    let filters = compile_filters(r.filters.as_deref().unwrap_or_default(), "filters")?;
    let mut backends = Vec::new();
    for (i, b) in r.backend_refs.iter().flatten().enumerate() {
        let invalid = |reason: String| BuildError::InvalidBackend {
            route: route.clone(),
            rule: index,
            backend: i,
            reason,
        };
        let backend = BackendRef::new(
            b.group.as_deref(),
            b.kind.as_deref(),
            b.namespace.as_deref().unwrap_or(&route.namespace),
            &b.name,
            b.port,
        )
        .ok_or_else(|| invalid(format!("port {} out of range", b.port.unwrap_or_default())))?;
        // HTTPBackendRef.weight: "+kubebuilder:validation:Minimum=0" and "Maximum=1000000".
        let weight = match b.weight {
            None => 1,
            Some(w @ 0..=1_000_000) => w.unsigned_abs(),
            Some(w) => return Err(invalid(format!("weight {w} outside 0..=1000000"))),
        };
        let own: Vec<HttpRouteRulesFilters> = b
            .filters
            .iter()
            .flatten()
            .map(filters::convert)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("filters: {e}")))?;
        let filters = compile_filters(&own, &format!("backendRefs[{i}].filters"))?;
        backends.push(Backend {
            backend,
            weight,
            filters,
        });
    }
    // HTTPRouteRule: "RequestRedirect filter must not be used together with backendRefs".
    if !backends.is_empty()
        && filters
            .iter()
            .any(|f| matches!(f, Filter::RequestRedirect(_)))
    {
        return Err(incompatible(
            "RequestRedirect filter must not be used together with backendRefs".into(),
        ));
    }

    Ok(CompiledRule {
        index,
        matches,
        rule: Rule {
            name: r.name.clone(),
            filters,
            backends,
            timeouts: timeouts(r.timeouts.as_ref(), route, index)?,
            retry: None,
        },
    })
}

/// Checks one filter list against the spec's combination rules.
fn check_filter_set(filters: &[Filter], matches: &[RequestMatch]) -> Result<(), String> {
    let kind = |f: &Filter| -> Option<&'static str> {
        match f {
            Filter::RequestHeaderModifier(_) => Some("RequestHeaderModifier"),
            Filter::ResponseHeaderModifier(_) => Some("ResponseHeaderModifier"),
            Filter::RequestRedirect(_) => Some("RequestRedirect"),
            Filter::UrlRewrite(_) => Some("URLRewrite"),
            Filter::Cors(_) => Some("CORS"),
            // "This filter can be used multiple times within the same rule."
            Filter::RequestMirror(_) | Filter::ExtensionRef { .. } => None,
        }
    };
    // HTTPRouteRule.filters: "Specifying the same filter multiple times is not supported
    // unless explicitly indicated in the filter."
    let kinds: Vec<&str> = filters.iter().filter_map(kind).collect();
    if let Some(dup) = kinds
        .iter()
        .enumerate()
        .find(|(i, k)| kinds[..*i].contains(k))
    {
        return Err(format!("{} filter cannot be repeated", dup.1));
    }
    // "All filters are expected to be compatible with each other except for the URLRewrite
    // and RequestRedirect filters, which may not be combined."
    if kinds.contains(&"RequestRedirect") && kinds.contains(&"URLRewrite") {
        return Err("URLRewrite and RequestRedirect filters may not be combined".into());
    }
    // HTTPPathModifier.replacePrefixMatch: "ReplacePrefixMatch is only compatible with a
    // `PathPrefix` HTTPRouteMatch. Using any other HTTPRouteMatch type on the same
    // HTTPRouteRule will result in the implementation setting the Accepted Condition for the
    // Route to `status: False`."
    let replaces_prefix = filters.iter().any(|f| {
        let path = match f {
            Filter::RequestRedirect(r) => r.path.as_ref(),
            Filter::UrlRewrite(r) => r.path.as_ref(),
            _ => None,
        };
        matches!(path, Some(PathModifier::ReplacePrefixMatch(_)))
    });
    if replaces_prefix
        && !matches
            .iter()
            .all(|m| matches!(m.path, PathMatch::Prefix(_)))
    {
        return Err("ReplacePrefixMatch is only compatible with PathPrefix matches".into());
    }
    Ok(())
}

fn timeouts(
    t: Option<&HttpRouteRulesTimeouts>,
    route: &RouteId,
    rule: usize,
) -> Result<Timeouts, BuildError> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    let parse =
        |field: &'static str, value: Option<&String>| -> Result<(Timeout, Duration), BuildError> {
            let Some(value) = value else {
                return Ok((Timeout::Unset, Duration::ZERO));
            };
            let invalid = |reason: String| BuildError::InvalidTimeout {
                route: route.clone(),
                rule,
                field,
                value: value.clone(),
                reason,
            };
            // GEP-2257: "^([0-9]{1,5}(h|m|s|ms)){1,4}$", parsed by gateway-api's Duration.
            let d: gateway_api::Duration = value.parse().map_err(invalid)?;
            let d = Duration::from_millis(
                u64::try_from(d.as_millis()).map_err(|e| invalid(e.to_string()))?,
            );
            Ok((
                if d.is_zero() {
                    Timeout::Disabled
                } else {
                    Timeout::After(d)
                },
                d,
            ))
        };
    let (request, request_d) = parse("request", t.request.as_ref())?;
    let (backend_request, backend_d) = parse("backendRequest", t.backend_request.as_ref())?;
    // HTTPRouteTimeouts: "backendRequest timeout cannot be longer than request timeout"
    // (unless the request timeout is disabled).
    if let (Timeout::After(_), Timeout::After(_)) = (request, backend_request)
        && backend_d > request_d
    {
        return Err(BuildError::InvalidTimeout {
            route: route.clone(),
            rule,
            field: "backendRequest",
            value: t.backend_request.clone().unwrap_or_default(),
            reason: format!(
                "longer than the request timeout {}",
                t.request.clone().unwrap_or_default()
            ),
        });
    }
    Ok(Timeouts {
        request,
        backend_request,
    })
}

#[cfg(test)]
mod tests;
