//! What-if: what a proposed spec change would do to an environment's resources, its monthly
//! cost, how long applying it would take, and whose approval it needs. No side effects.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::auth::Role;
use crate::blueprint::Tier;
use crate::cost::{CostBreakdown, MonthlyCost};
use crate::name::EnvName;
use crate::resources::{self, Planned, ResourceKind};
use crate::spec::EnvironmentSpec;

/// What applying a change does to one resource.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceAction {
    /// Created.
    Create,
    /// Changed in place.
    Update,
    /// Deleted and created again (a field AWS cannot change in place).
    Replace,
    /// Deleted.
    Delete,
}

/// One resource the change touches.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ResourceChange {
    /// What happens to it.
    pub action: ResourceAction,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its name.
    pub name: String,
    /// Attributes that change, with old and new values.
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, (Value, Value)>,
}

/// The answer to a what-if.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ChangePlan {
    /// Spec fields that change, with old and new values.
    #[schema(value_type = Object)]
    pub spec_changes: BTreeMap<String, (Value, Value)>,
    /// Resources created, changed, replaced or deleted.
    pub resources: Vec<ResourceChange>,
    /// Monthly cost before the change, in USD.
    #[schema(value_type = f64)]
    pub monthly_cost_before: MonthlyCost,
    /// Monthly cost after the change, in USD.
    #[schema(value_type = f64)]
    pub monthly_cost_after: MonthlyCost,
    /// After minus before, in USD (negative when it saves).
    pub monthly_cost_delta_usd: f64,
    /// Estimated time to apply, in seconds: the resources' typical times, one after another.
    pub estimated_seconds: u64,
    /// Estimated Step Functions state transitions to apply it.
    pub estimated_transitions: u64,
    /// One entry per distinct approver (never the requester) the change waits for before
    /// anything is applied: the tier's approval policy, the same the operation obeys.
    pub approvals: Vec<Role>,
}

/// Attributes whose change AWS makes only by replacing the resource.
fn replaces(kind: ResourceKind, attribute: &str) -> bool {
    matches!(
        (kind, attribute),
        (ResourceKind::NodeGroup, "instance_type")
            | (ResourceKind::Vpc | ResourceKind::Subnet, "cidr")
            | (ResourceKind::Volume, "az_index")
    )
}

/// Typical seconds to change a resource in place.
fn update_seconds(kind: ResourceKind, changes: &BTreeMap<String, (Value, Value)>) -> u64 {
    match kind {
        // A control-plane upgrade takes ~20 minutes; node group rollouts ~10.
        ResourceKind::Cluster if changes.contains_key("version") => 1200,
        ResourceKind::NodeGroup if changes.contains_key("version") => 600,
        ResourceKind::NodeGroup => 120,
        // Snapshot first, then stop, change type, start, check.
        ResourceKind::DbInstance => 420,
        ResourceKind::Volume => 60,
        _ => 10,
    }
}

fn by_name(plan: Vec<Planned>) -> BTreeMap<String, Planned> {
    plan.into_iter().map(|p| (p.name.clone(), p)).collect()
}

/// The plan of changing `current` into `next` for an environment of `tier`.
pub fn what_if(
    env: &EnvName,
    tier: Tier,
    current: &EnvironmentSpec,
    next: &EnvironmentSpec,
) -> ChangePlan {
    let before = by_name(resources::plan(env, current));
    let after = by_name(resources::plan(env, next));
    let mut changes = Vec::new();
    for (name, p) in &after {
        match before.get(name) {
            None => changes.push(ResourceChange {
                action: ResourceAction::Create,
                kind: p.kind(),
                name: name.clone(),
                changes: BTreeMap::new(),
            }),
            Some(old) if old.desired != p.desired => {
                let mut diff = BTreeMap::new();
                if let (Value::Object(a), Value::Object(b)) =
                    (&old.desired.to_json(), &p.desired.to_json())
                {
                    for key in a.keys().chain(b.keys()) {
                        let (x, y) = (
                            a.get(key).cloned().unwrap_or(Value::Null),
                            b.get(key).cloned().unwrap_or(Value::Null),
                        );
                        if x != y {
                            diff.insert(key.clone(), (x, y));
                        }
                    }
                }
                let action = if diff.keys().any(|k| replaces(p.kind(), k)) {
                    ResourceAction::Replace
                } else {
                    ResourceAction::Update
                };
                changes.push(ResourceChange {
                    action,
                    kind: p.kind(),
                    name: name.clone(),
                    changes: diff,
                });
            }
            Some(_) => {}
        }
    }
    for (name, p) in &before {
        if !after.contains_key(name) {
            changes.push(ResourceChange {
                action: ResourceAction::Delete,
                kind: p.kind(),
                name: name.clone(),
                changes: BTreeMap::new(),
            });
        }
    }
    changes.sort_by(|a, b| (a.action, a.kind, &a.name).cmp(&(b.action, b.kind, &b.name)));
    let estimated_seconds = changes
        .iter()
        .map(|c| match c.action {
            ResourceAction::Create => c.kind.typical_create_seconds(),
            ResourceAction::Update => update_seconds(c.kind, &c.changes),
            ResourceAction::Replace => {
                c.kind.typical_create_seconds() + c.kind.typical_delete_seconds()
            }
            ResourceAction::Delete => c.kind.typical_delete_seconds(),
        })
        .sum();
    // Start and finish, then a call, a check and at most one wait per resource touched.
    let estimated_transitions = if changes.is_empty() {
        0
    } else {
        4 + 3 * changes.len() as u64
    };
    let cost_before = CostBreakdown::of(current, tier).monthly_usd;
    let cost_after = CostBreakdown::of(next, tier).monthly_usd;
    let delta_micros = i128::from(cost_after.0) - i128::from(cost_before.0);
    // The same policy the operation will wait on: one entry per distinct approver.
    let approvals = if changes.is_empty() {
        Vec::new()
    } else {
        vec![
            Role::Approver;
            usize::from(crate::approval::required(
                tier,
                crate::operation::OperationKind::Update
            ))
        ]
    };
    ChangePlan {
        spec_changes: current.diff(next),
        resources: changes,
        monthly_cost_before: cost_before,
        monthly_cost_after: cost_after,
        monthly_cost_delta_usd: (delta_micros as f64 / 10_000.0).round() / 100.0,
        estimated_seconds,
        estimated_transitions,
        approvals,
    }
}

