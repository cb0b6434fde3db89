//! `coordination.k8s.io/v1` Leases: which node leads (writes status) and which node announces
//! each VIP.
//!
//! Every participating node (eligible by `--node-selector`, uplink up) holds a member Lease
//! `lbgw-member-NODE`. Each VIP has a Lease `lbgw-vip-ADDRESS`; its preferred holder is the
//! alive member ranked first by rendezvous hashing of (VIP, node) ([`rendezvous_rank`]), so VIPs
//! spread over the nodes and only the VIPs of a node that comes or goes move. The leader
//! Lease `lbgw-leader` is sticky: whoever holds it keeps it.
//!
//! Expiry follows client-go's leader election: a Lease is expired when its record (its
//! `resourceVersion`) has not changed for `leaseDurationSeconds` *as measured on this node's
//! clock* since it was first observed, so clock skew between nodes does not matter. All writes
//! are optimistic (`replace` with the observed `resourceVersion`, or `create`): of two nodes
//! racing for a Lease, the API server lets exactly one win (HTTP 409 for the other).
//!
//! Timing (defaults): Leases last 2 s, holders renew every 500 ms, every node polls every
//! 250 ms. A crashed holder's VIP is taken over at most `duration + 2 × poll` = 2.5 s after its
//! last renewal; a node that shuts down releases its Leases, and they move within one poll.
//! A node that loses the API server stops reporting ownership once its last renewal is
//! `duration` old, before another node can take over (that node waits at least `duration`
//! after the last change it saw).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{KubeError, MANAGED_BY};
use crate::config::error_chain;

/// The Lease API calls a participant makes (RBAC verbs): `list` each poll, `create` a missing
/// Lease, `update` (replace) to acquire, renew and release, `delete` the Lease of a VIP that
/// is gone.
pub const LEASE_VERBS: &[&str] = &["list", "create", "update", "delete"];

/// Name of the leader Lease.
pub const LEADER_LEASE: &str = "lbgw-leader";
const MEMBER_PREFIX: &str = "lbgw-member-";
const VIP_PREFIX: &str = "lbgw-vip-";
/// Label with the role of an lbgw Lease: `leader`, `member` or `vip`.
const ROLE_LABEL: &str = "lbgw.io/lease-role";
/// Annotation with the VIP of a `vip` Lease.
const VIP_ANNOTATION: &str = "lbgw.io/vip";

/// Lease timing and identity.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Namespace of the Leases (lbgw's own).
    pub namespace: String,
    /// This node's name (`holderIdentity`).
    pub identity: String,
    /// `leaseDurationSeconds` (whole seconds, at least 1).
    pub duration: Duration,
    /// How often a holder renews.
    pub renew: Duration,
    /// How often the Leases are listed.
    pub poll: Duration,
}

impl LeaseOptions {
    /// The defaults: 2 s Leases renewed every 500 ms, polled every 250 ms.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
            renew: Duration::from_millis(500),
            poll: Duration::from_millis(250),
        }
    }
}

/// What this node holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Whether this node holds the leader Lease (and so writes status and allocates).
    pub leader: bool,
    /// The VIPs this node announces.
    pub vips: BTreeSet<IpAddr>,
}

/// The Lease of `vip`: `lbgw-vip-192.0.2.1`, or for IPv6 the eight groups joined by `-`
/// (`lbgw-vip-2001-db8-0-0-0-0-0-1`), a valid DNS subdomain name either way.
pub fn lease_name_for_vip(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(v4) => format!("{VIP_PREFIX}{v4}"),
        IpAddr::V6(v6) => {
            let groups: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
            format!("{VIP_PREFIX}{}", groups.join("-"))
        }
    }
}

