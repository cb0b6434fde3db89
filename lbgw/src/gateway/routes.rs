//! HTTPRoute status: for each parentRef to a managed Gateway, whether the route is accepted
//! (attachment, dropped rules) and whether its backendRefs resolve.

use std::collections::BTreeMap;

use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteParentRefs};

use super::GatewayId;
use super::backend::{BackendTable, Resolution};
use super::grant::GATEWAY_GROUP;
use super::status::{Condition, GatewayReport, ParentReport, RouteReport};
use crate::config::{Config, Sourced, error_chain};
use crate::route::{Attachment, BackendRef, BuildError, RouteId, attachment};

/// The status of every HTTPRoute with a parentRef to a managed (or missing) Gateway.
/// `errors` are those of [`RouteTable::build`](crate::route::RouteTable::build): each dropped
/// one rule.
pub(super) fn statuses(
    config: &Config,
    backends: &BackendTable,
    errors: &[BuildError],
) -> Vec<RouteReport> {
    config
        .http_routes
        .iter()
        .map(|route| report(route, config, backends, errors))
        .filter(|r| !r.parents.is_empty())
        .collect()
}

/// Sets ListenerStatus.attachedRoutes: "the number of Routes with the Accepted condition set
/// to "True" that have been attached to this Listener".
pub(super) fn count_attached(gateways: &mut [GatewayReport], routes: &[RouteReport]) {
    for gw in gateways {
        for listener in &mut gw.listeners {
            let count = routes
                .iter()
                .filter(|r| {
                    r.parents.iter().any(|p| {
                        p.gateway == gw.id && p.accepted() && p.listeners.contains(&listener.name)
                    })
                })
                .count();
            listener.attached_routes = u32::try_from(count).unwrap_or(u32::MAX);
        }
    }
}

fn report(
    route: &Sourced<HttpRoute>,
    config: &Config,
    backends: &BackendTable,
    errors: &[BuildError],
) -> RouteReport {
    let id = RouteId {
        namespace: route.id.namespace.clone(),
        name: route.id.name.clone(),
    };
    // Rules dropped by the table builder, with why.
    let mut dropped: BTreeMap<usize, Vec<&BuildError>> = BTreeMap::new();
    for e in errors {
        if let Some((r, rule)) = rule_of(e)
            && *r == id
        {
            dropped.entry(rule).or_default().push(e);
        }
    }
    // HTTPRouteSpec.rules defaults to one rule, so a route always has at least one.
    let rule_count = route.object.spec.rules.as_ref().map_or(0, Vec::len).max(1);
    let resolved = resolved_refs(route, backends, &dropped);

    let mut parents = Vec::new();
    for (index, parent) in route.object.spec.parent_refs.iter().flatten().enumerate() {
        // ParentReference: group "gateway.networking.k8s.io" and kind Gateway by default;
        // other parents (a mesh Service) are not lbgw's to report on.
        if parent.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP
            || parent.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let gateway = GatewayId {
            namespace: parent
                .namespace
                .clone()
                .unwrap_or_else(|| id.namespace.clone()),
            name: parent.name.clone(),
        };
        let found = config
            .gateways
            .iter()
            .find(|g| g.id == gateway.object_ref());
        let attached = match found {
            // A Gateway of another controller: "Implementations of this API can only populate
            // Route status for the Gateways/parent resources they are responsible for."
            Some(gw) if config.gateway_unmanaged_reason(&gw.object).is_some() => continue,
            Some(gw) => attachment(&gw.object, &route.object, parent, &[]),
            None => Attachment::NoMatchingParent,
        };
        let (mut accepted, listeners) = accepted(&attached, found.is_none(), parent, &gateway);
        if accepted.status && dropped.len() >= rule_count {
            // RouteParentStatus.conditions: "A Route MUST be considered "Accepted" if at least
            // one of the Route's rules is implemented by the Gateway."
            let incompatible = dropped
                .values()
                .flatten()
                .all(|e| matches!(e, BuildError::IncompatibleFilters { .. }));
            let reason = if incompatible {
                "IncompatibleFilters"
            } else {
                "UnsupportedValue"
            };
            accepted = Condition::no("Accepted", reason, describe(&dropped));
        }
        let mut conditions = vec![accepted, resolved.clone()];
        if conditions[0].status && !dropped.is_empty() {
            // RouteConditionPartiallyInvalid, approach 1: "Drop Rule(s) ... The message for
            // this condition MUST start with the prefix "Dropped Rule"".
            conditions.push(Condition::yes(
                "PartiallyInvalid",
                "UnsupportedValue",
                format!("Dropped Rule(s): {}", describe(&dropped)),
            ));
        }
        let listeners = if conditions[0].status {
            listeners
        } else {
            Vec::new()
        };
        parents.push(ParentReport {
            index,
            gateway,
            section_name: parent.section_name.clone().filter(|s| !s.is_empty()),
            port: parent.port,
            listeners,
            conditions,
        });
    }
    RouteReport {
        id: route.id.clone(),
        parents,
    }
}

