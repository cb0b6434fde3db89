//! Rule 2 (explicit requests) and rule 4 (allowFirstLastIPs, inclusive ranges).
use super::*;

#[test]
fn gateway_ipaddress_requests_are_honoured() {
    let config = config(&format!(
        "{}{}",
        gateway(
            "typed",
            "  addresses: [{type: IPAddress, value: 192.0.2.9}]\n"
        ),
        gateway(
            "untyped",
            "  addresses: [{value: '2001:db8::9'}, {value: 192.0.2.10}]\n"
        ),
    ));
    let plan = plan(&flag_pools(&["192.0.2.0/28", "2001:db8::/64"]), &config);
    assert!(plan.is_ok(), "{plan}");
    assert_eq!(ips(&plan, &gw("typed")), ["192.0.2.9"]);
    assert_eq!(ips(&plan, &gw("untyped")), ["192.0.2.10", "2001:db8::9"]);
    assert_eq!(
        plan.origin(&gw("typed"), ip("192.0.2.9")),
        Some(Origin::Requested)
    );
}

#[test]
fn gateway_address_without_value_is_assigned_automatically() {
    let config = config(&gateway("auto", "  addresses: [{type: IPAddress}]\n"));
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(ips(&plan, &gw("auto")).len(), 1);
    assert_eq!(plan.vips()[0].owner, gw("auto"));
    assert_eq!(
        plan.origin(&gw("auto"), plan.vips()[0].ip),
        Some(Origin::New)
    );
}

#[test]
fn gateway_addresses_of_other_types_are_errors_not_ignored() {
    let config = config(&format!(
        "{}{}",
        gateway(
            "host",
            "  addresses: [{type: Hostname, value: gw.example.test}]\n"
        ),
        gateway(
            "mixed",
            "  addresses: [{value: 192.0.2.4}, {type: NamedAddress, value: my-ip}, {type: example.com/custom, value: x}]\n"
        ),
    ));
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(
        errors(&plan),
        [
            "Gateway default/host: spec.addresses[0].type: address type \"Hostname\" is not supported (lbgw assigns IPAddress addresses only)",
            "Gateway default/mixed: spec.addresses[1].type: address type \"NamedAddress\" is not supported (lbgw assigns IPAddress addresses only)",
            "Gateway default/mixed: spec.addresses[2].type: address type \"example.com/custom\" is not supported (lbgw assigns IPAddress addresses only)",
        ]
    );
    assert!(plan.vips().is_empty());
}

#[test]
fn service_annotation_alias_and_load_balancer_ip_are_requests() {
    let config = config(&format!(
        "{}{}apiVersion: v1\nkind: Service\nmetadata: {{name: alias, annotations: {{io.cilium/lb-ipam-ips: 192.0.2.7}}}}\nspec: {{type: LoadBalancer}}\n---\n{}",
        service_requesting("list", " 192.0.2.5 ,2001:db8::5,"),
        service("legacy", "  loadBalancerIP: 192.0.2.6\n"),
        // The same address twice counts once.
        "apiVersion: v1\nkind: Service\nmetadata: {name: both, annotations: {lbipam.cilium.io/ips: 192.0.2.8}}\nspec: {type: LoadBalancer, loadBalancerIP: 192.0.2.8}\n",
    ));
    let plan = plan(&flag_pools(&["192.0.2.0/28", "2001:db8::/64"]), &config);
    assert!(plan.is_ok(), "{plan}");
    assert_eq!(ips(&plan, &svc("list")), ["192.0.2.5", "2001:db8::5"]);
    assert_eq!(ips(&plan, &svc("legacy")), ["192.0.2.6"]);
    assert_eq!(ips(&plan, &svc("alias")), ["192.0.2.7"]);
    assert_eq!(ips(&plan, &svc("both")), ["192.0.2.8"]);
}

