//! What the admin endpoint shows of a configuration: `/config` (the effective objects as
//! JSON, Secret data redacted) and `/status` (VIPs, listeners, routes, endpoints and their
//! health), and the table `lbgw status` prints from the latter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, Sourced};
use crate::gateway::{GatewayModel, Resolution};
use crate::ipam::Plan;
use crate::route::BackendRef;

/// What replaces every Secret value.
pub const REDACTED: &str = "<redacted>";

/// The configuration as JSON: every object lbgw uses, by kind, with where it came from.
/// Secrets keep their metadata and type; their `data` and `stringData` values are replaced by
/// [`REDACTED`], and `kubectl.kubernetes.io/last-applied-configuration` annotations (which
/// can hold a Secret's data) are dropped.
pub fn config_json(config: &Config, plan: &Plan) -> Value {
    fn objects<T: Serialize>(list: &[Sourced<T>]) -> Vec<Value> {
        list.iter()
            .map(|o| {
                let mut object = serde_json::to_value(&o.object).unwrap_or(Value::Null);
                if let Some(annotations) = object
                    .pointer_mut("/metadata/annotations")
                    .and_then(Value::as_object_mut)
                {
                    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
                json!({ "source": o.source.to_string(), "object": object })
            })
            .collect()
    }
    let mut secrets = objects(&config.secrets);
    for secret in &mut secrets {
        for field in ["data", "stringData"] {
            if let Some(map) = secret
                .pointer_mut(&format!("/object/{field}"))
                .and_then(Value::as_object_mut)
            {
                for value in map.values_mut() {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
        }
    }
    json!({
        "vips": plan.vips(),
        "gateways": objects(&config.gateways),
        "gatewayClasses": objects(&config.gateway_classes),
        "httpRoutes": objects(&config.http_routes),
        "referenceGrants": objects(&config.reference_grants),
        "services": objects(&config.services),
        "endpointSlices": objects(&config.endpoint_slices),
        "secrets": secrets,
        "ipPools": objects(&config.ip_pools),
    })
}

/// `/status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// Seconds since the last configuration was applied.
    pub config_age_secs: f64,
    /// Whether lbgw is ready (listeners bound, data plane attached).
    pub ready: bool,
    /// The VIPs.
    pub vips: Vec<VipStatus>,
    /// The Gateway listeners.
    pub listeners: Vec<ListenerStatus>,
    /// The HTTPRoutes and their backends.
    pub routes: Vec<RouteStatus>,
}

/// A VIP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VipStatus {
    /// The address.
    pub ip: IpAddr,
    /// The Gateway or Service.
    pub owner: String,
    /// The pool.
    pub pool: String,
    /// Unix seconds since it has been served by this lbgw.
    pub since_unix: u64,
    /// XDP counters, when the data plane runs.
    pub arp_replies: Option<u64>,
    /// IPv6 Neighbor Advertisements sent.
    pub na_replies: Option<u64>,
    /// Whether this node answers ARP/NDP for it now (in Kubernetes mode: holds its Lease),
    /// when the data plane runs.
    #[serde(default)]
    pub announced: Option<bool>,
}

/// A Gateway listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// The listener name.
    pub name: String,
    /// The port.
    pub port: u16,
    /// HTTP or HTTPS.
    pub protocol: String,
    /// The hostname, `*` when unset.
    pub hostname: String,
    /// The socket serving the port.
    pub bound: Option<SocketAddr>,
}

/// An HTTPRoute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouteStatus {
    /// `namespace/name`.
    pub route: String,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}

/// A backendRef of a route.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `namespace/service:port`.
    pub backend: String,
    /// `ok`, `no ready endpoints`, or why it is invalid.
    pub state: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

/// An endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// The address.
    pub endpoint: SocketAddr,
    /// `healthy` or `ejected (Ns left)`.
    pub health: String,
}

