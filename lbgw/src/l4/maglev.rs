//! Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, §3.4), the lookup table the XDP forwarder indexes with a
//! flow hash.
//!
//! Every backend has a permutation of the table's slots derived from two hashes of its name;
//! backends take turns claiming the next free slot of their permutation until the table is
//! full. The result depends only on the set of (name, weight) pairs — not on their order nor on
//! the node computing it — so every node builds the same table for the same endpoints, and
//! removing one of N backends moves only about 1/N of the slots.
//!
//! Weights: in each round a backend claims slots in proportion to its weight (Katran's
//! approach), so its share of the table, and of the flows, follows its weight.

/// Table sizes must be prime so that every `skip` is coprime with it (§3.4). 65537 keeps the
/// per-backend imbalance well under 1% for hundreds of backends.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// A smaller prime for small deployments and tests.
pub const SMALL_TABLE_SIZE: u32 = 16_381;

/// Errors building a table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaglevError {
    #[error("the Maglev table size {0} is not prime")]
    NotPrime(u32),
    #[error("backend {0:?} appears twice")]
    Duplicate(String),
}

/// A backend as Maglev sees it: a stable name (e.g. "10.0.0.5:8080") and a weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weighted<'a> {
    pub name: &'a str,
    pub weight: u32,
}

/// Builds the lookup table: entry `i` is the index (into `backends`) of the backend that owns
/// slot `i`. Backends of weight 0 get no slot; with no positive weight the table is empty.
pub fn build(backends: &[Weighted<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    // Order-independence: work on backends sorted by name, map back to caller indexes at the end.
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_by(|&a, &b| backends[a].name.cmp(backends[b].name));
    for pair in order.windows(2) {
        if backends[pair[0]].name == backends[pair[1]].name {
            return Err(MaglevError::Duplicate(backends[pair[0]].name.to_owned()));
        }
    }
    let active: Vec<usize> = order
        .into_iter()
        .filter(|&i| backends[i].weight > 0)
        .collect();
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let m = size as u64;
    let perms: Vec<(u64, u64)> = active
        .iter()
        .map(|&i| {
            let name = backends[i].name.as_bytes();
            let offset = fnv1a64(name, 0) % m;
            let skip = fnv1a64(name, 1) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = active
        .iter()
        .map(|&i| backends[i].weight)
        .max()
        .unwrap_or(1) as u64;
    let mut next = vec![0u64; active.len()];
    // Fractional turn credit per backend: weight/max_weight of a slot each round.
    let mut credit = vec![0u64; active.len()];
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    while filled < m {
        for (k, &i) in active.iter().enumerate() {
            credit[k] += backends[i].weight as u64;
            while credit[k] >= max_weight {
                credit[k] -= max_weight;
                let (offset, skip) = perms[k];
                let slot = loop {
                    let candidate = ((offset + next[k] * skip) % m) as usize;
                    next[k] += 1;
                    if table[candidate] == u32::MAX {
                        break candidate;
                    }
                };
                table[slot] = i as u32;
                filled += 1;
                if filled == m {
                    return Ok(table);
                }
            }
        }
    }
    Ok(table)
}

/// FNV-1a (64-bit), seeded by prefixing one byte: stable across nodes, builds and releases,
/// unlike std's randomly keyed hasher.
fn fnv1a64(data: &[u8], seed: u8) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &byte in std::iter::once(&seed).chain(data) {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(PRIME);
    }
    // Finalise (splitmix64) so that names differing in one trailing byte spread well.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = n as u64;
    (2..)
        .take_while(|d| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for &b in table {
            counts[b as usize] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / table.len() as f64)
            .collect()
    }

    #[test]
    fn every_slot_is_owned_and_shares_are_even() {
        let names = names(10);
        let backends: Vec<Weighted> = names
            .iter()
            .map(|n| Weighted { name: n, weight: 1 })
            .collect();
        let table = build(&backends, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
        for share in shares(&table, 10) {
            // §3.4: Maglev's tables are nearly perfectly balanced.
            assert!((share - 0.1).abs() < 0.1 * 0.02, "share {share}");
        }
    }

    #[test]
    fn shares_follow_weights() {
        let names = names(3);
        let weights = [1, 2, 5];
        let backends: Vec<Weighted> = names
            .iter()
            .zip(weights)
            .map(|(n, w)| Weighted { name: n, weight: w })
            .collect();
        let table = build(&backends, DEFAULT_TABLE_SIZE).unwrap();
        let total: u32 = weights.iter().sum();
        for (share, w) in shares(&table, 3).iter().zip(weights) {
            let want = w as f64 / total as f64;
            assert!(
                (share - want).abs() < want * 0.03,
                "share {share}, want {want}"
            );
        }
    }

    #[test]
    fn zero_weight_gets_nothing_and_all_zero_is_empty() {
        let backends = [
            Weighted {
                name: "a:1",
                weight: 0,
            },
            Weighted {
                name: "b:1",
                weight: 3,
            },
        ];
        let table = build(&backends, SMALL_TABLE_SIZE).unwrap();
        assert!(table.iter().all(|&b| b == 1));
        let none = [Weighted {
            name: "a:1",
            weight: 0,
        }];
        assert!(build(&none, SMALL_TABLE_SIZE).unwrap().is_empty());
        assert!(build(&[], SMALL_TABLE_SIZE).unwrap().is_empty());
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 20;
        let names = names(n);
        let all: Vec<Weighted> = names
            .iter()
            .map(|n| Weighted { name: n, weight: 1 })
            .collect();
        let before = build(&all, DEFAULT_TABLE_SIZE).unwrap();
        let removed = 7;
        let rest: Vec<Weighted> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, b)| b.clone())
            .collect();
        let after = build(&rest, DEFAULT_TABLE_SIZE).unwrap();
        let moved = before
            .iter()
            .zip(&after)
            .filter(|&(&b, &a)| names[b as usize] != rest[a as usize].name)
            .count() as f64
            / before.len() as f64;
        // The removed backend's 1/N must move; Maglev moves a little more (§3.4, Figure 9).
        assert!(moved >= 1.0 / n as f64 * 0.95, "moved {moved}");
        assert!(moved < 1.0 / n as f64 * 1.6, "moved {moved}");
    }

    #[test]
    fn order_does_not_matter_and_duplicates_are_rejected() {
        let names = names(5);
        let fwd: Vec<Weighted> = names
            .iter()
            .map(|n| Weighted { name: n, weight: 2 })
            .collect();
        let mut rev = fwd.clone();
        rev.reverse();
        let a = build(&fwd, SMALL_TABLE_SIZE).unwrap();
        let b = build(&rev, SMALL_TABLE_SIZE).unwrap();
        // Same owner names slot by slot (indexes differ because the inputs are reversed).
        assert!(
            a.iter()
                .zip(&b)
                .all(|(&x, &y)| fwd[x as usize].name == rev[y as usize].name)
        );
        let dup = [
            Weighted {
                name: "a:1",
                weight: 1,
            },
            Weighted {
                name: "a:1",
                weight: 1,
            },
        ];
        assert_eq!(
            build(&dup, SMALL_TABLE_SIZE),
            Err(MaglevError::Duplicate("a:1".into()))
        );
        assert_eq!(build(&fwd, 16_384), Err(MaglevError::NotPrime(16_384)));
    }
}
