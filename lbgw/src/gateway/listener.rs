//! Listeners: which of a Gateway's listeners lbgw can serve, with their certificates, and the
//! listener and Gateway conditions that say why not.

use std::{net::IpAddr, sync::Arc};

use gateway_api::apis::standard::gateways::{Gateway, GatewayListeners, GatewayListenersTlsMode};
use rustls::sign::CertifiedKey;

use super::grant::{GATEWAY_GROUP, Grants, Referent, Referrer};
use super::status::{Condition, GatewayReport, ListenerReport};
use super::tls::{self, CertificateError};
use super::{GatewayId, ListenerModel, ListenerProtocol};
use crate::config::{Config, ObjectRef, Sourced, error_chain};
use crate::route::Hostname;

/// A Gateway's listeners: the status of each, and the programmed ones.
pub(super) struct Compiled {
    pub(super) report: GatewayReport,
    pub(super) models: Vec<ListenerModel>,
}

/// Evaluates every listener of `gw`, whose VIPs are `addresses`.
pub(super) fn compile(
    gw: &Sourced<Gateway>,
    config: &Config,
    grants: &Grants,
    addresses: &[IpAddr],
) -> Compiled {
    let id = GatewayId::of(&gw.object);
    let listeners = &gw.object.spec.listeners;
    let conflicts = conflicts(listeners);
    let mut reports = Vec::new();
    let mut models = Vec::new();
    for (l, conflict) in listeners.iter().zip(conflicts) {
        let (report, model) = listener(&id, l, conflict, config, grants, addresses);
        reports.push(report);
        models.extend(model);
    }
    Compiled {
        report: GatewayReport {
            conditions: gateway_conditions(&reports, addresses),
            id,
            addresses: addresses.to_vec(),
            listeners: reports,
        },
        models,
    }
}

