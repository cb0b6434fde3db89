//! The Gateway API data plane model: what the proxy serves, compiled from the configuration,
//! and the status a Gateway controller would write for it.
//!
//! [`GatewayModel::build`] takes the loaded [`Config`] and the IPAM [`Plan`] and produces
//! - the listeners to serve, grouped by port ([`PortModel`]), each with the Gateway's VIPs and,
//!   for HTTPS, its certificate;
//! - the routing table ([`RouteTable`]) over the programmed listeners;
//! - the backend table ([`BackendTable`]): Services resolved to ready endpoints;
//! - a [`status::GatewayStatus`] report: the Gateway, listener and HTTPRoute conditions.
//!
//! The data path through the module:
//! - `listener`: listener validation (protocol, conflicts, allowed kinds) and TLS certificates;
//! - `tls`: a `kubernetes.io/tls` Secret → a rustls [`CertifiedKey`];
//! - `grant`: ReferenceGrants, which permit cross-namespace references;
//! - `backend`: Services and EndpointSlices → [`BackendTable`];
//! - `routes`: HTTPRoute parent and reference conditions;
//! - `status`: the report and its rendering;
//! - `explain`: what `lbgw route` prints for a request.
//!
//! [`CertifiedKey`]: rustls::sign::CertifiedKey

pub(crate) mod backend;
pub mod explain;
mod grant;
mod listener;
mod routes;
pub mod status;
#[cfg(test)]
mod tests;
mod tls;

use std::{collections::BTreeMap, fmt, net::IpAddr, sync::Arc};

use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;

pub use self::backend::{BackendTable, Resolution, ResolvedBackend, UpstreamProtocol};
pub use self::tls::{CertificateError, certified_key};

use crate::config::{Config, ObjectRef, Sourced};
use crate::ipam::Plan;
use crate::route::{Hostname, RouteTable, Scheme};

/// Everything the proxy serves from, compiled from the configuration. Immutable; shared behind
/// `Arc`.
#[derive(Debug)]
pub struct GatewayModel {
    /// One entry per distinct listener port across managed Gateways (programmed listeners
    /// only), sorted by port.
    pub ports: Vec<PortModel>,
    /// HTTPRoutes attached to the programmed listeners.
    pub routes: RouteTable,
    /// Backend resolution.
    pub backends: BackendTable,
}

/// The listeners served on one port.
///
/// Within one Gateway all listeners of a port have the same protocol (HTTP and HTTPS on one
/// port of a Gateway are conflicted and left out); listeners of different Gateways on the same
/// port may differ, and are told apart by the connection's local address (their `addresses`).
#[derive(Debug)]
pub struct PortModel {
    /// The port.
    pub port: u16,
    /// The programmed listeners on it, in Gateway then listener order.
    pub listeners: Vec<ListenerModel>,
}

/// A programmed listener.
pub struct ListenerModel {
    /// Its Gateway.
    pub gateway: GatewayId,
    /// The listener name, unique within the Gateway.
    pub name: String,
    /// The port.
    pub port: u16,
    /// HTTP or HTTPS.
    pub protocol: ListenerProtocol,
    /// The listener's hostname ([`Hostname::Any`] when unset).
    pub hostname: Hostname,
    /// The Gateway's VIPs from the IPAM plan; the proxy serves a listener only on connections
    /// addressed to one of these (or on any address when it runs with `--no-xdp`).
    pub addresses: Vec<IpAddr>,
    /// The certificate (HTTPS listeners): from the Secret of type `kubernetes.io/tls` named by
    /// `tls.certificateRefs` (the first valid one; cross-namespace refs need a ReferenceGrant).
    pub certificate: Option<Arc<rustls::sign::CertifiedKey>>,
}

