//! Configuration: the Kubernetes objects a user would `kubectl apply`, read from YAML files.
//!
//! [`load`] reads multi-document YAML files, or directories of them, into a [`Config`]: the typed
//! objects lbgw understands, each with the file and document it came from. The kinds:
//!
//! | apiVersion                                   | kind                         | used for              |
//! |----------------------------------------------|------------------------------|-----------------------|
//! | `gateway.networking.k8s.io/v1` (or `v1beta1`) | `Gateway`, `GatewayClass`, `HTTPRoute`, `ReferenceGrant` | Gateway API data plane |
//! | `v1`                                         | `Service`, `Secret`          | LoadBalancer Services, TLS |
//! | `discovery.k8s.io/v1`                        | `EndpointSlice`              | backends              |
//! | `cilium.io/v2alpha1`, `cilium.io/v2`         | `CiliumLoadBalancerIPPool`   | LB-IPAM pools         |
//!
//! Other kinds (and the same kind names in other API groups, e.g. a Knative `Service`) are
//! ignored with a debug log, so a whole application manifest can be pointed at. A `v1` `List`
//! (what `kubectl get -o yaml` prints) is expanded into its items; YAML merge keys (`<<`) are
//! applied.
//!
//! Directories are read like `kubectl apply -f DIR` (without `-R`): the `*.yaml`, `*.yml` and
//! `*.json` files directly inside, in name order, skipping hidden files; subdirectories are not
//! entered (which also keeps the `..data` links of a mounted ConfigMap from being read twice).
//! A file named explicitly is read whatever its extension.
//!
//! Namespaced objects without `metadata.namespace` are put in `default`, as `kubectl apply`
//! would; the typed object's `metadata.namespace` is filled in accordingly.
mod load;
mod pool;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, path::PathBuf};

use gateway_api::{
    gatewayclasses::GatewayClass, gateways::Gateway, httproutes::HttpRoute,
    referencegrants::ReferenceGrant,
};
use k8s_openapi::api::{
    core::v1::{Secret, Service},
    discovery::v1::EndpointSlice,
};
use serde::{Deserialize, Serialize};

pub use load::load;

use crate::route::RetryPolicy;
pub use pool::{
    AllowFirstLastIps, CiliumLoadBalancerIPPool, CiliumLoadBalancerIPPoolSpec, IpPoolBlock,
};

/// The `controllerName` of lbgw's GatewayClass. When the configuration contains GatewayClass
/// objects, only Gateways of a class with this controller get addresses (Gateway API:
/// "GatewayClass ... ControllerName is the name of the controller that is managing Gateways of
/// this class").
pub const GATEWAY_CONTROLLER_NAME: &str = "lbgw.io/gateway-controller";

/// The `spec.loadBalancerClass` lbgw answers for. Services of type LoadBalancer with no class or
/// this class get addresses; other classes belong to another load balancer implementation
/// (Kubernetes: "the load balancer implementation ... that matches the specified class").
pub const LOAD_BALANCER_CLASS: &str = "lbgw.io/l2";

/// The namespace of namespaced objects that do not say theirs, as `kubectl apply` would do.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identifies an object: `Kind namespace/name`. Cluster-scoped kinds (GatewayClass,
/// CiliumLoadBalancerIPPool) have an empty namespace and display as `Kind name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's kind, e.g. `Gateway`.
    pub kind: String,
    /// The namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// A reference to an object of `kind` named `namespace/name`.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Where an object was defined.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// The file, as found from the paths given to [`load`].
    pub file: PathBuf,
    /// The YAML document within the file, counting from 1.
    pub document: usize,
    /// The index in `items` when the document is a `v1` `List`.
    pub item: Option<usize>,
}

impl Source {
    /// The pseudo-file of objects read from the Kubernetes API (`lbgw run --kubernetes`).
    pub const KUBERNETES_API: &'static str = "<kubernetes API>";

    /// The source of an object read from the Kubernetes API: [`Source::KUBERNETES_API`], with
    /// document 0 (files count documents from 1).
    pub fn kubernetes() -> Source {
        Source {
            file: PathBuf::from(Self::KUBERNETES_API),
            document: 0,
            item: None,
        }
    }