/// A `Conflicted` reason and message.
type Conflict = (&'static str, String);

/// The conflict of each listener, if any.
///
/// GatewaySpec.listeners: "each listener in a set MUST have a unique combination of Port,
/// Protocol, and, if supported by the protocol, Hostname", otherwise "those Listeners are
/// _Conflicted_" and "ALL indistinct Listeners must not be accepted". HTTP and HTTPS on one
/// port are distinct but not _compatible_ for lbgw ("an implementation that ... cannot mix
/// HTTPS and generic TLS listens on the same port would not consider those cases
/// compatible"): the proxy would have to guess whether a connection starts with TLS, so they
/// are ListenerReasonProtocolConflict ("multiple Listeners are specified with the same
/// Listener port number, but have conflicting protocol specifications").
fn conflicts(listeners: &[GatewayListeners]) -> Vec<Option<Conflict>> {
    let key = |l: &GatewayListeners| {
        let protocol = ListenerProtocol::parse(&l.protocol)?;
        let port = u16::try_from(l.port).ok().filter(|p| *p != 0)?;
        let hostname = l.hostname.as_deref().map_or(Hostname::Any, Hostname::parse);
        Some((port, protocol, hostname))
    };
    let keys: Vec<_> = listeners.iter().map(key).collect();
    keys.iter()
        .map(|k| {
            let (port, protocol, hostname) = k.as_ref()?;
            let same_port = || keys.iter().flatten().filter(|o| o.0 == *port);
            if let Some(other) = same_port().find(|o| o.1 != *protocol) {
                return Some((
                    "ProtocolConflict",
                    format!("port {port} also has {} listeners", other.1),
                ));
            }
            let same: Vec<&str> = listeners
                .iter()
                .zip(&keys)
                .filter(|(_, o)| o.as_ref() == Some(&(*port, *protocol, hostname.clone())))
                .map(|(l, _)| l.name.as_str())
                .collect();
            (same.len() > 1).then(|| {
                (
                    "HostnameConflict",
                    format!(
                        "listeners {} share port {port}, protocol {protocol} and hostname {hostname}",
                        same.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// The status of one listener, and its model when it is programmed.
fn listener(
    gw: &GatewayId,
    l: &GatewayListeners,
    conflict: Option<Conflict>,
    config: &Config,
    grants: &Grants,
    addresses: &[IpAddr],
) -> (ListenerReport, Option<ListenerModel>) {
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
    let protocol = ListenerProtocol::parse(&l.protocol);
    let passthrough = l
        .tls
        .as_ref()
        .and_then(|t| t.mode.as_ref())
        .is_some_and(|m| *m == GatewayListenersTlsMode::Passthrough);

    // ListenerConditionAccepted: "a Listener with an unsupported protocol will never generate
    // any data plane config, and so will have Accepted set to `false.`"
    let not_accepted: Option<Conflict> = match (port, protocol) {
        (None, _) => Some((
            "PortUnavailable",
            format!("port {} is outside 1-65535", l.port),
        )),
        (_, None) => Some((
            "UnsupportedProtocol",
            format!(
                "protocol {:?} is not supported (lbgw serves HTTP and HTTPS)",
                l.protocol
            ),
        )),
        _ if conflict.is_some() => conflict.clone(),
        // GatewaySpec.listeners: "tls mode must be Terminate for protocol HTTPS".
        (_, Some(ListenerProtocol::Https)) if passthrough => Some((
            "UnsupportedValue",
            "tls.mode Passthrough is not valid for an HTTPS listener".to_owned(),
        )),
        _ => None,
    };
    let mut conditions = vec![match &not_accepted {
        None => Condition::yes("Accepted", "Accepted", ""),
        Some((reason, message)) => Condition::no("Accepted", reason, message.clone()),
    }];
    conditions.push(match &conflict {
        None => Condition::no("Conflicted", "NoConflicts", ""),
        Some((reason, message)) => Condition::yes("Conflicted", reason, message.clone()),
    });

    // ResolvedRefs: the route kinds, then (HTTPS) the certificates.
    let mut unresolved: Vec<(&'static str, String)> = Vec::new();
    let (valid_kinds, invalid_kinds) = route_kinds(l);
    if !invalid_kinds.is_empty() {
        // ListenerStatus.supportedKinds: "If kinds are specified in Spec that are not
        // supported, ... an implementation MUST set the "ResolvedRefs" condition to "False"
        // with the "InvalidRouteKinds" reason."
        unresolved.push((
            "InvalidRouteKinds",
            format!(
                "unsupported route kinds {} (lbgw serves HTTPRoute)",
                invalid_kinds.join(", ")
            ),
        ));
    }
    let mut certificate = None;
    if not_accepted.is_none() && protocol == Some(ListenerProtocol::Https) {
        let (cert, errors) = certificates(gw, l, config, grants);
        certificate = cert;
        unresolved.extend(errors.iter().map(|e| (e.reason(), error_chain(e))));
    }
    conditions.push(match unresolved.first() {
        None => Condition::yes("ResolvedRefs", "ResolvedRefs", ""),
        Some((reason, _)) => Condition::no(
            "ResolvedRefs",
            reason,
            unresolved
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    });

    let why_not = if let Some((reason, _)) = &not_accepted {
        Some(format!("the listener is not accepted ({reason})"))
    } else if !valid_kinds {
        Some("the listener allows no route kind lbgw serves".to_owned())
    } else if protocol == Some(ListenerProtocol::Https) && certificate.is_none() {
        Some("no valid certificate".to_owned())
    } else {
        None
    };
    conditions.push(match &why_not {
        None => Condition::yes("Programmed", "Programmed", ""),
        // ListenerReasonInvalid: "the Listener is syntactically or semantically invalid".
        Some(message) => Condition::no("Programmed", "Invalid", message.clone()),
    });

    let report = ListenerReport {
        name: l.name.clone(),
        port: l.port,
        protocol: l.protocol.clone(),
        hostname: l.hostname.clone().filter(|h| !h.is_empty()),
        attached_routes: 0,
        conditions,
    };
    let model = match (why_not, port, protocol) {
        (None, Some(port), Some(protocol)) => Some(ListenerModel {
            gateway: gw.clone(),
            name: l.name.clone(),
            port,
            protocol,
            hostname: l.hostname.as_deref().map_or(Hostname::Any, Hostname::parse),
            addresses: addresses.to_vec(),
            certificate,
        }),
        _ => None,
    };
    (report, model)
}

/// Whether `allowedRoutes.kinds` leaves a kind lbgw serves, and the kinds it does not serve.
/// AllowedRoutes.kinds: "When unspecified or empty, the kinds of Routes selected are
/// determined using the Listener protocol" (HTTPRoute for HTTP and HTTPS).
fn route_kinds(l: &GatewayListeners) -> (bool, Vec<String>) {
    let kinds = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_deref())
        .unwrap_or_default();
    if kinds.is_empty() {
        return (true, Vec::new());
    }
    let (valid, invalid): (Vec<_>, Vec<_>) = kinds.iter().partition(|k| {
        k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
    });
    let invalid = invalid
        .iter()
        .map(|k| match k.group.as_deref() {
            Some(g) if g != GATEWAY_GROUP => format!("{}.{g}", k.kind),
            _ => k.kind.clone(),
        })
        .collect();
    (!valid.is_empty(), invalid)
}

/// The first valid certificate of an HTTPS listener, and the errors of the invalid refs.
///
/// GatewayTLSConfig.certificateRefs: "If an entry in this list omits or specifies the empty
/// string for both the group and kind, the resource SHOULD be interpreted as a v1 Secret";
/// "References to a resource in different namespace are invalid UNLESS there is a
/// ReferenceGrant in the target namespace that allows the certificate to be attached."
fn certificates(
    gw: &GatewayId,
    l: &GatewayListeners,
    config: &Config,
    grants: &Grants,
) -> (Option<Arc<CertifiedKey>>, Vec<CertificateError>) {
    let refs = l
        .tls
        .as_ref()
        .and_then(|t| t.certificate_refs.as_deref())
        .unwrap_or_default();
    if refs.is_empty() {
        return (None, vec![CertificateError::NoCertificateRefs]);
    }
    let mut certificate = None;
    let mut errors = Vec::new();
    for r in refs {
        let group = r.group.as_deref().unwrap_or_default();
        let kind = r
            .kind
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or("Secret");
        let result = if !group.is_empty() || kind != "Secret" {
            Err(CertificateError::UnsupportedKind {
                group: group.to_owned(),
                kind: kind.to_owned(),
            })
        } else {
            let namespace = r.namespace.as_deref().unwrap_or(&gw.namespace);
            let secret = ObjectRef::new("Secret", namespace, &r.name);
            load(&secret, gw, config, grants)
        };
        match result {
            Ok(key) if certificate.is_none() => certificate = Some(Arc::new(key)),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    (certificate, errors)
}

fn load(
    secret: &ObjectRef,
    gw: &GatewayId,
    config: &Config,
    grants: &Grants,
) -> Result<CertifiedKey, CertificateError> {
    let from = Referrer {
        group: GATEWAY_GROUP,
        kind: "Gateway",
        namespace: &gw.namespace,
    };
    let to = Referent {
        group: "",
        kind: "Secret",
        namespace: &secret.namespace,
        name: &secret.name,
    };
    if !grants.permits(from, to) {
        return Err(CertificateError::RefNotPermitted {
            secret: secret.clone(),
        });
    }
    let found = config
        .secrets
        .iter()
        .find(|s| &s.id == secret)
        .ok_or_else(|| CertificateError::NotFound {
            secret: secret.clone(),
        })?;
    tls::certified_key(secret, &found.object)
}

/// The Gateway's `Accepted` and `Programmed` conditions.
///
/// GatewayReasonListenersNotValid: "one or more Listeners have an invalid or unsupported
/// configuration and cannot be configured on the Gateway. This can be the reason when
/// "Accepted" is "True" or "False", depending on whether the listener being invalid causes
/// the entire Gateway to not be accepted." GatewayReasonAddressNotAssigned: "no address has
/// been assigned to the Gateway".
fn gateway_conditions(listeners: &[ListenerReport], addresses: &[IpAddr]) -> Vec<Condition> {
    let holds =
        |l: &ListenerReport, type_: &str| l.conditions.iter().any(|c| c.type_ == type_ && c.status);
    let rejected: Vec<&str> = listeners
        .iter()
        .filter(|l| !holds(l, "Accepted"))
        .map(|l| l.name.as_str())
        .collect();
    let accepted = if rejected.is_empty() {
        Condition::yes("Accepted", "Accepted", "")
    } else if rejected.len() < listeners.len() {
        Condition::yes(
            "Accepted",
            "ListenersNotValid",
            format!("listeners not accepted: {}", rejected.join(", ")),
        )
    } else {
        Condition::no("Accepted", "ListenersNotValid", "no listener is valid")
    };
    let programmed = if addresses.is_empty() {
        Condition::no(
            "Programmed",
            "AddressNotAssigned",
            "IPAM assigned no address (see the VIP plan)",
        )
    } else if !listeners.iter().any(|l| holds(l, "Programmed")) {
        Condition::no("Programmed", "Invalid", "no listener is programmed")
    } else {
        Condition::yes("Programmed", "Programmed", "")
    };
    vec![accepted, programmed]
}
