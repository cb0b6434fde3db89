//! Precedence across all routes on a listener, each test quoting the sentence it enforces.

use super::*;

fn path_rule(kind: &str, value: &str) -> String {
    format!("{{rules: [{{matches: [{{path: {{type: {kind}, value: '{value}'}}}}]}}]}}")
}

#[test]
fn exact_path_beats_any_prefix() {
    // HTTPRouteRule.matches: "precedence must be given to the match having: * "Exact" path
    // match. * "Prefix" path match with largest number of characters."
    let t = table(&[
        route(
            "app/prefix",
            Some("2020-01-01T00:00:00Z"),
            &path_rule("PathPrefix", "/foo"),
        ),
        route(
            "app/exact",
            Some("2024-01-01T00:00:00Z"),
            &path_rule("Exact", "/foo"),
        ),
    ]);
    assert_eq!(get("a", "/foo").route(&t), chose("app/exact", 0));
    assert_eq!(get("a", "/foo/").route(&t), chose("app/prefix", 0));
    assert_eq!(get("a", "/foo/bar").route(&t), chose("app/prefix", 0));
}

#[test]
fn longest_prefix_wins() {
    // "* "Prefix" path match with largest number of characters."
    let t = table(&[
        route(
            "app/short",
            Some("2020-01-01T00:00:00Z"),
            &path_rule("PathPrefix", "/foo"),
        ),
        route(
            "app/long",
            Some("2024-01-01T00:00:00Z"),
            &path_rule("PathPrefix", "/foo/bar"),
        ),
        route(
            "app/root",
            Some("2019-01-01T00:00:00Z"),
            &path_rule("PathPrefix", "/"),
        ),
    ]);
    assert_eq!(get("a", "/foo/bar/baz").route(&t), chose("app/long", 0));
    assert_eq!(get("a", "/foo/barbaz").route(&t), chose("app/short", 0));
    assert_eq!(get("a", "/foobar").route(&t), chose("app/root", 0));
}

#[test]
fn path_beats_method_beats_headers_beats_query_params() {
    // "* "Prefix" path match with largest number of characters. * Method match. * Largest
    // number of header matches. * Largest number of query param matches."
    let t = table(&[
        route(
            "app/query",
            Some("2020-01-01T00:00:00Z"),
            "{rules: [{matches: [{path: {value: /a}, queryParams: [{name: q, value: '1'}, {name: r, value: '1'}]}]}]}",
        ),
        route(
            "app/headers",
            Some("2021-01-01T00:00:00Z"),
            "{rules: [{matches: [{path: {value: /a}, headers: [{name: h, value: '1'}]}]}]}",
        ),
        route(
            "app/method",
            Some("2022-01-01T00:00:00Z"),
            "{rules: [{matches: [{path: {value: /a}, method: GET}]}]}",
        ),
        route(
            "app/path",
            Some("2023-01-01T00:00:00Z"),
            "{rules: [{matches: [{path: {value: /a/b}}]}]}",
        ),
    ]);
    let full = || get("a", "/a/b").header("h", "1").query("q=1&r=1");
    assert_eq!(full().route(&t), chose("app/path", 0));
    let full = || get("a", "/a/x").header("h", "1").query("q=1&r=1");
    assert_eq!(full().route(&t), chose("app/method", 0));
    assert_eq!(
        full().method(Method::POST).route(&t),
        chose("app/headers", 0)
    );
    assert_eq!(
        get("a", "/a")
            .query("q=1&r=1")
            .method(Method::PUT)
            .route(&t),
        chose("app/query", 0)
    );
    assert_eq!(get("a", "/a").method(Method::PUT).route(&t), None);
}

