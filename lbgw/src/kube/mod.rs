//! Kubernetes mode (`lbgw run --kubernetes`): the cluster's API server instead of YAML files.
//!
//! The path through the module:
//! - `source`: kube-rs reflectors over the kinds lbgw reads → the same [`Config`] the file
//!   loader produces ([`Config::from_api_objects`]), debounced, published on a
//!   `tokio::sync::watch` channel ([`KubeSource`]);
//! - `allocation`: the IPAM state read back from the objects' status, so every node computes
//!   the same VIPs the leader published ([`state_from_status`]);
//! - `status`: what the leader writes: Gateway, GatewayClass, HTTPRoute and LoadBalancer
//!   Service status, as minimal merge patches on `/status`, only when they change
//!   ([`StatusWriter`]);
//! - `lease`: `coordination.k8s.io/v1` Leases: the leader Lease and one Lease per VIP, spread
//!   across nodes by rendezvous hashing, with client-go's expiry rule ([`LeaseSet`]);
//! - `run`: `lbgw run --kubernetes`, tying these to the proxy and the XDP data plane.
//!
//! Known limits: status is written with JSON merge patches, not
//! server-side apply; each held Lease is written every `renew` period (2 writes/s per VIP with
//! the defaults), which suits a homelab's handful of VIPs rather than thousands;
//! `--node-selector` takes equality-based selectors only.
//!
//! [`Config`]: crate::config::Config
//! [`Config::from_api_objects`]: crate::config::Config::from_api_objects
mod allocation;
mod lease;
pub mod run;
mod source;
mod status;

use std::path::PathBuf;

pub use allocation::state_from_status;
pub use lease::{LeaseOptions, LeaseSet, Ownership, lease_name_for_vip, rendezvous_rank};
pub use source::{KIND_RESOURCES, KubeSource, Snapshot, SourceOptions, Stores};
pub use status::{DesiredStatus, STATUS_KINDS, StatusWriter};

/// The label lbgw puts on the Leases it creates (`app.kubernetes.io/managed-by`, a
/// Kubernetes recommended label), so a participant lists only lbgw's Leases.
pub const MANAGED_BY: &str = "lbgw";

/// One Kubernetes API permission `lbgw run --kubernetes` uses (an RBAC rule must grant it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Resource, with `/status` for the status subresource.
    pub resource: String,
    /// RBAC verb (`list`, `watch`, `patch`, `get`, `create`, `update`, `delete`).
    pub verb: &'static str,
    /// Whether it is needed only in lbgw's own namespace (Leases) rather than cluster-wide.
    pub own_namespace: bool,
}

/// Every API call the code makes, as RBAC permissions: list + watch of each watched kind
/// (kube-rs reflectors), patch of the status subresources written, get of the Node
/// (`--node-selector`), and the Lease calls (list, create, update for renew/acquire/release,
/// delete for VIPs that are gone).
pub fn required_permissions() -> Vec<Permission> {
    let mut out = Vec::new();
    let cluster = |group, resource: &str, verb| Permission {
        group,
        resource: resource.to_owned(),
        verb,
        own_namespace: false,
    };
    for kind in KIND_RESOURCES {
        out.push(cluster(kind.group, kind.plural, "list"));
        out.push(cluster(kind.group, kind.plural, "watch"));
    }
    for status_kind in status::STATUS_KINDS {
        if let Some(kind) = KIND_RESOURCES.iter().find(|k| k.kind == *status_kind) {
            out.push(cluster(
                kind.group,
                &format!("{}/status", kind.plural),
                "patch",
            ));
        }
    }
    out.push(cluster("", "nodes", "get"));
    for verb in lease::LEASE_VERBS {
        out.push(Permission {
            group: "coordination.k8s.io",
            resource: "leases".to_owned(),
            verb,
            own_namespace: true,
        });
    }
    out.sort();
    out
}

/// Why Kubernetes mode could not start or an API call failed. Messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No kubeconfig / in-cluster configuration could be found or read.
    #[error("reading the Kubernetes client configuration{}", kubeconfig.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    ClientConfig {
        /// The `--kubeconfig` file, if one was given.
        kubeconfig: Option<PathBuf>,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An API request failed.
    #[error("{verb} {object}")]
    Api {
        /// The request, e.g. `patch status`.
        verb: &'static str,
        /// The object, e.g. `Gateway ai/ai-gateway`.
        object: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The node object could not be read or does not match `--node-selector`.
    #[error("node {node}: {reason}")]
    Node {
        /// The node name.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The watches ended before the first snapshot.
    #[error("the Kubernetes watches stopped before the first snapshot")]
    SourceStopped,
    /// A status for a kind lbgw does not watch (a bug).
    #[error("no API resource for kind {0}")]
    UnknownKind(&'static str),
    /// No interface to announce on.
    #[error("interface selection: {0}")]
    Interface(String),
    #[error(transparent)]
    Sys(#[from] crate::dataplane::sys::SysError),
    /// Starting the proxy, the admin endpoint or the data plane, as in file mode.
    #[error(transparent)]
    Daemon(#[from] Box<crate::daemon::DaemonError>),
    #[error("installing a signal handler")]
    Signal(#[source] std::io::Error),
}
