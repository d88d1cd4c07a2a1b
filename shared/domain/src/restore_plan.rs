//! What a restore or a drill will take, before it runs: its steps and their typical times
//! (the RTO to expect), who must approve it, and what it costs — the environment it makes,
//! billed for as long as it runs (a drill's until its teardown ends), or the restore host and
//! volume kept for an in-place restore's rollback window. Pure: from the spec, the blueprints'
//! typical times and the price table.

use serde::{Deserialize, Serialize};

use crate::blueprint::{Blueprint, DrTargets};
use crate::cost::{CostBreakdown, MonthlyCost, instance_hourly_micros};
use crate::environment::Environment;
use crate::name::EnvName;
use crate::resources::{self, Group, Planned, ResourceKind};
use crate::restore::{RestoreInto, RestorePoint};

/// The steps of a database restore on AWS and their typical seconds: the worker's estimates,
/// kept apart from the simulator's own table.
pub const RESTORE_STEP_SECONDS: [(&str, u64); 5] = [
    ("volume from the snapshot", 120),
    ("new host of the same spec", 60),
    ("volume attached and mounted", 10),
    ("WAL replayed to the target", 300),
    ("promoted and checked", 30),
];

/// How long an in-place restore keeps the replaced host, stopped, for a rollback.
pub const ROLLBACK_WINDOW_HOURS: u64 = 24;

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedStep {
    /// What happens.
    pub step: String,
    /// Typical seconds.
    pub seconds: u64,
}

/// The plan of a restore or a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestorePlan {
    /// The environment whose backups are restored.
    #[schema(value_type = String)]
    pub source: EnvName,
    /// What is restored.
    pub point: RestorePoint,
    /// Where to.
    pub into: RestoreInto,
    /// Approvers needed besides the requester.
    pub approvals: u8,
    /// The steps until the restored database answers, in order; a new environment is
    /// provisioned beside the restore.
    pub steps: Vec<PlannedStep>,
    /// Typical seconds until the restored environment passes its checks: the RTO to expect.
    pub estimated_rto_seconds: u64,
    /// Typical seconds of a drill's teardown after its checks (0 otherwise).
    pub teardown_seconds: u64,
    /// The tier's recovery targets, and whether the estimate is within the RTO target.
    pub targets: Option<DrTargets>,
    /// Whether the estimated RTO is within the target (`None` without a target).
    pub within_rto_target: Option<bool>,
    /// What running it costs, USD: the new environment for as long as the drill (or the
    /// restore until its checks) runs, or the restore host and volume for the rollback window.
    pub cost_usd: f64,
    /// What the result costs per month afterwards (a new environment keeps running; a drill's
    /// is gone; an in-place restore's replaced host is removed after the window).
    #[schema(value_type = f64)]
    pub monthly_usd_after: MonthlyCost,
}

