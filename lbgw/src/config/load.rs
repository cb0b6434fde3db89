//! Reading files and directories, splitting YAML documents, and typing each object.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, de::DeserializeOwned};
use serde_yaml_ng::Value;

use crate::route::{HttpRouteRetry, RetryError, RetryPolicy};

use super::{Config, ConfigError, DEFAULT_NAMESPACE, ObjectRef, Source, Sourced};

/// Loads the objects of `paths`: YAML files (multi-document), or directories whose `*.yaml`,
/// `*.yml` and `*.json` files are read (not recursively, in name order, hidden files skipped).
/// A file reached twice (named twice, or named and inside a named directory) is read once.
///
/// Every problem found is reported, not only the first: several are returned as
/// [`ConfigError::Many`].
pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    for path in paths {
        loader.add_path(path);
    }
    loader.finish()
}

/// The kinds lbgw reads, by API group and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gateway,
    GatewayClass,
    HttpRoute,
    ReferenceGrant,
    Service,
    EndpointSlice,
    Secret,
    IpPool,
}

struct KindInfo {
    kind: Kind,
    group: &'static str,
    name: &'static str,
    versions: &'static [&'static str],
    namespaced: bool,
}

const GATEWAY_API: &str = "gateway.networking.k8s.io";
/// `v1beta1` of the Gateway API kinds has the same schema for what lbgw reads, and older
/// manifests still use it.
const GATEWAY_API_VERSIONS: &[&str] = &["v1", "v1beta1"];

const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Gateway,
        group: GATEWAY_API,
        name: "Gateway",
        versions: GATEWAY_API_VERSIONS,
        namespaced: true,
    },
    KindInfo {
        kind: Kind::GatewayClass,
        group: GATEWAY_API,
        name: "GatewayClass",
        versions: GATEWAY_API_VERSIONS,
        namespaced: false,
    },
    KindInfo {
        kind: Kind::HttpRoute,
        group: GATEWAY_API,
        name: "HTTPRoute",
        versions: GATEWAY_API_VERSIONS,
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ReferenceGrant,
        group: GATEWAY_API,
        name: "ReferenceGrant",
        versions: GATEWAY_API_VERSIONS,
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Service,
        group: "",
        name: "Service",
        versions: &["v1"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Secret,
        group: "",
        name: "Secret",
        versions: &["v1"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        name: "EndpointSlice",
        versions: &["v1"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::IpPool,
        group: "cilium.io",
        name: "CiliumLoadBalancerIPPool",
        versions: &["v2alpha1", "v2"],
        namespaced: false,
    },
];

/// The identifying fields of a document, read before its kind-specific schema.
struct Header {
    api_version: String,
    kind: String,
    name: Option<String>,
    namespace: Option<String>,
}

impl Header {
    fn read(value: &Value) -> Result<Header, String> {
        let Value::Mapping(map) = value else {
            return Err("not an object (expected a mapping with apiVersion and kind)".into());
        };
        let string = |v: Option<&Value>, field: &str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{field} must be a string")),
        };
        let api_version = string(map.get("apiVersion"), "apiVersion")?
            .filter(|s| !s.is_empty())
            .ok_or("missing apiVersion")?;
        let kind = string(map.get("kind"), "kind")?
            .filter(|s| !s.is_empty())
            .ok_or("missing kind")?;
        let (name, namespace) = match map.get("metadata") {
            None | Some(Value::Null) => (None, None),
            Some(Value::Mapping(meta)) => (
                string(meta.get("name"), "metadata.name")?,
                string(meta.get("namespace"), "metadata.namespace")?,
            ),
            Some(_) => return Err("metadata must be a mapping".into()),
        };
        Ok(Header {
            api_version,
            kind,
            name: name.filter(|s| !s.is_empty()),
            namespace: namespace.filter(|s| !s.is_empty()),
        })
    }

    /// The kind lbgw reads, `Ok(None)` for kinds it ignores, or the versions it supports when
    /// the group and kind are known but the version is not.
    fn classify(&self) -> Result<Option<&'static KindInfo>, &'static KindInfo> {
        let (group, version) = match self.api_version.rsplit_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version.as_str()),
        };
        let Some(info) = KINDS
            .iter()
            .find(|k| k.group == group && k.name == self.kind)
        else {
            return Ok(None);
        };
        if info.versions.contains(&version) {
            Ok(Some(info))
        } else {
            Err(info)
        }
    }
}

/// Accumulates objects and errors over files.
#[derive(Default)]
pub(super) struct Loader {
    config: Config,
    defined: BTreeMap<ObjectRef, Source>,
    errors: Vec<ConfigError>,
    files_read: BTreeSet<PathBuf>,
}