/// The static part of `/status` for a configuration; health, counters and readiness are
/// filled in per request.
pub fn status(
    config: &Config,
    plan: &Plan,
    model: &GatewayModel,
    bound: &[(u16, SocketAddr)],
) -> Status {
    let vips = plan
        .vips()
        .into_iter()
        .map(|v| VipStatus {
            ip: v.ip,
            owner: v.owner.to_string(),
            pool: v.pool,
            since_unix: 0,
            arp_replies: None,
            na_replies: None,
            announced: None,
        })
        .collect();
    let listeners = model
        .ports
        .iter()
        .flat_map(|p| p.listeners.iter())
        .map(|l| ListenerStatus {
            gateway: format!("{}/{}", l.gateway.namespace, l.gateway.name),
            name: l.name.clone(),
            port: l.port,
            protocol: format!("{:?}", l.protocol).to_uppercase(),
            hostname: l.hostname.to_string(),
            bound: bound.iter().find(|(p, _)| *p == l.port).map(|(_, a)| *a),
        })
        .collect();
    let routes = config
        .http_routes
        .iter()
        .map(|route| {
            let namespace = &route.id.namespace;
            let mut backends: BTreeMap<String, BackendStatus> = BTreeMap::new();
            let refs = route
                .object
                .spec
                .rules
                .iter()
                .flatten()
                .flat_map(|rule| rule.backend_refs.iter().flatten());
            for r in refs {
                let backend = BackendRef {
                    group: r.group.clone().unwrap_or_default(),
                    kind: r.kind.clone().unwrap_or_else(|| "Service".to_owned()),
                    namespace: r.namespace.clone().unwrap_or_else(|| namespace.clone()),
                    name: r.name.clone(),
                    port: r.port.and_then(|p| u16::try_from(p).ok()),
                };
                let name = format!(
                    "{}/{}:{}",
                    backend.namespace,
                    backend.name,
                    backend.port.map(|p| p.to_string()).unwrap_or_default()
                );
                let (state, endpoints) = match model.backends.resolve(namespace, &backend) {
                    Resolution::Ready(resolved) => ("ok".to_owned(), resolved.endpoints.clone()),
                    Resolution::NoReadyEndpoints => ("no ready endpoints".to_owned(), Vec::new()),
                    Resolution::Invalid { reason, message } => {
                        (format!("{reason}: {message}"), Vec::new())
                    }
                };
                backends.entry(name.clone()).or_insert(BackendStatus {
                    backend: name,
                    state,
                    endpoints: endpoints
                        .into_iter()
                        .map(|endpoint| EndpointStatus {
                            endpoint,
                            health: String::new(),
                        })
                        .collect(),
                });
            }
            RouteStatus {
                route: route
                    .id
                    .to_string()
                    .trim_start_matches("HTTPRoute ")
                    .to_owned(),
                backends: backends.into_values().collect(),
            }
        })
        .collect();
    Status {
        config_age_secs: 0.0,
        ready: false,
        vips,
        listeners,
        routes,
    }
}

/// `lbgw status`: the report as tables.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "ready: {}   config applied {:.0}s ago\n",
        if status.ready { "yes" } else { "NO" },
        status.config_age_secs
    );
    let _ = writeln!(
        out,
        "{:<40} {:<36} {:<16} {:>12} {:>10} {:>10} {:>5}",
        "VIP", "OWNER", "POOL", "SINCE", "ARP", "NA", "HERE"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for v in &status.vips {
        let _ = writeln!(
            out,
            "{:<40} {:<36} {:<16} {:>11}s {:>10} {:>10} {:>5}",
            v.ip.to_string(),
            v.owner,
            v.pool,
            now.saturating_sub(v.since_unix),
            opt(v.arp_replies),
            opt(v.na_replies),
            v.announced.map_or("-", |a| if a { "yes" } else { "no" })
        );
    }
    let _ = writeln!(
        out,
        "\n{:<32} {:<16} {:>6} {:<8} {:<28} BOUND",
        "GATEWAY", "LISTENER", "PORT", "PROTO", "HOSTNAME"
    );
    for l in &status.listeners {
        let _ = writeln!(
            out,
            "{:<32} {:<16} {:>6} {:<8} {:<28} {}",
            l.gateway,
            l.name,
            l.port,
            l.protocol,
            l.hostname,
            l.bound.map_or("-".to_owned(), |a| a.to_string())
        );
    }
    let _ = writeln!(
        out,
        "\n{:<32} {:<32} {:<24} HEALTH",
        "ROUTE", "BACKEND", "ENDPOINT"
    );
    for r in &status.routes {
        if r.backends.is_empty() {
            let _ = writeln!(out, "{:<32} {:<32} {:<24} -", r.route, "-", "-");
        }
        for b in &r.backends {
            if b.endpoints.is_empty() {
                let _ = writeln!(
                    out,
                    "{:<32} {:<32} {:<24} {}",
                    r.route, b.backend, "-", b.state
                );
            }
            for e in &b.endpoints {
                let _ = writeln!(
                    out,
                    "{:<32} {:<32} {:<24} {}",
                    r.route,
                    b.backend,
                    e.endpoint.to_string(),
                    e.health
                );
            }
        }
    }
    out
}
