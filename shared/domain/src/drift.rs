//! Drift: how the resources found in the cloud differ from what the spec calls for. Pure: the
//! scheduler feeds it what one batched look at the cloud returned.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::name::EnvName;
use crate::resources::{self, Desired, Observed, Planned, ResourceKind};
use crate::spec::EnvironmentSpec;

/// A resource as a look at the cloud found it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// envplane's name for it.
    pub name: &'a str,
    /// What was seen.
    pub observed: &'a Observed,
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
    /// Not checked since the environment last changed: nothing is known yet.
    Unchecked,
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
    /// What is known of an environment not checked since it last changed, at `since`.
    pub fn unchecked(since: OffsetDateTime, tier: crate::Tier) -> Self {
        Self {
            checked_at: since,
            status: DriftStatus::Unchecked,
            missing: Vec::new(),
            unexpected: Vec::new(),
            changed: Vec::new(),
            api_calls: 0,
            note: Some(format!(
                "not checked since its last change (checked_at is that change); the scheduler checks {tier} environments on its schedule, POST …/drift checks now"
            )),
        }
    }

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
            DriftStatus::Unchecked => "not checked since its last change".into(),
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

/// Collects the attributes of one resource that differ.
struct Comparison<'a> {
    planned: &'a Planned,
    out: Vec<Difference>,
}

