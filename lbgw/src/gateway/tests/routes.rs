//! HTTPRoute parent conditions and listener attachedRoutes.

use super::*;

/// An HTTPRoute `ns/name` with `spec` as flow YAML.
fn route(id: &str, spec: &str) -> String {
    let (ns, name) = id.split_once('/').expect("ns/name");
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// `infra/gw`: `web` (HTTP 80, *.example.test, routes from all namespaces), `local` (HTTP
/// 8080, routes from infra only), `db` (TCP), `secure` (HTTPS 443 whose Secret is missing).
fn gw() -> String {
    gateway(&[
        "{name: web, port: 80, protocol: HTTP, hostname: '*.example.test', allowedRoutes: {namespaces: {from: All}}}",
        "{name: local, port: 8080, protocol: HTTP}",
        "{name: db, port: 5432, protocol: TCP}",
        "{name: secure, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: gone}]}, allowedRoutes: {namespaces: {from: All}}}",
    ])
}

fn attached(status: &GatewayStatus) -> Vec<(String, u32)> {
    status.gateways[0]
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.attached_routes))
        .collect()
}

fn accepted(status: &GatewayStatus, route: &str) -> (bool, &'static str) {
    let c = route_condition(status, route, "Accepted");
    (c.status, c.reason)
}

#[test]
fn attachment_reasons() {
    let yaml = docs(&[
        &gw(),
        // Whole Gateway from infra: web, local and secure (db carries no HTTPRoutes).
        &route("infra/all", "{parentRefs: [{name: gw}]}"),
        // From app: only web and secure allow other namespaces.
        &route(
            "app/shop",
            "{parentRefs: [{name: gw, namespace: infra}], hostnames: [shop.example.test]}",
        ),
        // RouteReasonNoMatchingParent: "a Route ParentRef specifies a Port and/or SectionName
        // that does not match any Listeners in the Gateway".
        &route(
            "infra/no-section",
            "{parentRefs: [{name: gw, sectionName: nope}]}",
        ),
        &route(
            "infra/no-port",
            "{parentRefs: [{name: gw, sectionName: web, port: 81}]}",
        ),
        &route("infra/no-gateway", "{parentRefs: [{name: missing}]}"),
        // RouteReasonNotAllowedByListeners.
        &route(
            "app/local",
            "{parentRefs: [{name: gw, namespace: infra, sectionName: local}]}",
        ),
        &route("infra/tcp", "{parentRefs: [{name: gw, sectionName: db}]}"),
        // RouteReasonNoMatchingListenerHostname.
        &route(
            "app/elsewhere",
            "{parentRefs: [{name: gw, namespace: infra, sectionName: web}], hostnames: [shop.other.test]}",
        ),
        // A parent of another kind is not lbgw's to report on.
        &route(
            "infra/mesh",
            "{parentRefs: [{group: '', kind: Service, name: svc}]}",
        ),
    ]);
    let (_, status) = build(&yaml);
    assert_eq!(accepted(&status, "infra/all"), (true, "Accepted"));
    assert_eq!(accepted(&status, "app/shop"), (true, "Accepted"));
    assert_eq!(
        accepted(&status, "infra/no-section"),
        (false, "NoMatchingParent")
    );
    assert_eq!(
        route_condition(&status, "infra/no-section", "Accepted").message,
        "Gateway infra/gw has no listener with name nope"
    );
    assert_eq!(
        accepted(&status, "infra/no-port"),
        (false, "NoMatchingParent")
    );
    assert_eq!(
        accepted(&status, "infra/no-gateway"),
        (false, "NoMatchingParent")
    );
    assert_eq!(
        route_condition(&status, "infra/no-gateway", "Accepted").message,
        "Gateway infra/missing does not exist"
    );
    assert_eq!(
        accepted(&status, "app/local"),
        (false, "NotAllowedByListeners")
    );
    assert_eq!(
        accepted(&status, "infra/tcp"),
        (false, "NotAllowedByListeners")
    );
    assert_eq!(
        accepted(&status, "app/elsewhere"),
        (false, "NoMatchingListenerHostname")
    );
    assert!(!status.routes.iter().any(|r| r.id.name == "mesh"));

    // ListenerStatus.attachedRoutes counts accepted routes, also on a listener that is not
    // programmed ("Listener or Route status does not impact successful attachment").
    assert_eq!(
        attached(&status),
        vec![
            ("web".to_owned(), 2),
            ("local".to_owned(), 1),
            ("db".to_owned(), 0),
            ("secure".to_owned(), 2)
        ]
    );
    let all = status.routes.iter().find(|r| r.id.name == "all").unwrap();
    assert_eq!(all.parents[0].listeners, vec!["web", "local", "secure"]);
}