impl Loader {
    fn add_path(&mut self, path: &Path) {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(source) => {
                self.errors.push(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                });
                return;
            }
        };
        if !metadata.is_dir() {
            self.add_file(path);
            return;
        }
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(source) => {
                self.errors.push(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                });
                return;
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => {
                    self.errors.push(ConfigError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                    continue;
                }
            };
            let file = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let yaml = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            // fs::metadata follows symlinks, as ConfigMap volumes consist of them.
            if !hidden && yaml && fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                files.push(file);
            }
        }
        files.sort();
        if files.is_empty() {
            tracing::warn!(dir = %path.display(), "no *.yaml, *.yml or *.json files in directory");
        }
        for file in files {
            self.add_file(&file);
        }
    }

    fn add_file(&mut self, file: &Path) {
        let canonical = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        if !self.files_read.insert(canonical) {
            tracing::debug!(file = %file.display(), "already read");
            return;
        }
        match fs::read_to_string(file) {
            Ok(text) => self.add_text(file, &text),
            Err(source) => self.errors.push(ConfigError::Io {
                path: file.to_path_buf(),
                source,
            }),
        }
    }

    pub(super) fn add_text(&mut self, file: &Path, text: &str) {
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let number = index + 1;
            let yaml_error = |source| ConfigError::Yaml {
                path: file.to_path_buf(),
                document: number,
                source,
            };
            let mut value = match Value::deserialize(document) {
                Ok(value) => value,
                Err(source) => {
                    // After a syntax error the parser's position is unknown: stop this file.
                    self.errors.push(yaml_error(source));
                    return;
                }
            };
            if let Err(source) = value.apply_merge() {
                self.errors.push(yaml_error(source));
                continue;
            }
            let at = Source {
                file: file.to_path_buf(),
                document: number,
                item: None,
            };
            self.add_value(at, value);
        }
    }

    fn add_value(&mut self, at: Source, value: Value) {
        if value.is_null() {
            return; // an empty document, e.g. a trailing `---`
        }
        let header = match Header::read(&value) {
            Ok(header) => header,
            Err(what) => {
                self.errors.push(ConfigError::Malformed { at, what });
                return;
            }
        };
        if header.api_version == "v1" && header.kind == "List" && at.item.is_none() {
            self.add_list(at, value);
            return;
        }
        let info = match header.classify() {
            Ok(Some(info)) => info,
            Ok(None) => {
                tracing::debug!(
                    file = %at.file.display(),
                    document = at.document,
                    api_version = %header.api_version,
                    kind = %header.kind,
                    "ignoring a kind lbgw does not use"
                );
                return;
            }
            Err(info) => {
                let id = object_ref(info, &header);
                self.errors.push(ConfigError::UnsupportedVersion {
                    path: at.file,
                    object: Box::new(id),
                    api_version: header.api_version,
                    supported: info
                        .versions
                        .iter()
                        .map(|v| format!("{}{v}", group_prefix(info.group)))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
                return;
            }
        };
        if header.name.is_none() {
            self.errors.push(ConfigError::Malformed {
                at,
                what: format!("{} without metadata.name", header.kind),
            });
            return;
        }
        let id = object_ref(info, &header);
        if let Some(first) = self.defined.get(&id) {
            self.errors.push(ConfigError::Duplicate {
                object: Box::new(id),
                first: first.clone(),
                second: at,
            });
            return;
        }
        self.defined.insert(id.clone(), at.clone());
        self.add_typed(info.kind, id, at, value);
    }

    fn add_list(&mut self, at: Source, value: Value) {
        let items = match value {
            Value::Mapping(mut map) => map.remove("items"),
            _ => None,
        };
        match items {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let item_at = Source {
                        item: Some(i),
                        ..at.clone()
                    };
                    self.add_value(item_at, item);
                }
            }
            Some(_) => self.errors.push(ConfigError::Malformed {
                at,
                what: "List items must be a sequence".into(),
            }),
        }
    }

    fn add_typed(&mut self, kind: Kind, id: ObjectRef, at: Source, value: Value) {
        let namespace = || Some(id.namespace.clone());
        let config = &mut self.config;
        let errors = &mut self.errors;
        match kind {
            Kind::Gateway => {
                if let Some(mut o) =
                    typed::<gateway_api::gateways::Gateway>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.gateways.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::GatewayClass => {
                if let Some(o) = typed(errors, &at, &id, value) {
                    config.gateway_classes.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::HttpRoute => {
                for (rule, policy) in retries(errors, &at, &id, &value) {
                    config.http_route_retries.insert((id.clone(), rule), policy);
                }
                if let Some(mut o) =
                    typed::<gateway_api::httproutes::HttpRoute>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.http_routes.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::ReferenceGrant => {
                if let Some(mut o) =
                    typed::<gateway_api::referencegrants::ReferenceGrant>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.reference_grants.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::Service => {
                if let Some(mut o) =
                    typed::<k8s_openapi::api::core::v1::Service>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.services.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::EndpointSlice => {
                if let Some(mut o) =
                    typed::<k8s_openapi::api::discovery::v1::EndpointSlice>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.endpoint_slices.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::Secret => {
                if let Some(mut o) =
                    typed::<k8s_openapi::api::core::v1::Secret>(errors, &at, &id, value)
                {
                    o.metadata.namespace = namespace();
                    config.secrets.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
            Kind::IpPool => {
                if let Some(o) = typed(errors, &at, &id, value) {
                    config.ip_pools.push(Sourced {
                        id,
                        source: at,
                        object: o,
                    });
                }
            }
        }
    }

    /// Adds an object read from the Kubernetes API (see [`Config::from_api_objects`]).
    pub(super) fn add_api_object(&mut self, value: Value) {
        self.add_value(Source::kubernetes(), value);
    }

    pub(super) fn push_error(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// The configuration, or every error found.
    pub(super) fn finish(mut self) -> Result<Config, ConfigError> {
        match self.errors.len() {
            0 => {}
            1 => return Err(self.errors.remove(0)),
            _ => return Err(ConfigError::Many(self.errors)),
        }
        Ok(self.finish_partial().0)
    }

    /// The configuration of the valid objects, and the errors of the others.
    pub(super) fn finish_partial(self) -> (Config, Vec<ConfigError>) {
        let mut config = self.config;
        config.gateways.sort_by(|a, b| a.id.cmp(&b.id));
        config.gateway_classes.sort_by(|a, b| a.id.cmp(&b.id));
        config.http_routes.sort_by(|a, b| a.id.cmp(&b.id));
        config.reference_grants.sort_by(|a, b| a.id.cmp(&b.id));
        config.services.sort_by(|a, b| a.id.cmp(&b.id));
        config.endpoint_slices.sort_by(|a, b| a.id.cmp(&b.id));
        config.secrets.sort_by(|a, b| a.id.cmp(&b.id));
        config.ip_pools.sort_by(|a, b| a.id.cmp(&b.id));
        (config, self.errors)
    }
}

fn object_ref(info: &KindInfo, header: &Header) -> ObjectRef {
    let namespace = if info.namespaced {
        header.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    } else {
        ""
    };
    ObjectRef::new(
        info.name,
        namespace,
        header.name.as_deref().unwrap_or("<unnamed>"),
    )
}

fn group_prefix(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!("{group}/")
    }
}

/// The `spec.rules[i].retry` stanzas of the HTTPRoute `value`, compiled. The field is
/// experimental-channel only, so the standard-channel type drops it: it is read from the raw
/// document. An invalid stanza is recorded as an error with the path of its field.
fn retries(
    errors: &mut Vec<ConfigError>,
    at: &Source,
    id: &ObjectRef,
    value: &Value,
) -> Vec<(usize, RetryPolicy)> {
    let Some(rules) = value
        .get("spec")
        .and_then(|spec| spec.get("rules"))
        .and_then(Value::as_sequence)
    else {
        return Vec::new();
    };
    let mut invalid = |field: String, source: serde_yaml_ng::Error| {
        errors.push(ConfigError::Invalid {
            path: at.file.clone(),
            object: Box::new(id.clone()),
            field,
            source,
        });
    };
    let mut policies = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(stanza) = rule.get("retry").filter(|r| !r.is_null()) else {
            continue;
        };
        let field = format!("spec.rules[{i}].retry");
        let api = match serde_path_to_error::deserialize::<_, HttpRouteRetry>(stanza.clone()) {
            Ok(api) => api,
            Err(err) => {
                let inner = err.path().to_string();
                let field = match inner.as_str() {
                    "." => field,
                    inner => format!("{field}.{inner}"),
                };
                invalid(field, err.into_inner());
                continue;
            }
        };
        match RetryPolicy::from_api(&api) {
            Ok(policy) => policies.push((i, policy)),
            Err(err) => {
                let name = match err {
                    RetryError::Code(_) => "codes",
                    RetryError::Attempts(_) => "attempts",
                    RetryError::Backoff { .. } => "backoff",
                };
                invalid(
                    format!("{field}.{name}"),
                    serde::de::Error::custom(err.to_string()),
                );
            }
        }
    }
    policies
}

/// Deserializes `value` as `T`, recording an error with the path of the offending field.
fn typed<T: DeserializeOwned>(
    errors: &mut Vec<ConfigError>,
    at: &Source,
    id: &ObjectRef,
    value: Value,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(object) => Some(object),
        Err(err) => {
            let field = err.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let source = err.into_inner();
            errors.push(ConfigError::Invalid {
                path: at.file.clone(),
                object: Box::new(id.clone()),
                field,
                source,
            });
            None
        }
    }
}
