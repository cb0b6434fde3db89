//! LB-IPAM: LoadBalancer address allocation for Gateways and Services, after Cilium's LB-IPAM
//! (<https://docs.cilium.io/en/stable/network/lb-ipam/>).
//!
//! The flow, as `lbgw check` and `lbgw run` use it:
//! 1. [`Pools::resolve`] decides where addresses come from: `--lb-cidr`, else the
//!    `CILIUM_LB_CIDR` environment variable, else the `CiliumLoadBalancerIPPool` objects.
//! 2. [`State::load`] reads what was handed out before, so every object keeps its address
//!    across restarts.
//! 3. [`allocate`] computes a [`Plan`]: who gets which address, and what went wrong.
//! 4. `lbgw run` persists [`Plan::state`] with [`State::save`].
//!
//! The rules, in order of precedence (each has tests in `ipam/tests/`):
//! - **Who**: Gateways lbgw serves ([`Config::gateway_unmanaged_reason`]) and Services of type
//!   LoadBalancer with no or lbgw's `loadBalancerClass`. A pool with a `serviceSelector` only
//!   serves objects it selects (see [`Pools`] for the labels a Gateway is matched with).
//! - **Explicit requests** (Gateway `spec.addresses` of type `IPAddress`; Service annotation
//!   `lbipam.cilium.io/ips` and `spec.loadBalancerIP`) must lie in a pool the object may use.
//! - **Never take an address away**: an address an object holds (from [`State`]) stays with
//!   it while it is in a pool the object may use, even if another object now requests it; that
//!   other object gets an error naming both. Two requests for one address: the object created
//!   first (then: first in kind/namespace/name order) gets it.
//! - **New addresses** are picked starting at an FNV-1a hash of the object's [`ObjectRef`]
//!   within the pool (within the first [`PICKABLE_PER_BLOCK`] addresses of each block), probing
//!   linearly, and objects are served oldest first, so adding an object does not move others
//!   even without a state file (barring a hash collision).
//! - **Errors are per object**: an object with an error gets no new address (and keeps those it
//!   held); other objects are unaffected.
//! - **Removed objects** release their addresses: they are not in the new [`State`].
//!
//! [`Config::gateway_unmanaged_reason`]: crate::config::Config::gateway_unmanaged_reason
mod allocate;
mod claim;
mod plan;
mod pools;
mod selector;
mod state;
#[cfg(test)]
mod tests;

