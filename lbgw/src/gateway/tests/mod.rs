//! Unit tests of the gateway model: configurations written as YAML, model and status out.

mod backends;
mod explain;
mod listeners;
mod routes;
mod tls;

use super::status::{Condition, GatewayStatus, condition};
use super::*;
use crate::config::Config;
use crate::ipam::{self, Pools, State};

/// The pool every test allocates from.
const POOL: &str = "192.0.2.0/24";

/// Loads `yaml` as a configuration file.
fn config(yaml: &str) -> Config {
    match Config::from_yaml("test.yaml", yaml) {
        Ok(config) => config,
        Err(e) => panic!("test YAML: {}", crate::config::error_chain(&e)),
    }
}

/// The VIP plan of `config` from [`POOL`].
fn plan(config: &Config) -> Plan {
    let pools = Pools::resolve(&[POOL.to_owned()], None, config).expect("pool");
    ipam::allocate(&pools, config, &State::new(Vec::new()))
}

/// Builds the model and status of `yaml`.
fn build(yaml: &str) -> (GatewayModel, GatewayStatus) {
    let config = config(yaml);
    GatewayModel::build(&config, &plan(&config))
}

/// `(type, status, reason)` of `conditions`, for compact assertions.
fn summary(conditions: &[Condition]) -> Vec<(&'static str, bool, &'static str)> {
    conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect()
}

/// The condition `type_` of listener `listener` of Gateway `ns/name`.
fn listener_condition<'a>(
    status: &'a GatewayStatus,
    gateway: &str,
    listener: &str,
    type_: &str,
) -> &'a Condition {
    let (namespace, name) = gateway.split_once('/').expect("ns/name");
    let id = GatewayId {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let gw = status.gateway(&id).expect("gateway in status");
    let l = gw.listener(listener).expect("listener in status");
    condition(&l.conditions, type_).expect("condition")
}

/// The condition `type_` of the first parent of HTTPRoute `ns/name`.
fn route_condition<'a>(status: &'a GatewayStatus, route: &str, type_: &str) -> &'a Condition {
    let (namespace, name) = route.split_once('/').expect("ns/name");
    let r = status
        .routes
        .iter()
        .find(|r| r.id.namespace == namespace && r.id.name == name)
        .unwrap_or_else(|| panic!("route {route} in status"));
    condition(&r.parents[0].conditions, type_).expect("condition")
}

/// A Gateway `infra/gw` with the listeners given as flow YAML items.
fn gateway(listeners: &[&str]) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: gw, namespace: infra}}\n\
         spec:\n  gatewayClassName: lbgw\n  listeners:\n{}\n",
        listeners
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Joins YAML documents.
fn docs(parts: &[&str]) -> String {
    parts.join("\n---\n")
}

#[test]
fn the_model_can_be_shared_across_threads() {
    // The proxy keeps the model behind an `Arc` shared by its connection tasks.
    fn shared<T: Send + Sync + 'static>() {}
    shared::<GatewayModel>();
    shared::<status::GatewayStatus>();
}
