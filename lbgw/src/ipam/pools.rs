//! Where LoadBalancer addresses come from: `--lb-cidr`, `CILIUM_LB_CIDR`, or
//! CiliumLoadBalancerIPPool objects.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;

use super::{IpFamily, IpamError, Selector};
use crate::config::{AllowFirstLastIps, Config, ObjectRef};

/// Where the pools came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSource {
    /// The `--lb-cidr` flag.
    LbCidrFlag,
    /// The `CILIUM_LB_CIDR` environment variable.
    Env,
    /// CiliumLoadBalancerIPPool objects of the configuration.
    Objects,
}

impl fmt::Display for PoolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolSource::LbCidrFlag => FLAG,
            PoolSource::Env => ENV,
            PoolSource::Objects => "CiliumLoadBalancerIPPool objects",
        })
    }
}

const FLAG: &str = "--lb-cidr";
const ENV: &str = "CILIUM_LB_CIDR";

/// The pools addresses are allocated from, in the order they are tried: the single `--lb-cidr`
/// or `CILIUM_LB_CIDR` pool, or the CiliumLoadBalancerIPPool objects by name. No two blocks
/// overlap.
///
/// Selectors see, for a Service, its labels plus the pseudo-labels
/// `io.kubernetes.service.namespace` and `io.kubernetes.service.name` (as in Cilium); for a
/// Gateway, its `spec.infrastructure.labels` (Gateway API: labels "that SHOULD be applied to
/// any resources created in response to this Gateway"), `gateway.networking.k8s.io/gateway-name`
/// and the same two pseudo-labels with the Gateway's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    /// Where the pools came from.
    pub source: PoolSource,
    /// The pools.
    pub pools: Vec<Pool>,
}

/// One pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The name shown in plans and stored in state: the CiliumLoadBalancerIPPool's name, or
    /// `--lb-cidr` / `CILIUM_LB_CIDR`.
    pub name: String,
    /// The CiliumLoadBalancerIPPool, if the pool is one.
    pub object: Option<ObjectRef>,
    /// The address blocks.
    pub blocks: Vec<Block>,
    /// Which objects may use the pool; all when `None`.
    pub selector: Option<Selector>,
    /// A disabled pool hands out no new addresses, but objects keep those they have
    /// (Cilium: "Existing allocations will not be removed from services").
    pub disabled: bool,
}

/// A contiguous range of addresses of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The block for messages, e.g. `CiliumLoadBalancerIPPool blue spec.blocks[0] (192.0.2.0/28)`.
    pub label: String,
    /// The block as written: a CIDR or `start-stop`.
    pub text: String,
    /// First address of the block.
    pub first: IpAddr,
    /// Last address of the block (inclusive).
    pub last: IpAddr,
    /// First address that may be handed out (differs from `first` when `allowFirstLastIPs: No`
    /// reserves a CIDR's network address).
    pub usable_first: IpAddr,
    /// Last address that may be handed out.
    pub usable_last: IpAddr,
}

impl Block {
    fn from_net(label: String, net: IpNet, allow_first_last: AllowFirstLastIps) -> Block {
        let net = net.trunc();
        let (first, last) = (net.network(), net.broadcast());
        // Cilium reserves nothing in /31, /32, /127 and /128: "reserving the first and last IPs
        // would make the CIDRs unusable".
        let reserve = allow_first_last == AllowFirstLastIps::No
            && net.max_prefix_len() - net.prefix_len() >= 2;
        let (usable_first, usable_last) = if reserve {
            let family = IpFamily::of(first);
            (
                from_u128(to_u128(first) + 1, family),
                from_u128(to_u128(last) - 1, family),
            )
        } else {
            (first, last)
        };
        Block {
            label,
            text: net.to_string(),
            first,
            last,
            usable_first,
            usable_last,
        }
    }

    /// The family of the block's addresses.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.first)
    }

    /// Whether `ip` is in the block (reserved addresses included).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// Whether `ip` may be handed out from the block.
    pub fn usable(&self, ip: IpAddr) -> bool {
        self.usable_first <= ip && ip <= self.usable_last
    }
}

