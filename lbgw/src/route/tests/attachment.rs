//! Which listeners routes attach to, listener selection, and what build does with bad input.

use super::*;

/// `infra/gw` with listeners `foo` (foo.example.com), `wild` (*.example.com) and `any` on
/// port 80, `alt` on 8080 and a TLS listener on 443; routes from namespace `infra` only.
const MULTI: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: lbgw
  listeners:
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: wild, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: any, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
";

fn listener_route(id: &str, section: &str, spec: &str) -> String {
    route(id, None, spec).replace(
        "parentRefs: [{name: gw, namespace: infra}]",
        &format!("parentRefs: [{{name: gw, namespace: infra, sectionName: {section}}}]"),
    )
}

#[test]
fn listener_isolation_picks_the_most_specific_listener() {
    // GatewaySpec.listeners: "if Listeners are defined for "foo.example.com" and
    // "*.example.com", a request to "foo.example.com" SHOULD only be routed using routes
    // attached to the "foo.example.com" Listener (and not the "*.example.com" Listener)."
    let (t, errors) = build(&[
        MULTI.to_owned(),
        listener_route(
            "infra/on-foo",
            "foo",
            "{rules: [{matches: [{path: {type: Exact, value: /foo}}]}]}",
        ),
        listener_route(
            "infra/on-wild",
            "wild",
            "{rules: [{matches: [{path: {type: Exact, value: /wild}}]}]}",
        ),
        listener_route("infra/on-any", "any", "{}"),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        get("foo.example.com", "/foo").route(&t),
        chose("infra/on-foo", 0)
    );
    assert_eq!(get("foo.example.com", "/wild").route(&t), None);
    assert_eq!(
        get("bar.example.com", "/wild").route(&t),
        chose("infra/on-wild", 0)
    );
    assert_eq!(get("bar.example.com", "/foo").route(&t), None);
    assert_eq!(
        get("example.com", "/anything").route(&t),
        chose("infra/on-any", 0)
    );
    let m = get("bar.example.com", "/wild").find(&t).expect("match");
    assert_eq!((m.listener.name.as_str(), m.listener.port), ("wild", 80));
}

#[test]
fn listener_by_name() {
    let (t, _) = build(&[MULTI.to_owned(), listener_route("infra/r", "wild", "{}")]);
    let by_name = |host| get(host, "/").listener(ListenerRef::Name("wild"));
    assert_eq!(by_name("x.example.com").route(&t), chose("infra/r", 0));
    // The route's hostnames were narrowed to the listener's `*.example.com`.
    assert_eq!(by_name("example.net").route(&t), None);
    assert_eq!(
        get("x.example.com", "/")
            .listener(ListenerRef::Name("nope"))
            .route(&t),
        None
    );
}

#[test]
fn parent_refs_select_listeners() {
    // ParentReference.sectionName: "When unspecified (empty string), this will reference the
    // entire resource." ParentReference.port: "When specified, ... this targets all listeners
    // listening on the specified port".
    let by_port = route("infra/by-port", None, "{}")
        .replace("namespace: infra}]", "namespace: infra, port: 8080}]");
    let (t, _) = build(&[
        MULTI.to_owned(),
        by_port,
        listener_route("infra/on-foo", "foo", "{}"),
    ]);
    assert_eq!(
        get("a", "/").listener(ListenerRef::Port(8080)).route(&t),
        chose("infra/by-port", 0)
    );
    assert_eq!(
        get("foo.example.com", "/").route(&t),
        chose("infra/on-foo", 0)
    );
    assert_eq!(get("example.com", "/").route(&t), None);
    // TLS listeners carry no HTTPRoutes.
    assert!(t.listeners().all(|l| l.name != "tls"));
    assert_eq!(t.listeners().count(), 4);
}

#[test]
fn route_hostnames_outside_the_listener_are_ignored() {
    // HTTPRouteSpec.hostnames: "if a Listener specified `*.example.com`, and the HTTPRoute
    // specified `test.example.com` and `test.example.net`, `test.example.net` must not be
    // considered for a match."
    let (t, _) = build(&[
        MULTI.to_owned(),
        listener_route(
            "infra/r",
            "wild",
            "{hostnames: [test.example.com, test.example.net]}",
        ),
    ]);
    assert_eq!(
        get("test.example.com", "/")
            .listener(ListenerRef::Name("wild"))
            .route(&t),
        chose("infra/r", 0)
    );
    assert_eq!(
        get("test.example.net", "/")
            .listener(ListenerRef::Name("wild"))
            .route(&t),
        None
    );
}

#[test]
fn a_route_without_intersecting_hostnames_does_not_attach() {
    // HTTPRouteSpec.hostnames: "If both the Listener and HTTPRoute have specified hostnames,
    // and none match with the criteria above, then the HTTPRoute is not accepted."
    let (t, _) = build(&[
        MULTI.to_owned(),
        listener_route("infra/apex", "wild", "{hostnames: [example.com]}"),
        listener_route("infra/ok", "foo", "{}"),
    ]);
    assert_eq!(
        get("example.com", "/")
            .listener(ListenerRef::Name("wild"))
            .route(&t),
        None
    );
    assert_eq!(get("foo.example.com", "/").route(&t), chose("infra/ok", 0));
}

#[test]
fn allowed_routes_default_to_the_gateway_namespace() {
    // AllowedRoutes.namespaces.from: "Same: Only Routes in the same namespace may be used by
    // this Gateway." (the default)
    let (t, _) = build(&[
        MULTI.to_owned(),
        listener_route("app/other-ns", "alt", "{}"),
    ]);
    assert_eq!(
        get("a", "/").listener(ListenerRef::Port(8080)).route(&t),
        None
    );
    let (t, _) = build(&[
        MULTI.to_owned(),
        listener_route("infra/same-ns", "alt", "{}"),
    ]);
    assert_eq!(
        get("a", "/").listener(ListenerRef::Port(8080)).route(&t),
        chose("infra/same-ns", 0)
    );
}

#[test]
fn selector_namespaces_use_namespace_labels() {
    let gateway = GATEWAY.replace(
        "{from: All}",
        "{from: Selector, selector: {matchLabels: {gw: allowed}}}",
    );
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: app, labels: {gw: allowed}}\n"
        .to_owned();
    let (t, _) = build(&[gateway.clone(), ns, route("app/r", None, "{}")]);
    assert_eq!(get("a", "/").route(&t), chose("app/r", 0));
    let (t, _) = build(&[gateway, route("app/r", None, "{}")]);
    assert_eq!(get("a", "/").route(&t), None);
}

