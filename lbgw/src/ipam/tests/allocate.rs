//! Rule 1 (who gets addresses), rule 6 (conflicts, exhaustion, per-object errors), rule 7
//! (removed objects release), and the rendered plan.
use super::*;

const CLASSES: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: lbgw}\nspec: {controllerName: lbgw.io/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: other}\nspec: {controllerName: example.com/gateway}\n---\n";

#[test]
fn gateways_and_loadbalancer_services_get_addresses() {
    let config = config(&format!(
        "{}{}apiVersion: v1\nkind: Service\nmetadata: {{name: internal}}\nspec: {{ports: [{{port: 80}}]}}\n---\n{}{}",
        gateway("web", ""),
        service("plain", ""),
        service("ours", "  loadBalancerClass: lbgw.io/l2\n"),
        service(
            "theirs",
            "  loadBalancerClass: io.cilium/bgp-control-plane\n"
        ),
    ));
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert!(plan.is_ok(), "{plan}");
    let owners: Vec<String> = plan.vips().iter().map(|v| v.owner.to_string()).collect();
    assert_eq!(
        owners,
        [
            "Gateway default/web",
            "Service default/ours",
            "Service default/plain"
        ]
    );
    assert_eq!(
        plan.skipped.len(),
        1,
        "ClusterIP Services are not worth listing"
    );
    assert_eq!(plan.skipped[0].object, svc("theirs"));
    assert!(plan.vips().iter().all(|v| v.pool == "--lb-cidr"));
}

#[test]
fn with_gateway_classes_only_lbgws_gateways_get_addresses() {
    let gw_of = |name: &str, class: &str| {
        gateway(name, "").replace(
            "gatewayClassName: lbgw",
            &format!("gatewayClassName: {class}"),
        )
    };
    let config = config(&format!(
        "{CLASSES}{}{}{}",
        gw_of("mine", "lbgw"),
        gw_of("theirs", "other"),
        gw_of("lost", "missing")
    ));
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(ips(&plan, &gw("mine")).len(), 1);
    assert!(ips(&plan, &gw("theirs")).is_empty());
    assert!(ips(&plan, &gw("lost")).is_empty());
    let skipped: Vec<_> = plan
        .skipped
        .iter()
        .map(|s| s.object.name.as_str())
        .collect();
    assert_eq!(skipped, ["lost", "theirs"]);
    assert!(plan.is_ok());
}

const COLOR_POOLS: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: blue}\nspec:\n  blocks: [{cidr: 192.0.2.0/28}]\n  serviceSelector: {matchLabels: {color: blue}}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: red}\nspec:\n  blocks: [{cidr: 198.51.100.0/28}]\n  serviceSelector: {matchExpressions: [{key: color, operator: In, values: [red]}]}\n---\n";

fn labelled_service(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{type: LoadBalancer}}\n---\n"
    )
}

#[test]
fn pool_selectors_decide_which_pool_serves_a_service() {
    let config = config(&format!(
        "{COLOR_POOLS}{}{}{}",
        labelled_service("b", "color: blue"),
        labelled_service("r", "color: red"),
        labelled_service("g", "color: green"),
    ));
    let plan = plan(&object_pools(&config), &config);
    let pool_of = |name: &str| {
        plan.vips()
            .into_iter()
            .find(|v| v.owner == svc(name))
            .map(|v| v.pool)
    };
    assert_eq!(pool_of("b").as_deref(), Some("blue"));
    assert_eq!(pool_of("r").as_deref(), Some("red"));
    assert_eq!(pool_of("g"), None);
    assert!(ips(&plan, &svc("b"))[0].starts_with("192.0.2."));
    assert_eq!(
        errors(&plan),
        ["Service default/g wants IPv4 but no enabled pool that selects it has IPv4 addresses"]
    );
}

