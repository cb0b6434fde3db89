//! The Kubernetes API as a configuration source: one kube-rs reflector per kind, turned into
//! a [`Config`] snapshot after every burst of changes.
//!
//! Objects are watched as [`DynamicObject`]s and fed through the file loader's typing and
//! validation ([`Config::from_api_objects`]), so file mode and Kubernetes mode share one model
//! and one set of rules; an invalid object is left out and logged instead of failing the node.
//!
//! Only lbgw's GatewayClasses (those whose `spec.controllerName` is
//! [`GATEWAY_CONTROLLER_NAME`]) and the Gateways of those classes enter the snapshot: in file
//! mode a configuration without GatewayClass objects makes every Gateway lbgw's, which must
//! never happen against a cluster with other Gateway controllers.
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt as _;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store, store::Writer},
        watcher,
    },
};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use crate::config::{Config, GATEWAY_CONTROLLER_NAME, error_chain};

/// A kind lbgw watches: group, version, kind, plural (the URL path segment).
#[derive(Clone, Copy, Debug)]
pub struct KindResource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name, as in URLs and RBAC rules.
    pub plural: &'static str,
}

impl KindResource {
    /// The kube-rs description of the resource.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }

    /// `apiVersion` as written in objects: `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The kinds `lbgw run --kubernetes` watches (list + watch), in the order of [`Config`]'s
/// fields. `deploy/base/rbac.yaml` grants exactly these (a test checks it).
///
/// CiliumLoadBalancerIPPool is read as `cilium.io/v2alpha1`, which Cilium 1.13 to 1.18 all
/// serve (1.18 adds `v2` with the same schema).
pub const KIND_RESOURCES: &[KindResource] = &[
    KindResource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        kind: "Gateway",
        plural: "gateways",
    },
    KindResource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        kind: "GatewayClass",
        plural: "gatewayclasses",
    },
    KindResource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        kind: "HTTPRoute",
        plural: "httproutes",
    },
    KindResource {
        group: "gateway.networking.k8s.io",
        version: "v1beta1",
        kind: "ReferenceGrant",
        plural: "referencegrants",
    },
    KindResource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
    },
    KindResource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
    },
    KindResource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
    },
    KindResource {
        group: "cilium.io",
        version: "v2alpha1",
        kind: "CiliumLoadBalancerIPPool",
        plural: "ciliumloadbalancerippools",
    },
];

/// How the source watches.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// How long to wait after a change for more before building a snapshot: a `kubectl
    /// apply` of a directory arrives as a burst of events.
    pub debounce: Duration,
    /// Field selector for Secrets. Default `type=kubernetes.io/tls`: lbgw only reads TLS
    /// Secrets (certificateRefs), and watching every Secret of a cluster would hold them all
    /// in memory.
    pub secret_field_selector: Option<String>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            secret_field_selector: Some("type=kubernetes.io/tls".to_owned()),
        }
    }
}

/// A configuration built from the API, and what could not be used.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The objects, as the file loader would produce them.
    pub config: Config,
    /// One line per object left out (invalid against lbgw's schema).
    pub errors: Vec<String>,
    /// Counts snapshots from 1.
    pub generation: u64,
}

/// The reflector stores, one per [`KIND_RESOURCES`] entry: the objects as last seen, with
/// their status (the status writer compares against it).
#[derive(Clone)]
pub struct Stores {
    stores: Vec<(KindResource, Store<DynamicObject>)>,
}

impl Stores {
    /// The object of `kind` named `namespace/name` (empty namespace for cluster-scoped kinds).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let (_, store) = self.stores.iter().find(|(k, _)| k.kind == kind)?;
        store.find(|o| {
            o.metadata.name.as_deref() == Some(name)
                && o.metadata.namespace.as_deref().unwrap_or("") == namespace
        })
    }

    /// Every object, as JSON with `apiVersion` and `kind` (list responses leave them out of
    /// their items).
    fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (kind, store) in &self.stores {
            for object in store.state() {
                let Ok(mut value) = serde_json::to_value(object.as_ref()) else {
                    continue;
                };
                if let Value::Object(map) = &mut value {
                    map.insert("apiVersion".into(), kind.api_version().into());
                    map.insert("kind".into(), kind.kind.into());
                }
                out.push(value);
            }
        }
        out
    }
}