/// `nodes` ordered by preference for `vip`: highest rendezvous (highest-random-weight) score
/// first. The score is FNV-1a 64 of `VIP/node` finished with SplitMix64's mixer, fixed across
/// lbgw versions so nodes running different versions agree.
pub fn rendezvous_rank<'a>(vip: IpAddr, nodes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let score = |node: &str| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{vip}/{node}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    };
    let mut ranked: Vec<(u64, &str)> = nodes.into_iter().map(|n| (score(n), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// A Lease as last listed, and since when this node has seen that version.
struct Observed {
    lease: Lease,
    version: String,
    since: Instant,
}

impl Observed {
    fn holder(&self) -> Option<&str> {
        self.lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
    }

    fn duration(&self, default: Duration) -> Duration {
        self.lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default, Duration::from_secs)
    }

    /// How long it has been expired, if it is: unheld, or unchanged for its duration.
    fn expired_for(&self, now: Instant, default: Duration) -> Option<Duration> {
        if self.holder().is_none() {
            return Some(now.duration_since(self.since));
        }
        now.duration_since(self.since)
            .checked_sub(self.duration(default))
    }
}

/// The participant: a task that keeps this node's Leases. Drop it only after
/// [`LeaseSet::shutdown`], or the Leases are left to expire instead of being released.
pub struct LeaseSet {
    desired: watch::Sender<BTreeSet<IpAddr>>,
    eligible: watch::Sender<bool>,
    ownership: watch::Receiver<Ownership>,
    held_until: watch::Receiver<BTreeMap<IpAddr, Instant>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseSet {
    /// Starts participating: eligible, with no VIPs yet.
    pub fn spawn(client: Client, opts: LeaseOptions) -> LeaseSet {
        let (desired, desired_rx) = watch::channel(BTreeSet::new());
        let (eligible, eligible_rx) = watch::channel(true);
        let (ownership_tx, ownership) = watch::channel(Ownership::default());
        let (held_until_tx, held_until) = watch::channel(BTreeMap::new());
        let (stop, stop_rx) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &opts.namespace);
        let participant = Participant {
            api,
            opts,
            observed: BTreeMap::new(),
            held: BTreeMap::new(),
        };
        let task = tokio::spawn(participant.run(
            desired_rx,
            eligible_rx,
            Published {
                ownership: ownership_tx,
                held_until: held_until_tx,
            },
            stop_rx,
        ));
        LeaseSet {
            desired,
            eligible,
            ownership,
            held_until,
            stop,
            task: Some(task),
        }
    }

    /// The VIPs to contend for (all VIPs of the plan, published in status).
    pub fn set_vips(&self, vips: BTreeSet<IpAddr>) {
        self.desired.send_replace(vips);
    }

    /// Whether this node may hold Leases (node selector matched, uplink up). An ineligible
    /// node releases what it holds.
    pub fn set_eligible(&self, eligible: bool) {
        self.eligible.send_replace(eligible);
    }

    /// What this node holds, updated as it changes.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.clone()
    }

    /// The VIPs this node holds, each with the end of its Lease as last renewed (on this
    /// node's monotonic clock): updated every poll, without notification.
    pub fn held_until(&self) -> BTreeMap<IpAddr, Instant> {
        self.held_until.borrow().clone()
    }

    /// Releases every Lease this node holds and stops.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseSet {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What the participant publishes after each poll.
struct Published {
    ownership: watch::Sender<Ownership>,
    held_until: watch::Sender<BTreeMap<IpAddr, Instant>>,
}

struct Participant {
    api: Api<Lease>,
    opts: LeaseOptions,
    observed: BTreeMap<String, Observed>,
    /// Leases this node holds: name → time of the last successful write.
    held: BTreeMap<String, Instant>,
}

enum Action {
    Create,
    Acquire,
    Renew,
    Release,
    Delete,
}

impl Participant {
    async fn run(
        mut self,
        desired: watch::Receiver<BTreeSet<IpAddr>>,
        eligible: watch::Receiver<bool>,
        published: Published,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.opts.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let vips = desired.borrow().clone();
            let eligible = *eligible.borrow();
            if let Err(err) = self.round(&vips, eligible).await {
                warn!("leases: {}", error_chain(&err));
            }
            let now = Instant::now();
            // Deadlines first: whoever reacts to an ownership change reads them.
            published.held_until.send_replace(self.held_until(now));
            published.ownership.send_if_modified(|o| {
                let new = self.ownership(now);
                if *o != new {
                    info!(leader = new.leader, vips = ?new.vips, "lease ownership changed");
                    *o = new;
                    true
                } else {
                    false
                }
            });
        }
        // Graceful shutdown: hand everything over at once (client-go's ReleaseOnCancel).
        for name in self.held.keys().cloned().collect::<Vec<_>>() {
            if let Err(err) = self.write(&name, Action::Release, None).await {
                warn!("leases: {}", error_chain(&err));
            }
        }
        published.held_until.send_replace(BTreeMap::new());
        published.ownership.send_replace(Ownership::default());
    }

    /// The VIPs held at `now`, each with the end of its Lease: the last successful write
    /// plus the duration.
    fn held_until(&self, now: Instant) -> BTreeMap<IpAddr, Instant> {
        self.observed
            .iter()
            .filter(|(name, _)| name.starts_with(VIP_PREFIX))
            .filter_map(|(name, o)| {
                let until = *self.held.get(name)? + self.opts.duration;
                (until > now).then_some((vip_of(&o.lease)?, until))
            })
            .collect()
    }

    fn ownership(&self, now: Instant) -> Ownership {
        let valid = |name: &str| {
            self.held
                .get(name)
                .is_some_and(|t| now.duration_since(*t) < self.opts.duration)
        };
        Ownership {
            leader: valid(LEADER_LEASE),
            vips: self
                .observed
                .iter()
                .filter(|(name, _)| name.starts_with(VIP_PREFIX) && valid(name))
                .filter_map(|(_, o)| vip_of(&o.lease))
                .collect(),
        }
    }

    /// One poll: list, then create/acquire/renew/release/delete as needed.
    async fn round(&mut self, vips: &BTreeSet<IpAddr>, eligible: bool) -> Result<(), KubeError> {
        let params =
            ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
        let list = self
            .api
            .list(&params)
            .await
            .map_err(|source| KubeError::Api {
                verb: "list",
                object: format!("Leases in namespace {}", self.opts.namespace),
                source: Box::new(source),
            })?;
        let now = Instant::now();
        let mut seen = BTreeMap::new();
        for lease in list.items {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let since = match self.observed.remove(&name) {
                Some(o) if o.version == version => o.since,
                _ => now,
            };
            seen.insert(
                name,
                Observed {
                    lease,
                    version,
                    since,
                },
            );
        }
        self.observed = seen;
        // A Lease this node thinks it holds but that is gone or held by another is lost.
        let me = self.opts.identity.clone();
        self.held.retain(|name, _| {
            let o = seen_holder(&self.observed, name);
            o.as_deref() == Some(me.as_str())
        });

        let mut actions: Vec<(String, Action, Option<IpAddr>)> = Vec::new();
        let member = format!("{MEMBER_PREFIX}{me}");
        if !eligible {
            for name in self.held.keys() {
                actions.push((name.clone(), Action::Release, None));
            }
        } else {
            actions.extend(self.claim(&member, true, None, now));
            actions.extend(self.claim(LEADER_LEASE, true, None, now));
            let alive = self.alive_members(now);
            for &vip in vips {
                let name = lease_name_for_vip(vip);
                let observed = self.observed.get(&name);
                let expired_holder = observed
                    .filter(|o| o.expired_for(now, self.opts.duration).is_some())
                    .and_then(|o| o.holder().map(str::to_owned));
                let candidates = alive
                    .iter()
                    .map(String::as_str)
                    .filter(|n| Some(*n) != expired_holder.as_deref());
                let preferred = rendezvous_rank(vip, candidates)
                    .first()
                    .map(|s| s.to_string());
                let i_am_preferred = preferred.as_deref() == Some(me.as_str());
                let holder = observed.and_then(|o| o.holder());
                if holder == Some(me.as_str())
                    && !i_am_preferred
                    && preferred.is_some()
                    && observed.is_some_and(|o| o.expired_for(now, self.opts.duration).is_none())
                {
                    // Hand over to the preferred node, which takes it on its next poll.
                    debug!(%vip, to = ?preferred, "handing the VIP over");
                    actions.push((name, Action::Release, Some(vip)));
                } else {
                    actions.extend(self.claim(&name, i_am_preferred, Some(vip), now));
                }
            }
            // VIPs no longer in the plan: their Leases go.
            for name in self.held.keys() {
                if name.starts_with(VIP_PREFIX)
                    && !vips.iter().any(|v| &lease_name_for_vip(*v) == name)
                {
                    actions.push((name.clone(), Action::Delete, None));
                }
            }
        }
        for (name, action, vip) in actions {
            if let Err(err) = self.write(&name, action, vip).await {
                // A conflict is a lost race, not an error worth more than a debug line.
                match &err {
                    KubeError::Api { source, .. } if matches!(source.as_ref(), kube::Error::Api(status) if status.code == 409) =>
                    {
                        debug!("{}", error_chain(&err))
                    }
                    _ => warn!("leases: {}", error_chain(&err)),
                }
            }
        }
        Ok(())
    }

    /// The nodes whose member Lease is alive (this node's own once it holds it).
    fn alive_members(&self, now: Instant) -> Vec<String> {
        self.observed
            .iter()
            .filter(|(name, _)| name.starts_with(MEMBER_PREFIX))
            .filter(|(_, o)| o.expired_for(now, self.opts.duration).is_none())
            .filter_map(|(_, o)| o.holder().map(str::to_owned))
            .collect()
    }

    /// What to do about Lease `name` that this node wants (`preferred`) or may take when it has
    /// been expired long enough that its preferred node is evidently not taking it.
    fn claim(
        &self,
        name: &str,
        preferred: bool,
        vip: Option<IpAddr>,
        now: Instant,
    ) -> Option<(String, Action, Option<IpAddr>)> {
        let me = self.opts.identity.as_str();
        let action = match self.observed.get(name) {
            None if preferred => Action::Create,
            None => return None,
            Some(o) if o.holder() == Some(me) => {
                let due = self
                    .held
                    .get(name)
                    .is_none_or(|t| now.duration_since(*t) >= self.opts.renew);
                if !due {
                    return None;
                }
                Action::Renew
            }
            Some(o) => match o.expired_for(now, self.opts.duration) {
                Some(_) if preferred => Action::Acquire,
                // Fallback: the preferred node has not taken it for another full duration.
                Some(late) if late >= self.opts.duration => Action::Acquire,
                _ => return None,
            },
        };
        Some((name.to_owned(), action, vip))
    }

    async fn write(
        &mut self,
        name: &str,
        action: Action,
        vip: Option<IpAddr>,
    ) -> Result<(), KubeError> {
        let me = self.opts.identity.clone();
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.opts.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let verb;
        let result = match action {
            Action::Create => {
                verb = "create";
                let role = if name == LEADER_LEASE {
                    "leader"
                } else if name.starts_with(MEMBER_PREFIX) {
                    "member"
                } else {
                    "vip"
                };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        namespace: Some(self.opts.namespace.clone()),
                        labels: Some(
                            [
                                (
                                    "app.kubernetes.io/managed-by".to_owned(),
                                    MANAGED_BY.to_owned(),
                                ),
                                (ROLE_LABEL.to_owned(), role.to_owned()),
                            ]
                            .into(),
                        ),
                        annotations: vip
                            .map(|v| [(VIP_ANNOTATION.to_owned(), v.to_string())].into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|l| (true, Some(l)))
            }
            Action::Acquire | Action::Renew | Action::Release => {
                let Some(observed) = self.observed.get(name) else {
                    return Ok(());
                };
                let mut lease = observed.lease.clone();
                let spec = lease.spec.get_or_insert_with(Default::default);
                match action {
                    Action::Acquire => {
                        verb = "acquire";
                        spec.holder_identity = Some(me.clone());
                        spec.acquire_time = Some(now.clone());
                        spec.renew_time = Some(now);
                        spec.lease_duration_seconds = Some(seconds);
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    Action::Renew => {
                        verb = "renew";
                        spec.renew_time = Some(now);
                        spec.lease_duration_seconds = Some(seconds);
                    }
                    _ => {
                        verb = "release";
                        spec.holder_identity = None;
                        spec.renew_time = Some(now);
                    }
                }
                // `metadata.resourceVersion` is the observed one: optimistic concurrency.
                let released = matches!(verb, "release");
                self.api
                    .replace(name, &PostParams::default(), &lease)
                    .await
                    .map(|l| (!released, Some(l)))
            }
            Action::Delete => {
                verb = "delete";
                self.held.remove(name);
                self.api
                    .delete(name, &Default::default())
                    .await
                    .map(|_| (false, None))
            }
        };
        match result {
            Ok((holds, written)) => {
                // The written version is the one to base the next write on (a release right
                // after a renewal would otherwise conflict with our own renewal).
                if let Some(lease) = written {
                    let version = lease.metadata.resource_version.clone().unwrap_or_default();
                    self.observed.insert(
                        name.to_owned(),
                        Observed {
                            lease,
                            version,
                            since: Instant::now(),
                        },
                    );
                } else {
                    self.observed.remove(name);
                }
                if holds {
                    if !self.held.contains_key(name) {
                        info!(lease = name, "lease acquired");
                    }
                    self.held.insert(name.to_owned(), Instant::now());
                } else {
                    self.held.remove(name);
                }
                Ok(())
            }
            Err(source) => {
                if matches!(verb, "renew" | "acquire" | "create") {
                    // A failed renewal keeps the old time: ownership ends when it is too old.
                } else {
                    self.held.remove(name);
                }
                Err(KubeError::Api {
                    verb,
                    object: format!("Lease {}/{name}", self.opts.namespace),
                    source: Box::new(source),
                })
            }
        }
    }
}

fn seen_holder(observed: &BTreeMap<String, Observed>, name: &str) -> Option<String> {
    observed
        .get(name)
        .and_then(|o| o.holder().map(str::to_owned))
}

fn vip_of(lease: &Lease) -> Option<IpAddr> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(VIP_ANNOTATION)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_lease_names_are_dns_subdomains() {
        assert_eq!(
            lease_name_for_vip("192.0.2.1".parse().unwrap()),
            "lbgw-vip-192.0.2.1"
        );
        assert_eq!(
            lease_name_for_vip("2001:db8::".parse().unwrap()),
            "lbgw-vip-2001-db8-0-0-0-0-0-0"
        );
    }

    /// Rendezvous hashing: removing a node moves only the VIPs it was preferred for, and
    /// VIPs spread over the nodes.
    #[test]
    fn rendezvous_moves_only_the_departed_nodes_vips() {
        let nodes = ["worker-1", "worker-2", "worker-3"];
        let vips: Vec<IpAddr> = (1..=60)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let mut counts = BTreeMap::new();
        for &vip in &vips {
            let first = rendezvous_rank(vip, nodes)[0];
            *counts.entry(first).or_insert(0) += 1;
            let without: Vec<&str> = nodes.iter().copied().filter(|n| *n != "worker-2").collect();
            let after = rendezvous_rank(vip, without)[0];
            if first != "worker-2" {
                assert_eq!(first, after, "{vip} moved although its node stayed");
            }
        }
        assert_eq!(
            counts.len(),
            3,
            "every node is preferred for some VIP: {counts:?}"
        );
        assert!(counts.values().all(|&c| c >= 10), "VIPs spread: {counts:?}");
    }
}
