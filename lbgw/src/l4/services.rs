//! The L4 frontends of the configuration: every (VIP, protocol, port) of a managed
//! LoadBalancer Service, with the endpoints XDP forwards to.
//!
//! Kubernetes semantics followed (https://kubernetes.io/docs/reference/networking/virtual-ips/):
//! - endpoints come from the Service's EndpointSlices (label `kubernetes.io/service-name`),
//!   matched to the Service port by port name, at the slice port's number (the target port);
//! - only endpoints of the VIP's address family (NAT cannot translate between families);
//! - `ready` endpoints take new flows; endpoints that are not ready but still `serving`
//!   (terminating) keep the flows they have and take no new ones; others are gone;
//! - `externalTrafficPolicy: Local`: only endpoints on this node (`nodeName`), and the client
//!   address is kept (no source NAT); `Cluster` (the default): all endpoints, source NAT to the
//!   node so replies come back through it;
//! - `sessionAffinity: ClientIP`: a client sticks to its endpoint for
//!   `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{core::v1::ServicePort, discovery::v1::EndpointSlice};
use lbgw_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};

use crate::{
    config::{Config, ObjectRef},
    gateway::backend::{SERVICE_NAME_LABEL, slice_is_v6, slice_target_port},
    ipam::Plan,
};

/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// One (VIP, protocol, port) of a LoadBalancer Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    pub ip: IpAddr,
    /// `lbgw_common::PROTO_*`.
    pub proto: u8,
    pub port: u16,
    pub service: ObjectRef,
    /// Source NAT to the node (`externalTrafficPolicy: Cluster`).
    pub snat: bool,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// Endpoints, sorted by address.
    pub backends: Vec<Backend>,
}

/// An endpoint of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Takes new flows (in the Maglev ring); otherwise only keeps its existing flows.
    pub ready: bool,
}