#[test]
fn conflicted_listeners_are_all_dropped() {
    // GatewaySpec.listeners: "The implementation MUST NOT pick one conflicting Listener as the
    // winner. ALL indistinct Listeners must not be accepted for processing."
    let gateway = MULTI.replace(
        "{name: alt, port: 8080, protocol: HTTP}",
        "{name: alt, port: 80, protocol: HTTP}",
    );
    let (t, errors) = build(&[gateway, route("infra/r", None, "{}")]);
    assert!(
        matches!(&errors[..], [BuildError::ConflictedListeners { port: 80, listeners, .. }] if listeners == &["any", "alt"]),
        "{errors:?}"
    );
    assert_eq!(get("example.com", "/").route(&t), None);
    assert_eq!(get("foo.example.com", "/").route(&t), chose("infra/r", 0));
}

#[test]
fn an_invalid_rule_is_reported_and_dropped_the_rest_serves() {
    let (t, errors) = build(&[
        GATEWAY.to_owned(),
        route(
            "app/r",
            None,
            "{rules: [{matches: [{path: {type: Exact, value: /ok}}]}, \
             {matches: [{path: {value: /x}}, {path: {type: RegularExpression, value: '(unclosed'}}]}, \
             {matches: [{path: {value: /x}}]}]}",
        ),
    ]);
    assert!(
        matches!(&errors[..], [BuildError::InvalidRegex { route, rule: 1, index: 1, field, .. }]
            if route.to_string() == "app/r" && field == "path"),
        "{errors:?}"
    );
    assert_eq!(get("a", "/ok").route(&t), chose("app/r", 0));
    assert_eq!(get("a", "/x").route(&t), chose("app/r", 2));
}

#[test]
fn a_route_without_rules_gets_the_default_rule() {
    // HTTPRouteSpec.rules: "+kubebuilder:default={{matches: {{path: {type: "PathPrefix",
    // value: "/"}}}}}"
    let t = table(&[route("app/r", None, "{}")]);
    let m = get("a", "/any/path").find(&t).expect("match");
    assert_eq!((m.rule_index, m.matched_prefix()), (0, Some("/")));
    assert!(m.rule.backends.is_empty() && m.rule.filters.is_empty());
}

#[test]
fn match_exposes_what_filters_need() {
    let t = table(&[route(
        "app/r",
        None,
        "{rules: [{matches: [{path: {value: /old}}], filters: [{type: URLRewrite, urlRewrite: \
         {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}], backendRefs: [{name: s, port: 80}]}]}",
    )]);
    let m = get("a", "/old/page").find(&t).expect("match");
    let [Filter::UrlRewrite(rewrite)] = &m.rule.filters[..] else {
        panic!("{:?}", m.rule.filters)
    };
    let path = rewrite
        .path
        .as_ref()
        .expect("path")
        .apply("/old/page", m.matched_prefix());
    assert_eq!(path, "/new/page");
    assert_eq!(m.listener.scheme, Scheme::Http);
    assert_eq!(
        m.rule.pick_backend(0).map(|b| b.backend.port),
        Some(Some(80))
    );
}

#[test]
fn match_builds_the_redirect_request() {
    let t = table(&[route(
        "app/r",
        None,
        "{rules: [{matches: [{path: {value: /old}}], filters: [{type: RequestRedirect, requestRedirect: \
         {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}}]}]}",
    )]);
    let req = get("Shop.Example:80", "/old/cart").query("id=1");
    let m = req.find(&t).expect("match");
    let [Filter::RequestRedirect(redirect)] = &m.rule.filters[..] else {
        panic!("{:?}", m.rule.filters)
    };
    let parts = RequestParts {
        gateway: GatewayRef {
            namespace: "infra",
            name: "gw",
        },
        listener: req.listener,
        host: req.host,
        path: req.path,
        query: req.query,
        method: &req.method,
        headers: &req.headers,
    };
    assert_eq!(
        redirect.location(&m.redirect_request(&parts)),
        "https://shop.example/new/cart?id=1"
    );
    assert_eq!(redirect.status, http::StatusCode::MOVED_PERMANENTLY);
}
