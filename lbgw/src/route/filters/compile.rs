//! Compiling HTTPRouteFilters from the Gateway API types, with the spec's validation.

use std::fmt;

use gateway_api::apis::standard::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestHeaderModifier,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPathType, HttpRouteRulesFiltersRequestRedirectScheme,
    HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewrite,
    HttpRouteRulesFiltersUrlRewritePathType,
};
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::{
    Filter, HeaderModifier, PathModifier, RequestMirror, RequestRedirect, Scheme, UrlRewrite,
};
use crate::route::BackendRef;
use crate::route::error::{BuildError, RouteId};

/// Where in a route a filter list sits, for errors.
pub(crate) struct FilterCtx<'a> {
    pub(crate) route: &'a RouteId,
    pub(crate) rule: usize,
    /// `filters[1]` or `backendRefs[0].filters[1]`.
    pub(crate) field: String,
    /// Namespace backendRefs default to.
    pub(crate) namespace: &'a str,
}

impl FilterCtx<'_> {
    fn unsupported(&self, field: &str, value: impl fmt::Display) -> BuildError {
        BuildError::UnsupportedValue {
            route: self.route.clone(),
            rule: self.rule,
            field: format!("{}.{field}", self.field),
            value: value.to_string(),
        }
    }
}

/// Compiles one filter. Backend-level filters are converted to the rule-level type first:
/// both are the same schema.
pub(crate) fn compile(
    f: &HttpRouteRulesFilters,
    ctx: &FilterCtx<'_>,
) -> Result<Filter, BuildError> {
    let missing = |field: &str| ctx.unsupported("type", format!("{:?} without {field}", f.r#type));
    Ok(match f.r#type {
        HttpRouteRulesFiltersType::RequestHeaderModifier => {
            Filter::RequestHeaderModifier(header_modifier(
                f.request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("requestHeaderModifier"))?,
                ctx,
                "requestHeaderModifier",
            )?)
        }
        HttpRouteRulesFiltersType::ResponseHeaderModifier => {
            // Same schema as the request modifier; converted through serde.
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or_else(|| missing("responseHeaderModifier"))?;
            let m: HttpRouteRulesFiltersRequestHeaderModifier =
                convert(m).map_err(|e| ctx.unsupported("responseHeaderModifier", e))?;
            Filter::ResponseHeaderModifier(header_modifier(&m, ctx, "responseHeaderModifier")?)
        }
        HttpRouteRulesFiltersType::RequestRedirect => Filter::RequestRedirect(redirect(
            f.request_redirect
                .as_ref()
                .ok_or_else(|| missing("requestRedirect"))?,
            ctx,
        )?),
        HttpRouteRulesFiltersType::UrlRewrite => Filter::UrlRewrite(rewrite(
            f.url_rewrite
                .as_ref()
                .ok_or_else(|| missing("urlRewrite"))?,
            ctx,
        )?),
        HttpRouteRulesFiltersType::RequestMirror => Filter::RequestMirror(mirror(
            f.request_mirror
                .as_ref()
                .ok_or_else(|| missing("requestMirror"))?,
            ctx,
        )?),
        HttpRouteRulesFiltersType::Cors => {
            Filter::Cors(f.cors.clone().ok_or_else(|| missing("cors"))?)
        }
        HttpRouteRulesFiltersType::ExtensionRef => {
            let e = f
                .extension_ref
                .as_ref()
                .ok_or_else(|| missing("extensionRef"))?;
            Filter::ExtensionRef {
                group: e.group.clone(),
                kind: e.kind.clone(),
                name: e.name.clone(),
            }
        }
    })
}

/// Converts between generated types that share one JSON schema.
pub(crate) fn convert<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    a: &A,
) -> Result<B, serde_json::Error> {
    serde_json::to_value(a).and_then(serde_json::from_value)
}

fn header_modifier(
    m: &HttpRouteRulesFiltersRequestHeaderModifier,
    ctx: &FilterCtx<'_>,
    kind: &str,
) -> Result<HeaderModifier, BuildError> {
    let name = |list: &str, name: &str| {
        HeaderName::from_bytes(name.as_bytes()).map_err(|source| BuildError::InvalidHeaderName {
            route: ctx.route.clone(),
            rule: ctx.rule,
            field: format!("{}.{kind}.{list}", ctx.field),
            name: name.to_owned(),
            source,
        })
    };
    let pairs = |list: &str,
                 entries: Vec<(&String, &String)>|
     -> Result<Vec<(HeaderName, HeaderValue)>, BuildError> {
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (n, v) in entries {
            let header = name(list, n)?;
            // HTTPHeader.name: "If multiple entries specify equivalent header names, the
            // first entry with an equivalent name MUST be considered for a match. Subsequent
            // entries with an equivalent header name MUST be ignored."
            if out.iter().any(|(existing, _)| *existing == header) {
                continue;
            }
            let value =
                HeaderValue::from_str(v).map_err(|source| BuildError::InvalidHeaderValue {
                    route: ctx.route.clone(),
                    rule: ctx.rule,
                    field: format!("{}.{kind}.{list}", ctx.field),
                    name: n.clone(),
                    source,
                })?;
            out.push((header, value));
        }
        Ok(out)
    };
    let set = pairs(
        "set",
        m.set
            .iter()
            .flatten()
            .map(|h| (&h.name, &h.value))
            .collect(),
    )?;
    let add = pairs(
        "add",
        m.add
            .iter()
            .flatten()
            .map(|h| (&h.name, &h.value))
            .collect(),
    )?;
    let mut remove: Vec<HeaderName> = Vec::new();
    for n in m.remove.iter().flatten() {
        let header = name("remove", n)?;
        if !remove.contains(&header) {
            remove.push(header);
        }
    }
    // HTTPHeaderFilter: "Only one action for a given header name is permitted. Filters
    // specifying multiple actions of the same or different type for any one header name are
    // invalid."
    let names = set
        .iter()
        .map(|(n, _)| n)
        .chain(add.iter().map(|(n, _)| n))
        .chain(&remove);
    let mut seen: Vec<&HeaderName> = Vec::new();
    for n in names {
        if seen.contains(&n) {
            return Err(BuildError::IncompatibleFilters {
                route: ctx.route.clone(),
                rule: ctx.rule,
                reason: format!(
                    "{}.{kind} has more than one action for header {n}",
                    ctx.field
                ),
            });
        }
        seen.push(n);
    }
    Ok(HeaderModifier { set, add, remove })
}

