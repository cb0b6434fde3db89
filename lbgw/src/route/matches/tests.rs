use http::Method;

use super::*;

fn id() -> RouteId {
    RouteId {
        namespace: "ns".into(),
        name: "r".into(),
    }
}

/// Compiles an HTTPRouteMatch written as YAML.
fn compile(yaml: &str) -> Result<RequestMatch, BuildError> {
    let m: HttpRouteRulesMatches = serde_yaml_ng::from_str(yaml).expect("test YAML");
    RequestMatch::compile(&m, &id(), 0, 0)
}

fn m(yaml: &str) -> RequestMatch {
    compile(yaml).expect("valid match")
}

use crate::route::tests::{Req, get};

/// A GET of `path`, built with the table tests' request builder.
fn req(path: &'static str) -> Req {
    get("example.com", path)
}

/// Scoring a request against one compiled match.
trait Score {
    fn score(&self, m: &RequestMatch) -> Option<MatchScore>;
    fn matches(&self, m: &RequestMatch) -> bool {
        self.score(m).is_some()
    }
}

impl Score for Req {
    fn score(&self, m: &RequestMatch) -> Option<MatchScore> {
        m.score(&Prepared {
            path: self.path,
            method: &self.method,
            headers: &self.headers,
            query: parse_query(self.query),
        })
    }
}

#[test]
fn path_prefix_matches_whole_segments() {
    // PathMatchType PathPrefix: "For example, the paths `/abc`, `/abc/`, and `/abc/def` would
    // all match the prefix `/abc`, but the path `/abcd` would not."
    for prefix in ["/abc", "/abc/"] {
        let pm = m(&format!("path: {{type: PathPrefix, value: '{prefix}'}}"));
        for path in ["/abc", "/abc/", "/abc/def", "/abc/def/"] {
            assert!(req(path).matches(&pm), "{prefix} must match {path}");
        }
        for path in ["/abcd", "/ab", "/", "/x/abc"] {
            assert!(!req(path).matches(&pm), "{prefix} must not match {path}");
        }
    }
    // "When specified, a trailing `/` is ignored": both score the same.
    assert_eq!(
        req("/abc/d").score(&m("path: {value: /abc}")),
        req("/abc/d").score(&m("path: {value: /abc/}"))
    );
}

#[test]
fn path_prefix_slash_and_default_match_everything() {
    // HTTPRouteMatch.path: "If this field is not specified, a default prefix match on the "/"
    // path is provided."
    for pm in [
        m("path: {type: PathPrefix, value: /}"),
        m("{}"),
        RequestMatch::any(),
    ] {
        for path in ["/", "/a", "/a/b/"] {
            assert!(req(path).matches(&pm), "{path}");
        }
    }
}

#[test]
fn exact_path_is_exact_and_case_sensitive() {
    // PathMatchExact: "an exact path match on `/abc` will only match requests to `/abc`, NOT
    // `/abc/`, `/Abc`, or `/abcd`."
    let pm = m("path: {type: Exact, value: /abc}");
    assert!(req("/abc").matches(&pm));
    for path in ["/abc/", "/Abc", "/abcd"] {
        assert!(!req(path).matches(&pm), "{path}");
    }
}

#[test]
fn path_regex_is_anchored_full_match() {
    // The dialect and semantics of RegularExpression are implementation-specific; lbgw
    // requires the pattern to match the whole path (see the module docs).
    let pm = m(r"path: {type: RegularExpression, value: '/foo/\d+'}");
    assert!(req("/foo/4").matches(&pm));
    assert!(req("/foo/4321").matches(&pm));
    for path in ["/foo/4/bar", "/x/foo/4", "/foo/4abc", "/foo/"] {
        assert!(!req(path).matches(&pm), "{path}");
    }
    // Full match, not leftmost-first: `a|ab` must match `ab`.
    assert!(req("/ab").matches(&m("path: {type: RegularExpression, value: '/a|/ab'}")));
    // A pattern cannot break out of the anchoring group.
    assert!(compile("path: {type: RegularExpression, value: 'a)|(b'}").is_err());
}

#[test]
fn invalid_regex_is_an_error_naming_the_field() {
    let err = compile("headers: [{name: X-V, type: RegularExpression, value: '('}]").unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidRegex { field, rule: 0, index: 0, .. } if field == "headers[x-v]"),
        "{err:?}"
    );
    assert!(err.to_string().contains("ns/r"), "{err}");
    let err =
        compile("queryParams: [{name: Q, type: RegularExpression, value: '[z-a]'}]").unwrap_err();
    assert!(matches!(&err, BuildError::InvalidRegex { field, .. } if field == "queryParams[Q]"));
    let err = compile("path: {type: RegularExpression, value: '*'}").unwrap_err();
    assert!(matches!(&err, BuildError::InvalidRegex { field, .. } if field == "path"));
}

#[test]
fn exact_and_prefix_paths_must_start_with_slash() {
    // PathMatchType: "PathPrefix and Exact paths must be syntactically valid: - Must begin
    // with the `/` character".
    for yaml in [
        "path: {type: Exact, value: foo}",
        "path: {type: PathPrefix, value: foo}",
    ] {
        assert!(
            matches!(compile(yaml), Err(BuildError::InvalidPath { .. })),
            "{yaml}"
        );
    }
}

#[test]
fn header_names_are_case_insensitive_values_exact() {
    // HTTPHeaderMatch.name: "Name matching MUST be case-insensitive."
    let hm = m("headers: [{name: X-Version, value: v2}]");
    assert!(req("/").header("x-version", "v2").matches(&hm));
    assert!(req("/").header("X-VERSION", "v2").matches(&hm));
    assert!(!req("/").header("x-version", "V2").matches(&hm));
    assert!(!req("/").matches(&hm));
    let re = m("headers: [{name: x-version, type: RegularExpression, value: 'v[0-9]+'}]");
    assert!(req("/").header("X-Version", "v12").matches(&re));
    assert!(!req("/").header("X-Version", "xv12").matches(&re));
}

