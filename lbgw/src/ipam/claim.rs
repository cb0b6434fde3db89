//! The objects that claim addresses (Gateways and LoadBalancer Services), read from the
//! configuration: their labels for pool selectors, explicit requests and address families.
use std::{collections::BTreeMap, net::IpAddr};

use gateway_api::gateways::Gateway;
use k8s_openapi::{api::core::v1::Service, apimachinery::pkg::apis::meta::v1::Time};

use super::{
    GATEWAY_NAME_LABEL, IPS_ANNOTATION, IPS_ANNOTATION_ALIAS, IpFamily, IpamError, NAME_LABEL,
    NAMESPACE_LABEL, Skipped,
};
use crate::config::{Config, ObjectRef};

/// An object that gets addresses.
pub(super) struct Claimant {
    pub id: ObjectRef,
    pub created: Option<Time>,
    /// What pool selectors match against.
    pub labels: BTreeMap<String, String>,
    /// Explicitly requested addresses, deduplicated, in the order written.
    pub requests: Vec<Request>,
    pub wish: FamilyWish,
    /// Problems found reading the object: it gets no new address.
    pub errors: Vec<IpamError>,
}

pub(super) struct Request {
    pub ip: IpAddr,
    /// Where it was requested, e.g. `spec.loadBalancerIP`.
    pub field: String,
}

/// Which families an object wants addresses of, besides its explicit requests.
pub(super) enum FamilyWish {
    /// None: the explicit requests are all it gets (a Service with requests; Cilium:
    /// "if len(sv.RequestedIPs) > 0 { satisfySpecificIPRequests }").
    Nothing,
    /// One address, IPv4 if a pool offers it the object, else IPv6 (Gateways).
    One,
    /// Per `spec.ipFamilyPolicy` and `spec.ipFamilies` of a Service.
    Service {
        policy: Policy,
        families: Vec<IpFamily>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    Single,
    PreferDual,
    RequireDual,
}

impl Claimant {
    /// Whether `self` has precedence over `other` for a contested address: created first, then
    /// first in kind/namespace/name order (objects with a creationTimestamp come first).
    pub fn precedence_key(&self) -> (bool, Option<&Time>, &ObjectRef) {
        (self.created.is_none(), self.created.as_ref(), &self.id)
    }

    /// Why `self` beats `other` (which it sorts before), for messages.
    pub fn why_first(&self, other: &Claimant) -> &'static str {
        match (&self.created, &other.created) {
            (Some(a), Some(b)) if a < b => "was created earlier",
            (Some(_), None) => "has a creationTimestamp",
            _ => "comes first in kind/namespace/name order",
        }
    }

