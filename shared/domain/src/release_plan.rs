//! What a deployment will do, before it runs (`POST …/deployments?dry_run=true`, `envplane
//! deploy --plan`): its traffic transitions, each interval's analysis and the gates, the
//! approvers it waits for, how long it takes at least, and the capacity it adds — the new
//! version runs beside the stable one until it completes, and the replaced one stays warm for
//! the rollback window.

use serde::{Deserialize, Serialize};

use crate::canary::Strategy;
use crate::deployment::Deployment;
use crate::names::Service;

/// One traffic change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    /// The new version's weight, percent.
    pub weight: u8,
    /// Seconds after the launch, at the earliest (gates and holds wait longer).
    pub at_seconds: u64,
    /// A person approves it first.
    pub gate: bool,
    /// An analysis of one interval follows before the next change.
    pub analysed: bool,
}

/// The capacity a deployment adds while it runs and for its rollback window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtraCapacity {
    /// Nodes of the service's node group the second version needs (as many as the first).
    pub nodes: u32,
    /// Their instance type.
    pub instance_type: String,
    /// Node-hours: nodes × (bake + rollback window).
    pub node_hours: f64,
    /// What those node-hours cost on demand, USD (none for an unknown instance type).
    pub cost_usd: Option<f64>,
}

/// A deployment's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentPlan {
    /// The service.
    #[schema(value_type = String)]
    pub service: Service,
    /// The version deployed.
    pub version: String,
    /// The version it replaces, if any.
    pub previous: Option<String>,
    /// How traffic moves.
    pub strategy: Strategy,
    /// The traffic changes, in order.
    pub transitions: Vec<Transition>,
    /// Distinct approvers before anything runs.
    pub approvals: u8,
    /// Seconds from launch to completion without waiting for people.
    pub minimum_seconds: u64,
    /// Seconds the replaced version stays warm after completion.
    pub rollback_window_seconds: u32,
    /// The capacity it adds.
    pub extra_capacity: ExtraCapacity,
}

/// The plan of `deployment` (with its `previous` set) on `environment`, needing `approvals`.
pub fn plan(
    environment: &crate::Environment,
    deployment: &Deployment,
    approvals: u8,
) -> DeploymentPlan {
    let interval = u64::from(deployment.canary.interval_seconds);
    let at_once = deployment.previous.is_none() || deployment.strategy == Strategy::Rolling;
    let transitions: Vec<Transition> = if at_once {
        vec![Transition {
            weight: 100,
            at_seconds: 0,
            gate: false,
            analysed: false,
        }]
    } else if deployment.strategy == Strategy::BlueGreen {
        vec![Transition {
            weight: 100,
            at_seconds: 0,
            gate: false,
            analysed: true,
        }]
    } else {
        (0u64..)
            .zip(&deployment.canary.steps)
            .map(|(i, weight)| Transition {
                weight: *weight,
                at_seconds: i * interval,
                gate: deployment.canary.gates.contains(weight),
                analysed: true,
            })
            .collect()
    };
    let analysed = transitions.iter().filter(|t| t.analysed).count() as u64;
    let minimum_seconds = analysed * interval;
    let group = match deployment.service {
        Service::Frontend => &environment.spec.cluster.frontend,
        Service::Backend => &environment.spec.cluster.backend,
    };
    let window = if deployment.previous.is_some() {
        u64::from(deployment.canary.rollback_window_seconds)
    } else {
        0
    };
    let node_hours = f64::from(group.desired) * (minimum_seconds + window) as f64 / 3600.0;
    let cost_usd = crate::cost::instance_hourly_micros(&group.instance_type)
        .map(|micros| (micros as f64 * node_hours / 1e6 * 100.0).round() / 100.0);
    DeploymentPlan {
        service: deployment.service,
        version: deployment.release.version.clone(),
        previous: deployment.previous.as_ref().map(|p| p.version.clone()),
        strategy: deployment.strategy,
        transitions,
        approvals,
        minimum_seconds,
        rollback_window_seconds: deployment.canary.rollback_window_seconds,
        extra_capacity: ExtraCapacity {
            nodes: if deployment.previous.is_some() {
                group.desired
            } else {
                0
            },
            instance_type: group.instance_type.clone(),
            node_hours,
            cost_usd,
        },
    }
}
