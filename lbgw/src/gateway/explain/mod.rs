//! `lbgw route`: what the proxy would do with a request, without serving it. The same lookups
//! as the proxy ([`RouteTable::find`], [`BackendTable::resolve`]) on the same model, explained
//! line by line.
//!
//! [`RouteTable::find`]: crate::route::RouteTable::find
//! [`BackendTable::resolve`]: crate::gateway::BackendTable::resolve

use std::{fmt, net::IpAddr};

use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;
use http::{HeaderMap, Method, Uri};

mod describe;

use self::describe::{describe_filter, describe_resolution, list, raw_match};
use super::backend::Resolution;
use super::status::{GatewayStatus, condition};
use super::{GatewayId, GatewayModel, ListenerModel};
use crate::config::Config;
use crate::route::hostname::normalize_host;
use crate::route::{Filter, GatewayRef, ListenerRef, Match, RequestParts, RouteTable, Scheme};

/// Why a request cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The URL is not absolute `http://` or `https://`.
    #[error("URL {0:?} must start with http:// or https://")]
    Scheme(String),
    /// The URL has no host.
    #[error("URL {0:?} has no host")]
    NoHost(String),
}

/// A request to explain.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The URL scheme: which kind of listener the request is for.
    pub scheme: Scheme,
    /// The port connected to (the URL's, else the scheme's well-known port).
    pub port: u16,
    /// The address connected to, when the URL host is an IP literal: selects the Gateway
    /// owning that VIP.
    pub address: Option<IpAddr>,
    /// The host routed on: the `Host` header if given, else the URL host.
    pub host: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// Only this Gateway.
    pub gateway: Option<&'a GatewayId>,
}

impl<'a> Request<'a> {
    /// The request for `url` with `method` and `headers`.
    pub fn new(
        url: &'a Uri,
        method: &'a Method,
        headers: &'a HeaderMap,
        gateway: Option<&'a GatewayId>,
    ) -> Result<Self, RequestError> {
        let scheme = match url.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(RequestError::Scheme(url.to_string())),
        };
        let url_host = url
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| RequestError::NoHost(url.to_string()))?;
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(url_host);
        Ok(Self {
            scheme,
            port: url.port_u16().unwrap_or(scheme.default_port()),
            address: url_host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok(),
            host,
            path: url.path(),
            query: url.query(),
            method,
            headers,
            gateway,
        })
    }
}

/// What the proxy would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Whether a route matched.
    pub matched: bool,
    /// The status the proxy would answer with itself (404 no route, 3xx redirect, 500 invalid
    /// backends, 503 no ready endpoints), or `None` when it forwards the request.
    pub answer: Option<u16>,
    /// The explanation, line by line.
    pub lines: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Explains `req` against `model` (built from `config`, with `status`).