#[test]
fn only_the_first_equivalent_header_name_counts() {
    // HTTPHeaderMatch.name: "If multiple entries specify equivalent header names, only the
    // first entry with an equivalent name MUST be considered for a match. Subsequent entries
    // with an equivalent header name MUST be ignored. Due to the case-insensitivity of header
    // names, "foo" and "Foo" are considered equivalent."
    let hm = m("headers: [{name: foo, value: a}, {name: Foo, value: b}]");
    assert!(req("/").header("foo", "a").matches(&hm));
    assert!(!req("/").header("foo", "b").matches(&hm));
    assert_eq!(req("/").header("foo", "a").score(&hm).unwrap().headers, 1);
}

#[test]
fn repeated_headers_follow_the_rfc() {
    // HTTPHeaderMatch.name: "Generally, proxies should follow the guidance from the RFC ...
    // regarding processing a repeated header, with special handling for "Set-Cookie"."
    let hm = m("headers: [{name: x, value: 'a,b'}]");
    assert!(req("/").header("x", "a").header("x", "b").matches(&hm));
    let cookie = m("headers: [{name: cookie, value: 'a=1; b=2'}]");
    assert!(
        req("/")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .matches(&cookie)
    );
    let set_cookie = m("headers: [{name: set-cookie, value: 'b=2'}]");
    assert!(
        req("/")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .matches(&set_cookie)
    );
}

#[test]
fn query_param_names_are_case_sensitive() {
    // HTTPQueryParamMatch.name: "This must be an exact string match."
    let qm = m("queryParams: [{name: animal, value: whale}]");
    assert!(req("/").query("animal=whale").matches(&qm));
    assert!(!req("/").query("Animal=whale").matches(&qm));
    assert!(!req("/").query("ANIMAL=whale").matches(&qm));
    assert!(!req("/").query("animal=Whale").matches(&qm));
    assert!(!req("/").matches(&qm));
    assert!(req("/").query("color=blue&animal=whale").matches(&qm));
    let re = m("queryParams: [{name: id, type: RegularExpression, value: '[0-9]+'}]");
    assert!(req("/").query("id=42").matches(&re));
    assert!(!req("/").query("id=42x").matches(&re));
}

#[test]
fn repeated_query_params_match_the_first_value() {
    // HTTPQueryParamMatch.name: "it is *recommended* that implementations should match
    // against the first value of the param if the data plane supports it".
    let qm = m("queryParams: [{name: a, value: '1'}]");
    assert!(req("/").query("a=1&a=2").matches(&qm));
    assert!(!req("/").query("a=2&a=1").matches(&qm));
}

#[test]
fn query_params_are_percent_decoded() {
    let qm = m("queryParams: [{name: 'a b', value: 'x=y'}]");
    assert!(req("/").query("a%20b=x%3Dy").matches(&qm));
    assert_eq!(
        parse_query(Some("flag&&k=")),
        vec![("flag".into(), "".into()), ("k".into(), "".into())]
    );
}

#[test]
fn method_must_match() {
    // HTTPRouteMatch.method: "When specified, this route will be matched only if the request
    // has the specified method."
    let mm = m("method: POST");
    assert!(req("/").method(Method::POST).matches(&mm));
    assert!(!req("/").matches(&mm));
}

#[test]
fn all_conditions_are_anded() {
    // HTTPRouteMatch: "Multiple match types are ANDed together, i.e. the match will evaluate
    // to true only if all conditions are satisfied."
    let am = m(
        "{path: {value: /foo}, method: GET, headers: [{name: v, value: '1'}], queryParams: [{name: q, value: '1'}]}",
    );
    let full = || req("/foo/x").header("v", "1").query("q=1");
    assert!(full().matches(&am));
    assert!(!full().method(Method::PUT).matches(&am));
    assert!(!req("/foo/x").query("q=1").matches(&am));
    assert!(!req("/foo/x").header("v", "1").matches(&am));
    assert!(!req("/bar").header("v", "1").query("q=1").matches(&am));
}

#[test]
fn scores_follow_the_precedence_list() {
    // HTTPRouteRule.matches: "precedence must be given to the match having: "Exact" path
    // match. "Prefix" path match with largest number of characters. Method match. Largest
    // number of header matches. Largest number of query param matches."
    let r = || {
        req("/foo/bar")
            .header("a", "1")
            .header("b", "1")
            .query("q=1&r=1")
    };
    let score = |yaml: &str| r().score(&m(yaml)).expect(yaml);
    let ordered = [
        score("path: {value: /}"),
        score("{path: {value: /}, queryParams: [{name: q, value: '1'}]}"),
        score("{path: {value: /}, queryParams: [{name: q, value: '1'}, {name: r, value: '1'}]}"),
        score("{path: {value: /}, headers: [{name: a, value: '1'}]}"),
        score("{path: {value: /}, headers: [{name: a, value: '1'}, {name: b, value: '1'}]}"),
        score("{path: {value: /}, method: GET}"),
        score("{path: {value: /foo}}"),
        score("{path: {value: /foo/bar}}"),
        score(r"{path: {type: RegularExpression, value: '/foo/.*'}}"),
        score(r"{path: {type: RegularExpression, value: '/foo/[a-z]+'}}"),
        score("{path: {type: Exact, value: /foo/bar}}"),
    ];
    for pair in ordered.windows(2) {
        assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
    }
}
