//! Backends: a route's backendRef → a Service port → the ready endpoints of its
//! EndpointSlices.
//!
//! Endpoints are found as kube-proxy finds them: the EndpointSlices labelled
//! `kubernetes.io/service-name: <service>` in the Service's namespace, the slice port whose
//! `name` equals the Service port's `name` (unnamed matches unnamed), that slice port's number
//! as the target port, and the first address of every endpoint that is ready.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::grant::{GATEWAY_GROUP, Grants, Referent, Referrer};
use crate::config::{Config, ObjectRef, Sourced};
use crate::route::BackendRef;

/// The label that ties an EndpointSlice to its Service (EndpointSlice API: "the
/// `kubernetes.io/service-name` label ... set to the name of the Service").
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service port `appProtocol` of HTTP/2 over cleartext (KEP-3726 "Standard Application
/// Protocols": "kubernetes.io/h2c - HTTP/2 over cleartext as described in RFC 7540").
pub const H2C_APP_PROTOCOL: &str = "kubernetes.io/h2c";

/// How the proxy speaks to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge, for a Service port with `appProtocol: kubernetes.io/h2c`
    /// (BackendRef: "implementations SHOULD honor the appProtocol field if it is set for the
    /// target Service Port").
    H2c,
}

/// A Service port with ready endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBackend {
    /// The Service.
    pub service: ObjectRef,
    /// The Service port the backendRef named.
    pub port: u16,
    /// Ready endpoints with their target ports, sorted and without duplicates; never empty.
    pub endpoints: Vec<SocketAddr>,
    /// How to speak to them.
    pub protocol: UpstreamProtocol,
}

/// What a backendRef resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Ready endpoints (never empty) and how to speak to them.
    Ready(Arc<ResolvedBackend>),
    /// The Service exists but has no ready endpoints → the proxy answers 503.
    NoReadyEndpoints,
    /// Not found / RefNotPermitted / unsupported kind / no port → the proxy answers 500.
    /// `reason` is a Gateway API route `ResolvedRefs` condition reason.
    Invalid {
        /// `BackendNotFound`, `RefNotPermitted`, `InvalidKind` or `UnsupportedValue`.
        reason: &'static str,
        /// What is wrong, naming the object.
        message: String,
    },
}

impl Resolution {
    fn invalid(reason: &'static str, message: String) -> Self {
        Self::Invalid { reason, message }
    }
}

/// One port of a Service, resolved.
#[derive(Debug)]
enum PortEntry {
    Ready(Arc<ResolvedBackend>),
    NoReadyEndpoints,
}

#[derive(Debug)]
struct ServiceEntry {
    id: ObjectRef,
    /// Why the Service cannot be a backend at all (ExternalName).
    unsupported: Option<String>,
    /// TCP ports by Service port number.
    ports: Vec<(u16, PortEntry)>,
}

/// Every Service of the configuration with its ports resolved, and the ReferenceGrants.
/// Built once per configuration; [`BackendTable::resolve`] allocates only on errors.
#[derive(Debug, Default)]
pub struct BackendTable {
    /// By namespace, then name.
    /// Looked up on every request: a fast hash (the keys come from the configuration).
    services: foldhash::HashMap<String, foldhash::HashMap<String, ServiceEntry>>,
    grants: Grants,
}