pub fn explain(
    model: &GatewayModel,
    status: &GatewayStatus,
    config: &Config,
    req: &Request<'_>,
) -> Explanation {
    let mut out = Explanation {
        matched: false,
        answer: None,
        lines: Vec::new(),
    };
    let host = normalize_host(req.host);
    let on_port: Vec<&ListenerModel> = model
        .listeners()
        .filter(|l| l.port == req.port)
        .filter(|l| req.gateway.is_none_or(|g| *g == l.gateway))
        .collect();
    let by_address: Vec<&ListenerModel> = match req.address {
        Some(ip) => on_port
            .iter()
            .copied()
            .filter(|l| l.addresses.contains(&ip))
            .collect(),
        None => Vec::new(),
    };
    let candidates = if by_address.is_empty() {
        if let Some(ip) = req.address.filter(|_| !on_port.is_empty()) {
            out.lines.push(format!(
                "{ip} is not the VIP of a Gateway listening on port {}: trying every Gateway (as with --no-xdp)",
                req.port
            ));
        }
        on_port
    } else {
        by_address
    };

    // Listener isolation: on each Gateway, the listener whose hostname matches the host most
    // specifically (as RouteTable::find chooses it by port).
    let mut gateways: Vec<&GatewayId> = candidates.iter().map(|l| &l.gateway).collect();
    gateways.dedup();
    let chosen: Vec<&ListenerModel> = gateways
        .iter()
        .filter_map(|gw| {
            candidates
                .iter()
                .filter(|l| l.gateway == **gw)
                .filter_map(|l| l.hostname.listener_score(&host).map(|s| (s, *l)))
                .rev()
                .max_by_key(|(s, _)| *s)
                .map(|(_, l)| l)
        })
        .collect();
    let Some(first) = chosen.first() else {
        not_served(
            &mut out,
            model,
            status,
            config,
            req,
            &host,
            !candidates.is_empty(),
        );
        return out;
    };
    if chosen.len() > 1 {
        out.lines.push(format!(
            "{} Gateways serve this host on port {}: the first whose routes match is shown (pick one with --gateway or a VIP as URL host)",
            chosen.len(),
            req.port
        ));
    }
    // The Gateway actually addressed is unknown without a VIP: the first with a matching
    // route, else the first.
    let listener = chosen
        .iter()
        .find(|l| l.protocol.scheme() == req.scheme && model.routes.find(&parts(l, req)).is_some())
        .unwrap_or(first);
    out.lines.push(format!(
        "Gateway {} listener {} ({} port {}, hostname {}), addresses {}",
        listener.gateway,
        listener.name,
        listener.protocol,
        listener.port,
        listener.hostname,
        list(&listener.addresses)
    ));
    if listener.protocol.scheme() != req.scheme {
        out.lines.push(format!(
            "the listener speaks {}, not {}: the request would fail",
            listener.protocol, req.scheme
        ));
        return out;
    }
    let parts = parts(listener, req);
    let Some(m) = model.routes.find(&parts) else {
        out.lines.push("no route matches: 404".to_owned());
        out.answer = Some(404);
        return out;
    };
    out.matched = true;
    explain_match(&mut out, model, config, &parts, &m);
    out
}

/// What routing sees of `req` on `listener`.
fn parts<'a>(listener: &'a ListenerModel, req: &Request<'a>) -> RequestParts<'a> {
    RequestParts {
        gateway: GatewayRef {
            namespace: &listener.gateway.namespace,
            name: &listener.gateway.name,
        },
        listener: ListenerRef::Name(&listener.name),
        host: req.host,
        path: req.path,
        query: req.query,
        method: req.method,
        headers: req.headers,
    }
}

/// Why no programmed listener serves the request: the listeners that would, were they
/// programmed, and what the first of them would do then. `listening`: some programmed
/// listener has the port (so the proxy answers).
fn not_served(
    out: &mut Explanation,
    model: &GatewayModel,
    status: &GatewayStatus,
    config: &Config,
    req: &Request<'_>,
    host: &str,
    listening: bool,
) {
    let mut hypothetical = None;
    for gw in &status.gateways {
        if req.gateway.is_some_and(|g| *g != gw.id) {
            continue;
        }
        for l in &gw.listeners {
            let hostname = l
                .hostname
                .as_deref()
                .map_or(crate::route::Hostname::Any, crate::route::Hostname::parse);
            let problems: Vec<String> = l
                .conditions
                .iter()
                .filter(|c| c.is_problem())
                .map(ToString::to_string)
                .collect();
            if l.port == i32::from(req.port) && hostname.matches(host) && !problems.is_empty() {
                out.lines.push(format!(
                    "Gateway {} listener {} (port {}) is not programmed: {}",
                    gw.id,
                    l.name,
                    l.port,
                    problems.join("; ")
                ));
                let accepted = condition(&l.conditions, "Accepted").is_some_and(|c| c.status);
                if accepted && hypothetical.is_none() {
                    hypothetical = Some((&gw.id, l.name.as_str()));
                }
            }
        }
    }
    if let Some((gw, listener)) = hypothetical {
        // Only the listener's references are missing: show the route it would serve.
        let gateways: Vec<Gateway> = config
            .managed_gateways()
            .filter(|g| g.id == gw.object_ref())
            .map(|g| {
                let mut g = g.object.clone();
                g.spec.listeners.retain(|l| l.name == listener);
                g
            })
            .collect();
        let routes: Vec<HttpRoute> = config
            .http_routes
            .iter()
            .map(|r| r.object.clone())
            .collect();
        let (table, _) = RouteTable::build(&gateways, &routes, &[], &config.http_route_retries);
        let parts = RequestParts {
            gateway: GatewayRef {
                namespace: &gw.namespace,
                name: &gw.name,
            },
            listener: ListenerRef::Name(listener),
            host: req.host,
            path: req.path,
            query: req.query,
            method: req.method,
            headers: req.headers,
        };
        if let Some(m) = table.find(&parts) {
            out.lines
                .push(format!("were listener {listener} programmed:"));
            let mut then = Explanation {
                matched: true,
                answer: None,
                lines: Vec::new(),
            };
            explain_match(&mut then, model, config, &parts, &m);
            out.lines
                .extend(then.lines.into_iter().map(|l| format!("  {l}")));
        }
    }
    if listening {
        // GatewaySpec.listeners: "If traffic to a Gateway does not match any Listener's
        // hostname ... the request MUST be rejected. ... HTTP returns a 404 status code".
        out.lines.push(format!(
            "no listener on port {} matches host {host}: no route matches: 404",
            req.port
        ));
        out.answer = Some(404);
    } else {
        out.lines.push(format!(
            "no programmed listener on port {}: no route matches (the connection would be refused)",
            req.port
        ));
    }
}

