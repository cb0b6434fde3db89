//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), as a pool's
//! `serviceSelector` uses them.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A validated label selector. All requirements must hold (Kubernetes: "The requirements are
/// ANDed"); an empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Validates `selector` like the Kubernetes API server does: `In` and `NotIn` need values,
    /// `Exists` and `DoesNotExist` must have none, and no other operator is allowed. On error,
    /// returns the offending field (relative to the selector, e.g.
    /// `matchExpressions[0].operator`) and the reason.
    pub fn new(selector: &LabelSelector) -> Result<Selector, (String, String)> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            // matchLabels: "{key,value} ... is equivalent to ... operator is "In", and the
            // values array contains only "value"".
            requirements.push(Requirement::In(
                key.clone(),
                BTreeSet::from([value.clone()]),
            ));
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{i}]");
            if expr.key.is_empty() {
                return Err((format!("{field}.key"), "must not be empty".into()));
            }
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        format!("operator {} needs at least one value", expr.operator),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        format!("operator {} takes no values", expr.operator),
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err((
                        format!("{field}.operator"),
                        format!(
                            "unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    /// Whether `labels` satisfy every requirement. `NotIn` holds when the key is absent, as in
    /// Kubernetes.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}