#[test]
fn a_route_counts_once_per_listener() {
    let yaml = docs(&[
        &gw(),
        &route(
            "infra/twice",
            "{parentRefs: [{name: gw, sectionName: web}, {name: gw, sectionName: local}, {name: gw, port: 80}]}",
        ),
    ]);
    let (_, status) = build(&yaml);
    let parents = &status.routes[0].parents;
    assert_eq!(parents.len(), 3);
    assert!(parents.iter().all(|p| p.accepted()));
    assert_eq!(attached(&status)[0], ("web".to_owned(), 1));
    assert_eq!(attached(&status)[1], ("local".to_owned(), 1));
}

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: api, namespace: infra}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: theirs, namespace: other}
spec: {ports: [{port: 80}]}
";

#[test]
fn resolved_refs_reasons() {
    let on = |id: &str, backend: &str| {
        route(
            id,
            &format!(
                "{{parentRefs: [{{name: gw, sectionName: local}}], rules: [{{backendRefs: [{backend}]}}]}}"
            ),
        )
    };
    let yaml = docs(&[
        &gw(),
        SERVICES,
        // A Service without endpoints exists: resolved (the proxy answers 503).
        &on("infra/ok", "{name: api, port: 80}"),
        &on("infra/not-found", "{name: nope, port: 80}"),
        &on(
            "infra/not-permitted",
            "{name: theirs, namespace: other, port: 80}",
        ),
        &on("infra/kind", "{group: example.com, kind: Bucket, name: b}"),
    ]);
    let (_, status) = build(&yaml);
    let resolved = |r: &str| {
        let c = route_condition(&status, r, "ResolvedRefs");
        (c.status, c.reason)
    };
    assert_eq!(resolved("infra/ok"), (true, "ResolvedRefs"));
    assert_eq!(resolved("infra/not-found"), (false, "BackendNotFound"));
    assert_eq!(resolved("infra/not-permitted"), (false, "RefNotPermitted"));
    assert_eq!(resolved("infra/kind"), (false, "InvalidKind"));
    assert_eq!(
        route_condition(&status, "infra/not-found", "ResolvedRefs").message,
        "rules[0].backendRefs[0]: Service infra/nope does not exist"
    );
    // Unresolved references do not detach the route.
    assert_eq!(accepted(&status, "infra/not-found"), (true, "Accepted"));
}

#[test]
fn invalid_rules_are_dropped_and_reported() {
    let bad_regex = "{matches: [{path: {type: RegularExpression, value: '('}}]}";
    let incompatible = "{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}, \
                        {type: URLRewrite, urlRewrite: {hostname: x.example.test}}]}";
    let yaml = docs(&[
        &gw(),
        &route(
            "infra/partly",
            &format!(
                "{{parentRefs: [{{name: gw, sectionName: local}}], rules: [{{}}, {bad_regex}]}}"
            ),
        ),
        &route(
            "infra/wholly",
            &format!("{{parentRefs: [{{name: gw, sectionName: local}}], rules: [{bad_regex}]}}"),
        ),
        &route(
            "infra/filters",
            &format!("{{parentRefs: [{{name: gw, sectionName: local}}], rules: [{incompatible}]}}"),
        ),
    ]);
    let (model, status) = build(&yaml);
    // RouteConditionPartiallyInvalid: "The message for this condition MUST start with the
    // prefix "Dropped Rule"" while "Accepted" stays True.
    assert_eq!(accepted(&status, "infra/partly"), (true, "Accepted"));
    let c = route_condition(&status, "infra/partly", "PartiallyInvalid");
    assert_eq!((c.status, c.reason), (true, "UnsupportedValue"));
    assert!(c.message.starts_with("Dropped Rule"), "{}", c.message);
    assert!(c.message.contains("rule 1 match 0"), "{}", c.message);
    // With no valid rule left the route is not accepted, and is not counted.
    assert_eq!(
        accepted(&status, "infra/wholly"),
        (false, "UnsupportedValue")
    );
    let wholly = status
        .routes
        .iter()
        .find(|r| r.id.name == "wholly")
        .unwrap();
    assert!(condition(&wholly.parents[0].conditions, "PartiallyInvalid").is_none());
    assert_eq!(
        accepted(&status, "infra/filters"),
        (false, "IncompatibleFilters")
    );
    assert_eq!(attached(&status)[1], ("local".to_owned(), 1));
    // The valid rule serves.
    assert!(model.routes.listeners().any(|l| l.name == "local"));
}
