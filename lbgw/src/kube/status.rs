//! What the leader writes back: the status a Gateway controller and a LoadBalancer
//! implementation publish, so `kubectl get gateway` and ExternalDNS (sources
//! `gateway-httproute` and `service`) see the VIPs.
//!
//! [`DesiredStatus::compute`] is pure: from the snapshot, the IPAM plan and the
//! [`GatewayStatus`] report (the same one `lbgw check` prints) it derives, per object, the
//! status fields lbgw owns:
//! - Gateway: `addresses`, `conditions`, `listeners` (Gateway API GatewayStatus);
//! - GatewayClass: the `Accepted` condition (GatewayClassStatus);
//! - HTTPRoute: the `parents` entries with lbgw's `controllerName` (RouteStatus; entries of
//!   other controllers are kept as they are: "Implementations MUST ignore entries for
//!   parentRefs they do not own");
//! - Service: `loadBalancer.ingress` (for Services lbgw manages only).
//!
//! [`StatusWriter::apply`] compares each with the object's current status (ignoring
//! `lastTransitionTime`, which is kept when a condition's status does not change, as
//! metav1.Condition requires) and sends a JSON merge patch (RFC 7386) to the `/status`
//! subresource only for those that differ: writes are minimal and idempotent.
use std::collections::BTreeSet;

use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::{KubeError, source::KIND_RESOURCES, source::Stores};
use crate::{
    config::{Config, GATEWAY_CONTROLLER_NAME, error_chain},
    gateway::status::{Condition, GatewayStatus},
    ipam::Plan,
};

/// The kinds whose status lbgw writes.
pub const STATUS_KINDS: &[&str] = &["GatewayClass", "Gateway", "HTTPRoute", "Service"];

/// The status lbgw wants one object to have: the fields it owns under `status`.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredStatus {
    /// `Gateway`, `GatewayClass`, `HTTPRoute` or `Service`.
    pub kind: &'static str,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The fields of `status` lbgw writes (an object); each replaces the current value.
    pub status: Value,
}

fn condition_json(c: &Condition, generation: Option<i64>) -> Value {
    let mut value = json!({
        "type": c.type_,
        "status": if c.status { "True" } else { "False" },
        "reason": c.reason,
        "message": c.message,
    });
    if let Some(generation) = generation {
        value["observedGeneration"] = generation.into();
    }
    value
}

fn conditions_json(list: &[Condition], generation: Option<i64>) -> Value {
    Value::Array(list.iter().map(|c| condition_json(c, generation)).collect())
}