impl Comparison<'_> {
    fn differ(&mut self, attribute: &str, expected: Value, actual: Value) {
        self.out.push(Difference {
            resource: self.planned.name.clone(),
            kind: self.planned.kind(),
            attribute: attribute.to_owned(),
            expected,
            actual,
        });
    }

    /// An attribute the cloud does not report (`None`) is unknown, not different.
    fn value<T: PartialEq + Serialize>(
        &mut self,
        attribute: &str,
        expected: &T,
        actual: Option<&T>,
    ) {
        if let Some(actual) = actual
            && actual != expected
        {
            self.differ(attribute, json(expected), json(actual));
        }
    }

    /// A list whose order carries no meaning (rules, associated subnets).
    fn set<T: Ord + Serialize>(&mut self, attribute: &str, expected: &[T], actual: &[T]) {
        let (want, have): (BTreeSet<&T>, BTreeSet<&T>) =
            (expected.iter().collect(), actual.iter().collect());
        if want != have {
            self.differ(attribute, json(expected), json(actual));
        }
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The attributes of `observed` that differ from `planned`, in a fixed order per kind. Others
/// (ids, AZ placement, references) are either fixed at creation or checked through the
/// resource's presence.
pub fn differences(planned: &Planned, observed: &Observed) -> Vec<Difference> {
    let mut c = Comparison {
        planned,
        out: Vec::new(),
    };
    match (&planned.desired, observed) {
        (Desired::Vpc(want), Observed::Vpc(seen)) => {
            c.value("cidr", &want.cidr, seen.cidr.as_ref())
        }
        (Desired::Subnet(want), Observed::Subnet(seen)) => {
            c.value("cidr", &want.cidr, seen.cidr.as_ref());
        }
        (Desired::Cluster(want), Observed::Cluster(seen)) => {
            c.value("version", &want.version, seen.version.as_ref());
        }
        (Desired::NodeGroup(want), Observed::NodeGroup(seen)) => {
            c.value(
                "instance_type",
                &want.instance_type,
                seen.instance_type.as_ref(),
            );
            c.value("min", &want.min, seen.min.as_ref());
            c.value("desired", &want.desired, seen.desired.as_ref());
            c.value("max", &want.max, seen.max.as_ref());
            c.value("version", &want.version, seen.version.as_ref());
        }
        (Desired::Volume(want), Observed::Volume(seen)) => {
            c.value("size_gb", &want.size_gb, seen.size_gb.as_ref());
            c.value("iops", &want.iops, seen.iops.as_ref());
            c.value(
                "throughput_mibps",
                &want.throughput_mibps,
                seen.throughput_mibps.as_ref(),
            );
        }
        (Desired::DbInstance(want), Observed::DbInstance(seen)) => {
            c.value(
                "instance_type",
                &want.instance_type,
                seen.instance_type.as_ref(),
            );
        }
        (Desired::SecurityGroup(want), Observed::SecurityGroup(seen)) => {
            c.set("ingress", &want.ingress, &seen.ingress);
        }
        (Desired::RouteTable(want), Observed::RouteTable(seen)) => {
            c.set("subnets", &want.subnets, &seen.subnets);
        }
        (Desired::TargetGroup(want), Observed::TargetGroup(seen)) => {
            c.value("port", &want.port, seen.port.as_ref());
        }
        (Desired::Listener(want), Observed::Listener(seen)) => {
            c.value("port", &want.port, seen.port.as_ref());
            c.value(
                "protocol",
                &want.protocol().to_owned(),
                seen.protocol.as_ref(),
            );
            c.value(
                "certificate_arn",
                &want.certificate_arn,
                Some(&seen.certificate_arn),
            );
        }
        // Nothing chosen to compare (gateways, addresses), or another kind under the name,
        // which names make impossible.
        _ => {}
    }
    c.out
}

/// Compares what the cloud has with what `spec` calls for.
pub fn detect(
    env: &EnvName,
    spec: &EnvironmentSpec,
    observed: &[Seen<'_>],
    checked_at: OffsetDateTime,
    api_calls: u64,
) -> DriftReport {
    let planned = resources::plan(env, spec);
    let found: BTreeMap<&str, &Seen<'_>> = observed.iter().map(|o| (o.name, o)).collect();
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for p in &planned {
        match found.get(p.name.as_str()) {
            None => missing.push(Named {
                resource: p.name.clone(),
                kind: p.kind(),
            }),
            Some(o) => changed.extend(differences(p, o.observed)),
        }
    }
    let unexpected: Vec<Named> = observed
        .iter()
        .filter(|o| !planned.iter().any(|p| p.name == o.name))
        .map(|o| Named {
            resource: o.name.to_owned(),
            kind: o.observed.kind(),
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
    use crate::resources::IngressRule;
    use serde_json::json;

    fn dev() -> (EnvName, EnvironmentSpec) {
        (
            EnvName::parse("dev").expect("valid"),
            Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
        )
    }

    fn seen(plan: &[Planned]) -> Vec<(String, Observed)> {
        plan.iter()
            .map(|p| {
                let observed = Observed::as_created(&p.desired, || p.name.clone());
                (p.name.clone(), observed)
            })
            .collect()
    }

    #[test]
    fn a_faithful_cloud_is_in_sync_and_any_change_is_named() {
        let (env, spec) = dev();
        let plan = resources::plan(&env, &spec);
        let mut attributes = seen(&plan);
        let look = |a: &[(String, Observed)]| {
            let observed: Vec<Seen<'_>> = a
                .iter()
                .map(|(name, observed)| Seen { name, observed })
                .collect();
            detect(&env, &spec, &observed, OffsetDateTime::UNIX_EPOCH, 12)
        };
        assert_eq!(look(&attributes).status, DriftStatus::InSync);

        // A removed rule, a deleted subnet, a scaled node group, an unknown throughput.
        for (name, a) in &mut attributes {
            match (name.as_str(), a) {
                ("dev-sg-alb", Observed::SecurityGroup(g)) => {
                    g.ingress = vec![IngressRule::from_cidr(443, "0.0.0.0/0")];
                }
                ("dev-frontend", Observed::NodeGroup(g)) => g.desired = Some(5),
                ("dev-db-data", Observed::Volume(v)) => v.throughput_mibps = None,
                _ => {}
            }
        }
        attributes.retain(|(name, _)| name != "dev-private-2");
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
        let reversed: Observed = serde_json::from_value(json!({"kind": "security_group", "ingress": [{"from": "0.0.0.0/0", "port": 443}, {"port": 80, "from": "0.0.0.0/0"}]})).expect("rules");
        assert!(differences(&sg, &reversed).is_empty());
    }
}
