//! `CiliumLoadBalancerIPPool` (`cilium.io/v2alpha1` and `cilium.io/v2`): no crate has this type,
//! so this is the subset of the CRD that LB-IPAM reads. Field meanings follow the Cilium LB-IPAM
//! documentation (<https://docs.cilium.io/en/stable/network/lb-ipam/>) and the CRD's field docs.
//!
//! Addresses are kept as strings here, as in the CRD; [`crate::ipam::Pools::resolve`] parses
//! them and reports errors with the pool and field.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// A pool of LoadBalancer addresses (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CiliumLoadBalancerIPPool {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The pool's definition.
    pub spec: CiliumLoadBalancerIPPoolSpec,
}

/// `spec` of a [`CiliumLoadBalancerIPPool`]. Unknown fields are rejected so that a typo such as
/// `allowFirstLastIps` is an error rather than silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumLoadBalancerIPPoolSpec {
    /// The CIDRs and ranges of the pool.
    #[serde(default)]
    pub blocks: Vec<IpPoolBlock>,
    /// The deprecated `cilium.io/v2alpha1` name of `blocks` (Cilium ≤ 1.14 examples use it);
    /// its entries are added to `blocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<IpPoolBlock>,
    /// Whether the first and last address of each CIDR block may be handed out. Cilium: "if set
    /// to `Yes` or undefined means that the first and last IPs of each CIDR will be
    /// allocatable. If `No`, these IPs will be reserved. This field is ignored for /{31,32} and
    /// /{127,128} CIDRs".
    #[serde(default, rename = "allowFirstLastIPs")]
    pub allow_first_last_ips: AllowFirstLastIps,
    /// Cilium: "Disabled, if set to true means that no new IPs will be allocated from this
    /// pool. Existing allocations will not be removed from services."
    #[serde(default)]
    pub disabled: bool,
    /// Which Services may draw from this pool; every Service when absent. Besides labels,
    /// Cilium matches the pseudo-labels `io.kubernetes.service.namespace` and
    /// `io.kubernetes.service.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
}

impl CiliumLoadBalancerIPPoolSpec {
    /// `blocks` followed by the deprecated `cidrs`, with the field path of each
    /// (`spec.blocks[0]`, `spec.cidrs[0]`).
    pub fn all_blocks(&self) -> impl Iterator<Item = (String, &IpPoolBlock)> {
        let blocks = self.blocks.iter().enumerate();
        let cidrs = self.cidrs.iter().enumerate();
        blocks
            .map(|(i, b)| (format!("spec.blocks[{i}]"), b))
            .chain(cidrs.map(|(i, b)| (format!("spec.cidrs[{i}]"), b)))
    }
}

/// `spec.allowFirstLastIPs`: `Yes` (the default) or `No`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowFirstLastIps {
    /// The first and last address of every CIDR may be handed out.
    #[default]
    Yes,
    /// The first (network) and last (broadcast) address of CIDRs larger than /31 (/127) are
    /// reserved.
    No,
}

/// One block of a pool: either `cidr`, or `start` with an optional `stop` (inclusive; a
/// lone `start` is a single address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPoolBlock {
    /// A CIDR such as `192.0.2.0/28` or `2001:db8::/64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// First address of a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last address of a range (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}