    /// The families the object wants dynamic addresses of. `holds` says whether it already has
    /// an address of a family (kept from the state), `available` whether it holds one or a pool
    /// can serve it one, `any_pool` whether any pool has the family, and `no_pools` whether
    /// there are no pools at all.
    pub fn families(
        &self,
        holds: impl Fn(IpFamily) -> bool,
        available: impl Fn(IpFamily) -> bool,
        any_pool: impl Fn(IpFamily) -> bool,
        no_pools: bool,
    ) -> Result<Vec<IpFamily>, IpamError> {
        let unavailable = |family| {
            if no_pools {
                IpamError::NoPools {
                    owner: self.id.clone().into(),
                }
            } else {
                IpamError::FamilyUnavailable {
                    owner: self.id.clone().into(),
                    family,
                    any_pool: any_pool(family),
                }
            }
        };
        let first_available = |families: &[IpFamily]| match families.first() {
            None => Ok(Vec::new()),
            Some(&first) => families
                .iter()
                .copied()
                .find(|&f| available(f))
                .map(|f| vec![f])
                .ok_or_else(|| unavailable(first)),
        };
        // One address of either family: the family it already has, so that adding an IPv4
        // pool does not move an object off its IPv6 address; else IPv4 unless only IPv6 is
        // available (Cilium: "if ipam.ipv4Enabled ... else if ipam.ipv6Enabled").
        let either = || match [IpFamily::V4, IpFamily::V6].into_iter().find(|&f| holds(f)) {
            Some(family) => Ok(vec![family]),
            None => first_available(&[IpFamily::V4, IpFamily::V6]),
        };
        match &self.wish {
            FamilyWish::Nothing => Ok(Vec::new()),
            FamilyWish::One => either(),
            FamilyWish::Service {
                policy: Policy::Single,
                families,
            } => match families.first() {
                None => either(),
                Some(&family) => first_available(&[family]),
            },
            FamilyWish::Service {
                policy: Policy::PreferDual,
                families,
            } => {
                let wanted = if families.is_empty() {
                    vec![IpFamily::V4, IpFamily::V6]
                } else {
                    families.clone()
                };
                let got: Vec<IpFamily> = wanted.iter().copied().filter(|&f| available(f)).collect();
                match wanted.first() {
                    Some(&first) if got.is_empty() => Err(unavailable(first)),
                    _ => Ok(got),
                }
            }
            FamilyWish::Service {
                policy: Policy::RequireDual,
                ..
            } => {
                match [IpFamily::V4, IpFamily::V6]
                    .into_iter()
                    .find(|&f| !available(f))
                {
                    Some(missing) => Err(unavailable(missing)),
                    None => Ok(vec![IpFamily::V4, IpFamily::V6]),
                }
            }
        }
    }
}

/// The claimants of `config` in precedence order, and the objects lbgw leaves alone.
pub(super) fn claimants(config: &Config) -> (Vec<Claimant>, Vec<Skipped>) {
    let mut claimants = Vec::new();
    let mut skipped = Vec::new();
    for gateway in &config.gateways {
        match config.gateway_unmanaged_reason(&gateway.object) {
            None => claimants.push(gateway_claimant(gateway.id.clone(), &gateway.object)),
            Some(reason) => {
                tracing::debug!(gateway = %gateway.id, %reason, "not lbgw's Gateway");
                skipped.push(Skipped {
                    object: gateway.id.clone(),
                    reason,
                });
            }
        }
    }
    for service in &config.services {
        match Config::service_unmanaged_reason(&service.object) {
            None => claimants.push(service_claimant(service.id.clone(), &service.object)),
            Some(reason) => {
                tracing::debug!(service = %service.id, %reason, "no LoadBalancer address from lbgw");
                // Only LoadBalancer Services of another class are worth listing.
                if reason.contains("loadBalancerClass") {
                    skipped.push(Skipped {
                        object: service.id.clone(),
                        reason,
                    });
                }
            }
        }
    }
    claimants.sort_by(|a, b| a.precedence_key().cmp(&b.precedence_key()));
    (claimants, skipped)
}

fn pseudo_labels(labels: &mut BTreeMap<String, String>, id: &ObjectRef) {
    labels.insert(NAMESPACE_LABEL.into(), id.namespace.clone());
    labels.insert(NAME_LABEL.into(), id.name.clone());
}

fn push_request(requests: &mut Vec<Request>, ip: IpAddr, field: String) {
    // The same address requested twice (e.g. annotation and loadBalancerIP) counts once.
    let ip = ip.to_canonical();
    if !requests.iter().any(|r| r.ip == ip) {
        requests.push(Request { ip, field });
    }
}

