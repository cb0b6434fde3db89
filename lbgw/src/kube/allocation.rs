//! Allocations live in the objects' status: the leader publishes each VIP in Gateway
//! `status.addresses` and Service `status.loadBalancer.ingress`; every node (the leader
//! included, after a restart of every node) reads them back as the IPAM [`State`], so that
//! [`crate::ipam::allocate`] keeps them ("never take an address away") and all nodes compute
//! the same plan. This replaces the state file of file mode.
use std::net::IpAddr;

use crate::{
    config::Config,
    ipam::{Pools, State, Vip},
};

/// The addresses published in the status of the Gateways and LoadBalancer Services lbgw
/// manages, each attributed to the pool that contains it. Addresses in no pool (or that do not
/// parse) are left out: [`crate::ipam::allocate`] would release them anyway.
pub fn state_from_status(config: &Config, pools: &Pools) -> State {
    let pool_of = |ip: IpAddr| {
        pools
            .pools
            .iter()
            .find(|p| p.blocks.iter().any(|b| b.contains(ip)))
            .map(|p| p.name.clone())
    };
    let mut allocations = Vec::new();
    let mut add = |ip: &str, owner: &crate::config::ObjectRef| {
        if let Ok(ip) = ip.parse::<IpAddr>()
            && let Some(pool) = pool_of(ip)
        {
            allocations.push(Vip {
                ip,
                owner: owner.clone(),
                pool,
            });
        }
    };
    for gateway in config.managed_gateways() {
        let addresses = gateway
            .object
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref());
        for address in addresses.into_iter().flatten() {
            // GatewayStatusAddress.type defaults to IPAddress.
            if address.r#type.as_deref().is_none_or(|t| t == "IPAddress") {
                add(&address.value, &gateway.id);
            }
        }
    }
    for service in config.managed_services() {
        let ingress = service
            .object
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in ingress.into_iter().flatten() {
            if let Some(ip) = &entry.ip {
                add(ip, &service.id);
            }
        }
    }
    State::new(allocations)
}
