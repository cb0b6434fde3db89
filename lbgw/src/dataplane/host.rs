//! What lbgw changes in the host's routing, over rtnetlink:
//!
//! - **Local routes for the proxied VIPs** (`ip route add local VIP dev lo table local`, the
//!   "AnyIP" trick): the kernel accepts their packets as its own without the VIP being an
//!   interface address, and the `sk_lookup` program hands new connections to the proxy's
//!   socket. A local route would also make the kernel answer ARP for the VIP
//!   (net/ipv4/arp.c answers for any RTN_LOCAL target with the default `arp_ignore=0`), so the
//!   XDP program drops ARP requests for VIPs this node does not announce
//!   (`CONFIG_F_LOCAL_ROUTES`). The routes carry lbgw's own protocol number, so a restarted
//!   lbgw finds and reconciles those a killed one left behind, and `remove_all` takes exactly
//!   them away.
//! - **Managed neighbour entries for the next hops of L4 backends** (`ip neigh add IP dev DEV
//!   managed`, NTF_EXT_MANAGED, Linux 5.16+): XDP's `bpf_fib_lookup` cannot resolve a neighbour
//!   itself, it reports `BPF_FIB_LKUP_RET_NO_NEIGH`; a managed entry is kept resolved by the
//!   kernel, so forwarding never waits for ARP.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures_util::TryStreamExt;
use netlink_packet_route::{
    neighbour::{NeighbourAttribute, NeighbourExtFlags, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
};
use rtnetlink::{Handle, RouteMessageBuilder};
use tracing::{debug, info, warn};

/// `rtm_protocol` of lbgw's routes (unassigned in iproute2's rt_protos; 108 = 'l').
const LBGW_PROTO: u8 = 108;
/// The kernel's local routing table (RT_TABLE_LOCAL).
const TABLE_LOCAL: u32 = 255;
/// The loopback interface is always ifindex 1 (net/core/dev.c: LOOPBACK_IFINDEX).
const LOOPBACK_IFINDEX: u32 = 1;

/// Errors changing the host's routes and neighbours.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("opening an rtnetlink socket")]
    Socket(#[source] std::io::Error),
    #[error("listing the local routing table")]
    List(#[source] rtnetlink::Error),
    #[error("adding the local route for {0}")]
    AddRoute(IpAddr, #[source] rtnetlink::Error),
    #[error("removing the local route for {0}")]
    DelRoute(IpAddr, #[source] rtnetlink::Error),
}

/// The host routing state lbgw owns.
pub struct Host {
    handle: Handle,
    /// Backend addresses whose next hop has a managed neighbour entry (or was tried).
    neighbours: BTreeSet<IpAddr>,
}

impl Host {
    /// Opens an rtnetlink connection (served by a task on the current Tokio runtime).
    pub fn new() -> Result<Self, HostError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(HostError::Socket)?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            neighbours: BTreeSet::new(),
        })
    }

    /// The VIPs that have an lbgw local route now (including any a previous lbgw left).
    pub async fn local_routes(&self) -> Result<BTreeSet<IpAddr>, HostError> {
        let mut found = BTreeSet::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut routes = self.handle.route().get(query).execute();
            while let Some(route) = routes.try_next().await.map_err(HostError::List)? {
                if let Some(ip) = ours(&route) {
                    found.insert(ip);
                }
            }
        }
        Ok(found)
    }

    /// Makes the lbgw local routes exactly `vips`: adds the missing ones, removes the others.
    pub async fn set_local_routes(&self, vips: &BTreeSet<IpAddr>) -> Result<(), HostError> {
        let existing = self.local_routes().await?;
        for &ip in existing.difference(vips) {
            self.handle
                .route()
                .del(local_route(ip))
                .execute()
                .await
                .map_err(|e| HostError::DelRoute(ip, e))?;
            info!(%ip, "local route removed");
        }
        for &ip in vips.difference(&existing) {
            self.handle
                .route()
                .add(local_route(ip))
                .replace()
                .execute()
                .await
                .map_err(|e| HostError::AddRoute(ip, e))?;
            info!(%ip, "local route added (table local, dev lo)");
        }
        Ok(())
    }

    /// Removes every lbgw local route.
    pub async fn remove_local_routes(&self) -> Result<(), HostError> {
        self.set_local_routes(&BTreeSet::new()).await
    }

    /// Makes sure the next hop of every backend in `backends` has a managed neighbour entry.
    /// Failures are logged, not returned: forwarding to that backend then waits until the
    /// kernel resolved the neighbour for other traffic (`l4_no_route` counts the drops).
    pub async fn resolve_neighbours(&mut self, backends: &BTreeSet<IpAddr>) {
        for &ip in backends {
            if self.neighbours.contains(&ip) {
                continue;
            }
            match self.managed_neighbour(ip).await {
                Ok((ifindex, hop)) => {
                    debug!(backend = %ip, next_hop = %hop, ifindex, "managed neighbour entry")
                }
                Err(err) => warn!(
                    backend = %ip,
                    "could not add a managed neighbour entry for the backend's next hop: {err}"
                ),
            }
            self.neighbours.insert(ip);
        }
        self.neighbours.retain(|ip| backends.contains(ip));
    }

    async fn managed_neighbour(&self, ip: IpAddr) -> Result<(u32, IpAddr), rtnetlink::Error> {
        let query = match ip {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .build(),
        };
        let mut routes = self.handle.route().get(query).execute();
        let mut hop = (0, ip);
        if let Some(route) = routes.try_next().await? {
            for attr in &route.attributes {
                match attr {
                    RouteAttribute::Oif(index) => hop.0 = *index,
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => hop.1 = IpAddr::V4(*gw),
                    RouteAttribute::Gateway(RouteAddress::Inet6(gw)) => hop.1 = IpAddr::V6(*gw),
                    _ => {}
                }
            }
        }
        if hop.0 == 0 || hop.0 == LOOPBACK_IFINDEX {
            // A local address or no route: nothing to resolve.
            return Ok(hop);
        }
        let mut add = self
            .handle
            .neighbours()
            .add(hop.0, hop.1)
            .state(NeighbourState::None);
        add.message_mut()
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        match add.execute().await {
            Ok(()) => Ok(hop),
            // An entry exists already (learned or managed): the kernel resolves it anyway.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(hop),
            Err(e) => Err(e),
        }
    }
}

/// The local route of `ip`: `local IP dev lo table local proto 108 scope host`.
fn local_route(ip: IpAddr) -> RouteMessage {
    let mut msg = match ip {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .build(),
    };
    msg.header.table = TABLE_LOCAL as u8;
    msg.header.kind = RouteType::Local;
    msg.header.scope = RouteScope::Host;
    msg.header.protocol = RouteProtocol::Other(LBGW_PROTO);
    msg.attributes.push(RouteAttribute::Table(TABLE_LOCAL));
    msg.attributes.push(RouteAttribute::Oif(LOOPBACK_IFINDEX));
    msg
}

/// The VIP of one of lbgw's local routes, or `None` for any other route.
fn ours(route: &RouteMessage) -> Option<IpAddr> {
    if route.header.protocol != RouteProtocol::Other(LBGW_PROTO)
        || route.header.kind != RouteType::Local
    {
        return None;
    }
    route.attributes.iter().find_map(|attr| match attr {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}
