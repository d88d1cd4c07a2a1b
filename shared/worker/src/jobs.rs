//! The scheduled jobs: drift detection per tier, and housekeeping (expired previews, lost
//! operations). One look at the cloud per environment, within a call budget, stopping the
//! cycle at the first throttle rather than pressing on.

use std::sync::Arc;

use envplane_cloud::{Cloud, CloudError, ResourceState};
use envplane_domain::commands::{self, Request};
use envplane_domain::drift::{self, DriftReport, DriftStatus, Observed};
use envplane_domain::environment::{Condition, Phase};
use envplane_domain::events::{Event, EventKind};
use envplane_domain::operation::{OperationError, OperationStatus};
use envplane_domain::resources::ResourceKind;
use envplane_domain::{Caller, EnvName, Environment, Role, Tier};
use envplane_notify::{Publisher, publish_or_log};
use envplane_store::{Change, EnvironmentQuery, Expected, StateStore, StoreError};
use envplane_workflow::{Flow, Workflows};
use serde::Serialize;
use time::OffsetDateTime;

/// Principal the scheduler acts as.
pub const SCHEDULER_PRINCIPAL: &str = "envplane-scheduler";

/// Reads how many cloud API calls have been made so far (an SDK interceptor's count in AWS,
/// the simulator's in a local plane).
pub type CallMeter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The default API-call budget of one drift cycle: about 75 environments of 13 calls.
pub const DEFAULT_CALL_BUDGET: u64 = 1000;

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

/// The account of one housekeeping run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Housekeeping {
    /// Previews whose destruction began, with the operation.
    pub expired_previews: Vec<(EnvName, String)>,
    /// Operations declared lost, their environments released.
    pub lost_operations: Vec<(EnvName, String)>,
}

/// The scheduled jobs over a store, a cloud and the flows.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn StateStore>,
    cloud: Arc<dyn Cloud>,
    workflows: Option<Arc<dyn Workflows>>,
    events: Arc<dyn Publisher>,
    calls: CallMeter,
    now: envplane_cloud::simulator::Now,
}

