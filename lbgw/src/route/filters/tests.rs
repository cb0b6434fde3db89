use gateway_api::apis::standard::httproutes::HttpRouteRulesFilters;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::route::error::{BuildError, RouteId};

fn id() -> RouteId {
    RouteId {
        namespace: "app".into(),
        name: "r".into(),
    }
}

fn compile_yaml(yaml: &str) -> Result<Filter, BuildError> {
    let f: HttpRouteRulesFilters = serde_yaml_ng::from_str(yaml).expect("test YAML");
    let route = id();
    let ctx = FilterCtx {
        route: &route,
        rule: 0,
        field: "filters[0]".into(),
        namespace: "app",
    };
    compile(&f, &ctx)
}

fn redirect(yaml: &str) -> RequestRedirect {
    match compile_yaml(&format!(
        "{{type: RequestRedirect, requestRedirect: {yaml}}}"
    )) {
        Ok(Filter::RequestRedirect(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn modifier(yaml: &str) -> Result<HeaderModifier, BuildError> {
    match compile_yaml(&format!(
        "{{type: RequestHeaderModifier, requestHeaderModifier: {yaml}}}"
    ))? {
        Filter::RequestHeaderModifier(m) => Ok(m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn replace_prefix_match_follows_the_spec_table() {
    // HTTPPathModifier.replacePrefixMatch, the spec's table verbatim:
    // Request Path | Prefix Match | Replace Prefix | Modified Path
    let table = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
    ];
    for (path, prefix, replacement, want) in table {
        assert_eq!(
            replace_prefix_match(path, prefix, replacement),
            want,
            "{path} | {prefix} | {replacement:?}"
        );
    }
}

#[test]
fn replace_prefix_match_whole_segments_and_root_prefix() {
    // "a request to "/foo/bar" with a prefix match of "/foo" and a ReplacePrefixMatch of
    // "/xyz" would be modified to "/xyz/bar"."
    assert_eq!(
        replace_prefix_match("/foo/bar/baz", "/foo/bar", "/x"),
        "/x/baz"
    );
    assert_eq!(
        replace_prefix_match("/anything", "/", "/xyz"),
        "/xyz/anything"
    );
    assert_eq!(replace_prefix_match("/", "/", "/xyz"), "/xyz/");
    // A path the prefix does not match is left alone.
    assert_eq!(replace_prefix_match("/other", "/foo", "/xyz"), "/other");
}

#[test]
fn path_modifier_apply() {
    // ReplaceFullPath: "specifies the value with which to replace the full path of a request".
    assert_eq!(
        PathModifier::ReplaceFullPath("/new".into()).apply("/a/b", Some("/a")),
        "/new"
    );
    let p = PathModifier::ReplacePrefixMatch("/v2".into());
    assert_eq!(p.apply("/v1/users", Some("/v1")), "/v2/users");
    assert_eq!(p.apply("/v1/users", None), "/v1/users");
}

fn req(scheme: Scheme, listener_port: u16) -> RedirectRequest<'static> {
    RedirectRequest {
        scheme,
        host: "Example.com:8080",
        listener_port,
        path: "/path",
        query: None,
        matched_prefix: None,
    }
}

#[test]
fn redirect_port_derivation_table() {
    // HTTPRequestRedirectFilter.port: "If redirect scheme is not-empty, the redirect port MUST
    // be the well-known port associated with the redirect scheme. Specifically "http" to port
    // 80 and "https" to port 443." ... "If redirect scheme is empty, the redirect port MUST be
    // the Gateway Listener port." ... "Implementations SHOULD NOT add the port number in the
    // 'Location' header" for HTTP with port 80 and HTTPS with port 443.
    let rows = [
        // (listener scheme, listener port, filter YAML, Location)
        (Scheme::Http, 80, "{}", "http://example.com/path"),
        (Scheme::Http, 8080, "{}", "http://example.com:8080/path"),
        (Scheme::Https, 443, "{}", "https://example.com/path"),
        (Scheme::Https, 8443, "{}", "https://example.com:8443/path"),
        (
            Scheme::Http,
            80,
            "{scheme: https}",
            "https://example.com/path",
        ),
        (
            Scheme::Http,
            8080,
            "{scheme: https}",
            "https://example.com/path",
        ),
        (
            Scheme::Https,
            443,
            "{scheme: http}",
            "http://example.com/path",
        ),
        (
            Scheme::Https,
            8443,
            "{scheme: http}",
            "http://example.com/path",
        ),
        (
            Scheme::Http,
            80,
            "{port: 8080}",
            "http://example.com:8080/path",
        ),
        (
            Scheme::Http,
            80,
            "{port: 443}",
            "http://example.com:443/path",
        ),
        (
            Scheme::Http,
            80,
            "{scheme: https, port: 8443}",
            "https://example.com:8443/path",
        ),
        (
            Scheme::Http,
            80,
            "{scheme: https, port: 443}",
            "https://example.com/path",
        ),
        (
            Scheme::Https,
            443,
            "{scheme: http, port: 80}",
            "http://example.com/path",
        ),
        (
            Scheme::Https,
            443,
            "{port: 80}",
            "https://example.com:80/path",
        ),
        (
            Scheme::Http,
            8080,
            "{hostname: other.example}",
            "http://other.example:8080/path",
        ),
    ];
    for (scheme, port, yaml, want) in rows {
        assert_eq!(
            redirect(yaml).location(&req(scheme, port)),
            want,
            "{scheme} {port} {yaml}"
        );
    }
}

#[test]
fn redirect_status_defaults_to_302() {
    // HTTPRequestRedirectFilter.statusCode: "+kubebuilder:default=302".
    assert_eq!(redirect("{}").status, StatusCode::FOUND);
    assert_eq!(
        redirect("{statusCode: 301}").status,
        StatusCode::MOVED_PERMANENTLY
    );
    assert_eq!(
        redirect("{statusCode: 308}").status,
        StatusCode::PERMANENT_REDIRECT
    );
    // "Unknown values here must result in the implementation setting the Accepted Condition
    // for the Route to `status: False`, with a Reason of `UnsupportedValue`."
    let err =
        compile_yaml("{type: RequestRedirect, requestRedirect: {statusCode: 200}}").unwrap_err();
    assert!(
        matches!(err, BuildError::UnsupportedValue { .. }),
        "{err:?}"
    );
}

#[test]
fn redirect_path_and_query() {
    // HTTPRequestRedirectFilter.path: "The modified path is then used to construct the
    // `Location` header. When empty, the request path is used as-is."
    let mut r = req(Scheme::Http, 80);
    r.path = "/old/page";
    r.query = Some("a=1");
    r.matched_prefix = Some("/old");
    assert_eq!(
        redirect("{}").location(&r),
        "http://example.com/old/page?a=1"
    );
    let prefix = redirect("{path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}");
    assert_eq!(prefix.location(&r), "http://example.com/new/page?a=1");
    let full = redirect("{path: {type: ReplaceFullPath, replaceFullPath: /x}}");
    assert_eq!(full.location(&r), "http://example.com/x?a=1");
    let err =
        compile_yaml("{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath}}}");
    assert!(matches!(err, Err(BuildError::UnsupportedValue { .. })));
}

#[test]
fn redirect_keeps_ipv6_brackets() {
    let mut r = req(Scheme::Http, 8080);
    r.host = "[::1]:8080";
    assert_eq!(redirect("{}").location(&r), "http://[::1]:8080/path");
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn header_modifier_set_add_remove() {
    // HTTPHeaderFilter.set: "Set overwrites the request with the given header (name, value)";
    // add: "It appends to any existing values associated with the header name."; remove:
    // "Note that the header names are case-insensitive".
    let m = modifier("{set: [{name: My-Header, value: bar}], add: [{name: X-Add, value: 'bar,baz'}], remove: [MY-HEADER1, my-header3]}")
        .expect("valid");
    let mut h = headers(&[
        ("my-header", "foo"),
        ("my-header", "foo2"),
        ("x-add", "foo"),
        ("my-header1", "a"),
        ("my-header2", "b"),
        ("my-header3", "c"),
    ]);
    m.apply(&mut h);
    let all = |name: &str| {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("my-header"), ["bar"]);
    assert_eq!(all("x-add"), ["foo", "bar,baz"]);
    assert!(h.get("my-header1").is_none() && h.get("my-header3").is_none());
    assert_eq!(all("my-header2"), ["b"]);
    // Set on an absent header adds it; add on an absent header adds it.
    let mut empty = HeaderMap::new();
    m.apply(&mut empty);
    assert_eq!(empty.get("my-header").unwrap(), "bar");
    assert_eq!(empty.get("x-add").unwrap(), "bar,baz");
}

#[test]
fn header_modifier_names_and_conflicts() {
    // HTTPHeader.name: "If multiple entries specify equivalent header names, the first entry
    // with an equivalent name MUST be considered for a match. Subsequent entries with an
    // equivalent header name MUST be ignored."
    let m = modifier("{set: [{name: a, value: '1'}, {name: A, value: '2'}]}").expect("valid");
    assert_eq!(
        m.set,
        vec![(HeaderName::from_static("a"), HeaderValue::from_static("1"))]
    );
    // HTTPHeaderFilter: "Filters specifying multiple actions of the same or different type for
    // any one header name are invalid."
    let err = modifier("{set: [{name: a, value: '1'}], remove: [A]}").unwrap_err();
    assert!(
        matches!(err, BuildError::IncompatibleFilters { .. }),
        "{err:?}"
    );
    let err = modifier("{add: [{name: 'bad name', value: '1'}]}").unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidHeaderName { field, .. } if field == "filters[0].requestHeaderModifier.add")
    );
    let err = modifier("{set: [{name: a, value: \"x\\ny\"}]}").unwrap_err();
    assert!(
        matches!(err, BuildError::InvalidHeaderValue { .. }),
        "{err:?}"
    );
}

#[test]
fn response_header_modifier_compiles_like_the_request_one() {
    let f = compile_yaml(
        "{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x, value: y}]}}",
    );
    assert!(matches!(f, Ok(Filter::ResponseHeaderModifier(m)) if m.set.len() == 1));
}

#[test]
fn a_filter_without_its_configuration_is_rejected() {
    let err = compile_yaml("{type: URLRewrite}").unwrap_err();
    assert!(
        matches!(err, BuildError::UnsupportedValue { .. }),
        "{err:?}"
    );
}

#[test]
fn url_rewrite_compiles() {
    let f = compile_yaml(
        "{type: URLRewrite, urlRewrite: {hostname: b.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}",
    );
    let Ok(Filter::UrlRewrite(r)) = f else {
        panic!("{f:?}")
    };
    assert_eq!(r.hostname.as_deref(), Some("b.example"));
    assert_eq!(r.path, Some(PathModifier::ReplacePrefixMatch("/v2".into())));
}

#[test]
fn mirror_fraction() {
    let mirror =
        |yaml: &str| match compile_yaml(&format!("{{type: RequestMirror, requestMirror: {yaml}}}"))
        {
            Ok(Filter::RequestMirror(m)) => Ok(m),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
    // HTTPRequestMirrorFilter: "If neither field is specified, 100% of requests will be
    // mirrored."
    let all = mirror("{backendRef: {name: svc, port: 80}}").unwrap();
    assert_eq!(all.backend.namespace, "app");
    assert!(all.should_mirror(0) && all.should_mirror(u32::MAX));
    let none = mirror("{backendRef: {name: svc, port: 80}, percent: 0}").unwrap();
    assert!(!none.should_mirror(0) && !none.should_mirror(u32::MAX));
    let half =
        mirror("{backendRef: {name: svc, port: 80}, fraction: {numerator: 1, denominator: 2}}")
            .unwrap();
    let mirrored = (0..1024u32).filter(|i| half.should_mirror(i << 22)).count();
    assert_eq!(mirrored, 512);
    // "Only one of Fraction or Percent may be specified."
    assert!(
        mirror("{backendRef: {name: s, port: 80}, percent: 5, fraction: {numerator: 1}}").is_err()
    );
    assert!(
        mirror("{backendRef: {name: s, port: 80}, fraction: {numerator: 3, denominator: 2}}")
            .is_err()
    );
}

#[test]
fn extension_ref_is_kept_for_the_proxy_to_fail() {
    // HTTPRouteFilter.type: "If a reference to a custom filter type cannot be resolved, the
    // filter MUST NOT be skipped."
    let f =
        compile_yaml("{type: ExtensionRef, extensionRef: {group: ex.com, kind: Auth, name: a}}");
    assert!(matches!(f, Ok(Filter::ExtensionRef { kind, .. }) if kind == "Auth"));
}