use std::{fmt, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use allocate::allocate;
pub use plan::{Origin, Plan, Skipped};
pub use pools::{Block, PICKABLE_PER_BLOCK, Pool, PoolSource, Pools};
pub use selector::Selector;
pub use state::State;

use crate::config::ObjectRef;

/// The annotation Cilium LB-IPAM reads requested addresses from (comma-separated).
pub const IPS_ANNOTATION: &str = "lbipam.cilium.io/ips";
/// The older name of [`IPS_ANNOTATION`], still honoured by Cilium.
pub const IPS_ANNOTATION_ALIAS: &str = "io.cilium/lb-ipam-ips";
/// Pseudo-label a pool's `serviceSelector` can match on: the object's namespace (Cilium).
pub const NAMESPACE_LABEL: &str = "io.kubernetes.service.namespace";
/// Pseudo-label a pool's `serviceSelector` can match on: the object's name (Cilium).
pub const NAME_LABEL: &str = "io.kubernetes.service.name";
/// The label Gateway API implementations put on resources generated for a Gateway (GEP-1762);
/// lbgw matches pool selectors against it for Gateways.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// An address assigned to an object, from a pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vip {
    /// The address.
    pub ip: IpAddr,
    /// The Gateway or Service it belongs to.
    pub owner: ObjectRef,
    /// The name of the pool it came from: a CiliumLoadBalancerIPPool's name, `--lb-cidr` or
    /// `CILIUM_LB_CIDR`.
    pub pool: String,
}

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Errors of pool resolution, of the state file, and of allocation (those name the object).
///
/// As for [`crate::config::ConfigError`], a message does not repeat its source; print with
/// the chain ([`crate::config::error_chain`] or `{:#}` of an `anyhow::Error`).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A CIDR that does not parse. `origin` is `--lb-cidr`, `CILIUM_LB_CIDR`, or
    /// `FILE: CiliumLoadBalancerIPPool NAME: spec.blocks[N].cidr`.
    #[error("{origin}: invalid CIDR {value:?}")]
    InvalidCidr {
        /// Where the value came from.
        origin: String,
        /// The value.
        value: String,
        /// The parser's error.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// A `start`/`stop` address of a pool block that does not parse.
    #[error("{origin}: invalid IP address {value:?}")]
    InvalidAddress {
        /// The pool and field.
        origin: String,
        /// The value.
        value: String,
        /// The parser's error.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A pool block that parses but makes no sense (stop before start, mixed families, ...).
    #[error("{origin}: {reason}")]
    InvalidBlock {
        /// The pool and field.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A `serviceSelector` Kubernetes would reject.
    #[error("{origin}: {reason}")]
    InvalidSelector {
        /// The pool and field.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Two blocks overlap. Cilium marks such pools as conflicting and does not use them; lbgw
    /// refuses the configuration.
    #[error("{first} overlaps {second}")]
    Overlap {
        /// One block, e.g. `CiliumLoadBalancerIPPool blue spec.blocks[0] (192.0.2.0/28)`.
        first: String,
        /// The other.
        second: String,
    },
    /// The state file exists but cannot be read.
    #[error("reading IPAM state {}", path.display())]
    StateRead {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("IPAM state {} is corrupt", path.display())]
    StateCorrupt {
        /// The state file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The state file is valid JSON but unusable (e.g. a newer format version).
    #[error("IPAM state {}: {reason}", path.display())]
    StateInvalid {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state file cannot be written.
    #[error("writing IPAM state {}", path.display())]
    StateWrite {
        /// The state file (or its directory).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A requested address that does not parse.
    #[error("{owner}: {field}: invalid IP address {value:?}")]
    InvalidRequest {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The field, e.g. `spec.addresses[0].value`.
        field: String,
        /// The value.
        value: String,
        /// The parser's error.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A Gateway address of a type other than `IPAddress` (Gateway API: `Hostname` and
    /// `NamedAddress` are Extended/implementation-specific support).
    #[error(
        "{owner}: {field}: address type {address_type:?} is not supported (lbgw assigns IPAddress addresses only)"
    )]
    UnsupportedAddressType {
        /// The Gateway.
        owner: Box<ObjectRef>,
        /// The field, e.g. `spec.addresses[1].type`.
        field: String,
        /// The type.
        address_type: String,
    },
    /// A field of the object that Kubernetes would reject, e.g. an unknown `ipFamilyPolicy`.
    #[error("{owner}: {field}: {reason}")]
    InvalidSpec {
        /// The object.
        owner: Box<ObjectRef>,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A requested address outside every pool.
    #[error("{owner} requests {ip} ({field}) but no pool contains it")]
    NotInPool {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
    },
    /// A requested address in a pool whose `serviceSelector` does not select the object.
    #[error(
        "{owner} requests {ip} ({field}) from pool {pool}, whose serviceSelector does not select it"
    )]
    NotSelected {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
        /// The pool containing the address.
        pool: String,
    },
    /// A requested address in a disabled pool (no new allocations from it, per Cilium).
    #[error("{owner} requests {ip} ({field}) from pool {pool}, which is disabled")]
    PoolDisabled {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
        /// The pool containing the address.
        pool: String,
    },
    /// A requested address that is the first or last of a CIDR whose pool has
    /// `allowFirstLastIPs: No`.
    #[error(
        "{owner} requests {ip} ({field}), the first or last address of {block} in pool {pool}, which allowFirstLastIPs: No reserves"
    )]
    Reserved {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
        /// The pool.
        pool: String,
        /// The CIDR.
        block: String,
    },
    /// A requested address another object holds: the holder keeps it.
    #[error("{owner} requests {ip} ({field}) but {holder} already has it; {holder} keeps it")]
    HeldByOther {
        /// The requesting object.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
        /// The object that has the address.
        holder: Box<ObjectRef>,
    },
    /// Two objects request the same address: the one with precedence gets it.
    #[error(
        "{owner} requests {ip} ({field}) but {winner} requests it too and {why}, so {winner} gets it"
    )]
    RequestedByOther {
        /// The object that does not get the address.
        owner: Box<ObjectRef>,
        /// The address.
        ip: IpAddr,
        /// Where it was requested.
        field: String,
        /// The object that gets it.
        winner: Box<ObjectRef>,
        /// Why the winner has precedence.
        why: String,
    },
    /// No pool the object may use has addresses of a family it needs.
    #[error("{owner} wants {family} but no {} has {family} addresses", if *.any_pool { "enabled pool that selects it" } else { "pool" })]
    FamilyUnavailable {
        /// The object.
        owner: Box<ObjectRef>,
        /// The family.
        family: IpFamily,
        /// Whether some pool (disabled, or not selecting the object) has the family.
        any_pool: bool,
    },
    /// The object needs an address but there is no pool at all.
    #[error(
        "{owner} needs an address but no pool is configured (--lb-cidr, CILIUM_LB_CIDR or CiliumLoadBalancerIPPool objects)"
    )]
    NoPools {
        /// The object.
        owner: Box<ObjectRef>,
    },
    /// Every pool the object may use is full.
    #[error("{owner} needs an {family} address but {} no free {family} address", plural_pools(.pools))]
    Exhausted {
        /// The object.
        owner: Box<ObjectRef>,
        /// The family.
        family: IpFamily,
        /// The pools tried.
        pools: Vec<String>,
    },
    /// Several errors (pool resolution reports all it finds).
    #[error("{} IPAM errors:{}", .0.len(), list(.0))]
    Many(Vec<IpamError>),
}

impl IpamError {
    /// The Gateway or Service an allocation error is about.
    pub fn owner(&self) -> Option<&ObjectRef> {
        match self {
            IpamError::InvalidRequest { owner, .. }
            | IpamError::UnsupportedAddressType { owner, .. }
            | IpamError::InvalidSpec { owner, .. }
            | IpamError::NotInPool { owner, .. }
            | IpamError::NotSelected { owner, .. }
            | IpamError::PoolDisabled { owner, .. }
            | IpamError::Reserved { owner, .. }
            | IpamError::HeldByOther { owner, .. }
            | IpamError::RequestedByOther { owner, .. }
            | IpamError::FamilyUnavailable { owner, .. }
            | IpamError::NoPools { owner }
            | IpamError::Exhausted { owner, .. } => Some(owner.as_ref()),
            _ => None,
        }
    }

    /// The individual errors: the members of [`IpamError::Many`], or this one.
    pub fn errors(&self) -> &[IpamError] {
        match self {
            IpamError::Many(errors) => errors,
            other => std::slice::from_ref(other),
        }
    }

    fn from_list(mut errors: Vec<IpamError>) -> Option<IpamError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(IpamError::Many(errors)),
        }
    }
}

fn plural_pools(pools: &[String]) -> String {
    match pools {
        [one] => format!("pool {one} has"),
        many => format!("pools {} have", many.join(", ")),
    }
}

fn list(errors: &[IpamError]) -> String {
    errors
        .iter()
        .map(|e| format!("\n  {}", crate::config::error_chain(e)))
        .collect()
}