fn path_modifier(
    kind: bool,
    full: Option<&String>,
    prefix: Option<&String>,
    ctx: &FilterCtx<'_>,
    field: &str,
) -> Result<PathModifier, BuildError> {
    // `kind` is true for ReplaceFullPath. HTTPPathModifier: "replaceFullPath must be specified
    // when type is set to 'ReplaceFullPath'" (and likewise for ReplacePrefixMatch).
    match (kind, full, prefix) {
        (true, Some(full), _) => Ok(PathModifier::ReplaceFullPath(full.clone())),
        (false, _, Some(prefix)) => Ok(PathModifier::ReplacePrefixMatch(prefix.clone())),
        (true, ..) => Err(ctx.unsupported(field, "ReplaceFullPath without replaceFullPath")),
        (false, ..) => Err(ctx.unsupported(field, "ReplacePrefixMatch without replacePrefixMatch")),
    }
}

fn redirect(
    r: &HttpRouteRulesFiltersRequestRedirect,
    ctx: &FilterCtx<'_>,
) -> Result<RequestRedirect, BuildError> {
    let path = r
        .path
        .as_ref()
        .map(|p| {
            let full = p.r#type == HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath;
            path_modifier(
                full,
                p.replace_full_path.as_ref(),
                p.replace_prefix_match.as_ref(),
                ctx,
                "requestRedirect.path",
            )
        })
        .transpose()?;
    let port = r
        .port
        .map(|p| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ctx.unsupported("requestRedirect.port", p))
        })
        .transpose()?;
    // HTTPRequestRedirectFilter.statusCode: "+kubebuilder:default=302" and "Unknown values
    // here must result in the implementation setting the Accepted Condition for the Route to
    // `status: False`, with a Reason of `UnsupportedValue`."
    let status = match r.status_code.unwrap_or(302) {
        301 => StatusCode::MOVED_PERMANENTLY,
        302 => StatusCode::FOUND,
        303 => StatusCode::SEE_OTHER,
        307 => StatusCode::TEMPORARY_REDIRECT,
        308 => StatusCode::PERMANENT_REDIRECT,
        code => return Err(ctx.unsupported("requestRedirect.statusCode", code)),
    };
    Ok(RequestRedirect {
        scheme: r.scheme.as_ref().map(|s| match s {
            HttpRouteRulesFiltersRequestRedirectScheme::Http => Scheme::Http,
            HttpRouteRulesFiltersRequestRedirectScheme::Https => Scheme::Https,
        }),
        hostname: r.hostname.clone(),
        path,
        port,
        status,
    })
}

fn rewrite(
    r: &HttpRouteRulesFiltersUrlRewrite,
    ctx: &FilterCtx<'_>,
) -> Result<UrlRewrite, BuildError> {
    let path = r
        .path
        .as_ref()
        .map(|p| {
            let full = p.r#type == HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath;
            path_modifier(
                full,
                p.replace_full_path.as_ref(),
                p.replace_prefix_match.as_ref(),
                ctx,
                "urlRewrite.path",
            )
        })
        .transpose()?;
    Ok(UrlRewrite {
        hostname: r.hostname.clone(),
        path,
    })
}

fn mirror(
    m: &HttpRouteRulesFiltersRequestMirror,
    ctx: &FilterCtx<'_>,
) -> Result<RequestMirror, BuildError> {
    let b = &m.backend_ref;
    let backend = BackendRef::new(
        b.group.as_deref(),
        b.kind.as_deref(),
        b.namespace.as_deref().unwrap_or(ctx.namespace),
        &b.name,
        b.port,
    )
    .ok_or_else(|| ctx.unsupported("requestMirror.backendRef.port", b.port.unwrap_or_default()))?;
    // HTTPRequestMirrorFilter: "Only one of Fraction or Percent may be specified. If neither
    // field is specified, 100% of requests will be mirrored."
    let fraction = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(ctx.unsupported("requestMirror", "both percent and fraction"));
        }
        (Some(p @ 0..=100), None) => (p as u32, 100),
        (Some(p), None) => return Err(ctx.unsupported("requestMirror.percent", p)),
        (None, Some(f)) => {
            let denominator = f.denominator.unwrap_or(100);
            if f.numerator < 0 || denominator <= 0 || f.numerator > denominator {
                return Err(ctx.unsupported(
                    "requestMirror.fraction",
                    format!("{}/{denominator}", f.numerator),
                ));
            }
            (f.numerator as u32, denominator as u32)
        }
        (None, None) => (1, 1),
    };
    Ok(RequestMirror { backend, fraction })
}