#[test]
fn selectors_see_namespace_and_name_pseudo_labels() {
    let config = config(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: dns-only}\nspec:\n  blocks: [{cidr: 192.0.2.0/28}]\n  serviceSelector:\n    matchLabels: {io.kubernetes.service.namespace: net}\n    matchExpressions: [{key: io.kubernetes.service.name, operator: NotIn, values: [excluded]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: net}\nspec: {type: LoadBalancer}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: excluded, namespace: net}\nspec: {type: LoadBalancer}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: other}\nspec: {type: LoadBalancer}\n",
    );
    let plan = plan(&object_pools(&config), &config);
    let owners: Vec<String> = plan.vips().iter().map(|v| v.owner.to_string()).collect();
    assert_eq!(owners, ["Service net/dns"]);
    assert_eq!(plan.errors.len(), 2);
}

#[test]
fn gateways_match_selectors_with_infrastructure_labels_and_gateway_name() {
    let config = config(&format!(
        "{COLOR_POOLS}apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: by-gateway}}\nspec:\n  blocks: [{{cidr: 203.0.113.0/28}}]\n  serviceSelector: {{matchLabels: {{gateway.networking.k8s.io/gateway-name: named}}}}\n---\n{}{}",
        gateway("red-gw", "  infrastructure: {labels: {color: red}}\n"),
        gateway("named", ""),
    ));
    let plan = plan(&object_pools(&config), &config);
    assert!(plan.is_ok(), "{plan}");
    let pool_of = |name: &str| {
        plan.vips()
            .into_iter()
            .find(|v| v.owner == gw(name))
            .unwrap()
            .pool
    };
    assert_eq!(pool_of("red-gw"), "red");
    assert_eq!(pool_of("named"), "by-gateway");
}

#[test]
fn two_requests_for_one_address_the_older_object_wins() {
    let path = fixture("conflicts.yaml");
    let config = crate::config::load(std::slice::from_ref(&path)).unwrap();
    let plan = plan(&object_pools(&config), &config);
    // "second" sorts after "first" anyway; the timestamps make "first" older too.
    assert_eq!(ips(&plan, &svc("first")), ["198.51.100.15"]);
    assert!(ips(&plan, &svc("second")).is_empty());
    assert_eq!(
        errors(&plan),
        [
            "Gateway default/named: spec.addresses[0].type: address type \"Hostname\" is not supported (lbgw assigns IPAddress addresses only)",
            "Service default/second requests 198.51.100.15 (spec.loadBalancerIP) but Service default/first requests it too and was created earlier, so Service default/first gets it",
            "Service default/v6 wants IPv6 but no pool has IPv6 addresses",
        ]
    );
    assert!(
        plan.vips().iter().all(|v| v.owner == svc("first")),
        "objects with errors get nothing"
    );
}