/// Key material is not printed.
impl fmt::Debug for ListenerModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerModel")
            .field("gateway", &self.gateway)
            .field("name", &self.name)
            .field("port", &self.port)
            .field("protocol", &self.protocol)
            .field("hostname", &self.hostname)
            .field("addresses", &self.addresses)
            .field("certificate", &self.certificate.as_ref().map(|_| "<key>"))
            .finish()
    }
}

/// The namespace and name of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatewayId {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl GatewayId {
    /// The Gateway's [`ObjectRef`] (as IPAM knows it).
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new("Gateway", &self.namespace, &self.name)
    }

    fn of(gateway: &Gateway) -> Self {
        Self {
            namespace: gateway
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| crate::config::DEFAULT_NAMESPACE.to_owned()),
            name: gateway.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The protocols of the listeners lbgw serves (Listener.protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    /// `HTTP`: cleartext HTTP/1.1 (and h2c prior knowledge, if the proxy offers it).
    Http,
    /// `HTTPS`: TLS terminated with the listener's certificate, then HTTP.
    Https,
}

impl ListenerProtocol {
    /// The URL scheme of the protocol.
    pub fn scheme(self) -> Scheme {
        match self {
            Self::Http => Scheme::Http,
            Self::Https => Scheme::Https,
        }
    }

    /// Parses `Listener.protocol`; `None` for protocols lbgw does not serve.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "HTTP" => Some(Self::Http),
            "HTTPS" => Some(Self::Https),
            _ => None,
        }
    }
}

impl fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
        })
    }
}

impl GatewayModel {
    /// Compiles the managed Gateways of `config` (see
    /// [`Config::managed_gateways`]), their HTTPRoutes and backends, with the VIPs of `plan`.
    ///
    /// Nothing here fails as a whole: a listener, route rule or backend that cannot be used is
    /// left out (or resolves to an error the proxy answers with), and the returned status says
    /// why.
    pub fn build(config: &Config, plan: &Plan) -> (GatewayModel, status::GatewayStatus) {
        let grants = grant::Grants::new(&config.reference_grants);
        let mut gateways = Vec::new();
        let mut programmed = Vec::new();
        let mut served: Vec<Gateway> = Vec::new();
        for gw in config.managed_gateways() {
            let id = GatewayId::of(&gw.object);
            let addresses: Vec<IpAddr> = plan.ips_of(&id.object_ref()).collect();
            let compiled = listener::compile(gw, config, &grants, &addresses);
            served.push(only_listeners(gw, &compiled.models));
            programmed.extend(compiled.models);
            gateways.push(compiled.report);
        }

        let http_routes: Vec<HttpRoute> = config
            .http_routes
            .iter()
            .map(|r| r.object.clone())
            .collect();
        // The table only sees programmed listeners, so the proxy can never route through a
        // listener it does not serve.
        let (table, errors) =
            RouteTable::build(&served, &http_routes, &[], &config.http_route_retries);
        let backends = BackendTable::build(config, &grants);
        let routes = routes::statuses(config, &backends, &errors);
        routes::count_attached(&mut gateways, &routes);

        let mut by_port: BTreeMap<u16, Vec<ListenerModel>> = BTreeMap::new();
        for model in programmed {
            by_port.entry(model.port).or_default().push(model);
        }
        let ports = by_port
            .into_iter()
            .map(|(port, listeners)| PortModel { port, listeners })
            .collect();
        (
            GatewayModel {
                ports,
                routes: table,
                backends,
            },
            status::GatewayStatus { gateways, routes },
        )
    }

    /// The programmed listeners of all ports.
    pub fn listeners(&self) -> impl Iterator<Item = &ListenerModel> {
        self.ports.iter().flat_map(|p| &p.listeners)
    }
}

/// A copy of the Gateway with only the listeners in `keep`.
fn only_listeners(gw: &Sourced<Gateway>, keep: &[ListenerModel]) -> Gateway {
    let mut gateway = gw.object.clone();
    gateway
        .spec
        .listeners
        .retain(|l| keep.iter().any(|m| m.name == l.name));
    gateway
}
