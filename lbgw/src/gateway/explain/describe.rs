//! Text for what a matched rule does: its match as configured, filters with their effect on
//! the request, and backend resolutions.

use http::{HeaderName, HeaderValue};

use crate::config::Config;
use crate::gateway::backend::Resolution;
use crate::gateway::{GatewayModel, UpstreamProtocol};
use crate::route::{Filter, HeaderModifier, Match, PathModifier, RequestParts};

/// The rule's match as configured, as JSON (or a note for a rule without matches).
pub(super) fn raw_match(config: &Config, m: &Match<'_>) -> String {
    let configured = config
        .http_routes
        .iter()
        .find(|r| r.id.namespace == m.route.namespace && r.id.name == m.route.name)
        .and_then(|r| r.object.spec.rules.as_ref()?.get(m.rule_index))
        .and_then(|rule| rule.matches.as_ref()?.get(m.match_index));
    match configured.map(serde_json::to_string) {
        Some(Ok(json)) => json,
        _ => "(no matches: every request)".to_owned(),
    }
}

pub(super) fn describe_filter(
    f: &Filter,
    m: &Match<'_>,
    parts: &RequestParts<'_>,
    model: &GatewayModel,
) -> String {
    match f {
        Filter::RequestHeaderModifier(h) => format!("RequestHeaderModifier: {}", headers(h)),
        Filter::ResponseHeaderModifier(h) => format!("ResponseHeaderModifier: {}", headers(h)),
        Filter::RequestRedirect(r) => format!(
            "RequestRedirect: {} Location: {}",
            r.status.as_u16(),
            r.location(&m.redirect_request(parts))
        ),
        Filter::UrlRewrite(u) => {
            let mut changes = Vec::new();
            if let Some(host) = &u.hostname {
                changes.push(format!("Host → {host}"));
            }
            if let Some(path) = &u.path {
                let kind = match path {
                    PathModifier::ReplaceFullPath(_) => "ReplaceFullPath",
                    PathModifier::ReplacePrefixMatch(_) => "ReplacePrefixMatch",
                };
                changes.push(format!(
                    "path {} → {} ({kind})",
                    parts.path,
                    path.apply(parts.path, m.matched_prefix())
                ));
            }
            format!("URLRewrite: {}", changes.join(", "))
        }
        Filter::RequestMirror(mirror) => {
            let b = &mirror.backend;
            let port = b.port.map(|p| format!(" port {p}")).unwrap_or_default();
            format!(
                "RequestMirror: {}/{} of requests to {} {}/{}{port} → {}",
                mirror.fraction.0,
                mirror.fraction.1,
                b.kind,
                b.namespace,
                b.name,
                describe_resolution(&model.backends.resolve(&m.route.namespace, b))
            )
        }
        Filter::Cors(_) => "CORS".to_owned(),
        Filter::ExtensionRef { group, kind, name } => {
            format!("ExtensionRef {kind}.{group} {name}: not supported, requests get 500")
        }
    }
}

fn headers(h: &HeaderModifier) -> String {
    let pairs = |list: &[(HeaderName, HeaderValue)]| {
        list.iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !h.set.is_empty() {
        parts.push(format!("set {}", pairs(&h.set)));
    }
    if !h.add.is_empty() {
        parts.push(format!("add {}", pairs(&h.add)));
    }
    if !h.remove.is_empty() {
        let names: Vec<&str> = h.remove.iter().map(HeaderName::as_str).collect();
        parts.push(format!("remove {}", names.join(", ")));
    }
    parts.join("; ")
}

pub(super) fn describe_resolution(r: &Resolution) -> String {
    match r {
        Resolution::Ready(b) => {
            let protocol = match b.protocol {
                UpstreamProtocol::Http1 => "HTTP/1.1",
                UpstreamProtocol::H2c => "h2c",
            };
            format!("{} ({protocol})", list(&b.endpoints))
        }
        Resolution::NoReadyEndpoints => "no ready endpoints: 503".to_owned(),
        Resolution::Invalid { reason, message } => format!("invalid ({reason}): {message}: 500"),
    }
}

pub(super) fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
