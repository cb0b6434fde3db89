//! Rule 5: the same object keeps its address across restarts and configuration changes, and
//! never loses it to another object's request.
use super::*;

const POOL: &str = "192.0.2.0/24";
const POOL_SIZE: u64 = 256;

/// Names whose hash slots differ in a /24, so no collision can interfere.
fn distinct(names: &[&str]) {
    let mut slots: Vec<u64> = names.iter().map(|n| slot(&svc(n), POOL_SIZE)).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), names.len(), "test names collide: pick others");
}

#[test]
fn fnv1a_is_the_published_function() {
    // FNV-1a 64 of "a\0\0b" computed independently.
    let id = ObjectRef::new("a", "", "b");
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in b"a\0\0b" {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
    }
    assert_eq!(crate::ipam::allocate::fnv1a(&id), hash);
    assert_eq!(
        crate::ipam::allocate::fnv1a(&ObjectRef::new("", "", "")),
        0xcbf29ce484222325u64
            .wrapping_mul(0x100000001b3)
            .wrapping_mul(0x100000001b3)
    );
    // Kind, namespace and name are separated: moving a character between fields changes it.
    assert_ne!(
        crate::ipam::allocate::fnv1a(&ObjectRef::new("S", "ab", "c")),
        crate::ipam::allocate::fnv1a(&ObjectRef::new("S", "a", "bc"))
    );
}

#[test]
fn new_addresses_start_at_the_hash_of_the_object() {
    let config = config(&service("alpha", ""));
    let plan = plan(&flag_pools(&[POOL]), &config);
    let expected = format!("192.0.2.{}", slot(&svc("alpha"), POOL_SIZE));
    assert_eq!(ips(&plan, &svc("alpha")), [expected]);
}

#[test]
fn adding_an_object_with_state_keeps_the_others() {
    let pools = flag_pools(&[POOL]);
    let ab = config(&(service("alpha", "") + &gateway("beta", "")));
    let first = plan(&pools, &ab);
    let abc = config(&(service("alpha", "") + &gateway("beta", "") + &service("gamma", "")));
    let second = allocate(&pools, &abc, &first.state());
    assert_eq!(ips(&second, &svc("alpha")), ips(&first, &svc("alpha")));
    assert_eq!(ips(&second, &gw("beta")), ips(&first, &gw("beta")));
    assert_eq!(ips(&second, &svc("gamma")).len(), 1);
    assert_eq!(
        second.origin(&svc("alpha"), first.ips_of(&svc("alpha")).next().unwrap()),
        Some(Origin::Kept)
    );
}

#[test]
fn adding_an_object_without_state_keeps_the_others() {
    distinct(&["alpha", "beta", "aaa-first"]);
    let pools = flag_pools(&[POOL]);
    let before = plan(
        &pools,
        &config(&(service("alpha", "") + &service("beta", ""))),
    );
    // "aaa-first" sorts before both, so it is served first: without a collision it changes nothing.
    let after = plan(
        &pools,
        &config(&(service("aaa-first", "") + &service("alpha", "") + &service("beta", ""))),
    );
    assert_eq!(ips(&after, &svc("alpha")), ips(&before, &svc("alpha")));
    assert_eq!(ips(&after, &svc("beta")), ips(&before, &svc("beta")));
}

#[test]
fn hash_collisions_probe_to_the_next_free_address() {
    // Find a name whose slot in a /28 equals that of "holder".
    let size = 16;
    let holder_slot = slot(&svc("holder"), size);
    let twin = (0..1000)
        .map(|i| format!("twin-{i}"))
        .find(|n| slot(&svc(n), size) == holder_slot && n.as_str() > "holder")
        .expect("a colliding name");
    let pools = flag_pools(&["192.0.2.0/28"]);
    let plan = plan(
        &pools,
        &config(&(service(&twin, "") + &service("holder", ""))),
    );
    // "holder" comes first in name order and takes the slot; its twin gets the next address.
    assert_eq!(
        ips(&plan, &svc("holder")),
        [format!("192.0.2.{holder_slot}")]
    );
    assert_eq!(
        ips(&plan, &svc(&twin)),
        [format!("192.0.2.{}", (holder_slot + 1) % size)]
    );
}

#[test]
fn the_plan_does_not_depend_on_document_order() {
    let pools = flag_pools(&[POOL]);
    let docs = [
        service("a", ""),
        gateway("b", ""),
        service("c", ""),
        service_requesting("d", "192.0.2.77"),
    ];
    let forward = plan(&pools, &config(&docs.concat()));
    let mut reversed = docs.clone();
    reversed.reverse();
    let backward = plan(&pools, &config(&reversed.concat()));
    assert_eq!(forward.vips(), backward.vips());
}