impl Pool {
    /// Whether the pool may serve an object with `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// Whether the pool has addresses of `family`.
    pub fn has(&self, family: IpFamily) -> bool {
        self.blocks.iter().any(|b| b.family() == family)
    }

    /// A free address of `family` for a new allocation: the `hash`-th of the pickable
    /// addresses (modulo their number), or the next free one after it (wrapping). `None` when
    /// every pickable address is `taken`.
    ///
    /// Only the first [`PICKABLE_PER_BLOCK`] usable addresses of each block are pickable, as in
    /// Cilium ("the allocation logic is limited to 65536 IPs per CIDR"); this also keeps
    /// addresses from a /64 short (`2001:db8::1f2a`, not `2001:db8::42eb:51bb:3aae:ccd7`).
    /// Explicit requests may use any usable address of a block.
    pub(super) fn pick(
        &self,
        family: IpFamily,
        hash: u64,
        taken: &BTreeSet<IpAddr>,
    ) -> Option<IpAddr> {
        let ranges: Vec<(u128, u128)> = self
            .blocks
            .iter()
            .filter(|b| b.family() == family)
            .map(|b| {
                let first = to_u128(b.usable_first);
                let last = to_u128(b.usable_last).min(first.saturating_add(PICKABLE_PER_BLOCK - 1));
                (first, last)
            })
            .collect();
        let total = ranges.iter().map(|(a, b)| b - a + 1).sum::<u128>();
        let used = ranges
            .iter()
            .map(|&(a, b)| {
                taken
                    .range(from_u128(a, family)..=from_u128(b, family))
                    .count()
            })
            .sum::<usize>();
        if total == 0 || total <= used as u128 {
            return None;
        }
        let mut offset = u128::from(hash) % total;
        // At most `used` addresses are taken, so one of `used + 1` consecutive ones is free.
        for _ in 0..=used {
            let ip = nth(&ranges, offset, family);
            if !taken.contains(&ip) {
                return Some(ip);
            }
            offset = (offset + 1) % total;
        }
        None
    }
}

/// How many addresses of each block new allocations pick from: the first 65536 usable ones, as
/// in Cilium ("the allocation logic is limited to 65536 IPs per CIDR"). Explicit requests may
/// use any usable address of a block.
pub const PICKABLE_PER_BLOCK: u128 = 1 << 16;

fn nth(ranges: &[(u128, u128)], mut offset: u128, family: IpFamily) -> IpAddr {
    for &(a, b) in ranges {
        let size = b - a + 1;
        if offset < size {
            return from_u128(a + offset, family);
        }
        offset -= size;
    }
    // Unreachable for offset < total; fall back to the first address rather than panic.
    from_u128(ranges.first().map_or(0, |r| r.0), family)
}

