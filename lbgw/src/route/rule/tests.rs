use std::time::Duration;

use super::*;

fn id() -> RouteId {
    RouteId {
        namespace: "app".into(),
        name: "r".into(),
    }
}

fn compile_yaml(yaml: &str) -> Result<CompiledRule, BuildError> {
    let r: HttpRouteRules = serde_yaml_ng::from_str(yaml).expect("test YAML");
    compile(&r, &id(), 3)
}

fn incompatible(yaml: &str) -> String {
    match compile_yaml(yaml) {
        Err(BuildError::IncompatibleFilters {
            rule: 3, reason, ..
        }) => reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn weighted_pick_never_chooses_weight_zero() {
    // HTTPBackendRef.weight: "If weight is set to 0, no traffic should be forwarded for this
    // entry."
    for r in [0, 1, u32::MAX / 2, u32::MAX] {
        assert_eq!(pick_weighted([0, 1], r), Some(1));
        assert_ne!(pick_weighted([1, 0, 1], r), Some(1));
    }
    assert_eq!(pick_weighted([0, 0], 7), None);
    assert_eq!(pick_weighted(std::iter::empty::<u32>(), 7), None);
}

#[test]
fn weighted_pick_follows_the_proportions() {
    // "This is computed as weight/(sum of all weights in this BackendRefs list)."
    let weights = [1u32, 3, 0, 4];
    let mut counts = [0usize; 4];
    for i in 0..8192u32 {
        counts[pick_weighted(weights, i << 19).unwrap()] += 1;
    }
    assert_eq!(counts, [1024, 3072, 0, 4096]);
    // "If only one backend is specified and it has a weight greater than 0, 100% of the
    // traffic is forwarded to that backend."
    assert_eq!(pick_weighted([5], u32::MAX), Some(0));
}

#[test]
fn backend_defaults() {
    let rule = compile_yaml("{backendRefs: [{name: svc, port: 8080}, {name: other, namespace: x, weight: 0, kind: K, group: g}]}")
        .expect("valid");
    let b = &rule.rule.backends;
    // "If unspecified, weight defaults to 1."
    assert_eq!(b[0].weight, 1);
    assert_eq!(
        b[0].backend,
        BackendRef {
            group: String::new(),
            kind: "Service".into(),
            namespace: "app".into(),
            name: "svc".into(),
            port: Some(8080),
        }
    );
    assert_eq!(
        (
            b[1].weight,
            b[1].backend.namespace.as_str(),
            b[1].backend.kind.as_str()
        ),
        (0, "x", "K")
    );
    assert_eq!(
        rule.rule.pick_backend(123).map(|b| b.backend.name.as_str()),
        Some("svc")
    );
    assert!(matches!(
        compile_yaml("{backendRefs: [{name: s, port: 80, weight: -1}]}"),
        Err(BuildError::InvalidBackend { backend: 0, .. })
    ));
    assert!(matches!(
        compile_yaml("{backendRefs: [{name: s, port: 70000}]}"),
        Err(BuildError::InvalidBackend { .. })
    ));
}

#[test]
fn a_rule_without_matches_matches_prefix_slash() {
    // HTTPRouteRule.matches: "If no matches are specified, the default is a prefix path match
    // on "/", which has the effect of matching every HTTP request."
    let rule = compile_yaml("{}").expect("valid");
    assert_eq!(rule.matches.len(), 1);
    assert!(matches!(&rule.matches[0].path, PathMatch::Prefix(p) if p == "/"));
    assert_eq!(rule.index, 3);
}

#[test]
fn timeouts_parse_gep_2257_durations() {
    let t = |yaml: &str| compile_yaml(yaml).map(|r| r.rule.timeouts);
    assert_eq!(t("{}").unwrap(), Timeouts::default());
    assert_eq!(
        t("{timeouts: {request: 10s, backendRequest: 1m}}")
            .unwrap_err()
            .to_string(),
        "HTTPRoute app/r rule 3: invalid timeouts.backendRequest \"1m\": longer than the request timeout 10s"
    );
    assert_eq!(
        t("{timeouts: {request: 1m30s, backendRequest: 500ms}}").unwrap(),
        Timeouts {
            request: Timeout::After(Duration::from_secs(90)),
            backend_request: Timeout::After(Duration::from_millis(500)),
        }
    );
    // HTTPRouteTimeouts.request: "Setting a timeout to the zero duration (e.g. "0s") SHOULD
    // disable the timeout completely."
    assert_eq!(
        t("{timeouts: {request: 0s, backendRequest: 1h}}").unwrap(),
        Timeouts {
            request: Timeout::Disabled,
            backend_request: Timeout::After(Duration::from_secs(3600)),
        }
    );
    // GEP-2257: no fractions, no units below milliseconds, at most four components.
    for bad in ["1.5s", "10us", "1h1m1s1ms1h", "-1s", "10"] {
        assert!(
            matches!(
                t(&format!("{{timeouts: {{request: '{bad}'}}}}")),
                Err(BuildError::InvalidTimeout {
                    field: "request",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

#[test]
fn redirect_and_rewrite_may_not_be_combined() {
    // HTTPRouteRule.filters: "All filters are expected to be compatible with each other except
    // for the URLRewrite and RequestRedirect filters, which may not be combined."
    let reason = incompatible(
        "{filters: [{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, urlRewrite: {}}]}",
    );
    assert!(reason.contains("may not be combined"), "{reason}");
}

#[test]
fn filters_other_than_mirror_and_extension_cannot_repeat() {
    // HTTPRouteRule.filters: "Specifying the same filter multiple times is not supported
    // unless explicitly indicated in the filter."
    let reason = incompatible(
        "{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]}",
    );
    assert!(
        reason.contains("RequestHeaderModifier filter cannot be repeated"),
        "{reason}"
    );
    // HTTPRouteFilter.requestMirror: "This filter can be used multiple times within the same
    // rule."
    compile_yaml(
        "{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: a, port: 1}}}, \
         {type: RequestMirror, requestMirror: {backendRef: {name: b, port: 1}}}]}",
    )
    .expect("valid");
}

#[test]
fn redirect_with_backend_refs_is_rejected() {
    // HTTPRouteRule: "RequestRedirect filter must not be used together with backendRefs".
    let reason = incompatible(
        "{filters: [{type: RequestRedirect, requestRedirect: {}}], backendRefs: [{name: s, port: 80}]}",
    );
    assert!(reason.contains("backendRefs"), "{reason}");
}

#[test]
fn replace_prefix_match_needs_path_prefix_matches() {
    // HTTPPathModifier.replacePrefixMatch: "ReplacePrefixMatch is only compatible with a
    // `PathPrefix` HTTPRouteMatch. Using any other HTTPRouteMatch type on the same
    // HTTPRouteRule will result in the implementation setting the Accepted Condition for the
    // Route to `status: False`."
    let rewrite = "{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}";
    let reason = incompatible(&format!(
        "{{matches: [{{path: {{type: Exact, value: /a}}}}], filters: [{rewrite}]}}"
    ));
    assert!(reason.contains("PathPrefix"), "{reason}");
    // The same filter on a backendRef is checked against the rule's matches too.
    let reason = incompatible(&format!(
        "{{matches: [{{path: {{type: RegularExpression, value: /a}}}}], backendRefs: [{{name: s, port: 80, filters: [{rewrite}]}}]}}"
    ));
    assert!(reason.starts_with("backendRefs[0].filters"), "{reason}");
    compile_yaml(&format!(
        "{{matches: [{{path: {{value: /a}}}}], filters: [{rewrite}]}}"
    ))
    .expect("valid");
    compile_yaml(&format!("{{filters: [{rewrite}]}}")).expect("no matches is PathPrefix /");
}

#[test]
fn backend_filters_are_compiled() {
    let rule = compile_yaml(
        "{backendRefs: [{name: s, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x, value: y}]}}]}]}",
    )
    .expect("valid");
    assert!(
        matches!(&rule.rule.backends[0].filters[..], [Filter::RequestHeaderModifier(m)] if m.add.len() == 1)
    );
}
