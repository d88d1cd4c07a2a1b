//! Drift: how the resources found in the cloud differ from what the spec calls for. Pure: the
//! scheduler feeds it what one batched look at the cloud returned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::name::EnvName;
use crate::resources::{self, Planned, ResourceKind};
use crate::spec::EnvironmentSpec;

/// A resource as a look at the cloud found it, in the attribute shapes `resources::plan` uses.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Its kind.
    pub kind: ResourceKind,
    /// envplane's name for it.
    pub name: &'a str,
    /// Its attributes.
    pub attributes: &'a Value,
}

/// One attribute that differs from the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    /// The resource's name.
    pub resource: String,
    /// Its kind.
    pub kind: ResourceKind,
    /// The attribute.
    pub attribute: String,
    /// What the spec calls for.
    pub expected: Value,
    /// What the cloud has.
    pub actual: Value,
}

/// A resource the spec calls for that the cloud does not have, or the reverse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Named {
    /// The resource's name.
    pub resource: String,
    /// Its kind.
    pub kind: ResourceKind,
}

/// Whether a drift check found anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// The cloud matches the spec.
    InSync,
    /// Something differs; see the report.
    Drifted,
    /// The check stopped before it saw everything (throttling, call budget); nothing is concluded.
    Incomplete,
}

/// The outcome of one drift check of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriftReport {
    /// When the cloud was looked at.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub checked_at: OffsetDateTime,
    /// The verdict.
    pub status: DriftStatus,
    /// Called for but not found.
    pub missing: Vec<Named>,
    /// Found, tagged with the environment, but not called for.
    pub unexpected: Vec<Named>,
    /// Found with attributes that differ.
    pub changed: Vec<Difference>,
    /// AWS API calls the check made for this environment.
    pub api_calls: u64,
    /// Why the check is incomplete, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DriftReport {
    /// A check that could not finish: it concludes nothing about the resources.
    pub fn incomplete(checked_at: OffsetDateTime, api_calls: u64, note: String) -> Self {
        Self {
            checked_at,
            status: DriftStatus::Incomplete,
            missing: Vec::new(),
            unexpected: Vec::new(),
            changed: Vec::new(),
            api_calls,
            note: Some(note),
        }
    }

    /// A one-line account for conditions and notifications.
    pub fn summary(&self) -> String {
        match self.status {
            DriftStatus::InSync => "in sync with the spec".into(),
            DriftStatus::Incomplete => format!(
                "check incomplete: {}",
                self.note.as_deref().unwrap_or("unknown")
            ),
            DriftStatus::Drifted => {
                let mut parts: Vec<String> = Vec::new();
                parts.extend(
                    self.missing
                        .iter()
                        .map(|m| format!("{} missing", m.resource)),
                );
                parts.extend(
                    self.unexpected
                        .iter()
                        .map(|m| format!("{} not in the spec", m.resource)),
                );
                parts.extend(self.changed.iter().map(|d| {
                    format!(
                        "{} {}: {} (spec {})",
                        d.resource, d.attribute, d.actual, d.expected
                    )
                }));
                parts.join("; ")
            }
        }
    }
}

/// Attributes compared per kind. Others (ids, AZ placement, references) are either fixed at
/// creation or checked through the resource's presence.
fn compared(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::Vpc | ResourceKind::Subnet => &["cidr"],
        ResourceKind::Cluster => &["version"],
        ResourceKind::NodeGroup => &["instance_type", "min", "desired", "max", "version"],
        ResourceKind::Volume => &["size_gb", "iops", "throughput_mibps"],
        ResourceKind::DbInstance => &["instance_type"],
        ResourceKind::SecurityGroup => &["ingress"],
        ResourceKind::RouteTable => &["subnets"],
        ResourceKind::TargetGroup => &["port"],
        _ => &[],
    }
}

/// Attributes that are sets (rules, associated subnets): order carries no meaning.
const SETS: &[&str] = &["ingress", "subnets"];