    /// Whether the object was read from the Kubernetes API rather than a file.
    pub fn is_kubernetes(&self) -> bool {
        self.document == 0 && self.file.as_os_str() == Self::KUBERNETES_API
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_kubernetes() {
            return f.write_str(Self::KUBERNETES_API);
        }
        write!(f, "{} (document {}", self.file.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        f.write_str(")")
    }
}

/// A typed object with its identity and where it was defined.
#[derive(Clone, Debug, PartialEq)]
pub struct Sourced<T> {
    /// The object's identity.
    pub id: ObjectRef,
    /// The file and document it came from.
    pub source: Source,
    /// The object itself; for namespaced kinds `metadata.namespace` is always set.
    pub object: T,
}

/// GEP-1731 `spec.rules[i].retry` stanzas of HTTPRoutes, validated, keyed by the route and
/// the rule's index in `spec.rules`. The field is experimental-channel only, so the
/// standard-channel [`HttpRoute`] type drops it and the loader keeps it here.
pub type HttpRouteRetries = BTreeMap<(ObjectRef, usize), RetryPolicy>;

/// The objects lbgw understands, each list sorted by [`ObjectRef`].
#[derive(Clone, Default, PartialEq)]
pub struct Config {
    /// `gateway.networking.k8s.io` Gateways.
    pub gateways: Vec<Sourced<Gateway>>,
    /// `gateway.networking.k8s.io` GatewayClasses (cluster-scoped).
    pub gateway_classes: Vec<Sourced<GatewayClass>>,
    /// `gateway.networking.k8s.io` HTTPRoutes.
    pub http_routes: Vec<Sourced<HttpRoute>>,
    /// The `retry` stanzas of [`Config::http_routes`]' rules.
    pub http_route_retries: HttpRouteRetries,
    /// `gateway.networking.k8s.io` ReferenceGrants.
    pub reference_grants: Vec<Sourced<ReferenceGrant>>,
    /// `v1` Services.
    pub services: Vec<Sourced<Service>>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Vec<Sourced<EndpointSlice>>,
    /// `v1` Secrets.
    pub secrets: Vec<Sourced<Secret>>,
    /// `cilium.io` CiliumLoadBalancerIPPools (cluster-scoped).
    pub ip_pools: Vec<Sourced<CiliumLoadBalancerIPPool>>,
}

/// Secrets are not printed: `{:?}` of a Config lists the objects, not their contents.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn ids<T>(list: &[Sourced<T>]) -> Vec<String> {
            list.iter().map(|o| o.id.to_string()).collect()
        }
        f.debug_struct("Config")
            .field("gateways", &ids(&self.gateways))
            .field("gateway_classes", &ids(&self.gateway_classes))
            .field("http_routes", &ids(&self.http_routes))
            .field(
                "http_route_retries",
                &self
                    .http_route_retries
                    .keys()
                    .map(|(id, rule)| format!("{id} rule {rule}"))
                    .collect::<Vec<_>>(),
            )
            .field("reference_grants", &ids(&self.reference_grants))
            .field("services", &ids(&self.services))
            .field("endpoint_slices", &ids(&self.endpoint_slices))
            .field("secrets", &ids(&self.secrets))
            .field("ip_pools", &ids(&self.ip_pools))
            .finish()
    }
}

impl Config {
    /// Parses the YAML `text` as if it were the content of `file` (which is only used in
    /// messages and [`Source`]s). The same rules as [`load`] apply.
    pub fn from_yaml(file: impl Into<PathBuf>, text: &str) -> Result<Config, ConfigError> {
        let mut loader = load::Loader::default();
        loader.add_text(&file.into(), text);
        loader.finish()
    }

    /// Builds a configuration from objects read from the Kubernetes API, as JSON (each with
    /// `apiVersion` and `kind`), with the same typing and validation as [`load`]. Unlike
    /// [`load`], an invalid object does not fail the whole: it is left out and its error is
    /// returned beside the configuration of the valid objects, because one bad object in a
    /// cluster must not stop the node from serving the others.
    pub fn from_api_objects(
        objects: impl IntoIterator<Item = serde_json::Value>,
    ) -> (Config, Vec<ConfigError>) {
        let mut loader = load::Loader::default();
        for object in objects {
            match serde_yaml_ng::to_value(&object) {
                Ok(value) => loader.add_api_object(value),
                Err(source) => loader.push_error(ConfigError::Yaml {
                    path: PathBuf::from(Source::KUBERNETES_API),
                    document: 0,
                    source,
                }),
            }
        }
        loader.finish_partial()
    }

    /// The GatewayClass named `name`.
    pub fn gateway_class(&self, name: &str) -> Option<&Sourced<GatewayClass>> {
        self.gateway_classes.iter().find(|c| c.id.name == name)
    }

    /// Why lbgw does not serve this Gateway, or `None` when it does. With no GatewayClass
    /// objects in the configuration every Gateway is lbgw's (file mode without classes);
    /// otherwise its `gatewayClassName` must name a class whose `controllerName` is
    /// [`GATEWAY_CONTROLLER_NAME`].
    pub fn gateway_unmanaged_reason(&self, gateway: &Gateway) -> Option<String> {
        if self.gateway_classes.is_empty() {
            return None;
        }
        let class_name = &gateway.spec.gateway_class_name;
        match self.gateway_class(class_name) {
            None => Some(format!(
                "its GatewayClass {class_name:?} is not in the configuration"
            )),
            Some(class) if class.object.spec.controller_name != GATEWAY_CONTROLLER_NAME => {
                Some(format!(
                    "its GatewayClass {class_name:?} belongs to controller {:?}, not {GATEWAY_CONTROLLER_NAME:?}",
                    class.object.spec.controller_name
                ))
            }
            Some(_) => None,
        }
    }