/// The `Accepted` condition for an attachment, and the listeners attached to.
fn accepted(
    attached: &Attachment,
    missing: bool,
    parent: &HttpRouteParentRefs,
    gateway: &GatewayId,
) -> (Condition, Vec<String>) {
    match attached {
        Attachment::Attached(listeners) => (
            Condition::yes("Accepted", "Accepted", ""),
            listeners.clone(),
        ),
        Attachment::NoMatchingParent if missing => (
            Condition::no(
                "Accepted",
                "NoMatchingParent",
                format!("Gateway {gateway} does not exist"),
            ),
            Vec::new(),
        ),
        Attachment::NoMatchingParent => {
            let mut wanted = Vec::new();
            if let Some(s) = parent.section_name.as_deref().filter(|s| !s.is_empty()) {
                wanted.push(format!("name {s}"));
            }
            if let Some(p) = parent.port {
                wanted.push(format!("port {p}"));
            }
            (
                Condition::no(
                    "Accepted",
                    "NoMatchingParent",
                    format!(
                        "Gateway {gateway} has no listener with {}",
                        wanted.join(" and ")
                    ),
                ),
                Vec::new(),
            )
        }
        Attachment::NotAllowedByListeners => (
            Condition::no(
                "Accepted",
                "NotAllowedByListeners",
                format!(
                    "no selected listener of Gateway {gateway} allows this HTTPRoute (protocol, allowedRoutes kinds or namespaces)"
                ),
            ),
            Vec::new(),
        ),
        Attachment::NoMatchingListenerHostname => (
            Condition::no(
                "Accepted",
                "NoMatchingListenerHostname",
                format!(
                    "no hostname of the route intersects a selected listener hostname of Gateway {gateway}"
                ),
            ),
            Vec::new(),
        ),
    }
}

/// The route's `ResolvedRefs` condition: every backendRef of every rule that was not dropped
/// must resolve. A Service without ready endpoints is resolved (it exists; the proxy answers
/// 503 until it has endpoints).
fn resolved_refs(
    route: &Sourced<HttpRoute>,
    backends: &BackendTable,
    dropped: &BTreeMap<usize, Vec<&BuildError>>,
) -> Condition {
    let route_ns = &route.id.namespace;
    let mut invalid: Vec<(&'static str, String)> = Vec::new();
    for (i, rule) in route.object.spec.rules.iter().flatten().enumerate() {
        if dropped.contains_key(&i) {
            continue;
        }
        for (j, b) in rule.backend_refs.iter().flatten().enumerate() {
            let backend = BackendRef {
                group: b.group.clone().unwrap_or_default(),
                kind: b.kind.clone().unwrap_or_else(|| "Service".to_owned()),
                namespace: b.namespace.clone().unwrap_or_else(|| route_ns.clone()),
                name: b.name.clone(),
                port: b.port.and_then(|p| u16::try_from(p).ok()),
            };
            if let Resolution::Invalid { reason, message } = backends.resolve(route_ns, &backend) {
                invalid.push((reason, format!("rules[{i}].backendRefs[{j}]: {message}")));
            }
        }
    }
    match invalid.first() {
        None => Condition::yes("ResolvedRefs", "ResolvedRefs", ""),
        Some((reason, _)) => Condition::no(
            "ResolvedRefs",
            reason,
            invalid
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The errors of the dropped rules (each names its route and rule).
fn describe(dropped: &BTreeMap<usize, Vec<&BuildError>>) -> String {
    dropped
        .values()
        .flatten()
        .map(|e| error_chain(*e))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The route and rule a build error dropped; `None` for listener conflicts.
fn rule_of(e: &BuildError) -> Option<(&RouteId, usize)> {
    match e {
        BuildError::InvalidRegex { route, rule, .. }
        | BuildError::InvalidPath { route, rule, .. }
        | BuildError::InvalidHeaderName { route, rule, .. }
        | BuildError::InvalidHeaderValue { route, rule, .. }
        | BuildError::UnsupportedValue { route, rule, .. }
        | BuildError::IncompatibleFilters { route, rule, .. }
        | BuildError::InvalidTimeout { route, rule, .. }
        | BuildError::InvalidBackend { route, rule, .. } => Some((route, *rule)),
        BuildError::ConflictedListeners { .. } => None,
    }
}