impl Jobs {
    /// Jobs over a store and a cloud whose calls `calls` counts.
    pub fn new(store: Arc<dyn StateStore>, cloud: Arc<dyn Cloud>, calls: CallMeter) -> Self {
        Self {
            store,
            cloud,
            workflows: None,
            events: Arc::new(envplane_notify::Silent),
            calls,
            now: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Starts the flows of the operations housekeeping records.
    pub fn with_workflows(mut self, workflows: Arc<dyn Workflows>) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// Publishes drift and expiry events there.
    pub fn with_events(mut self, events: Arc<dyn Publisher>) -> Self {
        self.events = events;
        self
    }

    /// Reads time from `now`.
    pub fn with_clock(mut self, now: envplane_cloud::simulator::Now) -> Self {
        self.now = now;
        self
    }

    async fn all_environments(&self, tier: Option<Tier>) -> Result<Vec<Environment>, JobError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_environments(&EnvironmentQuery {
                    tier,
                    phase: None,
                    limit: 100,
                    cursor,
                })
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

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
            let before = (self.calls)();
            let looked = self.cloud.list(&env.name).await;
            let spent = (self.calls)().saturating_sub(before);
            run.api_calls += spent;
            let now = (self.now)();
            let report = match looked {
                Ok(resources) => {
                    per_environment = per_environment.max(spent);
                    let observed: Vec<Observed<'_>> = resources
                        .iter()
                        .filter(|r| r.state != ResourceState::Deleting)
                        .map(|r| Observed {
                            kind: r.kind,
                            name: &r.name,
                            attributes: &r.attributes,
                        })
                        .collect();
                    drift::detect(&env.name, &env.spec, &observed, now, spent)
                }
                Err(CloudError::Throttled(message)) => {
                    // Circuit breaker: the API is saying stop; the next cycle tries again.
                    run.stopped = Some(format!("throttled while checking {}: {message}", env.name));
                    DriftReport::incomplete(now, spent, format!("throttled: {message}"))
                }
                Err(other) => DriftReport::incomplete(now, spent, other.to_string()),
            };
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
        let change = Change {
            environment: next,
            expected: Expected::Version(env.version),
            operation: None,
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        };
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

    /// Destroys previews past their TTL and releases environments whose operation's lease ran
    /// out (the operation is marked failed with the cause).
    pub async fn housekeeping(&self) -> Result<Housekeeping, JobError> {
        let now = (self.now)();
        let mut done = Housekeeping::default();
        for env in self.all_environments(None).await? {
            if env.active_operation.is_some() && env.lease_expires_at.is_some_and(|t| t <= now) {
                if let Some(op) = self.release_lost(&env, now).await? {
                    done.lost_operations.push((env.name.clone(), op));
                }
                continue;
            }
            let expired = env.tier == Tier::Preview
                && env.active_operation.is_none()
                && !matches!(env.status.phase, Phase::Deleted | Phase::Deleting)
                && env.expires_at.is_some_and(|t| t <= now);
            if expired && let Some(op) = self.expire(&env, now).await? {
                done.expired_previews.push((env.name.clone(), op));
            }
        }
        Ok(done)
    }

    async fn expire(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Result<Option<String>, JobError> {
        let caller = Caller {
            principal: SCHEDULER_PRINCIPAL.into(),
            role: Role::Admin,
        };
        let request = Request {
            caller: &caller,
            at: now,
            operation_id: ulid::Ulid::new().to_string(),
        };
        let Ok(mutation) = commands::delete(env, &request) else {
            return Ok(None);
        };
        let op = mutation.operation.id.clone();
        let change = Change {
            environment: mutation.environment,
            expected: Expected::Version(env.version),
            operation: Some(mutation.operation),
            audit: Some(mutation.audit),
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        };
        match self.store.commit(change).await {
            Ok(()) => {}
            Err(envplane_store::CommitError::Store(e)) => return Err(e.into()),
            // Someone else acted first; the next run looks again.
            Err(_) => return Ok(None),
        }
        if let Some(workflows) = &self.workflows
            && let Err(error) = workflows.start(Flow::Destroy, &env.name, &op).await
        {
            tracing::error!(%error, environment = %env.name, operation = %op, "the destroy flow did not start");
        }
        let event = Event::new(
            EventKind::PreviewExpired,
            env.name.clone(),
            env.tier,
            Some(op.clone()),
            format!("{} passed its TTL; destroying it", env.name),
            None,
            now,
        );
        publish_or_log(&self.events, event).await;
        Ok(Some(op))
    }

    async fn release_lost(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Result<Option<String>, JobError> {
        let Some(id) = env.active_operation.clone() else {
            return Ok(None);
        };
        let Some(mut op) = self.store.operation(&id).await? else {
            return Ok(None);
        };
        let cause = format!(
            "operation {id} held {} past its lease ({}) without finishing; housekeeping released it",
            env.name,
            env.lease_expires_at
                .map(|t| t.to_string())
                .unwrap_or_default()
        );
        op.status = OperationStatus::Failed;
        op.error = Some(OperationError {
            error: "Envplane.LeaseExpired".into(),
            cause: cause.clone(),
        });
        op.updated_at = now;
        let mut next = env.clone();
        next.version += 1;
        next.active_operation = None;
        next.lease_expires_at = None;
        next.status.phase = Phase::Failed;
        next.status.conditions.retain(|c| c.kind != "Ready");
        next.status.conditions.push(Condition {
            kind: "Ready".into(),
            status: false,
            reason: "Envplane.LeaseExpired".into(),
            message: cause.clone(),
            since: now,
        });
        next.updated_at = now;
        let change = Change {
            environment: next,
            expected: Expected::Version(env.version),
            operation: Some(op),
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        };
        match self.store.commit(change).await {
            Ok(()) => {}
            Err(envplane_store::CommitError::Store(e)) => return Err(e.into()),
            Err(_) => return Ok(None),
        }
        let event = Event::new(
            EventKind::OperationFailed,
            env.name.clone(),
            env.tier,
            Some(id.clone()),
            format!("operation on {} lost its lease", env.name),
            Some(cause),
            now,
        );
        publish_or_log(&self.events, event).await;
        Ok(Some(id))
    }
}