impl DesiredStatus {
    /// The status of every object lbgw owns status for in `config`.
    pub fn compute(config: &Config, plan: &Plan, report: &GatewayStatus) -> Vec<DesiredStatus> {
        let mut out = Vec::new();
        for class in &config.gateway_classes {
            if class.object.spec.controller_name != GATEWAY_CONTROLLER_NAME {
                continue;
            }
            let accepted = Condition::yes("Accepted", "Accepted", "lbgw serves this class");
            out.push(DesiredStatus {
                kind: "GatewayClass",
                namespace: String::new(),
                name: class.id.name.clone(),
                status: json!({
                    "conditions": conditions_json(&[accepted], class.object.metadata.generation)
                }),
            });
        }
        let mut managed = BTreeSet::new();
        for gateway in config.managed_gateways() {
            let Some(gw) = report
                .gateways
                .iter()
                .find(|g| g.id.object_ref() == gateway.id)
            else {
                continue;
            };
            managed.insert(gw.id.clone());
            let generation = gateway.object.metadata.generation;
            let listeners: Vec<Value> = gw
                .listeners
                .iter()
                .map(|l| {
                    // ListenerStatus.supportedKinds is required: the route kinds the listener
                    // accepts; lbgw serves HTTPRoute on HTTP and HTTPS listeners only.
                    let kinds = if matches!(l.protocol.as_str(), "HTTP" | "HTTPS") {
                        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
                    } else {
                        json!([])
                    };
                    json!({
                        "name": l.name,
                        "attachedRoutes": l.attached_routes,
                        "supportedKinds": kinds,
                        "conditions": conditions_json(&l.conditions, generation),
                    })
                })
                .collect();
            let addresses: Vec<Value> = gw
                .addresses
                .iter()
                .map(|ip| json!({"type": "IPAddress", "value": ip.to_string()}))
                .collect();
            out.push(DesiredStatus {
                kind: "Gateway",
                namespace: gw.id.namespace.clone(),
                name: gw.id.name.clone(),
                status: json!({
                    "addresses": addresses,
                    "conditions": conditions_json(&gw.conditions, generation),
                    "listeners": listeners,
                }),
            });
        }
        for route in &config.http_routes {
            let generation = route.object.metadata.generation;
            let refs = route.object.spec.parent_refs.as_deref().unwrap_or_default();
            let mut parents = Vec::new();
            // Entries of other controllers are kept.
            let current = route.object.status.as_ref().map(|s| &s.parents);
            for entry in current.into_iter().flatten() {
                if entry.controller_name != GATEWAY_CONTROLLER_NAME
                    && let Ok(value) = serde_json::to_value(entry)
                {
                    parents.push(value);
                }
            }
            let report = report.routes.iter().find(|r| r.id == route.id);
            for parent in report.into_iter().flat_map(|r| &r.parents) {
                // Only parents that are lbgw's Gateways: a parentRef to a Gateway that is not
                // in the snapshot may belong to another controller.
                if !managed.contains(&parent.gateway) {
                    continue;
                }
                let Some(parent_ref) = refs.get(parent.index) else {
                    continue;
                };
                let Ok(parent_ref) = serde_json::to_value(parent_ref) else {
                    continue;
                };
                parents.push(json!({
                    "parentRef": parent_ref,
                    "controllerName": GATEWAY_CONTROLLER_NAME,
                    "conditions": conditions_json(&parent.conditions, generation),
                }));
            }
            let had_ours = current
                .into_iter()
                .flatten()
                .any(|e| e.controller_name == GATEWAY_CONTROLLER_NAME);
            let has_ours = parents
                .iter()
                .any(|p| p["controllerName"] == GATEWAY_CONTROLLER_NAME);
            if has_ours || had_ours {
                out.push(DesiredStatus {
                    kind: "HTTPRoute",
                    namespace: route.id.namespace.clone(),
                    name: route.id.name.clone(),
                    status: json!({ "parents": parents }),
                });
            }
        }
        for service in config.managed_services() {
            let ingress: Vec<Value> = plan
                .ips_of(&service.id)
                .map(|ip| json!({"ip": ip.to_string()}))
                .collect();
            out.push(DesiredStatus {
                kind: "Service",
                namespace: service.id.namespace.clone(),
                name: service.id.name.clone(),
                status: json!({ "loadBalancer": { "ingress": ingress } }),
            });
        }
        out
    }

    /// Whether `current` (the object's `status`) already has every field of `self`, ignoring
    /// `lastTransitionTime`.
    pub fn is_current(&self, current: &Value) -> bool {
        let Value::Object(fields) = &self.status else {
            return false;
        };
        fields.iter().all(|(key, want)| {
            let have = current.get(key).cloned().unwrap_or(Value::Null);
            strip_times(have) == strip_times(want.clone())
        })
    }

    /// The patch body: `self.status`, with each condition's `lastTransitionTime` taken from
    /// the current condition of the same type when its status is unchanged, else `now`.
    pub fn patch(&self, current: &Value, now: &str) -> Value {
        let mut status = self.status.clone();
        stamp(&mut status, current, now);
        json!({ "status": status })
    }
}

