//! Pool resolution: sources, parsing, allowFirstLastIPs, overlaps, selectors.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;

fn usable(block: &Block) -> (String, String) {
    (
        block.usable_first.to_string(),
        block.usable_last.to_string(),
    )
}

fn resolve_err(flag: &[&str], env: Option<&str>, config: &Config) -> Vec<String> {
    let flag: Vec<String> = flag.iter().map(|s| s.to_string()).collect();
    let err = Pools::resolve(&flag, env, config).unwrap_err();
    err.errors().iter().map(|e| error_chain(e)).collect()
}

const POOL: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: obj}\nspec: {blocks: [{cidr: 203.0.113.0/24}]}\n";

#[test]
fn flag_wins_over_env_and_objects() {
    let config = config(POOL);
    let flag = vec!["192.0.2.0/28".to_owned()];
    let pools = Pools::resolve(&flag, Some("198.51.100.0/24"), &config).unwrap();
    assert_eq!(pools.source, PoolSource::LbCidrFlag);
    assert_eq!(pools.pools.len(), 1);
    assert_eq!(pools.pools[0].name, "--lb-cidr");
    assert_eq!(pools.pools[0].blocks[0].text, "192.0.2.0/28");
}

#[test]
fn env_is_used_without_flag_and_tolerates_lists_and_whitespace() {
    let config = config(POOL);
    let pools = Pools::resolve(&[], Some(" 198.51.100.0/25 ,2001:db8::/64,, "), &config).unwrap();
    assert_eq!(pools.source, PoolSource::Env);
    assert_eq!(pools.pools[0].name, "CILIUM_LB_CIDR");
    let texts: Vec<_> = pools.pools[0]
        .blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect();
    assert_eq!(texts, ["198.51.100.0/25", "2001:db8::/64"]);
}

#[test]
fn blank_flag_and_env_fall_back_to_objects() {
    let config = config(POOL);
    let pools = Pools::resolve(&[" ".to_owned()], Some("  "), &config).unwrap();
    assert_eq!(pools.source, PoolSource::Objects);
    assert_eq!(pools.pools[0].name, "obj");
    assert_eq!(
        pools.pools[0].object,
        Some(ObjectRef::new("CiliumLoadBalancerIPPool", "", "obj"))
    );
    let none = Pools::resolve(&[], None, &Config::default()).unwrap();
    assert!(none.is_empty());
}

#[test]
fn flag_values_may_be_lists_and_bare_addresses() {
    let pools = flag_pools(&["192.0.2.0/30, 192.0.2.9", "2001:db8::1"]);
    let blocks: Vec<_> = pools.pools[0]
        .blocks
        .iter()
        .map(|b| (b.first.to_string(), b.last.to_string()))
        .collect();
    assert_eq!(
        blocks,
        [
            ("192.0.2.0".into(), "192.0.2.3".into()),
            ("192.0.2.9".into(), "192.0.2.9".into()),
            ("2001:db8::1".into(), "2001:db8::1".into())
        ]
    );
}

#[test]
fn bad_cidrs_name_where_they_came_from() {
    assert_eq!(
        resolve_err(
            &["192.0.2.0/28", "192.0.2.300/28"],
            None,
            &Config::default()
        ),
        ["--lb-cidr: invalid CIDR \"192.0.2.300/28\": invalid IP address syntax"]
    );
    assert_eq!(
        resolve_err(&[], Some("192.0.2.0/28,nonsense"), &Config::default()),
        ["CILIUM_LB_CIDR: invalid CIDR \"nonsense\": invalid IP address syntax"]
    );
    let path = fixture("bad-pool.yaml");
    let config = crate::config::load(std::slice::from_ref(&path)).unwrap();
    assert_eq!(
        resolve_err(&[], None, &config),
        [
            format!(
                "{}: CiliumLoadBalancerIPPool lab: spec.blocks[1].cidr: invalid CIDR \"192.0.2.0/33\": invalid IP address syntax",
                path.display()
            ),
            format!(
                "{}: CiliumLoadBalancerIPPool lab: spec.serviceSelector.matchExpressions[0].operator: unknown operator \"Equals\" (expected In, NotIn, Exists or DoesNotExist)",
                path.display()
            ),
        ]
    );
}

