//! Drift detection: one batched look at each settled environment, compared with its spec,
//! the report stored on the environment and new drift announced.

use envplane_cloud::{CloudError, ResourceState};
use envplane_domain::drift::{self, DriftReport, DriftStatus, Seen};
use envplane_domain::environment::{Condition, Phase};
use envplane_domain::events::{Event, EventKind};
use envplane_domain::resources::ResourceKind;
use envplane_domain::{EnvName, Environment, Tier};
use envplane_notify::publish_or_log;
use envplane_store::Change;
use serde::Serialize;

use super::{JobError, Jobs};

/// One environment's line of a drift cycle.
#[derive(Debug, Clone, Serialize)]
pub struct DriftLine {
    /// The environment.
    pub environment: EnvName,
    /// The verdict.
    pub status: DriftStatus,
    /// AWS API calls spent on it.
    pub api_calls: u64,
    /// Resource kinds looked at.
    pub kinds: usize,
    /// What differs.
    pub summary: String,
}

/// The account of one drift cycle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriftRun {
    /// Environments checked.
    pub checked: Vec<DriftLine>,
    /// Environments left for the next cycle (budget spent, or the cycle stopped).
    pub skipped: Vec<EnvName>,
    /// API calls of the whole cycle.
    pub api_calls: u64,
    /// The cycle's budget.
    pub budget: u64,
    /// Why the cycle stopped early, if it did.
    pub stopped: Option<String>,
}

impl Jobs {
    /// Checks every settled environment of `tiers` for drift, within `budget` API calls.
    pub async fn drift(&self, tiers: &[Tier], budget: u64) -> Result<DriftRun, JobError> {
        let mut run = DriftRun {
            budget,
            ..DriftRun::default()
        };
        let mut candidates = Vec::new();
        for tier in tiers {
            candidates.extend(
                self.all_environments(Some(*tier))
                    .await?
                    .into_iter()
                    // Environments being changed are in motion by design; failed ones are
                    // known to differ.
                    .filter(|e| e.status.phase == Phase::Ready && e.active_operation.is_none()),
            );
        }
        // What one environment costs: one describe per kind until one has been measured.
        let mut per_environment = ResourceKind::TEARDOWN.len() as u64 + 1;
        let mut iter = candidates.into_iter();
        while let Some(env) = iter.next() {
            if run.stopped.is_some() || run.api_calls + per_environment > budget {
                run.stopped.get_or_insert_with(|| {
                    format!(
                        "call budget of {budget} reached after {} calls",
                        run.api_calls
                    )
                });
                run.skipped.push(env.name.clone());
                run.skipped.extend(iter.by_ref().map(|e| e.name));
                break;
            }
            let (report, spent, throttled) = self.look(&env).await;
            run.api_calls += spent;
            if report.status != DriftStatus::Incomplete {
                per_environment = per_environment.max(spent);
            }
            if let Some(message) = throttled {
                // Circuit breaker: the API is saying stop; the next cycle tries again.
                run.stopped = Some(format!("throttled while checking {}: {message}", env.name));
            }
            run.checked.push(DriftLine {
                environment: env.name.clone(),
                status: report.status,
                api_calls: spent,
                kinds: ResourceKind::TEARDOWN.len(),
                summary: report.summary(),
            });
            self.record_drift(&env, report).await?;
        }
        Ok(run)
    }

    /// Checks `name` for drift now (`POST …/drift`), as a cycle checks it, and records the
    /// report; an environment being changed (or failed) is refused, as the cycle skips it.
    pub async fn drift_now(&self, name: &EnvName) -> Result<DriftReport, JobError> {
        let env = self
            .store
            .environment(name)
            .await?
            .filter(|e| e.status.phase != Phase::Deleted)
            .ok_or_else(|| JobError::NotReady(format!("no environment named {name}")))?;
        if env.status.phase != Phase::Ready || env.active_operation.is_some() {
            return Err(JobError::NotReady(format!(
                "{name} is {} with {}: its resources are in motion; check it once it is ready",
                env.status.phase.as_str(),
                env.active_operation
                    .as_deref()
                    .map_or("no operation".to_owned(), |o| format!(
                        "operation {o} running"
                    ))
            )));
        }
        let (report, _, _) = self.look(&env).await;
        self.record_drift(&env, report.clone()).await?;
        Ok(report)
    }

    /// Lists `env`'s resources and compares them with its spec: the report, the calls it took,
    /// and the throttling message when the API throttled.
    async fn look(&self, env: &Environment) -> (DriftReport, u64, Option<String>) {
        let before = (self.calls)();
        let looked = self.cloud.list(&env.name).await;
        let spent = (self.calls)().saturating_sub(before);
        let now = self.clock.now();
        match looked {
            Ok(resources) => {
                let observed: Vec<Seen<'_>> = resources
                    .iter()
                    .filter(|r| r.state != ResourceState::Deleting)
                    .map(|r| Seen {
                        name: &r.name,
                        observed: &r.observed,
                    })
                    .collect();
                (
                    drift::detect(&env.name, &env.spec, &observed, now, spent),
                    spent,
                    None,
                )
            }
            Err(CloudError::Throttled(message)) => (
                DriftReport::incomplete(now, spent, format!("throttled: {message}")),
                spent,
                Some(message),
            ),
            Err(other) => (
                DriftReport::incomplete(now, spent, other.to_string()),
                spent,
                None,
            ),
        }
    }

    /// Stores a drift report on the environment (without a new version: the report is observed
    /// state, and the ETag guards the spec) and announces new drift.
    async fn record_drift(&self, env: &Environment, report: DriftReport) -> Result<(), JobError> {
        let was = env.drift.as_ref().map(DriftReport::summary);
        let summary = report.summary();
        let drifted = report.status == DriftStatus::Drifted;
        let mut next = env.clone();
        if report.status != DriftStatus::Incomplete {
            next.status.conditions.retain(|c| c.kind != "Drifted");
            next.status.conditions.push(Condition {
                kind: "Drifted".into(),
                status: drifted,
                reason: if drifted { "DriftFound" } else { "InSync" }.into(),
                message: summary.clone(),
                since: report.checked_at,
            });
        }
        let at = report.checked_at;
        next.drift = Some(report);
        let change = Change::of(env, next);
        match self.store.commit(change).await {
            Ok(()) => {}
            // Changed meanwhile (a PATCH): this report is stale; the next cycle looks again.
            Err(envplane_store::CommitError::VersionConflict) => return Ok(()),
            Err(envplane_store::CommitError::Store(e)) => return Err(e.into()),
            Err(other) => {
                tracing::warn!(environment = %env.name, error = %other, "drift report not stored");
                return Ok(());
            }
        }
        if drifted && was.as_deref() != Some(summary.as_str()) {
            let event = Event::new(
                EventKind::DriftFound,
                env.name.clone(),
                env.tier,
                None,
                format!("{} differs from its spec", env.name),
                Some(summary),
                at,
            );
            publish_or_log(&self.events, event).await;
        }
        Ok(())
    }
}