/// A list attribute as a set.
fn rule_set(rules: &Value) -> Vec<String> {
    let mut out: Vec<String> = rules
        .as_array()
        .into_iter()
        .flatten()
        .map(crate::audit::canonical_json)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The attributes of `observed` that differ from `planned`. An attribute the cloud does not
/// report (null) is unknown, not different: some APIs and emulators leave fields out.
pub fn differences(planned: &Planned, observed: &Value) -> Vec<Difference> {
    compared(planned.kind)
        .iter()
        .filter_map(|attribute| {
            let expected = planned.attributes.get(*attribute)?;
            let actual = observed.get(*attribute).filter(|v| !v.is_null())?;
            let same = if SETS.contains(attribute) {
                rule_set(expected) == rule_set(actual)
            } else {
                expected == actual
            };
            (!same).then(|| Difference {
                resource: planned.name.clone(),
                kind: planned.kind,
                attribute: (*attribute).to_owned(),
                expected: expected.clone(),
                actual: actual.clone(),
            })
        })
        .collect()
}

/// Compares what the cloud has with what `spec` calls for.
pub fn detect(
    env: &EnvName,
    spec: &EnvironmentSpec,
    observed: &[Observed<'_>],
    checked_at: OffsetDateTime,
    api_calls: u64,
) -> DriftReport {
    let planned = resources::plan(env, spec);
    let found: BTreeMap<&str, &Observed<'_>> = observed.iter().map(|o| (o.name, o)).collect();
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for p in &planned {
        match found.get(p.name.as_str()) {
            None => missing.push(Named {
                resource: p.name.clone(),
                kind: p.kind,
            }),
            Some(o) => changed.extend(differences(p, o.attributes)),
        }
    }
    let unexpected: Vec<Named> = observed
        .iter()
        .filter(|o| !planned.iter().any(|p| p.name == o.name))
        .map(|o| Named {
            resource: o.name.to_owned(),
            kind: o.kind,
        })
        .collect();
    let status = if missing.is_empty() && unexpected.is_empty() && changed.is_empty() {
        DriftStatus::InSync
    } else {
        DriftStatus::Drifted
    };
    DriftReport {
        checked_at,
        status,
        missing,
        unexpected,
        changed,
        api_calls,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Blueprint, Tier};
    use crate::cidr::VpcCidr;
    use serde_json::json;

    fn dev() -> (EnvName, EnvironmentSpec) {
        (
            EnvName::parse("dev").expect("valid"),
            Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
        )
    }

    #[test]
    fn a_faithful_cloud_is_in_sync_and_any_change_is_named() {
        let (env, spec) = dev();
        let plan = resources::plan(&env, &spec);
        let mut attributes: Vec<(ResourceKind, String, Value)> = plan
            .iter()
            .map(|p| (p.kind, p.name.clone(), p.attributes.clone()))
            .collect();
        let look = |a: &[(ResourceKind, String, Value)]| {
            let observed: Vec<Observed<'_>> = a
                .iter()
                .map(|(kind, name, attributes)| Observed {
                    kind: *kind,
                    name,
                    attributes,
                })
                .collect();
            detect(&env, &spec, &observed, OffsetDateTime::UNIX_EPOCH, 12)
        };
        assert_eq!(look(&attributes).status, DriftStatus::InSync);

        // A removed rule, a deleted subnet, a scaled node group, an unknown throughput.
        for (kind, name, a) in &mut attributes {
            match name.as_str() {
                "dev-sg-alb" => a["ingress"] = json!([{"port": 443, "from": "0.0.0.0/0"}]),
                "dev-frontend" => a["desired"] = json!(5),
                "dev-db-data" => a["throughput_mibps"] = Value::Null,
                _ => {}
            }
            assert!(kind.as_str().len() > 1);
        }
        attributes.retain(|(_, name, _)| name != "dev-private-2");
        let report = look(&attributes);
        assert_eq!(report.status, DriftStatus::Drifted);
        assert_eq!(
            report.missing,
            vec![Named {
                resource: "dev-private-2".into(),
                kind: ResourceKind::Subnet
            }]
        );
        let changed: Vec<(&str, &str)> = report
            .changed
            .iter()
            .map(|d| (d.resource.as_str(), d.attribute.as_str()))
            .collect();
        assert_eq!(
            changed,
            vec![("dev-sg-alb", "ingress"), ("dev-frontend", "desired")]
        );
        assert!(report.summary().contains("dev-private-2 missing"));
    }

    #[test]
    fn rule_order_does_not_matter() {
        let (env, spec) = dev();
        let sg = resources::plan(&env, &spec)
            .into_iter()
            .find(|p| p.name == "dev-sg-alb")
            .expect("sg");
        let reversed = json!({"ingress": [{"from": "0.0.0.0/0", "port": 443}, {"port": 80, "from": "0.0.0.0/0"}]});
        assert!(differences(&sg, &reversed).is_empty());
    }
}