#[test]
fn request_outside_every_pool_is_an_error() {
    let config = config(
        &(service_requesting("out", "198.51.100.1")
            + &gateway("gw", "  addresses: [{value: '2001:db8::1'}]\n")),
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(
        errors(&plan),
        [
            "Gateway default/gw requests 2001:db8::1 (spec.addresses[0].value) but no pool contains it",
            "Service default/out requests 198.51.100.1 (metadata.annotations[lbipam.cilium.io/ips]) but no pool contains it",
        ]
    );
    assert!(plan.vips().is_empty(), "no fallback to a dynamic address");
}

#[test]
fn invalid_requested_addresses_name_the_field() {
    let config = config(
        &(service("s", "  loadBalancerIP: 192.0.2.256\n")
            + &gateway("g", "  addresses: [{value: ai.example}]\n")),
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(
        errors(&plan),
        [
            "Gateway default/g: spec.addresses[0].value: invalid IP address \"ai.example\": invalid IP address syntax",
            "Service default/s: spec.loadBalancerIP: invalid IP address \"192.0.2.256\": invalid IP address syntax",
        ]
    );
}

#[test]
fn requests_must_respect_selectors_disabled_pools_and_reserved_addresses() {
    let config = config(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: blue}\nspec:\n  blocks: [{cidr: 192.0.2.0/28}]\n  serviceSelector: {matchLabels: {color: blue}}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: off}\nspec: {disabled: true, blocks: [{cidr: 198.51.100.0/28}]}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: strict}\nspec: {allowFirstLastIPs: 'No', blocks: [{cidr: 203.0.113.0/28}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a, annotations: {lbipam.cilium.io/ips: 192.0.2.1}}\nspec: {type: LoadBalancer}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, annotations: {lbipam.cilium.io/ips: 198.51.100.1}}\nspec: {type: LoadBalancer}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c, annotations: {lbipam.cilium.io/ips: 203.0.113.15}}\nspec: {type: LoadBalancer}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: d, annotations: {lbipam.cilium.io/ips: 203.0.113.14}}\nspec: {type: LoadBalancer}\n",
    );
    let plan = plan(&object_pools(&config), &config);
    assert_eq!(
        errors(&plan),
        [
            "Service default/a requests 192.0.2.1 (metadata.annotations[lbipam.cilium.io/ips]) from pool blue, whose serviceSelector does not select it",
            "Service default/b requests 198.51.100.1 (metadata.annotations[lbipam.cilium.io/ips]) from pool off, which is disabled",
            "Service default/c requests 203.0.113.15 (metadata.annotations[lbipam.cilium.io/ips]), the first or last address of 203.0.113.0/28 in pool strict, which allowFirstLastIPs: No reserves",
        ]
    );
    assert_eq!(ips(&plan, &svc("d")), ["203.0.113.14"]);
}

#[test]
fn one_failed_request_means_no_request_is_granted() {
    let config = config(&service_requesting("half", "192.0.2.1, 198.51.100.1"));
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(plan.errors.len(), 1);
    assert!(plan.vips().is_empty());
}

#[test]
fn allow_first_last_no_is_honoured_until_the_pool_is_full() {
    let pool = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {allowFirstLastIPs: 'No', blocks: [{cidr: 192.0.2.0/29}]}\n---\n";
    let services: String = (0..7).map(|i| service(&format!("s{i}"), "")).collect();
    let config = config(&(pool.to_owned() + &services));
    let plan = plan(&object_pools(&config), &config);
    let mut got: Vec<String> = plan.vips().iter().map(|v| v.ip.to_string()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.5",
            "192.0.2.6"
        ]
    );
    assert_eq!(plan.errors.len(), 1, "{plan}");
    assert!(matches!(&plan.errors[0], IpamError::Exhausted { pools, .. } if pools == &["p"]));
}

#[test]
fn small_cidrs_are_usable_whole_even_with_allow_first_last_no() {
    let pool = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {allowFirstLastIPs: 'No', blocks: [{cidr: 192.0.2.0/31}, {cidr: 192.0.2.9/32}]}\n---\n";
    let config =
        config(&(pool.to_owned() + &service("a", "") + &service("b", "") + &service("c", "")));
    let plan = plan(&object_pools(&config), &config);
    assert!(plan.is_ok(), "{plan}");
    let mut got: Vec<String> = plan.vips().iter().map(|v| v.ip.to_string()).collect();
    got.sort();
    assert_eq!(got, ["192.0.2.0", "192.0.2.1", "192.0.2.9"]);
}

#[test]
fn start_stop_ranges_are_inclusive() {
    let pool = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {allowFirstLastIPs: 'No', blocks: [{start: 192.0.2.10, stop: 192.0.2.12}]}\n---\n";
    let services: String = (0..4).map(|i| service(&format!("s{i}"), "")).collect();
    let config = config(&(pool.to_owned() + &services));
    let plan = plan(&object_pools(&config), &config);
    let mut got: Vec<String> = plan.vips().iter().map(|v| v.ip.to_string()).collect();
    got.sort();
    assert_eq!(got, ["192.0.2.10", "192.0.2.11", "192.0.2.12"]);
    assert_eq!(plan.errors.len(), 1);
}

#[test]
fn disabled_pools_hand_out_nothing_new_but_keep_existing_addresses() {
    let pool = |disabled: bool| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: p}}\nspec: {{disabled: {disabled}, blocks: [{{cidr: 192.0.2.0/28}}]}}\n---\n"
        )
    };
    let enabled = config(&(pool(false) + &service("old", "")));
    let before = plan(&object_pools(&enabled), &enabled);
    let disabled = config(&(pool(true) + &service("old", "") + &service("new", "")));
    let after = allocate(&object_pools(&disabled), &disabled, &before.state());
    assert_eq!(ips(&after, &svc("old")), ips(&before, &svc("old")));
    assert!(ips(&after, &svc("new")).is_empty());
    assert_eq!(
        errors(&after),
        ["Service default/new wants IPv4 but no enabled pool that selects it has IPv4 addresses"]
    );
}