#[test]
fn bad_ranges_are_errors() {
    let pool = |blocks: &str| {
        config(&format!(
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {{name: p}}\nspec: {{blocks: [{blocks}]}}\n"
        ))
    };
    let err = |blocks: &str| resolve_err(&[], None, &pool(blocks));
    assert_eq!(
        err("{start: 192.0.2.9, stop: 192.0.2.1}"),
        ["test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0]: stop is before start"]
    );
    assert_eq!(
        err("{start: 192.0.2.1, stop: '2001:db8::1'}"),
        [
            "test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0]: start and stop are of different IP families"
        ]
    );
    assert_eq!(
        err("{start: 192.0.2.x}"),
        [
            "test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0].start: invalid IP address \"192.0.2.x\": invalid IP address syntax"
        ]
    );
    assert_eq!(
        err("{cidr: 192.0.2.0/28, start: 192.0.2.1}"),
        [
            "test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0]: has both cidr and start/stop; use one"
        ]
    );
    assert_eq!(
        err("{stop: 192.0.2.1}"),
        ["test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0]: has stop but no start"]
    );
    assert_eq!(
        err("{}"),
        [
            "test.yaml: CiliumLoadBalancerIPPool p: spec.blocks[0]: needs cidr, or start and optionally stop"
        ]
    );
}

#[test]
fn overlapping_blocks_are_errors() {
    assert_eq!(
        resolve_err(
            &["192.0.2.0/24", "192.0.2.128/25"],
            None,
            &Config::default()
        ),
        ["--lb-cidr 192.0.2.0/24 overlaps --lb-cidr 192.0.2.128/25"]
    );
    let config = config(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: a}\nspec: {blocks: [{cidr: 192.0.2.0/28}]}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: b}\nspec: {blocks: [{cidr: '2001:db8::/64'}, {start: 192.0.2.15, stop: 192.0.2.20}]}\n",
    );
    assert_eq!(
        resolve_err(&[], None, &config),
        [
            "CiliumLoadBalancerIPPool a spec.blocks[0] (192.0.2.0/28) overlaps CiliumLoadBalancerIPPool b spec.blocks[1] (192.0.2.15-192.0.2.20)"
        ]
    );
    // Adjacent blocks and blocks of different families do not overlap.
    flag_pools(&["192.0.2.0/28", "192.0.2.16/28", "::/0"]);
}