pub(super) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(super) fn from_u128(value: u128, family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Where a requested address lies relative to the pools of an object.
pub(super) enum Located {
    /// In pool `.0`, which may hand it to the object.
    Usable(usize),
    /// In a pool whose selector does not select the object.
    NotSelected(usize),
    /// In a disabled pool.
    Disabled(usize),
    /// A reserved first/last address of block `.1` of pool `.0`.
    Reserved(usize, usize),
    /// In no pool.
    Nowhere,
}

impl Pools {
    /// Resolves the pools: the `--lb-cidr` values if any, else `env_cilium_lb_cidr` (the
    /// `CILIUM_LB_CIDR` environment variable) if set and not blank, else the
    /// CiliumLoadBalancerIPPool objects of `config`. Flag and variable values may be
    /// comma-separated lists; whitespace and empty entries are ignored, and a bare address is a
    /// /32 or /128. Every error found is reported (several as [`IpamError::Many`]).
    pub fn resolve(
        lb_cidrs: &[String],
        env_cilium_lb_cidr: Option<&str>,
        config: &Config,
    ) -> Result<Pools, IpamError> {
        let flag = split_list(lb_cidrs.iter().map(String::as_str));
        let env = split_list(env_cilium_lb_cidr.into_iter());
        let (source, pools) = if !flag.is_empty() {
            if !config.ip_pools.is_empty() {
                tracing::info!(
                    pools = config.ip_pools.len(),
                    "--lb-cidr given: CiliumLoadBalancerIPPool objects are not used"
                );
            }
            (PoolSource::LbCidrFlag, vec![list_pool(FLAG, &flag)?])
        } else if !env.is_empty() {
            if !config.ip_pools.is_empty() {
                tracing::info!(
                    pools = config.ip_pools.len(),
                    "CILIUM_LB_CIDR set: CiliumLoadBalancerIPPool objects are not used"
                );
            }
            (PoolSource::Env, vec![list_pool(ENV, &env)?])
        } else {
            (PoolSource::Objects, object_pools(config)?)
        };
        let pools = Pools { source, pools };
        pools.check_overlaps()?;
        Ok(pools)
    }

    /// Whether no pool has any address.
    pub fn is_empty(&self) -> bool {
        self.pools.iter().all(|p| p.blocks.is_empty())
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Where `ip` lies for an object with `labels`, for an explicit request.
    pub(super) fn locate(&self, ip: IpAddr, labels: &BTreeMap<String, String>) -> Located {
        let Some((p, b)) = self.block_of(ip) else {
            return Located::Nowhere;
        };
        let pool = &self.pools[p];
        if !pool.selects(labels) {
            Located::NotSelected(p)
        } else if pool.disabled {
            Located::Disabled(p)
        } else if !pool.blocks[b].usable(ip) {
            Located::Reserved(p, b)
        } else {
            Located::Usable(p)
        }
    }

    /// The pool in which an object with `labels` may keep `ip` it already has: one that selects
    /// it, disabled or not, reserved addresses included (Cilium does not revoke addresses when
    /// `allowFirstLastIPs` or `disabled` change).
    pub(super) fn keeping_pool(
        &self,
        ip: IpAddr,
        labels: &BTreeMap<String, String>,
    ) -> Option<usize> {
        self.block_of(ip)
            .map(|(p, _)| p)
            .filter(|&p| self.pools[p].selects(labels))
    }

    /// The enabled pools that select `labels` and have `family` addresses, in order.
    pub(super) fn candidates(
        &self,
        family: IpFamily,
        labels: &BTreeMap<String, String>,
    ) -> Vec<usize> {
        (0..self.pools.len())
            .filter(|&p| {
                let pool = &self.pools[p];
                !pool.disabled && pool.has(family) && pool.selects(labels)
            })
            .collect()
    }

    /// Whether any pool, disabled or not selecting anything, has `family` addresses.
    pub(super) fn any_has(&self, family: IpFamily) -> bool {
        self.pools.iter().any(|p| p.has(family))
    }

    fn block_of(&self, ip: IpAddr) -> Option<(usize, usize)> {
        self.pools.iter().enumerate().find_map(|(p, pool)| {
            pool.blocks
                .iter()
                .position(|b| b.contains(ip))
                .map(|b| (p, b))
        })
    }

    fn check_overlaps(&self) -> Result<(), IpamError> {
        let mut blocks: Vec<&Block> = self.pools.iter().flat_map(|p| &p.blocks).collect();
        blocks.sort_by_key(|b| (b.first, b.last));
        let mut errors = Vec::new();
        let mut widest: Option<&Block> = None;
        for block in blocks {
            if let Some(prev) = widest {
                // IpAddr orders IPv4 before IPv6, so blocks of different families never overlap.
                if block.first <= prev.last {
                    errors.push(IpamError::Overlap {
                        first: prev.label.clone(),
                        second: block.label.clone(),
                    });
                }
                if block.last <= prev.last {
                    continue;
                }
            }
            widest = Some(block);
        }
        IpamError::from_list(errors).map_or(Ok(()), Err)
    }
}

fn split_list<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

fn parse_net(origin: &str, value: &str) -> Result<IpNet, IpamError> {
    value.parse::<IpNet>().or_else(|source| {
        value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| IpamError::InvalidCidr {
                origin: origin.to_owned(),
                value: value.to_owned(),
                source,
            })
    })
}

fn list_pool(name: &str, values: &[&str]) -> Result<Pool, IpamError> {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    for value in values {
        match parse_net(name, value) {
            Ok(net) => blocks.push(Block::from_net(
                format!("{name} {}", net.trunc()),
                net,
                AllowFirstLastIps::Yes,
            )),
            Err(err) => errors.push(err),
        }
    }
    if let Some(err) = IpamError::from_list(errors) {
        return Err(err);
    }
    Ok(Pool {
        name: name.to_owned(),
        object: None,
        blocks,
        selector: None,
        disabled: false,
    })
}

fn object_pools(config: &Config) -> Result<Vec<Pool>, IpamError> {
    let mut pools = Vec::new();
    let mut errors = Vec::new();
    for sourced in &config.ip_pools {
        let spec = &sourced.object.spec;
        let origin = format!("{}: {}", sourced.source.file.display(), sourced.id);
        let mut blocks = Vec::new();
        for (field, block) in spec.all_blocks() {
            let label = |text: &str| format!("{} {field} ({text})", sourced.id);
            match parse_block(&origin, &field, block, spec.allow_first_last_ips, label) {
                Ok(block) => blocks.push(block),
                Err(err) => errors.push(err),
            }
        }
        let selector = match &spec.service_selector {
            None => None,
            Some(selector) => match Selector::new(selector) {
                Ok(selector) => Some(selector),
                Err((field, reason)) => {
                    errors.push(IpamError::InvalidSelector {
                        origin: format!("{origin}: spec.serviceSelector.{field}"),
                        reason,
                    });
                    None
                }
            },
        };
        if blocks.is_empty() {
            tracing::debug!(pool = %sourced.id, "pool has no blocks");
        }
        pools.push(Pool {
            name: sourced.id.name.clone(),
            object: Some(sourced.id.clone()),
            blocks,
            selector,
            disabled: spec.disabled,
        });
    }
    IpamError::from_list(errors).map_or(Ok(pools), Err)
}

fn parse_block(
    origin: &str,
    field: &str,
    block: &crate::config::IpPoolBlock,
    allow_first_last: AllowFirstLastIps,
    label: impl Fn(&str) -> String,
) -> Result<Block, IpamError> {
    let invalid = |reason: &str| IpamError::InvalidBlock {
        origin: format!("{origin}: {field}"),
        reason: reason.to_owned(),
    };
    let address = |name: &str, value: &str| {
        value
            .trim()
            .parse::<IpAddr>()
            .map_err(|source| IpamError::InvalidAddress {
                origin: format!("{origin}: {field}.{name}"),
                value: value.to_owned(),
                source,
            })
    };
    match (&block.cidr, &block.start, &block.stop) {
        (Some(cidr), None, None) => {
            let value = cidr.trim();
            let net = value
                .parse::<IpNet>()
                .map_err(|source| IpamError::InvalidCidr {
                    origin: format!("{origin}: {field}.cidr"),
                    value: cidr.clone(),
                    source,
                })?;
            if net.trunc() != net {
                tracing::warn!(
                    block = value,
                    "CIDR has host bits set; using {}",
                    net.trunc()
                );
            }
            Ok(Block::from_net(
                label(&net.trunc().to_string()),
                net,
                allow_first_last,
            ))
        }
        (Some(_), _, _) => Err(invalid("has both cidr and start/stop; use one")),
        (None, Some(start), stop) => {
            // A lone start is a single address (Cilium: "if block.Stop == "" { return from, from }").
            let first = address("start", start)?;
            let last = match stop {
                Some(stop) => address("stop", stop)?,
                None => first,
            };
            if IpFamily::of(first) != IpFamily::of(last) {
                return Err(invalid("start and stop are of different IP families"));
            }
            if last < first {
                return Err(invalid("stop is before start"));
            }
            // allowFirstLastIPs applies to CIDRs only: a range is handed out whole.
            let text = format!("{first}-{last}");
            Ok(Block {
                label: label(&text),
                text,
                first,
                last,
                usable_first: first,
                usable_last: last,
            })
        }
        (None, None, Some(_)) => Err(invalid("has stop but no start")),
        (None, None, None) => Err(invalid("needs cidr, or start and optionally stop")),
    }
}