#[test]
fn more_header_and_query_matches_win() {
    // "* Largest number of header matches. * Largest number of query param matches."
    let t = table(&[
        route(
            "app/one-header",
            Some("2020-01-01T00:00:00Z"),
            "{rules: [{matches: [{headers: [{name: a, value: '1'}]}]}]}",
        ),
        route(
            "app/two-headers",
            Some("2024-01-01T00:00:00Z"),
            "{rules: [{matches: [{headers: [{name: a, value: '1'}, {name: b, value: '1'}]}]}]}",
        ),
        route(
            "app/two-queries",
            Some("2019-01-01T00:00:00Z"),
            "{rules: [{matches: [{queryParams: [{name: a, value: '1'}, {name: b, value: '1'}]}]}]}",
        ),
    ]);
    assert_eq!(
        get("x", "/").header("a", "1").header("b", "1").route(&t),
        chose("app/two-headers", 0)
    );
    assert_eq!(
        get("x", "/").header("a", "1").route(&t),
        chose("app/one-header", 0)
    );
    assert_eq!(
        get("x", "/").header("a", "1").query("a=1&b=1").route(&t),
        chose("app/one-header", 0)
    );
    assert_eq!(
        get("x", "/").query("a=1&b=1").route(&t),
        chose("app/two-queries", 0)
    );
}

#[test]
fn oldest_route_wins_a_tie() {
    // "If ties still exist across multiple Routes, matching precedence MUST be determined in
    // order of the following criteria, continuing on ties: * The oldest Route based on
    // creation timestamp."
    let t = table(&[
        route("a/new", Some("2024-06-01T00:00:00Z"), "{}"),
        route("z/old", Some("2024-01-01T00:00:00Z"), "{}"),
    ]);
    assert_eq!(get("x", "/").route(&t), chose("z/old", 0));
}

#[test]
fn alphabetical_namespace_name_breaks_a_timestamp_tie() {
    // "* The Route appearing first in alphabetical order by "{namespace}/{name}"."
    let same = Some("2024-01-01T00:00:00Z");
    let t = table(&[
        route("b/a", same, "{}"),
        route("a/z", same, "{}"),
        route("a/y", same, "{}"),
    ]);
    assert_eq!(get("x", "/").route(&t), chose("a/y", 0));
    // Without timestamps (plain YAML files) the names decide; a route without a timestamp
    // ranks after every route with one.
    let t = table(&[route("a/a", None, "{}"), route("b/b", None, "{}")]);
    assert_eq!(get("x", "/").route(&t), chose("a/a", 0));
    let t = table(&[route("a/a", None, "{}"), route("b/b", same, "{}")]);
    assert_eq!(get("x", "/").route(&t), chose("b/b", 0));
}

#[test]
fn first_rule_then_first_match_wins_within_a_route() {
    // "If ties still exist within an HTTPRoute, matching precedence MUST be granted to the
    // FIRST matching rule (in list order) with a match meeting the above criteria."
    let t = table(&[route(
        "app/r",
        None,
        "{rules: [{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /a}, headers: [{name: h, value: '1'}]}, \
         {path: {value: /a}, method: GET}, {path: {value: /a}}]}, {matches: [{path: {value: /a}}]}]}",
    )]);
    let m = get("x", "/a").find(&t).expect("match");
    assert_eq!(
        (m.rule_index, m.match_index),
        (1, 1),
        "method beats headers"
    );
    let m = get("x", "/a").method(Method::PUT).find(&t).expect("match");
    assert_eq!(
        (m.rule_index, m.match_index),
        (1, 2),
        "first of the tied rules 1 and 2"
    );
}

#[test]
fn exact_hostname_beats_wildcard_beats_no_hostname() {
    // HTTPRouteSpec.hostnames: "precedence must be given to rules from the HTTPRoute with the
    // largest number of: * Characters in a matching non-wildcard hostname. * Characters in a
    // matching hostname." and "If ties exist across multiple Routes, the matching precedence
    // rules for HTTPRouteMatches takes over."
    let t = table(&[
        route(
            "app/any",
            Some("2019-01-01T00:00:00Z"),
            &path_rule("Exact", "/p"),
        ),
        route(
            "app/wild",
            Some("2020-01-01T00:00:00Z"),
            "{hostnames: ['*.example.com'], rules: [{matches: [{path: {type: Exact, value: /p}}]}]}",
        ),
        route(
            "app/deeper",
            Some("2021-01-01T00:00:00Z"),
            "{hostnames: ['*.foo.example.com']}",
        ),
        route(
            "app/exact",
            Some("2022-01-01T00:00:00Z"),
            "{hostnames: [a.foo.example.com]}",
        ),
    ]);
    // The exact hostname wins with only a PathPrefix / against Exact /p elsewhere.
    assert_eq!(
        get("a.foo.example.com", "/p").route(&t),
        chose("app/exact", 0)
    );
    assert_eq!(
        get("b.foo.example.com", "/p").route(&t),
        chose("app/deeper", 0)
    );
    assert_eq!(get("b.example.com", "/p").route(&t), chose("app/wild", 0));
    assert_eq!(get("b.example.com", "/q").route(&t), None);
    assert_eq!(get("other.net", "/p").route(&t), chose("app/any", 0));
    // HTTPRouteSpec.hostnames: "a match for `*.example.com` would match both
    // `test.example.com`, and `foo.test.example.com`, but not `example.com`."
    assert_eq!(get("example.com", "/p").route(&t), chose("app/any", 0));
}