#[test]
fn previous_addresses_are_kept_wherever_the_hash_points() {
    let pools = flag_pools(&[POOL]);
    let previous = State::new(vec![Vip {
        ip: ip("192.0.2.200"),
        owner: svc("alpha"),
        pool: "old-name".into(),
    }]);
    let plan = allocate(&pools, &config(&service("alpha", "")), &previous);
    assert_eq!(ips(&plan, &svc("alpha")), ["192.0.2.200"]);
    assert_eq!(plan.vips()[0].pool, "--lb-cidr", "the pool is recomputed");
    assert!(plan.released.is_empty());
}

#[test]
fn previous_addresses_outside_the_pools_are_replaced() {
    let pools = flag_pools(&[POOL]);
    let previous = State::new(vec![Vip {
        ip: ip("198.51.100.1"),
        owner: svc("alpha"),
        pool: "p".into(),
    }]);
    let plan = allocate(&pools, &config(&service("alpha", "")), &previous);
    assert_eq!(
        ips(&plan, &svc("alpha")),
        [format!("192.0.2.{}", slot(&svc("alpha"), POOL_SIZE))]
    );
    assert_eq!(plan.released.len(), 1);
    assert!(plan.is_ok());
}

#[test]
fn a_held_address_is_never_taken_by_a_new_request() {
    let pools = flag_pools(&[POOL]);
    let first = plan(&pools, &config(&service("holder", "")));
    let held = first.ips_of(&svc("holder")).next().unwrap();
    // "aaa" sorts first and newly requests the holder's address.
    let config = config(&(service("holder", "") + &service_requesting("aaa", &held.to_string())));
    let second = allocate(&pools, &config, &first.state());
    assert_eq!(second.ips_of(&svc("holder")).collect::<Vec<_>>(), [held]);
    assert!(ips(&second, &svc("aaa")).is_empty());
    assert_eq!(
        errors(&second),
        [format!(
            "Service default/aaa requests {held} (metadata.annotations[lbipam.cilium.io/ips]) but Service default/holder already has it; Service default/holder keeps it"
        )]
    );
}

#[test]
fn an_address_given_up_in_the_same_change_can_be_requested() {
    let pools = flag_pools(&[POOL]);
    let first = plan(&pools, &config(&service_requesting("mover", "192.0.2.10")));
    // "mover" moves to .11 while "aaa" asks for its old .10.
    let config = config(
        &(service_requesting("mover", "192.0.2.11") + &service_requesting("aaa", "192.0.2.10")),
    );
    let second = allocate(&pools, &config, &first.state());
    assert!(second.is_ok(), "{second}");
    assert_eq!(ips(&second, &svc("mover")), ["192.0.2.11"]);
    assert_eq!(ips(&second, &svc("aaa")), ["192.0.2.10"]);
}

#[test]
fn errors_never_take_an_address_away() {
    let pools = flag_pools(&[POOL]);
    let first = plan(&pools, &config(&service("dns", "")));
    let held = ips(&first, &svc("dns"));
    // The object now has a broken spec: it keeps what it had, and reports the error.
    let broken = config(&service("dns", "  ipFamilyPolicy: Bogus\n"));
    let second = allocate(&pools, &broken, &first.state());
    assert_eq!(ips(&second, &svc("dns")), held);
    assert_eq!(second.errors.len(), 1);
    // Likewise when its new request fails.
    let conflicting = config(&(service_requesting("dns", "198.51.100.1")));
    let third = allocate(&pools, &conflicting, &first.state());
    assert_eq!(ips(&third, &svc("dns")), held);
    assert_eq!(third.state(), first.state());
}

#[test]
fn an_object_that_stops_being_selected_moves_to_a_pool_that_selects_it() {
    let pools_yaml = |selector: &str| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: a}}\nspec: {{blocks: [{{cidr: 192.0.2.0/28}}], serviceSelector: {{matchLabels: {{{selector}}}}}}}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: b}}\nspec: {{blocks: [{{cidr: 198.51.100.0/28}}]}}\n---\n"
        )
    };
    let before_config = config(&(pools_yaml("io.kubernetes.service.name: s") + &service("s", "")));
    let before = plan(&object_pools(&before_config), &before_config);
    assert_eq!(before.vips()[0].pool, "a");
    let after_config =
        config(&(pools_yaml("io.kubernetes.service.name: other") + &service("s", "")));
    let after = allocate(&object_pools(&after_config), &after_config, &before.state());
    assert_eq!(after.vips()[0].pool, "b");
    assert_eq!(after.released.len(), 1);
}

#[test]
fn a_service_switching_to_a_request_releases_its_old_address() {
    let pools = flag_pools(&[POOL]);
    let first = plan(&pools, &config(&service("s", "")));
    let second = allocate(
        &pools,
        &config(&service_requesting("s", "192.0.2.250")),
        &first.state(),
    );
    assert_eq!(ips(&second, &svc("s")), ["192.0.2.250"]);
    assert_eq!(second.released.len(), 1);
}
