//! lbgw: an eBPF-powered L4 load balancer and Gateway API data plane.
//!
//! The modules follow the data path:
//! - [`config`]: Kubernetes YAML (Gateway, Service, CiliumLoadBalancerIPPool, ...) → a model;
//! - [`ipam`]: LoadBalancer IP allocation from the pools (LB-IPAM);
//! - [`dataplane`]: the XDP program: loading, attaching, its maps and counters;
//! - [`gateway`]: the Gateway API model the proxy serves (listeners, certificates, backends) and
//!   its status;
//! - [`announce`]: gratuitous ARP / unsolicited Neighbor Advertisements from userspace;
//! - [`l4`]: L4 LoadBalancer Services: Maglev tables for the XDP forwarder;
//! - [`proxy`]: the HTTP/HTTPS proxy serving Gateways and HTTPRoutes;
//! - [`reload`]: hot reload of a new configuration snapshot;
//! - [`admin`]: the admin endpoint (metrics, health, config, status);
//! - [`daemon`]: `lbgw run`, tying the above together;
//! - [`kube`]: `lbgw run --kubernetes`: the API server as source, status, VIP Leases.
pub mod admin;
pub mod announce;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod gateway;
pub mod ipam;
pub mod kube;
pub mod l4;
pub mod proxy;
pub mod reload;
pub mod route;