#[test]
fn host_port_and_case_are_ignored() {
    // HTTPRouteSpec.hostnames: "Implementations MUST ignore any port value specified in the
    // HTTP Host header while performing a match".
    let t = table(&[route("app/r", None, "{hostnames: [foo.example.com]}")]);
    assert_eq!(
        get("FOO.Example.COM:8080", "/").route(&t),
        chose("app/r", 0)
    );
    assert_eq!(get("foo.example.com.evil:80", "/").route(&t), None);
}

#[test]
fn original_route_hostnames_break_ties_of_equal_intersections() {
    // HTTPRouteSpec.hostnames: "When multiple HTTPRoutes attach to the same Listener and yield
    // identical Listener/Route intersected hostnames, implementations SHOULD evaluate
    // precedence using the original hostnames configured on the Route, not the calculated
    // Listener/Route hostname intersection."
    let gateway = GATEWAY.replace("protocol: HTTP,", "protocol: HTTP, hostname: '*.foo.com',");
    let (t, errors) = build(&[
        gateway,
        route(
            "app/route-2",
            Some("2025-01-01T00:00:00Z"),
            "{hostnames: ['*.com']}",
        ),
        route(
            "app/route-1",
            Some("2026-01-01T00:00:00Z"),
            "{hostnames: ['*.foo.com']}",
        ),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let m = get("a.foo.com", "/").find(&t).expect("match");
    assert_eq!(m.route.to_string(), "app/route-1");
    assert_eq!(m.hostname.to_string(), "*.foo.com");
}

#[test]
fn regex_paths_rank_between_exact_and_prefix() {
    // "Note: The precedence of RegularExpression path matches are implementation-specific."
    // lbgw: Exact > RegularExpression (longer pattern first) > PathPrefix.
    let t = table(&[
        route(
            "app/prefix",
            Some("2020-01-01T00:00:00Z"),
            &path_rule("PathPrefix", "/api/v1/users"),
        ),
        route(
            "app/regex",
            Some("2021-01-01T00:00:00Z"),
            &path_rule("RegularExpression", "/api/v[0-9]+/.*"),
        ),
        route(
            "app/exact",
            Some("2022-01-01T00:00:00Z"),
            &path_rule("Exact", "/api/v1/users/me"),
        ),
    ]);
    assert_eq!(get("x", "/api/v1/users/7").route(&t), chose("app/regex", 0));
    assert_eq!(
        get("x", "/api/v1/users/me").route(&t),
        chose("app/exact", 0)
    );
    assert_eq!(get("x", "/api/v1/users").route(&t), chose("app/regex", 0));
    assert_eq!(get("x", "/api/vx/users").route(&t), None);
}

#[test]
fn no_match_is_none_for_a_404() {
    // HTTPRouteRule.matches: "When no rules matching a request have been successfully attached
    // to the parent a request is coming from, a HTTP 404 status code MUST be returned."
    let t = table(&[route("app/r", None, &path_rule("Exact", "/only"))]);
    assert!(get("x", "/other").find(&t).is_none());
    let mut other_gateway = get("x", "/only");
    other_gateway.listener = ListenerRef::Port(81);
    assert!(other_gateway.find(&t).is_none());
}
