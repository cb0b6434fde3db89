//! ReferenceGrants: which cross-namespace references the owners of the target namespaces
//! allow.
//!
//! ReferenceGrant: "identifies kinds of resources in other namespaces that are trusted to
//! reference the specified kinds of resources in the same namespace as the policy." A grant
//! lives in the namespace of the referenced object; `from` lists (group, kind, namespace) of
//! referrers, `to` lists (group, kind, optional name) of referents ("When unspecified, this
//! policy refers to all resources of the specified Group and Kind in the local namespace").

use gateway_api::referencegrants::ReferenceGrant;

use crate::config::Sourced;

/// The API group of Gateway and HTTPRoute.
pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// One (from, to) pair of a ReferenceGrant, flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// The grant's namespace: where the referents live.
    namespace: String,
    from_group: String,
    from_kind: String,
    from_namespace: String,
    to_group: String,
    to_kind: String,
    /// `None`: every object of the kind.
    to_name: Option<String>,
}

/// A referrer: the object holding a reference.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Referrer<'a> {
    /// API group, e.g. [`GATEWAY_GROUP`].
    pub(crate) group: &'a str,
    /// Kind, e.g. `HTTPRoute`.
    pub(crate) kind: &'a str,
    /// Its namespace.
    pub(crate) namespace: &'a str,
}

/// A referent: the object referred to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Referent<'a> {
    /// API group, `""` for core.
    pub(crate) group: &'a str,
    /// Kind, e.g. `Service`.
    pub(crate) kind: &'a str,
    /// Its namespace.
    pub(crate) namespace: &'a str,
    /// Its name.
    pub(crate) name: &'a str,
}

/// The ReferenceGrants of a configuration, owned so that tables built from them can outlive
/// the configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Grants {
    rules: Vec<Rule>,
}

impl Grants {
    pub(crate) fn new(grants: &[Sourced<ReferenceGrant>]) -> Self {
        let mut rules = Vec::new();
        for grant in grants {
            let namespace = grant.id.namespace.clone();
            for from in &grant.object.spec.from {
                for to in &grant.object.spec.to {
                    rules.push(Rule {
                        namespace: namespace.clone(),
                        from_group: from.group.clone(),
                        from_kind: from.kind.clone(),
                        from_namespace: from.namespace.clone(),
                        to_group: to.group.clone(),
                        to_kind: to.kind.clone(),
                        to_name: to.name.clone().filter(|n| !n.is_empty()),
                    });
                }
            }
        }
        Self { rules }
    }

    /// Whether `from` may refer to `to`: always within a namespace, across namespaces only
    /// with a ReferenceGrant in `to`'s namespace that lists both.
    pub(crate) fn permits(&self, from: Referrer<'_>, to: Referent<'_>) -> bool {
        from.namespace == to.namespace
            || self.rules.iter().any(|r| {
                r.namespace == to.namespace
                    && r.from_group == from.group
                    && r.from_kind == from.kind
                    && r.from_namespace == from.namespace
                    && r.to_group == to.group
                    && r.to_kind == to.kind
                    && r.to_name.as_deref().is_none_or(|n| n == to.name)
            })
    }
}
