//! The result of an allocation: who gets which address, and what went wrong.
use std::{collections::BTreeMap, fmt, net::IpAddr};

use super::{IpamError, PoolSource, State, Vip};
use crate::config::{ObjectRef, error_chain};

/// How an object came to have an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Requested explicitly (Gateway `spec.addresses`, Service annotation or
    /// `spec.loadBalancerIP`).
    Requested,
    /// Held before (from the state) and kept.
    Kept,
    /// Newly picked from a pool.
    New,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Requested => "requested",
            Origin::Kept => "kept",
            Origin::New => "new",
        })
    }
}

/// An object lbgw leaves alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The Gateway or Service.
    pub object: ObjectRef,
    /// Why, e.g. "its loadBalancerClass is \"other\", not \"lbgw.io/l2\"".
    pub reason: String,
}

/// The outcome of [`super::allocate`].
#[derive(Debug)]
pub struct Plan {
    pub(super) entries: Vec<(Vip, Origin)>,
    /// What went wrong, sorted by object. Objects with errors got no new address.
    pub errors: Vec<IpamError>,
    /// Gateways and LoadBalancer Services that are not lbgw's.
    pub skipped: Vec<Skipped>,
    /// Allocations of the previous state that are gone (object removed, or address no longer
    /// in a pool it may use, or no longer wanted).
    pub released: Vec<Vip>,
    /// Where the pools came from.
    pub pool_source: PoolSource,
}

impl Plan {
    /// The addresses, sorted by owner then address.
    pub fn vips(&self) -> Vec<Vip> {
        self.entries.iter().map(|(vip, _)| vip.clone()).collect()
    }

    /// The addresses of `owner`.
    pub fn ips_of<'a>(&'a self, owner: &'a ObjectRef) -> impl Iterator<Item = IpAddr> + 'a {
        self.entries
            .iter()
            .filter(move |(v, _)| &v.owner == owner)
            .map(|(v, _)| v.ip)
    }

    /// How `owner` came to have `ip`, if it has it.
    pub fn origin(&self, owner: &ObjectRef, ip: IpAddr) -> Option<Origin> {
        self.entries
            .iter()
            .find(|(v, _)| &v.owner == owner && v.ip == ip)
            .map(|(_, o)| *o)
    }

    /// The state to persist: every address of the plan.
    pub fn state(&self) -> State {
        State::new(self.vips())
    }

    /// Whether every object got what it asked for.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The plan without its errors (what `lbgw check` prints to stdout; errors go to stderr).
    pub fn table(&self) -> impl fmt::Display + '_ {
        Table(self)
    }
}

struct Table<'a>(&'a Plan);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        writeln!(f, "VIP plan (pools from {}):", plan.pool_source)?;
        if plan.entries.is_empty() {
            writeln!(f, "  (no addresses)")?;
        } else {
            let rows: Vec<[String; 4]> = plan
                .entries
                .iter()
                .map(|(v, o)| {
                    [
                        v.owner.to_string(),
                        v.ip.to_string(),
                        v.pool.clone(),
                        o.to_string(),
                    ]
                })
                .collect();
            let header = ["OWNER", "IP", "POOL", "ORIGIN"].map(String::from);
            let mut widths = [0usize; 4];
            for row in std::iter::once(&header).chain(&rows) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line = format!(
                    "  {:w0$}  {:w1$}  {:w2$}  {}",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2],
                );
                writeln!(f, "{}", line.trim_end())?;
            }
        }
        if !plan.released.is_empty() {
            writeln!(f, "released:")?;
            for vip in &plan.released {
                writeln!(f, "  {} (was {}'s, pool {})", vip.ip, vip.owner, vip.pool)?;
            }
        }
        if !plan.skipped.is_empty() {
            writeln!(f, "not lbgw's:")?;
            for skipped in &plan.skipped {
                writeln!(f, "  {}: {}", skipped.object, skipped.reason)?;
            }
        }
        Ok(())
    }
}

/// The table, then the errors.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table())?;
        if !self.errors.is_empty() {
            writeln!(f, "errors ({}):", self.errors.len())?;
            for err in &self.errors {
                writeln!(f, "  {}", error_chain(err))?;
            }
        }
        Ok(())
    }
}

/// Orders plan entries by owner, then address.
pub(super) fn sort_entries(entries: &mut [(Vip, Origin)]) {
    entries.sort_by(|(a, _), (b, _)| (&a.owner, a.ip).cmp(&(&b.owner, b.ip)));
}

/// Groups the previous allocations by owner.
pub(super) fn by_owner(previous: &[Vip]) -> BTreeMap<&ObjectRef, Vec<IpAddr>> {
    let mut owners: BTreeMap<&ObjectRef, Vec<IpAddr>> = BTreeMap::new();
    for vip in previous {
        owners.entry(&vip.owner).or_default().push(vip.ip);
    }
    for ips in owners.values_mut() {
        ips.sort();
        ips.dedup();
    }
    owners
}
