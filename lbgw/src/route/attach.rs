//! Which listeners an HTTPRoute attaches to: its parentRefs, and each listener's protocol and
//! allowedRoutes. (Hostname intersection, the last condition, is in the table builder.)

use std::collections::BTreeMap;

use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersAllowedRoutesNamespacesSelector,
};
use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteParentRefs};
use k8s_openapi::api::core::v1::Namespace;

use super::filters::Scheme;
use super::hostname::Hostname;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The label Kubernetes sets on every namespace to its name, so that selectors can name
/// namespaces even when no Namespace object was given.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The scheme of a listener that carries HTTPRoutes, or `None` for TLS, TCP and UDP
/// listeners and unknown protocols.
pub(crate) fn http_scheme(listener: &GatewayListeners) -> Option<Scheme> {
    match listener.protocol.as_str() {
        "HTTP" => Some(Scheme::Http),
        "HTTPS" => Some(Scheme::Https),
        _ => None,
    }
}

/// Whether `listener` accepts the HTTPRoute kind. AllowedRoutes.kinds: "Specifies the
/// groups and kinds of Routes that are allowed to bind to this Gateway Listener. When
/// unspecified or empty, the kinds of Routes selected are determined using the Listener
/// protocol."
pub(crate) fn allows_kind(listener: &GatewayListeners) -> bool {
    let kinds = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_deref())
        .unwrap_or_default();
    kinds.is_empty()
        || kinds.iter().any(|k| {
            k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        })
}

/// Whether `listener` of a Gateway in `gateway_ns` accepts routes from `route_ns`.
///
/// AllowedRoutes.namespaces.from: "Same: Only Routes in the same namespace may be used by
/// this Gateway." (the default), "All: Routes in all namespaces may be used by this
/// Gateway.", "Selector: Routes in namespaces selected by the selector may be used by this
/// Gateway."
pub(crate) fn allows_namespace(
    listener: &GatewayListeners,
    gateway_ns: &str,
    route_ns: &str,
    namespaces: &[Namespace],
) -> bool {
    let allowed = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match allowed.and_then(|n| n.from.as_ref()) {
        None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => gateway_ns == route_ns,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => true,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => allowed
            .and_then(|n| n.selector.as_ref())
            .is_some_and(|s| selector_matches(s, &labels(namespaces, route_ns))),
    }
}

/// Whether a parentRef of a route in `route_ns` selects `listener` of the Gateway
/// `gateway_ns/gateway_name`.
///
/// ParentReference: `group` defaults to gateway.networking.k8s.io, `kind` to Gateway and
/// `namespace` to the route's. "SectionName is the name of a section within the target
/// resource" (a listener name) and "When unspecified (empty string), this will reference the
/// entire resource"; with `port`, "this targets all listeners listening on the specified
/// port"; with both, "the name and port of the selected listener must match both specified
/// values."
pub(crate) fn selects(
    parent: &HttpRouteParentRefs,
    route_ns: &str,
    gateway_ns: &str,
    gateway_name: &str,
    listener: &GatewayListeners,
) -> bool {
    parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        && parent.namespace.as_deref().unwrap_or(route_ns) == gateway_ns
        && parent.name == gateway_name
        && parent
            .section_name
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == listener.name)
        && parent.port.is_none_or(|p| p == listener.port)
}

/// Whether a parentRef of an HTTPRoute attaches it to a Gateway, and if not why: the
/// `Accepted` condition of the route's RouteParentStatus for that parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Attached to these listeners (by name, in Gateway order).
    Attached(Vec<String>),
    /// RouteReasonNoMatchingParent: "In the case of Gateways, this can occur when a Route
    /// ParentRef specifies a Port and/or SectionName that does not match any Listeners in the
    /// Gateway" (also: the parentRef names another object than this Gateway).
    NoMatchingParent,
    /// RouteReasonNotAllowedByListeners: "the Gateway has no Listener whose allowedRoutes
    /// criteria permit the route" (kind, namespace, or a listener protocol without HTTPRoutes).
    NotAllowedByListeners,
    /// RouteReasonNoMatchingListenerHostname: "the Gateway has no compatible Listeners whose
    /// Hostname matches the route".
    NoMatchingListenerHostname,
}