#[test]
fn creation_timestamp_beats_name_order() {
    let config = config(
        "apiVersion: v1\nkind: Service\nmetadata: {name: aaa, creationTimestamp: '2025-01-01T00:00:00Z'}\nspec: {type: LoadBalancer, loadBalancerIP: 192.0.2.3}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: zzz, creationTimestamp: '2020-01-01T00:00:00Z'}\nspec: {type: LoadBalancer, loadBalancerIP: 192.0.2.3}\n",
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(ips(&plan, &svc("zzz")), ["192.0.2.3"]);
    assert_eq!(
        errors(&plan),
        [
            "Service default/aaa requests 192.0.2.3 (spec.loadBalancerIP) but Service default/zzz requests it too and was created earlier, so Service default/zzz gets it"
        ]
    );
    // Without timestamps, kind/namespace/name order decides.
    let config = super::config(
        &(service_requesting("zzz", "192.0.2.3") + &service_requesting("aaa", "192.0.2.3")),
    );
    let plan = super::plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(ips(&plan, &svc("aaa")), ["192.0.2.3"]);
    assert!(
        errors(&plan)[0].contains("comes first in kind/namespace/name order"),
        "{plan}"
    );
}

#[test]
fn exhausted_pool_names_object_and_pool() {
    let config = config(&(service("a", "") + &service("b", "") + &service("c", "")));
    let plan = plan(&flag_pools(&["192.0.2.0/31"]), &config);
    assert_eq!(plan.vips().len(), 2);
    assert_eq!(
        errors(&plan),
        ["Service default/c needs an IPv4 address but pool --lb-cidr has no free IPv4 address"]
    );
    let config2 = super::config(&format!(
        "{COLOR_POOLS}apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: tiny}}\nspec: {{blocks: [{{start: 203.0.113.1}}]}}\n---\n{}{}",
        service("x", ""),
        service("y", "")
    ));
    let plan = super::plan(&object_pools(&config2), &config2);
    assert_eq!(
        errors(&plan),
        ["Service default/y needs an IPv4 address but pool tiny has no free IPv4 address"]
    );
}

#[test]
fn errors_of_one_object_leave_others_alone() {
    let config = config(
        &(service_requesting("bad", "192.0.2.1, not-an-ip")
            + &service("good", "")
            + &gateway("web", "")),
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28"]), &config);
    assert_eq!(
        errors(&plan),
        [
            "Service default/bad: metadata.annotations[lbipam.cilium.io/ips]: invalid IP address \"not-an-ip\": invalid IP address syntax"
        ]
    );
    assert!(ips(&plan, &svc("bad")).is_empty());
    assert_eq!(ips(&plan, &svc("good")).len(), 1);
    assert_eq!(ips(&plan, &gw("web")).len(), 1);
    // The valid part of the broken request stays reserved for "bad" once it is fixed.
    assert!(!plan.vips().iter().any(|v| v.ip == ip("192.0.2.1")));
}

#[test]
fn removed_objects_release_their_addresses() {
    let pools = flag_pools(&["192.0.2.0/29"]);
    let before = plan(
        &pools,
        &config(&(service("keep", "") + &service("gone", ""))),
    );
    let gone_ip = before.ips_of(&svc("gone")).next().unwrap();
    let after = allocate(&pools, &config(&service("keep", "")), &before.state());
    assert_eq!(after.vips().len(), 1);
    assert!(
        after
            .state()
            .allocations
            .iter()
            .all(|v| v.owner == svc("keep"))
    );
    assert_eq!(
        after.released,
        [Vip {
            ip: gone_ip,
            owner: svc("gone"),
            pool: "--lb-cidr".into()
        }]
    );
    // The released address can be requested by a newcomer.
    let newcomer = service_requesting("new", &gone_ip.to_string());
    let later = allocate(
        &pools,
        &config(&(service("keep", "") + &newcomer)),
        &after.state(),
    );
    assert_eq!(later.ips_of(&svc("new")).collect::<Vec<_>>(), [gone_ip]);
}

#[test]
fn no_pools_at_all_is_an_error_per_object() {
    let config = config(&(gateway("web", "") + &service("dns", "")));
    let pools = Pools::resolve(&[], None, &config).unwrap();
    let plan = plan(&pools, &config);
    assert_eq!(
        errors(&plan),
        [
            "Gateway default/web needs an address but no pool is configured (--lb-cidr, CILIUM_LB_CIDR or CiliumLoadBalancerIPPool objects)",
            "Service default/dns needs an address but no pool is configured (--lb-cidr, CILIUM_LB_CIDR or CiliumLoadBalancerIPPool objects)",
        ]
    );
}

#[test]
fn plan_renders_a_table_then_errors() {
    let config = config(
        &(gateway("web", "  addresses: [{value: 192.0.2.2}]\n")
            + &service_requesting("dns", "192.0.2.3, 2001:db8::35")
            + &service_requesting("x", "203.0.113.1")),
    );
    let plan = plan(&flag_pools(&["192.0.2.0/28", "2001:db8::/64"]), &config);
    assert_eq!(
        plan.to_string(),
        "VIP plan (pools from --lb-cidr):\n\
         \x20 OWNER                IP            POOL       ORIGIN\n\
         \x20 Gateway default/web  192.0.2.2     --lb-cidr  requested\n\
         \x20 Service default/dns  192.0.2.3     --lb-cidr  requested\n\
         \x20 Service default/dns  2001:db8::35  --lb-cidr  requested\n\
         errors (1):\n\
         \x20 Service default/x requests 203.0.113.1 (metadata.annotations[lbipam.cilium.io/ips]) but no pool contains it\n"
    );
    assert!(!plan.table().to_string().contains("errors"));
    let empty = super::plan(&flag_pools(&["192.0.2.0/28"]), &Config::default());
    assert_eq!(
        empty.to_string(),
        "VIP plan (pools from --lb-cidr):\n  (no addresses)\n"
    );
}