/// `value` without any `lastTransitionTime` member, at any depth.
fn strip_times(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("lastTransitionTime");
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// Sets `lastTransitionTime` on every condition list in `desired`, looking up the matching
/// list in `current` by the same path (list items are matched by `name` for listeners and by
/// `parentRef` for route parents, else by position).
fn stamp(desired: &mut Value, current: &Value, now: &str) {
    match desired {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let cur = current.get(key).unwrap_or(&Value::Null);
                if key == "conditions"
                    && let Value::Array(list) = value
                {
                    for cond in list.iter_mut() {
                        let previous = cur.as_array().and_then(|l| {
                            l.iter().find(|c| {
                                c["type"] == cond["type"] && c["status"] == cond["status"]
                            })
                        });
                        let time = previous
                            .and_then(|p| p.get("lastTransitionTime").cloned())
                            .unwrap_or_else(|| Value::String(now.to_owned()));
                        cond["lastTransitionTime"] = time;
                    }
                } else {
                    stamp(value, cur, now);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let cur = current.as_array().and_then(|list| {
                    list.iter()
                        .find(|c| {
                            (item.get("name").is_some() && c.get("name") == item.get("name"))
                                || (item.get("parentRef").is_some()
                                    && c.get("parentRef") == item.get("parentRef")
                                    && c.get("controllerName") == item.get("controllerName"))
                        })
                        .or_else(|| list.get(i))
                });
                stamp(item, cur.unwrap_or(&Value::Null), now);
            }
        }
        _ => {}
    }
}

/// Sends status patches for what changed.
#[derive(Clone)]
pub struct StatusWriter {
    client: Client,
    stores: Stores,
}

impl StatusWriter {
    /// A writer comparing against the reflector `stores`.
    pub fn new(client: Client, stores: Stores) -> Self {
        Self { client, stores }
    }

    /// Patches the `/status` of every object in `desired` whose current status differs.
    /// Returns how many patches were sent; failures are logged and counted out (the next
    /// snapshot retries them).
    pub async fn apply(&self, desired: &[DesiredStatus]) -> usize {
        let now = k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut sent = 0;
        for want in desired {
            let current = self
                .stores
                .get(want.kind, &want.namespace, &want.name)
                .and_then(|o| o.data.get("status").cloned())
                .unwrap_or(Value::Null);
            if want.is_current(&current) {
                continue;
            }
            match self.patch(want, &want.patch(&current, &now)).await {
                Ok(()) => {
                    debug!(kind = want.kind, namespace = %want.namespace, name = %want.name, "status written");
                    sent += 1;
                }
                Err(err) => warn!("{}", error_chain(&err)),
            }
        }
        sent
    }

    async fn patch(&self, want: &DesiredStatus, body: &Value) -> Result<(), KubeError> {
        let object = if want.namespace.is_empty() {
            format!("{} {}", want.kind, want.name)
        } else {
            format!("{} {}/{}", want.kind, want.namespace, want.name)
        };
        let kind = KIND_RESOURCES
            .iter()
            .find(|k| k.kind == want.kind)
            .ok_or(KubeError::UnknownKind(want.kind))?;
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = if want.namespace.is_empty() {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), &want.namespace, &resource)
        };
        api.patch_status(&want.name, &PatchParams::default(), &Patch::Merge(body))
            .await
            .map(|_| ())
            .map_err(|source| KubeError::Api {
                verb: "patch status of",
                object,
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredStatus {
        DesiredStatus {
            kind: "Gateway",
            namespace: "ai".into(),
            name: "gw".into(),
            status: json!({
                "addresses": [{"type": "IPAddress", "value": "192.0.2.2"}],
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}],
                "listeners": [{"name": "http", "attachedRoutes": 1, "supportedKinds": [],
                               "conditions": [{"type": "Programmed", "status": "True", "reason": "Programmed", "message": ""}]}],
            }),
        }
    }

    /// metav1.Condition: "lastTransitionTime is the last time the condition transitioned from
    /// one status to another" — kept while the status holds, `now` when it changes.
    #[test]
    fn transition_times_are_kept_unless_the_status_changes() {
        let current = json!({
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "listeners": [{"name": "http", "conditions": [{"type": "Programmed", "status": "False",
                            "reason": "Invalid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}],
        });
        let patch = desired().patch(&current, "2026-06-01T00:00:00Z");
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            patch["status"]["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "2026-06-01T00:00:00Z"
        );
    }

    #[test]
    fn current_status_ignores_times_and_fields_lbgw_does_not_own() {
        let want = desired();
        let mut current = want.patch(&Value::Null, "2026-01-01T00:00:00Z")["status"].clone();
        current["attachedListenerSets"] = 0.into();
        assert!(want.is_current(&current));
        current["addresses"][0]["value"] = "192.0.2.3".into();
        assert!(!want.is_current(&current));
        assert!(!want.is_current(&Value::Null));
    }
}