    /// Why lbgw does not give this Service a LoadBalancer address, or `None` when it does:
    /// it must be of `spec.type: LoadBalancer` with no `spec.loadBalancerClass` or
    /// [`LOAD_BALANCER_CLASS`].
    pub fn service_unmanaged_reason(service: &Service) -> Option<String> {
        let spec = service.spec.as_ref();
        let kind = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
        if kind != "LoadBalancer" {
            return Some(format!("it is of type {kind}, not LoadBalancer"));
        }
        match spec.and_then(|s| s.load_balancer_class.as_deref()) {
            None | Some(LOAD_BALANCER_CLASS) => None,
            Some(other) => Some(format!(
                "its loadBalancerClass is {other:?}, not {LOAD_BALANCER_CLASS:?}"
            )),
        }
    }

    /// The Gateways lbgw serves (see [`Config::gateway_unmanaged_reason`]).
    pub fn managed_gateways(&self) -> impl Iterator<Item = &Sourced<Gateway>> {
        self.gateways
            .iter()
            .filter(|g| self.gateway_unmanaged_reason(&g.object).is_none())
    }

    /// The Services lbgw gives LoadBalancer addresses (see
    /// [`Config::service_unmanaged_reason`]).
    pub fn managed_services(&self) -> impl Iterator<Item = &Sourced<Service>> {
        self.services
            .iter()
            .filter(|s| Self::service_unmanaged_reason(&s.object).is_none())
    }
}

/// Why the configuration could not be loaded. Every variant names the file.
///
/// As usual for error chains, the message of a variant does not repeat its
/// [`source`](std::error::Error::source): print errors with their chain, e.g. `{:#}` of an
/// `anyhow::Error`, or [`error_chain`], which gives
/// `examples/bad.yaml: Gateway default/web: spec.listeners[0].port: invalid type: string "x", expected i32`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A path could not be read (missing file, unreadable directory, ...).
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML document is not well-formed.
    #[error("{}: document {document}: invalid YAML", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The document, counting from 1.
        document: usize,
        /// The parser's error, with line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A document (or `List` item) is not an object lbgw can identify: it lacks `apiVersion`,
    /// `kind` or (for a kind lbgw reads) `metadata.name`, or is not a mapping at all.
    #[error("{}: {what}", at.display_without_items())]
    Malformed {
        /// Where.
        at: Source,
        /// What is wrong, e.g. "missing apiVersion".
        what: String,
    },
    /// A known kind in a known API group, but in a version lbgw does not read.
    #[error("{}: {object}: unsupported apiVersion {api_version:?} (supported: {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The object.
        object: Box<ObjectRef>,
        /// The `apiVersion` found.
        api_version: String,
        /// The versions lbgw reads, comma-separated.
        supported: String,
    },
    /// A known kind whose content does not match its schema.
    #[error("{}: {object}{}", path.display(), field_suffix(field))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The object.
        object: Box<ObjectRef>,
        /// The path of the offending field, e.g. `spec.listeners[0].port`; empty for the
        /// object as a whole.
        field: String,
        /// What is wrong with the field.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The same object (kind, namespace, name) is defined twice.
    #[error("{object} is defined twice: in {first} and in {second}")]
    Duplicate {
        /// The object.
        object: Box<ObjectRef>,
        /// Where it was defined first.
        first: Source,
        /// Where it was defined again.
        second: Source,
    },
    /// Several of the above; the message lists each with its cause.
    #[error("{} configuration errors:{}", .0.len(), list(.0))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// The individual errors: the members of [`ConfigError::Many`], or this one.
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            ConfigError::Many(errors) => errors,
            other => std::slice::from_ref(other),
        }
    }
}

/// `err` followed by its sources, joined by `: ` (what `{:#}` of an `anyhow::Error` prints).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Source {
    fn display_without_items(&self) -> String {
        if self.is_kubernetes() {
            return Self::KUBERNETES_API.to_owned();
        }
        match self.item {
            None => format!("{}: document {}", self.file.display(), self.document),
            Some(item) => format!(
                "{}: document {}: items[{item}]",
                self.file.display(),
                self.document
            ),
        }
    }
}

fn field_suffix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(": {field}")
    }
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("\n  {}", error_chain(e)))
        .collect()
}