/// How `parent` (a parentRef of `route`) attaches to `gateway`.
///
/// ListenerStatus.attachedRoutes: "Successful attachment of a Route to a Listener is based
/// solely on the combination of the AllowedRoutes field on the corresponding Listener and the
/// Route's ParentRefs field" and "Listener or Route status does not impact successful
/// attachment": a listener that is not programmed (e.g. its certificate is missing) still
/// counts, while a listener protocol that carries no HTTPRoutes (TLS, TCP, UDP) does not
/// admit one. Hostnames must intersect as in [`RouteTable::build`](super::RouteTable::build).
pub fn attachment(
    gateway: &Gateway,
    route: &HttpRoute,
    parent: &HttpRouteParentRefs,
    namespaces: &[Namespace],
) -> Attachment {
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let gw_name = gateway.metadata.name.as_deref().unwrap_or_default();
    let route_ns = route.metadata.namespace.as_deref().unwrap_or("default");
    let selected: Vec<&GatewayListeners> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| selects(parent, route_ns, gw_ns, gw_name, l))
        .collect();
    if selected.is_empty() {
        return Attachment::NoMatchingParent;
    }
    let allowed: Vec<&GatewayListeners> = selected
        .into_iter()
        .filter(|l| {
            http_scheme(l).is_some()
                && allows_kind(l)
                && allows_namespace(l, gw_ns, route_ns, namespaces)
        })
        .collect();
    if allowed.is_empty() {
        return Attachment::NotAllowedByListeners;
    }
    let hostnames: Vec<Hostname> = route
        .spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| Hostname::parse(h))
        .collect();
    let attached: Vec<String> = allowed
        .into_iter()
        .filter(|l| {
            let listener = l.hostname.as_deref().map_or(Hostname::Any, Hostname::parse);
            hostnames.is_empty()
                || hostnames
                    .iter()
                    .any(|r| Hostname::intersect(&listener, r).is_some())
        })
        .map(|l| l.name.clone())
        .collect();
    if attached.is_empty() {
        Attachment::NoMatchingListenerHostname
    } else {
        Attachment::Attached(attached)
    }
}

/// The labels of namespace `name`, plus `kubernetes.io/metadata.name`.
fn labels(namespaces: &[Namespace], name: &str) -> BTreeMap<String, String> {
    let mut labels = namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(NAME_LABEL.to_owned(), name.to_owned());
    labels
}

/// A Kubernetes label selector: every matchLabels entry and every matchExpression must hold;
/// an empty selector selects everything.
fn selector_matches(
    selector: &GatewayListenersAllowedRoutesNamespacesSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An unknown operator selects nothing rather than everything.
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(yaml: &str) -> GatewayListeners {
        serde_yaml_ng::from_str(yaml).expect("test YAML")
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.to_owned());
        ns.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        ns
    }

    #[test]
    fn same_namespace_is_the_default() {
        // AllowedRoutes.namespaces.from: "+kubebuilder:default=Same".
        let l = listener("{name: http, port: 80, protocol: HTTP}");
        assert!(allows_namespace(&l, "infra", "infra", &[]));
        assert!(!allows_namespace(&l, "infra", "app", &[]));
        let all = listener(
            "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}",
        );
        assert!(allows_namespace(&all, "infra", "app", &[]));
    }

    #[test]
    fn selector_uses_namespace_labels_and_the_name_label() {
        let l = listener(
            "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, \
             selector: {matchLabels: {team: a}, matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}}}}",
        );
        let ns = [
            namespace("a1", &[("team", "a")]),
            namespace("a2", &[("team", "a"), ("env", "prod")]),
        ];
        assert!(allows_namespace(&l, "infra", "a1", &ns));
        assert!(!allows_namespace(&l, "infra", "a2", &ns));
        assert!(!allows_namespace(&l, "infra", "other", &ns));
        let by_name = listener(
            "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, \
             selector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [x]}]}}}}",
        );
        assert!(allows_namespace(&by_name, "infra", "x", &[]));
        assert!(!allows_namespace(&by_name, "infra", "y", &[]));
        let no_selector = listener(
            "{name: h, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}",
        );
        assert!(!allows_namespace(&no_selector, "infra", "x", &[]));
    }

    #[test]
    fn kinds_and_protocols() {
        assert!(allows_kind(&listener(
            "{name: h, port: 80, protocol: HTTP}"
        )));
        assert!(!allows_kind(&listener(
            "{name: h, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}"
        )));
        assert!(allows_kind(&listener(
            "{name: h, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]}}"
        )));
        assert_eq!(
            http_scheme(&listener("{name: h, port: 443, protocol: HTTPS}")),
            Some(Scheme::Https)
        );
        assert_eq!(
            http_scheme(&listener("{name: h, port: 443, protocol: TLS}")),
            None
        );
    }

    #[test]
    fn parent_refs_select_by_section_name_and_port() {
        let l = listener("{name: web, port: 8080, protocol: HTTP}");
        let p = |yaml: &str| -> HttpRouteParentRefs {
            serde_yaml_ng::from_str(yaml).expect("test YAML")
        };
        assert!(selects(&p("{name: gw}"), "infra", "infra", "gw", &l));
        assert!(!selects(&p("{name: gw}"), "app", "infra", "gw", &l));
        assert!(selects(
            &p("{name: gw, namespace: infra}"),
            "app",
            "infra",
            "gw",
            &l
        ));
        assert!(selects(
            &p("{name: gw, sectionName: web}"),
            "infra",
            "infra",
            "gw",
            &l
        ));
        assert!(!selects(
            &p("{name: gw, sectionName: other}"),
            "infra",
            "infra",
            "gw",
            &l
        ));
        assert!(selects(
            &p("{name: gw, port: 8080}"),
            "infra",
            "infra",
            "gw",
            &l
        ));
        assert!(!selects(
            &p("{name: gw, port: 80}"),
            "infra",
            "infra",
            "gw",
            &l
        ));
        assert!(!selects(
            &p("{name: gw, kind: Service}"),
            "infra",
            "infra",
            "gw",
            &l
        ));
        assert!(!selects(&p("{name: other}"), "infra", "infra", "gw", &l));
    }
}