/// The plan of creating an environment: every resource of its spec, its whole monthly cost.
pub fn for_create(env: &EnvName, tier: Tier, spec: &EnvironmentSpec) -> ChangePlan {
    let resources: Vec<ResourceChange> = resources::plan(env, spec)
        .into_iter()
        .map(|p| ResourceChange {
            action: ResourceAction::Create,
            kind: p.kind(),
            name: p.name,
            changes: BTreeMap::new(),
        })
        .collect();
    let after = CostBreakdown::of(spec, tier).monthly_usd;
    let estimated_seconds = resources
        .iter()
        .map(|r| r.kind.typical_create_seconds())
        .sum();
    ChangePlan {
        spec_changes: BTreeMap::new(),
        estimated_transitions: 4 + 3 * resources.len() as u64,
        resources,
        monthly_cost_before: MonthlyCost::default(),
        monthly_cost_after: after,
        monthly_cost_delta_usd: after.usd(),
        estimated_seconds,
        approvals: vec![
            Role::Approver;
            usize::from(crate::approval::required(
                tier,
                crate::operation::OperationKind::Create
            ))
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::Blueprint;
    use crate::cidr::VpcCidr;

    fn prod() -> (EnvName, EnvironmentSpec) {
        (
            EnvName::parse("prod").expect("valid"),
            Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2)),
        )
    }

    #[test]
    fn a_bigger_backend_replaces_its_node_group_and_costs_the_price_difference() {
        let (env, current) = prod();
        let mut next = current.clone();
        next.cluster.backend.instance_type = "t3.2xlarge".into();
        let plan = what_if(&env, Tier::Prod, &current, &next);
        assert_eq!(plan.resources.len(), 1);
        assert_eq!(
            (plan.resources[0].action, plan.resources[0].name.as_str()),
            (ResourceAction::Replace, "prod-backend")
        );
        // 3 nodes × ($0.3328 − $0.1664)/h × 730 h = $364.416
        assert_eq!(plan.monthly_cost_delta_usd, 364.42);
        assert_eq!(
            plan.monthly_cost_after.0 - plan.monthly_cost_before.0,
            364_416_000
        );
        assert_eq!(plan.approvals, vec![Role::Approver, Role::Approver]);
        assert_eq!(plan.estimated_seconds, 240 + 180);
    }

    #[test]
    fn scaling_updates_in_place_and_a_third_zone_creates_its_share() {
        let env = EnvName::parse("dev").expect("valid");
        let current = Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0));
        let mut next = current.clone();
        next.cluster.frontend.desired = 3;
        let plan = what_if(&env, Tier::Dev, &current, &next);
        assert_eq!(
            plan.resources
                .iter()
                .map(|r| (r.action, r.name.as_str()))
                .collect::<Vec<_>>(),
            vec![(ResourceAction::Update, "dev-frontend")]
        );
        assert_eq!(
            plan.resources[0].changes["desired"],
            (Value::from(2), Value::from(3))
        );
        assert!(plan.approvals.is_empty());
        assert_eq!(plan.monthly_cost_delta_usd, 30.37);

        let mut wider = current.clone();
        wider.network.az_count = 3;
        let plan = what_if(&env, Tier::Dev, &current, &wider);
        let created: Vec<&str> = plan
            .resources
            .iter()
            .filter(|r| r.action == ResourceAction::Create)
            .map(|r| r.name.as_str())
            .collect();
        let created: std::collections::BTreeSet<&str> = created.into_iter().collect();
        assert_eq!(
            created,
            ["dev-private-3", "dev-public-3", "dev-rt-private-3"]
                .into_iter()
                .collect()
        );
        assert!(
            what_if(&env, Tier::Dev, &current, &current)
                .resources
                .is_empty()
        );
    }
}
