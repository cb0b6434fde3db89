//! Tests of LB-IPAM: one file per concern, helpers here.
mod allocate;
mod families;
mod pools;
mod requests;
mod stability;
mod state;

use std::net::IpAddr;

use super::*;
use crate::config::{Config, error_chain};

/// A file of `lbgw/tests/fixtures/`.
fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A configuration from YAML documents.
fn config(yaml: &str) -> Config {
    match Config::from_yaml("test.yaml", yaml) {
        Ok(config) => config,
        Err(err) => panic!("bad test config: {}", error_chain(&err)),
    }
}

/// Pools from `--lb-cidr` values.
fn flag_pools(cidrs: &[&str]) -> Pools {
    let cidrs: Vec<String> = cidrs.iter().map(|s| s.to_string()).collect();
    Pools::resolve(&cidrs, None, &Config::default()).unwrap()
}

/// Pools from the CiliumLoadBalancerIPPool objects of `config`.
fn object_pools(config: &Config) -> Pools {
    match Pools::resolve(&[], None, config) {
        Ok(pools) => pools,
        Err(err) => panic!("bad test pools: {}", error_chain(&err)),
    }
}

/// A LoadBalancer Service `default/NAME` with extra `spec` lines (indented two spaces).
fn service(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n{spec}---\n"
    )
}

/// A LoadBalancer Service `default/NAME` requesting `ips` with the Cilium annotation.
fn service_requesting(name: &str, ips: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, annotations: {{lbipam.cilium.io/ips: '{ips}'}}}}\nspec: {{type: LoadBalancer}}\n---\n"
    )
}

/// A Gateway `default/NAME` with extra `spec` lines (indented two spaces).
fn gateway(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  gatewayClassName: lbgw\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n{spec}---\n"
    )
}

fn svc(name: &str) -> ObjectRef {
    ObjectRef::new("Service", "default", name)
}

fn gw(name: &str) -> ObjectRef {
    ObjectRef::new("Gateway", "default", name)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The addresses of `owner` in `plan`, as strings.
fn ips(plan: &Plan, owner: &ObjectRef) -> Vec<String> {
    plan.ips_of(owner).map(|ip| ip.to_string()).collect()
}

/// The error messages of `plan`, with causes.
fn errors(plan: &Plan) -> Vec<String> {
    plan.errors.iter().map(|e| error_chain(e)).collect()
}

/// `allocate` with an empty previous state, asserting the result is a valid state.
fn plan(pools: &Pools, config: &Config) -> Plan {
    allocate(pools, config, &State::default())
}

/// The slot (index among the usable addresses) the hash of `id` starts at in a pool of `size`.
fn slot(id: &ObjectRef, size: u64) -> u64 {
    crate::ipam::allocate::fnv1a(id) % size
}