fn explain_match(
    out: &mut Explanation,
    model: &GatewayModel,
    config: &Config,
    parts: &RequestParts<'_>,
    m: &Match<'_>,
) {
    let rule_name = m
        .rule
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    out.lines.push(format!(
        "route HTTPRoute {} rule {}{rule_name} match {}: {}",
        m.route,
        m.rule_index,
        m.match_index,
        raw_match(config, m)
    ));
    if !m.rule.filters.is_empty() {
        out.lines.push("filters:".to_owned());
        for f in &m.rule.filters {
            out.lines
                .push(format!("  {}", describe_filter(f, m, parts, model)));
        }
    }
    if let Some(status) = m.rule.filters.iter().find_map(|f| match f {
        Filter::RequestRedirect(r) => Some(r.status.as_u16()),
        _ => None,
    }) {
        out.lines
            .push(format!("→ the gateway answers {status} (redirect)"));
        out.answer = Some(status);
        return;
    }
    if m.rule
        .filters
        .iter()
        .any(|f| matches!(f, Filter::ExtensionRef { .. }))
    {
        out.lines
            .push("→ 500: the rule has a filter lbgw does not support".to_owned());
        out.answer = Some(500);
        return;
    }
    let total: u64 = m.rule.backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        // HTTPRouteRule.backendRefs: "If *all* entries in BackendRefs are invalid, and there
        // are also no filters specified in this route rule, *all* traffic which matches this
        // rule MUST receive a 500 status code."
        out.lines
            .push("→ 500: no backendRefs with a weight above 0".to_owned());
        out.answer = Some(500);
        return;
    }
    out.lines.push("backends:".to_owned());
    let (mut ready, mut unavailable) = (0u64, 0u64);
    for b in &m.rule.backends {
        let share = u64::from(b.weight) * 100 / total;
        let port = b
            .backend
            .port
            .map(|p| format!(" port {p}"))
            .unwrap_or_default();
        out.lines.push(format!(
            "  {} {}/{}{port}  weight {} ({share}%)",
            b.backend.kind, b.backend.namespace, b.backend.name, b.weight
        ));
        for f in &b.filters {
            out.lines.push(format!(
                "    filter {}",
                describe_filter(f, m, parts, model)
            ));
        }
        let resolution = model.backends.resolve(&m.route.namespace, &b.backend);
        out.lines
            .push(format!("    → {}", describe_resolution(&resolution)));
        match resolution {
            Resolution::Ready(_) => ready += u64::from(b.weight),
            Resolution::NoReadyEndpoints => unavailable += u64::from(b.weight),
            Resolution::Invalid { .. } => {}
        }
    }
    out.answer = if ready > 0 {
        None
    } else if unavailable > 0 {
        Some(503)
    } else {
        Some(500)
    };
}
