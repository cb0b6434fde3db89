//! What the XDP program must let through to each VIP, and to whom, derived from the
//! configuration and the VIP plan: the listener ports of Gateways (lbgw's proxy, or the stack)
//! and the ports of LoadBalancer Services (the L4 forwarder).

use std::collections::{BTreeMap, BTreeSet};

use lbgw_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};

use super::{PortAction, ServedPort, Steering};
use crate::{
    config::Config,
    ipam::{Plan, Pools},
};

/// Switches of the steering, from `lbgw run`'s options.
#[derive(Clone, Debug, Default)]
pub struct SteeringOptions {
    /// Drop traffic to unallocated pool addresses and unserved VIP ports.
    pub early_drop: bool,
    /// Answer ICMP echo to VIPs.
    pub echo: bool,
    /// The Gateway ports lbgw's proxy listens on, steered to it by `sk_lookup` (with local
    /// routes for their VIPs); `None`: Gateway ports are left to the stack.
    pub proxy_ports: Option<BTreeSet<u16>>,
    /// L4 source NAT port range (first, count).
    pub snat_ports: (u16, u16),
}

/// The steering of the pools' traffic: every pool block, and for every VIP the ports its
/// owner serves. Gateway listeners are TCP (HTTP, HTTPS, TLS and TCP listeners) or UDP (UDP
/// listeners); Service ports carry their own protocol (TCP when unset, as in Kubernetes) and
/// go to the L4 forwarder (TCP and UDP; SCTP is left to the stack).
pub fn steering(config: &Config, plan: &Plan, pools: &Pools, opts: &SteeringOptions) -> Steering {
    let mut ports: BTreeMap<(std::net::IpAddr, u8, u16), PortAction> = BTreeMap::new();
    for gateway in config.managed_gateways() {
        for ip in plan.ips_of(&gateway.id) {
            for listener in &gateway.object.spec.listeners {
                let Ok(port) = u16::try_from(listener.port) else {
                    continue;
                };
                let proto = if listener.protocol.eq_ignore_ascii_case("UDP") {
                    PROTO_UDP
                } else {
                    PROTO_TCP
                };
                let proxied = proto == PROTO_TCP
                    && opts.proxy_ports.as_ref().is_some_and(|p| p.contains(&port));
                let action = if proxied {
                    PortAction::Proxy
                } else {
                    PortAction::Local
                };
                ports.insert((ip, proto, port), action);
            }
        }
    }
    for service in config.managed_services() {
        let Some(spec) = service.object.spec.as_ref() else {
            continue;
        };
        for ip in plan.ips_of(&service.id) {
            for port in spec.ports.iter().flatten() {
                let Ok(number) = u16::try_from(port.port) else {
                    continue;
                };
                let (proto, action) = match port.protocol.as_deref() {
                    Some("UDP") => (PROTO_UDP, PortAction::L4),
                    Some("SCTP") => (PROTO_SCTP, PortAction::Local),
                    _ => (PROTO_TCP, PortAction::L4),
                };
                ports.insert((ip, proto, number), action);
            }
        }
    }
    let blocks = pools
        .pools
        .iter()
        .flat_map(|pool| pool.blocks.iter().map(|b| (b.first, b.last)))
        .collect();
    Steering {
        early_drop: opts.early_drop,
        echo: opts.echo,
        pools: blocks,
        ports: ports
            .into_iter()
            .map(|((ip, proto, port), action)| ServedPort {
                ip,
                proto,
                port,
                action,
            })
            .collect(),
        local_routes: opts.proxy_ports.is_some(),
        snat_ports: opts.snat_ports,
    }
}

/// The VIPs that need a local route: those with a port steered to the proxy.
pub fn proxied_vips(steering: &Steering) -> BTreeSet<std::net::IpAddr> {
    steering
        .ports
        .iter()
        .filter(|p| p.action == PortAction::Proxy)
        .map(|p| p.ip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{self, State};

    const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default, annotations: {lbipam.cilium.io/ips: "192.0.2.53"}}
spec:
  type: LoadBalancer
  ports:
    - {name: dns-udp, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: default}
spec: {type: ClusterIP, ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: lbgw
  addresses: [{type: IPAddress, value: 192.0.2.80}]
  listeners:
    - {name: http, port: 80, protocol: HTTP}
    - {name: https, port: 443, protocol: HTTPS, hostname: a.example}
"#;

    #[test]
    fn gateway_listeners_and_service_ports_are_served() {
        let config = Config::from_yaml("test.yaml", CONFIG).unwrap();
        let pools = Pools::resolve(&["192.0.2.0/24".into()], None, &config).unwrap();
        let plan = ipam::allocate(&pools, &config, &State::default());
        assert!(plan.is_ok(), "{}", plan);
        let opts = SteeringOptions {
            early_drop: true,
            echo: true,
            proxy_ports: Some([80].into()),
            snat_ports: (61000, 4536),
        };
        let s = steering(&config, &plan, &pools, &opts);
        let dns = "192.0.2.53".parse().unwrap();
        let web = "192.0.2.80".parse().unwrap();
        assert_eq!(
            s.ports,
            vec![
                ServedPort {
                    ip: dns,
                    proto: PROTO_TCP,
                    port: 53,
                    action: PortAction::L4
                },
                ServedPort {
                    ip: dns,
                    proto: PROTO_UDP,
                    port: 53,
                    action: PortAction::L4
                },
                ServedPort {
                    ip: web,
                    proto: PROTO_TCP,
                    port: 80,
                    action: PortAction::Proxy
                },
                ServedPort {
                    ip: web,
                    proto: PROTO_TCP,
                    port: 443,
                    action: PortAction::Local
                },
            ]
        );
        assert_eq!(
            s.pools,
            vec![("192.0.2.0".parse().unwrap(), "192.0.2.255".parse().unwrap())]
        );
        assert!(s.early_drop && s.echo && s.local_routes);
        assert_eq!(proxied_vips(&s), [web].into());
    }
}
