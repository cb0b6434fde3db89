//! The allocation algorithm. See the module documentation of [`super`] for the rules.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    IpFamily, IpamError, Plan, Pools, State, Vip,
    claim::{self, Claimant},
    plan::{self, Origin},
    pools::Located,
};
use crate::config::{Config, ObjectRef};

/// Allocates addresses to the Gateways and LoadBalancer Services of `config` from `pools`,
/// keeping what `previous` recorded wherever the rules allow. Never fails as a whole: problems
/// are per object, in [`Plan::errors`].
pub fn allocate(pools: &Pools, config: &Config, previous: &State) -> Plan {
    let mut held = previous.allocations.clone();
    loop {
        let round = Round::run(pools, config, &held);
        // An address requested by one object but held by another that gives it up in the same
        // round (because it now requests a different one) is not really contested: forget the
        // old holding and run again. Each repetition drops at least one previous allocation.
        let freed: BTreeSet<IpAddr> = round
            .contested
            .iter()
            .filter(|ip| !round.assigned.contains_key(ip))
            .copied()
            .collect();
        if freed.is_empty() {
            return round.into_plan(pools, previous);
        }
        held.retain(|vip| !freed.contains(&vip.ip));
    }
}

/// One pass of the algorithm over the objects.
struct Round {
    claimants: Vec<Claimant>,
    skipped: Vec<super::Skipped>,
    /// Per claimant: its addresses, with pool index and origin.
    result: Vec<Vec<(IpAddr, usize, Origin)>>,
    /// Every assigned address and its claimant.
    assigned: BTreeMap<IpAddr, usize>,
    /// Held addresses that another object requested.
    contested: BTreeSet<IpAddr>,
}