/// The frontends of every managed LoadBalancer Service that got a VIP. `node` is this node's
/// name, for `externalTrafficPolicy: Local` (without it, no endpoint counts as local).
pub fn frontends(config: &Config, plan: &Plan, node: Option<&str>) -> Vec<Frontend> {
    let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in &config.endpoint_slices {
        let labels = slice.object.metadata.labels.as_ref();
        if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            slices
                .entry((slice.id.namespace.as_str(), service.as_str()))
                .or_default()
                .push(&slice.object);
        }
    }
    let mut out = Vec::new();
    for service in config.managed_services() {
        let Some(spec) = service.object.spec.as_ref() else {
            continue;
        };
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let own = slices
            .get(&(service.id.namespace.as_str(), service.id.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for ip in plan.ips_of(&service.id) {
            for port in spec.ports.iter().flatten() {
                let Some(number) = u16::try_from(port.port).ok().filter(|p| *p != 0) else {
                    continue;
                };
                let proto = match port.protocol.as_deref() {
                    Some("UDP") => PROTO_UDP,
                    Some("SCTP") => PROTO_SCTP,
                    _ => PROTO_TCP,
                };
                if proto == PROTO_SCTP {
                    // The XDP forwarder translates TCP and UDP; SCTP is passed to the stack.
                    continue;
                }
                let only_node = if local {
                    Some(node.unwrap_or(""))
                } else {
                    None
                };
                out.push(Frontend {
                    ip,
                    proto,
                    port: number,
                    service: service.id.clone(),
                    snat: !local,
                    affinity_timeout,
                    backends: backends(port, own, ip.is_ipv6(), only_node),
                });
            }
        }
    }
    out
}

/// The endpoints of Service port `port` in `slices` of one family, sorted, without duplicates.
fn backends(
    port: &ServicePort,
    slices: &[&EndpointSlice],
    v6: bool,
    only_node: Option<&str>,
) -> Vec<Backend> {
    // ServicePort.name and EndpointPort.name: unset and "" both mean the unnamed port.
    let name = port.name.as_deref().unwrap_or_default();
    let mut found: Vec<Backend> = Vec::new();
    for slice in slices {
        // FQDN endpoints are not addresses XDP can forward to.
        if slice_is_v6(slice) != Some(v6) {
            continue;
        }
        let Some(target) = slice_target_port(slice, name) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            if let Some(node) = only_node
                && endpoint.node_name.as_deref() != Some(node)
            {
                continue;
            }
            let conditions = endpoint.conditions.as_ref();
            // EndpointConditions: "a nil value should be interpreted as "true"" for ready; a
            // terminating endpoint that is still serving keeps its connections.
            let ready = conditions.and_then(|c| c.ready) != Some(false);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            if !ready && !serving {
                continue;
            }
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .filter(|ip| ip.is_ipv6() == v6)
            else {
                continue;
            };
            found.push(Backend {
                addr: SocketAddr::new(ip, target),
                ready,
            });
        }
    }
    found.sort();
    // One entry per address; ready wins over not ready (sorted after it).
    found.dedup_by(|later, earlier| {
        if later.addr == earlier.addr {
            earlier.ready |= later.ready;
            true
        } else {
            false
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{self, Pools, State};

    const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: infra, annotations: {lbipam.cilium.io/ips: "192.0.2.53"}}
spec:
  type: LoadBalancer
  sessionAffinity: ClientIP
  ports:
    - {name: dns-udp, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: infra, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns-udp, port: 5353, protocol: UDP}, {name: dns-tcp, port: 5353}]
endpoints:
  - {addresses: ["10.0.0.2"], nodeName: a}
  - {addresses: ["10.0.0.3"], nodeName: b, conditions: {ready: false, serving: true, terminating: true}}
  - {addresses: ["10.0.0.4"], nodeName: b, conditions: {ready: false, serving: false}}
  - {addresses: ["2001:db8::9"], nodeName: b}
---
apiVersion: v1
kind: Service
metadata: {name: ollama, namespace: ai, annotations: {lbipam.cilium.io/ips: "192.0.2.54"}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{port: 11434}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ollama-1, namespace: ai, labels: {kubernetes.io/service-name: ollama}}
addressType: IPv4
ports: [{port: 11434}]
endpoints:
  - {addresses: ["10.0.1.2"], nodeName: a}
  - {addresses: ["10.0.1.3"], nodeName: b}
"#;

    fn plan(config: &Config) -> Plan {
        let pools = Pools::resolve(&["192.0.2.0/24".into()], None, config).unwrap();
        let plan = ipam::allocate(&pools, config, &State::default());
        assert!(plan.is_ok(), "{plan}");
        plan
    }

    #[test]
    fn service_ports_become_frontends_with_their_endpoints() {
        let config = Config::from_yaml("test.yaml", CONFIG).unwrap();
        let plan = plan(&config);
        let f = frontends(&config, &plan, Some("b"));
        let dns: Vec<_> = f.iter().filter(|f| f.service.name == "dns").collect();
        assert_eq!(dns.len(), 2);
        for frontend in &dns {
            assert_eq!(frontend.ip, "192.0.2.53".parse::<IpAddr>().unwrap());
            assert_eq!(frontend.port, 53);
            assert!(frontend.snat);
            assert_eq!(frontend.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
            // Ready, and terminating-but-serving; not the one neither; not the IPv6 one.
            assert_eq!(
                frontend.backends,
                vec![
                    Backend {
                        addr: "10.0.0.2:5353".parse().unwrap(),
                        ready: true
                    },
                    Backend {
                        addr: "10.0.0.3:5353".parse().unwrap(),
                        ready: false
                    },
                ]
            );
        }
        assert_eq!(
            dns.iter().map(|f| f.proto).collect::<Vec<_>>(),
            vec![PROTO_UDP, PROTO_TCP]
        );
    }

    #[test]
    fn local_traffic_policy_keeps_this_nodes_endpoints_and_the_client_address() {
        let config = Config::from_yaml("test.yaml", CONFIG).unwrap();
        let plan = plan(&config);
        let f = frontends(&config, &plan, Some("b"));
        let ollama = f.iter().find(|f| f.service.name == "ollama").unwrap();
        assert!(!ollama.snat);
        assert_eq!(ollama.affinity_timeout, None);
        assert_eq!(
            ollama.backends,
            vec![Backend {
                addr: "10.0.1.3:11434".parse().unwrap(),
                ready: true
            }]
        );
        // Without a node name nothing is local: the frontend has no endpoint.
        let f = frontends(&config, &plan, None);
        let ollama = f.iter().find(|f| f.service.name == "ollama").unwrap();
        assert!(ollama.backends.is_empty());
    }
}
