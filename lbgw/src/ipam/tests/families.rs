//! Rule 3: address families of Services (ipFamilyPolicy / ipFamilies) and Gateways.
use super::*;

fn dual() -> Pools {
    flag_pools(&["192.0.2.0/28", "2001:db8::/64"])
}

fn families_of(plan: &Plan, owner: &ObjectRef) -> Vec<IpFamily> {
    plan.ips_of(owner).map(IpFamily::of).collect()
}

#[test]
fn single_stack_defaults_to_ipv4() {
    let config = config(&(service("a", "") + &service("b", "  ipFamilyPolicy: SingleStack\n")));
    let plan = plan(&dual(), &config);
    assert_eq!(families_of(&plan, &svc("a")), [IpFamily::V4]);
    assert_eq!(families_of(&plan, &svc("b")), [IpFamily::V4]);
}

#[test]
fn single_stack_follows_ip_families() {
    let config = config(&service("a", "  ipFamilies: [IPv6]\n"));
    let plan = plan(&dual(), &config);
    assert_eq!(families_of(&plan, &svc("a")), [IpFamily::V6]);
    assert!(ips(&plan, &svc("a"))[0].starts_with("2001:db8::"));
}

#[test]
fn single_stack_without_families_uses_ipv6_when_only_ipv6_pools_exist() {
    let config = config(&service("a", ""));
    let plan = plan(&flag_pools(&["2001:db8::/64"]), &config);
    assert_eq!(families_of(&plan, &svc("a")), [IpFamily::V6]);
}

#[test]
fn require_dual_stack_gets_both_or_nothing() {
    let config = config(&service(
        "dns",
        "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n",
    ));
    let plan = plan(&dual(), &config);
    assert_eq!(
        families_of(&plan, &svc("dns")),
        [IpFamily::V4, IpFamily::V6]
    );
    let plan = super::plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(
        errors(&plan),
        ["Service default/dns wants IPv6 but no pool has IPv6 addresses"]
    );
    assert!(
        plan.vips().is_empty(),
        "no IPv4 either: the object is in error"
    );
}

#[test]
fn require_dual_stack_with_one_family_exhausted_gets_nothing() {
    let config = config(
        &(service_requesting("holder", "2001:db8::")
            + &service("dns", "  ipFamilyPolicy: RequireDualStack\n")),
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28", "2001:db8::/128"]), &config);
    assert_eq!(
        errors(&plan),
        ["Service default/dns needs an IPv6 address but pool --lb-cidr has no free IPv6 address"]
    );
    assert!(ips(&plan, &svc("dns")).is_empty());
}

#[test]
fn prefer_dual_stack_takes_what_the_pools_have() {
    let config = config(&service("a", "  ipFamilyPolicy: PreferDualStack\n"));
    let plan = plan(&dual(), &config);
    assert_eq!(families_of(&plan, &svc("a")), [IpFamily::V4, IpFamily::V6]);
    let plan = super::plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert!(plan.is_ok());
    assert_eq!(families_of(&plan, &svc("a")), [IpFamily::V4]);
    let only_v6 = super::config(&service(
        "a",
        "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6]\n",
    ));
    let plan = super::plan(&flag_pools(&["192.0.2.0/28"]), &only_v6);
    assert_eq!(
        errors(&plan),
        ["Service default/a wants IPv6 but no pool has IPv6 addresses"]
    );
}

#[test]
fn gateways_get_one_ipv4_else_ipv6() {
    let config = config(&gateway("web", ""));
    assert_eq!(
        families_of(&plan(&dual(), &config), &gw("web")),
        [IpFamily::V4]
    );
    assert_eq!(
        families_of(&plan(&flag_pools(&["2001:db8::/64"]), &config), &gw("web")),
        [IpFamily::V6]
    );
}

#[test]
fn an_ipv6_holder_is_not_moved_when_an_ipv4_pool_appears() {
    let config = config(&(gateway("web", "") + &service("dns", "")));
    let before = plan(&flag_pools(&["2001:db8::/64"]), &config);
    let after = allocate(&dual(), &config, &before.state());
    assert_eq!(after.vips(), before.vips());
}

#[test]
fn invalid_family_fields_are_errors() {
    let config = config(&format!(
        "{}{}{}{}",
        service("policy", "  ipFamilyPolicy: DualStackPlease\n"),
        service("family", "  ipFamilies: [IPv5]\n"),
        service(
            "twice",
            "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv4]\n"
        ),
        service("single", "  ipFamilies: [IPv4, IPv6]\n"),
    ));
    let plan = plan(&dual(), &config);
    assert_eq!(
        errors(&plan),
        [
            "Service default/family: spec.ipFamilies[0]: unknown family \"IPv5\" (expected IPv4 or IPv6)",
            "Service default/policy: spec.ipFamilyPolicy: unknown policy \"DualStackPlease\" (expected SingleStack, PreferDualStack or RequireDualStack)",
            "Service default/single: spec.ipFamilies: two families need ipFamilyPolicy PreferDualStack or RequireDualStack",
            "Service default/twice: spec.ipFamilies[1]: IPv4 is listed twice",
        ]
    );
    assert!(plan.vips().is_empty());
}

#[test]
fn explicit_requests_replace_family_defaults() {
    // Cilium: a Service with requested IPs gets exactly those.
    let config = config(&service_requesting("a", "2001:db8::7"));
    let plan = plan(&dual(), &config);
    assert_eq!(ips(&plan, &svc("a")), ["2001:db8::7"]);
}
