//! The state file: missing, corrupt, round trip, atomic replacement.
use std::fs;

use super::*;

fn vip(addr: &str, owner: ObjectRef) -> Vip {
    Vip {
        ip: ip(addr),
        owner,
        pool: "p".into(),
    }
}

#[test]
fn missing_file_is_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::load(&dir.path().join("nope/ipam.json")).unwrap();
    assert_eq!(state, State::default());
    assert!(state.allocations.is_empty());
}

#[test]
fn corrupt_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    fs::write(&path, "{\"version\": 1, \"allocations\": [").unwrap();
    let err = State::load(&path).unwrap_err();
    assert_eq!(
        error_chain(&err),
        format!(
            "IPAM state {} is corrupt: EOF while parsing a list at line 1 column 31",
            path.display()
        )
    );
    fs::write(&path, r#"{"version": 2, "allocations": []}"#).unwrap();
    assert_eq!(
        error_chain(&State::load(&path).unwrap_err()),
        format!(
            "IPAM state {}: format version 2 is not supported (this lbgw reads version 1)",
            path.display()
        )
    );
}

#[test]
fn unreadable_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let err = State::load(dir.path()).unwrap_err();
    assert!(matches!(err, IpamError::StateRead { .. }), "{err:?}");
}

#[test]
fn save_creates_directories_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/lbgw/ipam.json");
    let state = State::new(vec![
        vip("2001:db8::5", svc("b")),
        vip("192.0.2.5", svc("b")),
        vip("192.0.2.1", gw("a")),
    ]);
    state.save(&path).unwrap();
    assert_eq!(State::load(&path).unwrap(), state);
    let owners: Vec<String> = state
        .allocations
        .iter()
        .map(|v| format!("{} {}", v.owner, v.ip))
        .collect();
    assert_eq!(
        owners,
        [
            "Gateway default/a 192.0.2.1",
            "Service default/b 192.0.2.5",
            "Service default/b 2001:db8::5"
        ]
    );
    let json = fs::read_to_string(&path).unwrap();
    assert!(json.contains("\"ip\": \"192.0.2.1\""), "{json}");
    assert!(json.ends_with('\n'));
}

#[test]
fn save_replaces_the_file_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    State::new(vec![vip("192.0.2.1", gw("a"))])
        .save(&path)
        .unwrap();
    let second = State::new(vec![vip("192.0.2.2", gw("b"))]);
    second.save(&path).unwrap();
    assert_eq!(State::load(&path).unwrap(), second);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ipam.json"]);
}

#[test]
fn save_into_a_file_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("ipam.json");
    let err = State::new(Vec::new()).save(&path).unwrap_err();
    assert!(
        matches!(&err, IpamError::StateWrite { path: p, .. } if *p == path),
        "{err:?}"
    );
}

#[test]
fn plan_state_round_trips_through_the_file() {
    let pools = flag_pools(&["192.0.2.0/28"]);
    let config = config(&(service("a", "") + &gateway("b", "")));
    let plan = plan(&pools, &config);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    plan.state().save(&path).unwrap();
    let again = allocate(&pools, &config, &State::load(&path).unwrap());
    assert_eq!(again.vips(), plan.vips());
    assert!(
        again
            .vips()
            .iter()
            .all(|v| again.origin(&v.owner, v.ip) == Some(Origin::Kept))
    );
}

#[test]
fn published_allocations_win_over_the_running_ones() {
    // Kubernetes mode: status (published by the leader) first, then what this node runs.
    let published = State::new(vec![
        vip("192.0.2.7", gw("a")),
        vip("2001:db8::7", gw("a")),
        vip("192.0.2.9", svc("b")),
    ]);
    let running = State::new(vec![
        // Same owner and family as a published one: the published one holds.
        vip("192.0.2.5", gw("a")),
        // An address published for another owner: dropped.
        vip("192.0.2.9", svc("c")),
        // Not published yet: kept.
        vip("192.0.2.11", svc("d")),
        vip("2001:db8::9", svc("b")),
    ]);
    let merged = published.merged_with(&running);
    let got: Vec<(String, String)> = merged
        .allocations
        .iter()
        .map(|v| (v.owner.to_string(), v.ip.to_string()))
        .collect();
    let want = State::new(vec![
        vip("192.0.2.7", gw("a")),
        vip("2001:db8::7", gw("a")),
        vip("192.0.2.9", svc("b")),
        vip("2001:db8::9", svc("b")),
        vip("192.0.2.11", svc("d")),
    ]);
    assert_eq!(merged, want, "{got:?}");
}