impl Round {
    fn run(pools: &Pools, config: &Config, previous: &[Vip]) -> Round {
        let (mut claimants, skipped) = claim::claimants(config);
        let n = claimants.len();

        // (b) What each object held before and may keep: in a pool that still selects it.
        let previous = plan::by_owner(previous);
        let mut holder: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut held: Vec<Vec<(IpAddr, usize)>> = vec![Vec::new(); n];
        for (c, claimant) in claimants.iter().enumerate() {
            for &ip in previous.get(&claimant.id).into_iter().flatten() {
                if holder.contains_key(&ip) {
                    continue; // a corrupt state with one address twice: precedence decides
                }
                match pools.keeping_pool(ip, &claimant.labels) {
                    Some(pool) => {
                        holder.insert(ip, c);
                        held[c].push((ip, pool));
                    }
                    None => {
                        tracing::debug!(owner = %claimant.id, %ip, "releasing: no longer in a pool that selects it")
                    }
                }
            }
        }

        // The families each object wants dynamic addresses of.
        let mut families: Vec<Vec<IpFamily>> = vec![Vec::new(); n];
        for (c, claimant) in claimants.iter_mut().enumerate() {
            if !claimant.errors.is_empty() {
                continue;
            }
            let holds = |family| held[c].iter().any(|&(ip, _)| IpFamily::of(ip) == family);
            let available =
                |family| holds(family) || !pools.candidates(family, &claimant.labels).is_empty();
            match claimant.families(holds, available, |f| pools.any_has(f), pools.is_empty()) {
                Ok(wanted) => families[c] = wanted,
                Err(err) => claimant.errors.push(err),
            }
        }

        // Every parseable request, even of objects with errors, is kept out of dynamic
        // allocation, so that fixing the error later does not collide with a newcomer.
        let mut taken: BTreeSet<IpAddr> = claimants
            .iter()
            .flat_map(|c| c.requests.iter().map(|r| r.ip))
            .collect();

        // (a) Explicit requests, oldest object first; all of an object's requests or none.
        let mut granted: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut contested = BTreeSet::new();
        let mut result: Vec<Vec<(IpAddr, usize, Origin)>> = vec![Vec::new(); n];
        for c in 0..n {
            if !claimants[c].errors.is_empty() {
                continue;
            }
            let mut grants = Vec::new();
            let mut errors = Vec::new();
            let claimant = &claimants[c];
            for request in &claimant.requests {
                let (ip, owner, field) = (
                    request.ip,
                    Box::new(claimant.id.clone()),
                    request.field.clone(),
                );
                let pool_name = |p: usize| pools.pools[p].name.clone();
                match pools.locate(ip, &claimant.labels) {
                    Located::Usable(pool) => match (holder.get(&ip), granted.get(&ip)) {
                        (Some(&h), _) if h != c => {
                            contested.insert(ip);
                            let holder = Box::new(claimants[h].id.clone());
                            errors.push(IpamError::HeldByOther {
                                owner,
                                ip,
                                field,
                                holder,
                            });
                        }
                        (_, Some(&g)) if g != c => {
                            let winner = &claimants[g];
                            let why = winner.why_first(claimant).to_owned();
                            errors.push(IpamError::RequestedByOther {
                                owner,
                                ip,
                                field,
                                winner: Box::new(winner.id.clone()),
                                why,
                            });
                        }
                        _ => grants.push((ip, pool)),
                    },
                    Located::NotSelected(p) => errors.push(IpamError::NotSelected {
                        owner,
                        ip,
                        field,
                        pool: pool_name(p),
                    }),
                    Located::Disabled(p) => errors.push(IpamError::PoolDisabled {
                        owner,
                        ip,
                        field,
                        pool: pool_name(p),
                    }),
                    Located::Reserved(p, b) => {
                        let block = pools.pools[p].blocks[b].text.clone();
                        errors.push(IpamError::Reserved {
                            owner,
                            ip,
                            field,
                            pool: pool_name(p),
                            block,
                        });
                    }
                    Located::Nowhere => errors.push(IpamError::NotInPool { owner, ip, field }),
                }
            }
            if errors.is_empty() {
                for (ip, pool) in grants {
                    granted.insert(ip, c);
                    result[c].push((ip, pool, Origin::Requested));
                }
            } else {
                claimants[c].errors.extend(errors);
            }
        }

        // What each object keeps of what it held: everything if it has errors (errors never take
        // an address away); otherwise one address per wanted family not covered by a request.
        for c in 0..n {
            let ok = claimants[c].errors.is_empty();
            for &(ip, pool) in &held[c] {
                let family = IpFamily::of(ip);
                let covered = result[c]
                    .iter()
                    .any(|&(a, _, _)| a == ip || IpFamily::of(a) == family);
                if !ok || (!covered && families[c].contains(&family)) {
                    if !result[c].iter().any(|&(a, _, _)| a == ip) {
                        result[c].push((ip, pool, Origin::Kept));
                    }
                } else if !result[c].iter().any(|&(a, _, _)| a == ip) {
                    tracing::debug!(owner = %claimants[c].id, %ip, "releasing: no longer wanted");
                }
            }
            taken.extend(result[c].iter().map(|&(ip, _, _)| ip));
        }

        // (c) New addresses, oldest object first, from a hash of the object's name.
        for c in 0..n {
            let claimant = &claimants[c];
            if !claimant.errors.is_empty() {
                continue;
            }
            let hash = fnv1a(&claimant.id);
            let mut new = Vec::new();
            let mut errors = Vec::new();
            for &family in &families[c] {
                if result[c]
                    .iter()
                    .any(|&(ip, _, _)| IpFamily::of(ip) == family)
                {
                    continue;
                }
                let candidates = pools.candidates(family, &claimant.labels);
                let picked = candidates
                    .iter()
                    .find_map(|&p| pools.pools[p].pick(family, hash, &taken).map(|ip| (ip, p)));
                match picked {
                    Some((ip, pool)) => {
                        taken.insert(ip);
                        new.push((ip, pool, Origin::New));
                    }
                    None if candidates.is_empty() => errors.push(IpamError::FamilyUnavailable {
                        owner: Box::new(claimant.id.clone()),
                        family,
                        any_pool: pools.any_has(family),
                    }),
                    None => errors.push(IpamError::Exhausted {
                        owner: Box::new(claimant.id.clone()),
                        family,
                        pools: candidates
                            .iter()
                            .map(|&p| pools.pools[p].name.clone())
                            .collect(),
                    }),
                }
            }
            if errors.is_empty() {
                result[c].extend(new);
            } else {
                for (ip, _, _) in new {
                    taken.remove(&ip);
                }
                claimants[c].errors.extend(errors);
            }
        }

        let assigned = result
            .iter()
            .enumerate()
            .flat_map(|(c, ips)| ips.iter().map(move |&(ip, _, _)| (ip, c)))
            .collect();
        Round {
            claimants,
            skipped,
            result,
            assigned,
            contested,
        }
    }

    fn into_plan(self, pools: &Pools, previous: &State) -> Plan {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (claimant, ips) in self.claimants.into_iter().zip(self.result) {
            for (ip, pool, origin) in ips {
                let vip = Vip {
                    ip,
                    owner: claimant.id.clone(),
                    pool: pools.pools[pool].name.clone(),
                };
                entries.push((vip, origin));
            }
            errors.extend(claimant.errors);
        }
        plan::sort_entries(&mut entries);
        // Stable: an object's errors stay in the order they were found.
        errors.sort_by(|a, b| a.owner().cmp(&b.owner()));
        let kept: BTreeSet<(&ObjectRef, IpAddr)> =
            entries.iter().map(|(v, _)| (&v.owner, v.ip)).collect();
        let released = previous
            .allocations
            .iter()
            .filter(|v| !kept.contains(&(&v.owner, v.ip)))
            .cloned()
            .collect();
        Plan {
            entries,
            errors,
            skipped: self.skipped,
            released,
            pool_source: pools.source,
        }
    }
}

/// 64-bit FNV-1a of the object's kind, namespace and name (NUL-separated): stable across
/// runs, builds and platforms, unlike `std`'s randomly keyed hasher.
pub(super) fn fnv1a(id: &ObjectRef) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = [
        id.kind.as_bytes(),
        b"\0",
        id.namespace.as_bytes(),
        b"\0",
        id.name.as_bytes(),
    ];
    bytes
        .iter()
        .flat_map(|b| b.iter())
        .fold(OFFSET, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}