/// The watches and the task that turns them into snapshots. Dropping it stops them.
pub struct KubeSource {
    stores: Stores,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeSource {
    /// Starts one watch per kind (each retried with kube-rs' default backoff) and the
    /// snapshot task. The first snapshot is published once every watch has listed its kind.
    pub fn spawn(client: Client, opts: SourceOptions) -> KubeSource {
        let notify = Arc::new(Notify::new());
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for kind in KIND_RESOURCES {
            let resource = kind.api_resource();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let writer = Writer::new(resource);
            stores.push((*kind, writer.as_reader()));
            let mut config = watcher::Config::default();
            if kind.kind == "Secret"
                && let Some(selector) = &opts.secret_field_selector
            {
                config = config.fields(selector);
            }
            let stream = watcher(api, config)
                .default_backoff()
                .modify(|o| o.metadata.managed_fields = None);
            let notify = notify.clone();
            let kind = *kind;
            tasks.push(tokio::spawn(async move {
                let mut events = std::pin::pin!(reflector::reflector(writer, stream));
                while let Some(event) = events.next().await {
                    match event {
                        Ok(_) => notify.notify_one(),
                        // The watcher retries with backoff; the store keeps the last state.
                        Err(err) => warn!(kind = kind.kind, "watch: {}", error_chain(&err)),
                    }
                }
            }));
        }
        let stores = Stores { stores };
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let snapshot_stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            for (kind, store) in &snapshot_stores.stores {
                if store.wait_until_ready().await.is_err() {
                    return;
                }
                debug!(kind = kind.kind, objects = store.len(), "listed");
            }
            let mut generation = 0;
            let mut last: Option<(Config, Vec<String>)> = None;
            loop {
                let (config, errors) = build(&snapshot_stores);
                if last.as_ref().is_none_or(|(_, e)| *e != errors) {
                    for err in &errors {
                        warn!("ignoring an invalid object: {err}");
                    }
                }
                if last
                    .as_ref()
                    .is_none_or(|(c, e)| *c != config || *e != errors)
                {
                    generation += 1;
                    last = Some((config.clone(), errors.clone()));
                    let snapshot = Snapshot {
                        config,
                        errors,
                        generation,
                    };
                    if tx.send(Arc::new(snapshot)).is_err() {
                        return;
                    }
                }
                notify.notified().await;
                tokio::time::sleep(opts.debounce).await;
            }
        }));
        KubeSource {
            stores,
            snapshots: rx,
            tasks,
        }
    }

    /// The snapshots: the initial value is empty (generation 0) until every kind is listed.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// The reflector stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Waits for the first complete snapshot.
    pub async fn first_snapshot(&self) -> Option<Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        rx.wait_for(|s| s.generation > 0)
            .await
            .ok()
            .map(|s| s.clone())
    }
}

/// A snapshot of the stores: lbgw's GatewayClasses and their Gateways, and everything else.
fn build(stores: &Stores) -> (Config, Vec<String>) {
    let objects = stores.objects();
    let ours: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "GatewayClass")
        .filter(|o| o["spec"]["controllerName"] == GATEWAY_CONTROLLER_NAME)
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let objects = objects.into_iter().filter(|o| match o["kind"].as_str() {
        Some("GatewayClass") => o["spec"]["controllerName"] == GATEWAY_CONTROLLER_NAME,
        Some("Gateway") => o["spec"]["gatewayClassName"]
            .as_str()
            .is_some_and(|c| ours.contains(c)),
        _ => true,
    });
    let (config, errors) = Config::from_api_objects(objects);
    (config, errors.iter().map(|e| error_chain(e)).collect())
}