fn gateway_claimant(id: ObjectRef, gateway: &Gateway) -> Claimant {
    let mut labels: BTreeMap<String, String> = gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.labels.clone())
        .unwrap_or_default();
    labels.insert(GATEWAY_NAME_LABEL.into(), id.name.clone());
    pseudo_labels(&mut labels, &id);
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut automatic = false;
    for (i, address) in gateway.spec.addresses.iter().flatten().enumerate() {
        // Gateway API: type "IPAddress" is the default; "When a value is unspecified, an
        // implementation SHOULD automatically assign an address matching the requested type".
        match address.r#type.as_deref().unwrap_or("IPAddress") {
            "IPAddress" => match address.value.as_deref().map(str::trim) {
                None | Some("") => automatic = true,
                Some(value) => match value.parse::<IpAddr>() {
                    Ok(ip) => push_request(&mut requests, ip, format!("spec.addresses[{i}].value")),
                    Err(source) => errors.push(IpamError::InvalidRequest {
                        owner: id.clone().into(),
                        field: format!("spec.addresses[{i}].value"),
                        value: value.to_owned(),
                        source,
                    }),
                },
            },
            other => errors.push(IpamError::UnsupportedAddressType {
                owner: id.clone().into(),
                field: format!("spec.addresses[{i}].type"),
                address_type: other.to_owned(),
            }),
        }
    }
    let wish = if requests.is_empty() || automatic {
        FamilyWish::One
    } else {
        FamilyWish::Nothing
    };
    Claimant {
        created: gateway.metadata.creation_timestamp.clone(),
        id,
        labels,
        requests,
        wish,
        errors,
    }
}

fn service_claimant(id: ObjectRef, service: &Service) -> Claimant {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    pseudo_labels(&mut labels, &id);
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut request = |field: String, value: &str| match value.parse::<IpAddr>() {
        Ok(ip) => push_request(&mut requests, ip, field),
        Err(source) => errors.push(IpamError::InvalidRequest {
            owner: id.clone().into(),
            field,
            value: value.to_owned(),
            source,
        }),
    };
    let spec = service.spec.clone().unwrap_or_default();
    // Deprecated since Kubernetes 1.24 but still honoured by Cilium and MetalLB.
    if let Some(ip) = spec
        .load_balancer_ip
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        request("spec.loadBalancerIP".into(), ip);
    }
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    for key in [IPS_ANNOTATION, IPS_ANNOTATION_ALIAS] {
        if let Some(value) = annotations.get(key) {
            for ip in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                request(format!("metadata.annotations[{key}]"), ip);
            }
        }
    }
    let wish = if requests.is_empty() {
        match service_families(&id, &spec) {
            Ok((policy, families)) => FamilyWish::Service { policy, families },
            Err(err) => {
                errors.push(err);
                FamilyWish::Nothing
            }
        }
    } else {
        FamilyWish::Nothing
    };
    Claimant {
        created: service.metadata.creation_timestamp.clone(),
        id,
        labels,
        requests,
        wish,
        errors,
    }
}

/// `spec.ipFamilyPolicy` and `spec.ipFamilies`, validated as the API server does: families are
/// `IPv4`/`IPv6`, at most two and distinct, and two only with a dual-stack policy.
fn service_families(
    id: &ObjectRef,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
) -> Result<(Policy, Vec<IpFamily>), IpamError> {
    let invalid = |field: &str, reason: String| IpamError::InvalidSpec {
        owner: id.clone().into(),
        field: field.to_owned(),
        reason,
    };
    let policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => Policy::Single,
        Some("PreferDualStack") => Policy::PreferDual,
        Some("RequireDualStack") => Policy::RequireDual,
        Some(other) => {
            return Err(invalid(
                "spec.ipFamilyPolicy",
                format!(
                    "unknown policy {other:?} (expected SingleStack, PreferDualStack or RequireDualStack)"
                ),
            ));
        }
    };
    let mut families = Vec::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        let family = match family.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            other => {
                return Err(invalid(
                    &format!("spec.ipFamilies[{i}]"),
                    format!("unknown family {other:?} (expected IPv4 or IPv6)"),
                ));
            }
        };
        if families.contains(&family) {
            return Err(invalid(
                &format!("spec.ipFamilies[{i}]"),
                format!("{family} is listed twice"),
            ));
        }
        families.push(family);
    }
    if families.len() > 1 && policy == Policy::Single {
        return Err(invalid(
            "spec.ipFamilies",
            "two families need ipFamilyPolicy PreferDualStack or RequireDualStack".into(),
        ));
    }
    Ok((policy, families))
}