/// Typical seconds until everything in `plan` is usable, each resource starting once its
/// dependencies are.
fn critical_seconds(plan: &[Planned]) -> u64 {
    let mut finish: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for p in plan {
        let start = p
            .depends_on
            .iter()
            .map(|d| finish.get(d.as_str()).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        finish.insert(&p.name, start + p.kind().typical_create_seconds());
    }
    finish.values().copied().max().unwrap_or(0)
}

/// Typical seconds of a teardown: its steps one after another, each as long as its slowest kind.
fn teardown_seconds() -> u64 {
    ResourceKind::TEARDOWN_STEPS
        .iter()
        .map(|step| {
            step.iter()
                .map(|k| k.typical_delete_seconds())
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// The plan of restoring `source`'s `point` into `into` (`name` of a new or drill
/// environment; the source's own for in place).
pub fn plan(source: &Environment, point: RestorePoint, into: RestoreInto) -> RestorePlan {
    let restoring: u64 = RESTORE_STEP_SECONDS.iter().map(|(_, s)| s).sum();
    let mut steps: Vec<PlannedStep> = Vec::new();
    let creates = into != RestoreInto::InPlace;
    let (rto, teardown, cost_usd, monthly_after) = if creates {
        let target = match &into {
            RestoreInto::NewEnvironment { name } | RestoreInto::Drill { name } => name.clone(),
            RestoreInto::InPlace => source.name.clone(),
        };
        let planned = resources::plan(&target, &source.spec);
        let provisioning = critical_seconds(&planned);
        let network: Vec<Planned> = planned
            .iter()
            .filter(|p| p.group == Group::Network)
            .cloned()
            .collect();
        let network_seconds = critical_seconds(&network);
        steps.push(PlannedStep {
            step: "network of the new environment".into(),
            seconds: network_seconds,
        });
        steps.push(PlannedStep {
            step: "cluster, node groups, load balancer (beside the restore)".into(),
            seconds: provisioning.saturating_sub(network_seconds),
        });
        let rto = provisioning.max(network_seconds + restoring);
        let drill = matches!(into, RestoreInto::Drill { .. });
        let teardown = if drill { teardown_seconds() } else { 0 };
        let monthly = CostBreakdown::of(&source.spec, source.tier).monthly_usd;
        let hours = (rto + teardown) as f64 / 3600.0;
        let cost = monthly.usd() / 730.0 * hours;
        (
            rto,
            teardown,
            cost,
            if drill {
                MonthlyCost::default()
            } else {
                monthly
            },
        )
    } else {
        let db = &source.spec.database;
        let hourly = instance_hourly_micros(&db.instance_type).unwrap_or(0) as f64 / 1e6;
        // The replaced host stopped (its volume still billed) and the new one running, for the
        // rollback window: bounded above by a second host running the whole window.
        let volume_month = CostBreakdown::of(&source.spec, source.tier)
            .lines
            .iter()
            .find(|l| l.item.starts_with("gp3 data volume"))
            .map_or(0.0, |l| l.monthly_usd.usd());
        let window = ROLLBACK_WINDOW_HOURS as f64;
        let cost = hourly * window + volume_month / 730.0 * window;
        (restoring, 0, cost, MonthlyCost::default())
    };
    steps.extend(
        RESTORE_STEP_SECONDS
            .iter()
            .map(|(step, seconds)| PlannedStep {
                step: (*step).into(),
                seconds: *seconds,
            }),
    );
    if teardown > 0 {
        steps.push(PlannedStep {
            step: "drill environment torn down (after the checks: not in the RTO)".into(),
            seconds: teardown,
        });
    }
    let targets = Blueprint::for_tier(source.tier).dr;
    let approvals = if creates {
        0
    } else {
        crate::restore::approvers_in_place(source.tier)
    };
    RestorePlan {
        source: source.name.clone(),
        point,
        into,
        approvals,
        steps,
        estimated_rto_seconds: rto,
        teardown_seconds: teardown,
        targets,
        within_rto_target: targets.map(|t| rto <= u64::from(t.rto_minutes) * 60),
        cost_usd: (cost_usd * 100.0).round() / 100.0,
        monthly_usd_after: monthly_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::Tier;
    use crate::cidr::VpcCidr;

    fn prod() -> Environment {
        let spec = Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2));
        let request_caller = crate::Caller {
            principal: "alice".into(),
            role: crate::Role::Admin,
        };
        let request = crate::commands::Request {
            caller: &request_caller,
            at: time::OffsetDateTime::UNIX_EPOCH,
            operation_id: "op1".into(),
        };
        crate::commands::create(
            EnvName::parse("prod").expect("valid"),
            Tier::Prod,
            spec,
            None,
            crate::operation::OnFailure::Rollback,
            &request,
        )
        .environment
    }

    #[test]
    fn a_drill_plan_states_its_rto_its_teardown_and_what_it_costs() {
        let source = prod();
        let drill = plan(
            &source,
            RestorePoint::Latest,
            RestoreInto::Drill {
                name: EnvName::parse("dr-prod-abc").expect("valid"),
            },
        );
        // EKS (600 s) then its node groups (240 s) after the network: longer than the restore.
        assert!(drill.estimated_rto_seconds >= 840, "{drill:?}");
        assert!(drill.teardown_seconds > 0);
        assert_eq!(drill.approvals, 0);
        assert_eq!(drill.within_rto_target, Some(true));
        assert!(
            drill.cost_usd > 0.0 && drill.cost_usd < 20.0,
            "{}",
            drill.cost_usd
        );
        assert_eq!(drill.monthly_usd_after, MonthlyCost::default());

        let in_place = plan(&source, RestorePoint::Latest, RestoreInto::InPlace);
        assert_eq!(in_place.approvals, 2);
        assert_eq!(in_place.estimated_rto_seconds, 520);
        assert_eq!(in_place.teardown_seconds, 0);
        assert!(in_place.cost_usd > 0.0);
        let copy = plan(
            &source,
            RestorePoint::Latest,
            RestoreInto::NewEnvironment {
                name: EnvName::parse("prod-copy").expect("valid"),
            },
        );
        assert!(copy.monthly_usd_after > MonthlyCost::default());
    }
}
