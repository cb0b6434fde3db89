//! What the XDP program must let through to each VIP, derived from the configuration and the
//! VIP plan: the listener ports of Gateways and the ports of LoadBalancer Services.

use std::collections::BTreeSet;

use lbgw_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};

use super::{ServedPort, Steering};
use crate::{
    config::Config,
    ipam::{Plan, Pools},
};

/// The steering of the pools' traffic: every pool block, and for every VIP the ports its
/// owner serves. Gateway listeners are TCP (HTTP, HTTPS, TLS and TCP listeners) or UDP (UDP
/// listeners); Service ports carry their own protocol (TCP when unset, as in Kubernetes).
pub fn steering(
    config: &Config,
    plan: &Plan,
    pools: &Pools,
    early_drop: bool,
    echo: bool,
) -> Steering {
    let mut ports = BTreeSet::new();
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
                ports.insert(ServedPort { ip, proto, port });
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
                let proto = match port.protocol.as_deref() {
                    Some("UDP") => PROTO_UDP,
                    Some("SCTP") => PROTO_SCTP,
                    _ => PROTO_TCP,
                };
                ports.insert(ServedPort {
                    ip,
                    proto,
                    port: number,
                });
            }
        }
    }
    let blocks = pools
        .pools
        .iter()
        .flat_map(|pool| pool.blocks.iter().map(|b| (b.first, b.last)))
        .collect();
    Steering {
        early_drop,
        echo,
        pools: blocks,
        ports: ports.into_iter().collect(),
    }
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
        let s = steering(&config, &plan, &pools, true, true);
        let dns = "192.0.2.53".parse().unwrap();
        let web = "192.0.2.80".parse().unwrap();
        assert_eq!(
            s.ports,
            vec![
                ServedPort {
                    ip: dns,
                    proto: PROTO_TCP,
                    port: 53
                },
                ServedPort {
                    ip: dns,
                    proto: PROTO_UDP,
                    port: 53
                },
                ServedPort {
                    ip: web,
                    proto: PROTO_TCP,
                    port: 80
                },
                ServedPort {
                    ip: web,
                    proto: PROTO_TCP,
                    port: 443
                },
            ]
        );
        assert_eq!(
            s.pools,
            vec![("192.0.2.0".parse().unwrap(), "192.0.2.255".parse().unwrap())]
        );
        assert!(s.early_drop && s.echo);
    }
}