impl BackendTable {
    pub(crate) fn build(config: &Config, grants: &Grants) -> Self {
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in &config.endpoint_slices {
            let service = slice
                .object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                slices
                    .entry((slice.id.namespace.as_str(), service.as_str()))
                    .or_default()
                    .push(&slice.object);
            }
        }
        let mut services: foldhash::HashMap<String, foldhash::HashMap<String, ServiceEntry>> =
            foldhash::HashMap::default();
        for svc in &config.services {
            let own = slices
                .get(&(svc.id.namespace.as_str(), svc.id.name.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            services
                .entry(svc.id.namespace.clone())
                .or_default()
                .insert(svc.id.name.clone(), service_entry(svc, own));
        }
        Self {
            services,
            grants: grants.clone(),
        }
    }

    /// Resolves a route's backendRef (route namespace = default namespace of the ref, already
    /// applied in `backend.namespace`).
    ///
    /// BackendObjectReference: `group` "" and `kind` `Service` are the defaults and the only
    /// kind lbgw supports (others: `InvalidKind`); "Port is required when the referent is a
    /// Kubernetes Service"; a reference to another namespace needs a ReferenceGrant there
    /// (`RefNotPermitted`); a missing Service or Service port is `BackendNotFound`.
    pub fn resolve(&self, route_namespace: &str, backend: &BackendRef) -> Resolution {
        if !backend.group.is_empty() || backend.kind != "Service" {
            return Resolution::invalid(
                "InvalidKind",
                format!(
                    "backendRef {}/{} is of kind {} in group {:?}; only core Services are supported",
                    backend.namespace, backend.name, backend.kind, backend.group
                ),
            );
        }
        let from = Referrer {
            group: GATEWAY_GROUP,
            kind: "HTTPRoute",
            namespace: route_namespace,
        };
        let to = Referent {
            group: "",
            kind: "Service",
            namespace: &backend.namespace,
            name: &backend.name,
        };
        if !self.grants.permits(from, to) {
            return Resolution::invalid(
                "RefNotPermitted",
                format!(
                    "Service {}/{} is in another namespace and no ReferenceGrant there allows HTTPRoutes of {route_namespace} to refer to it",
                    backend.namespace, backend.name
                ),
            );
        }
        let Some(service) = self
            .services
            .get(&backend.namespace)
            .and_then(|s| s.get(&backend.name))
        else {
            return Resolution::invalid(
                "BackendNotFound",
                format!(
                    "Service {}/{} does not exist",
                    backend.namespace, backend.name
                ),
            );
        };
        if let Some(why) = &service.unsupported {
            return Resolution::invalid("UnsupportedValue", format!("{}: {why}", service.id));
        }
        let Some(port) = backend.port else {
            return Resolution::invalid(
                "UnsupportedValue",
                format!("backendRef to {} has no port", service.id),
            );
        };
        match service.ports.iter().find(|(p, _)| *p == port) {
            Some((_, PortEntry::Ready(resolved))) => Resolution::Ready(Arc::clone(resolved)),
            Some((_, PortEntry::NoReadyEndpoints)) => Resolution::NoReadyEndpoints,
            None => Resolution::invalid(
                "BackendNotFound",
                format!("{} has no TCP port {port}", service.id),
            ),
        }
    }
}

fn service_entry(svc: &Sourced<Service>, slices: &[&EndpointSlice]) -> ServiceEntry {
    let spec = svc.object.spec.as_ref();
    let unsupported = (spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName"))
        .then(|| "ExternalName Services are not supported as backends".to_owned());
    let ports = spec
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
        .iter()
        // An HTTP backend is reached over TCP; "protocol ... Default is TCP".
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let number = u16::try_from(p.port).ok().filter(|n| *n != 0)?;
            let endpoints = endpoints(p, slices);
            let entry = if endpoints.is_empty() {
                PortEntry::NoReadyEndpoints
            } else {
                PortEntry::Ready(Arc::new(ResolvedBackend {
                    service: svc.id.clone(),
                    port: number,
                    endpoints,
                    protocol: match p.app_protocol.as_deref() {
                        Some(H2C_APP_PROTOCOL) => UpstreamProtocol::H2c,
                        _ => UpstreamProtocol::Http1,
                    },
                }))
            };
            Some((number, entry))
        })
        .collect();
    ServiceEntry {
        id: svc.id.clone(),
        unsupported,
        ports,
    }
}

/// Whether `slice` holds IPv6 addresses (false: IPv4); `None` for FQDN slices, whose
/// endpoints are not addresses to connect or forward to (EndpointSlice.addressType: "IPv4",
/// "IPv6" or "FQDN").
pub(crate) fn slice_is_v6(slice: &EndpointSlice) -> Option<bool> {
    match slice.address_type.as_str() {
        "IPv4" => Some(false),
        "IPv6" => Some(true),
        _ => None,
    }
}

/// The port `slice` gives for the Service port named `name` (unset and "" both mean the
/// unnamed port). EndpointPort.port: "If the EndpointSlice is derived from a Kubernetes
/// service, this must be set to the service's target port." A slice without the port has no
/// endpoints for it: `None`.
pub(crate) fn slice_target_port(slice: &EndpointSlice, name: &str) -> Option<u16> {
    slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

/// The ready endpoints of Service port `port` in `slices`, sorted, without duplicates.
fn endpoints(port: &ServicePort, slices: &[&EndpointSlice]) -> Vec<SocketAddr> {
    // ServicePort.name and EndpointPort.name: unset and "" both mean the unnamed port.
    let name = port.name.as_deref().unwrap_or_default();
    let mut found = Vec::new();
    for slice in slices {
        let Some(v6) = slice_is_v6(slice) else {
            continue;
        };
        let Some(target) = slice_target_port(slice, name) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // EndpointConditions.ready: "a nil value should be interpreted as "true"".
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            // Endpoint.addresses: "These are all assumed to be fungible and clients may choose
            // to only use the first element."
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .filter(|ip| ip.is_ipv6() == v6)
            else {
                continue;
            };
            found.push(SocketAddr::new(ip, target));
        }
    }
    found.sort();
    found.dedup();
    found
}