#[test]
fn allow_first_last_ips_no_reserves_network_and_broadcast_of_cidrs_only() {
    let config = config(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  allowFirstLastIPs: 'No'\n  blocks: [{cidr: 192.0.2.0/28}, {cidr: 192.0.2.16/30}, {cidr: 192.0.2.20/31}, {cidr: 192.0.2.22/32}, {start: 192.0.2.30, stop: 192.0.2.40}, {cidr: '2001:db8::/126'}, {cidr: '2001:db8::10/127'}, {cidr: '2001:db8::20/128'}]\n",
    );
    let pools = object_pools(&config);
    let got: Vec<_> = pools.pools[0].blocks.iter().map(usable).collect();
    let want = [
        ("192.0.2.1", "192.0.2.14"),
        ("192.0.2.17", "192.0.2.18"),
        ("192.0.2.20", "192.0.2.21"), // /31: both usable
        ("192.0.2.22", "192.0.2.22"), // /32
        ("192.0.2.30", "192.0.2.40"), // ranges are inclusive and never trimmed
        ("2001:db8::1", "2001:db8::2"),
        ("2001:db8::10", "2001:db8::11"), // /127
        ("2001:db8::20", "2001:db8::20"), // /128
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
    // The default (Yes) keeps every address.
    assert_eq!(
        usable(&flag_pools(&["192.0.2.0/28"]).pools[0].blocks[0]),
        ("192.0.2.0".into(), "192.0.2.15".into())
    );
}

#[test]
fn host_bits_of_a_cidr_are_ignored() {
    let pools = flag_pools(&["192.0.2.7/29"]);
    assert_eq!(pools.pools[0].blocks[0].text, "192.0.2.0/29");
}

#[test]
fn pick_starts_at_the_hash_and_wraps() {
    let pools = flag_pools(&["192.0.2.0/30", "192.0.2.8/31"]); // 6 addresses: .0-.3, .8-.9
    let pool = &pools.pools[0];
    let none = BTreeSet::new();
    assert_eq!(pool.pick(IpFamily::V4, 1, &none), Some(ip("192.0.2.1")));
    assert_eq!(pool.pick(IpFamily::V4, 4, &none), Some(ip("192.0.2.8")));
    assert_eq!(pool.pick(IpFamily::V4, 6 + 5, &none), Some(ip("192.0.2.9")));
    let taken: BTreeSet<IpAddr> = ["192.0.2.9", "192.0.2.0"].map(ip).into();
    assert_eq!(
        pool.pick(IpFamily::V4, 5, &taken),
        Some(ip("192.0.2.1")),
        "wraps past the end"
    );
    assert_eq!(pool.pick(IpFamily::V6, 0, &none), None, "no IPv6 block");
    let full: BTreeSet<IpAddr> = [
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.8",
        "192.0.2.9",
    ]
    .map(ip)
    .into();
    assert_eq!(pool.pick(IpFamily::V4, 3, &full), None);
}

#[test]
fn new_addresses_come_from_the_first_65536_of_each_block() {
    let none = BTreeSet::new();
    let big = flag_pools(&["2001:db8::/64"]);
    assert_eq!(
        big.pools[0].pick(IpFamily::V6, 0x1_0005, &none),
        Some(ip("2001:db8::5"))
    );
    assert_eq!(
        big.pools[0].pick(IpFamily::V6, u64::MAX, &none),
        Some(ip("2001:db8::ffff"))
    );
    let whole = flag_pools(&["::/0", "0.0.0.0/0"]);
    assert_eq!(whole.pools[0].pick(IpFamily::V6, 7, &none), Some(ip("::7")));
    // Two blocks: the second one's window follows the first one's.
    let two = flag_pools(&["2001:db8::/64", "2001:db8:1::/120"]);
    assert_eq!(
        two.pools[0].pick(IpFamily::V6, 0x1_0000 + 3, &none),
        Some(ip("2001:db8:1::3"))
    );
    // Explicit requests beyond the window are fine.
    let config = config(&service_requesting("far", "2001:db8::ffff:1"));
    let plan = allocate(&big, &config, &State::default());
    assert!(plan.is_ok(), "{plan}");
}

fn selector(
    labels: &[(&str, &str)],
    exprs: &[(&str, &str, &[&str])],
) -> Result<Selector, (String, String)> {
    Selector::new(&LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: Some(
            exprs
                .iter()
                .map(|(key, op, values)| LabelSelectorRequirement {
                    key: key.to_string(),
                    operator: op.to_string(),
                    values: (!values.is_empty())
                        .then(|| values.iter().map(|v| v.to_string()).collect()),
                })
                .collect(),
        ),
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn selector_semantics_follow_kubernetes() {
    let blue = labels(&[("color", "blue"), ("tier", "edge")]);
    let red = labels(&[("color", "red")]);
    let none = labels(&[]);
    let check = |s: Selector| (s.matches(&blue), s.matches(&red), s.matches(&none));
    assert_eq!(
        check(selector(&[], &[]).unwrap()),
        (true, true, true),
        "empty selects all"
    );
    assert_eq!(
        check(selector(&[("color", "blue")], &[]).unwrap()),
        (true, false, false)
    );
    assert_eq!(
        check(selector(&[], &[("color", "In", &["blue", "cyan"])]).unwrap()),
        (true, false, false)
    );
    assert_eq!(
        check(selector(&[], &[("color", "NotIn", &["blue"])]).unwrap()),
        (false, true, true),
        "NotIn holds when the key is absent"
    );
    assert_eq!(
        check(selector(&[], &[("tier", "Exists", &[])]).unwrap()),
        (true, false, false)
    );
    assert_eq!(
        check(selector(&[], &[("tier", "DoesNotExist", &[])]).unwrap()),
        (false, true, true)
    );
    assert_eq!(
        check(selector(&[("color", "blue")], &[("tier", "DoesNotExist", &[])]).unwrap()),
        (false, false, false),
        "requirements are ANDed"
    );
}

#[test]
fn invalid_selectors_are_rejected() {
    let err = |exprs: &[(&str, &str, &[&str])]| selector(&[], exprs).unwrap_err();
    assert_eq!(
        err(&[("a", "In", &[])]),
        (
            "matchExpressions[0].values".into(),
            "operator In needs at least one value".into()
        )
    );
    assert_eq!(
        err(&[("a", "Exists", &[]), ("b", "DoesNotExist", &["x"])]),
        (
            "matchExpressions[1].values".into(),
            "operator DoesNotExist takes no values".into()
        )
    );
    assert_eq!(
        err(&[("a", "Gt", &["1"])]).0,
        "matchExpressions[0].operator"
    );
    assert_eq!(err(&[("", "Exists", &[])]).0, "matchExpressions[0].key");
}
