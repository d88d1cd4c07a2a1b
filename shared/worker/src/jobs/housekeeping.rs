//! Housekeeping: previews past their TTL are destroyed, and operations that held their
//! environment past the lease are stopped, failed and the environment released; what an
//! expired provisioning made is then rolled back, as a failed one's is.

use envplane_domain::commands::{self, Request};
use envplane_domain::environment::Phase;
use envplane_domain::events::{Event, EventKind};
use envplane_domain::lifecycle;
use envplane_domain::operation::Operation;
use envplane_domain::{Caller, EnvName, Environment, Role, Tier};
use envplane_notify::publish_or_log;
use envplane_store::Change;
use envplane_workflow::Flow;
use serde::Serialize;
use time::OffsetDateTime;

use super::{JobError, Jobs, SCHEDULER_PRINCIPAL};

/// The account of one housekeeping run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Housekeeping {
    /// Previews whose destruction began, with the operation.
    pub expired_previews: Vec<(EnvName, String)>,
    /// Operations declared lost (their executions stopped), their environments released.
    pub lost_operations: Vec<(EnvName, String)>,
    /// Destructions begun to roll back what a lost provisioning made, with the operation.
    pub rollbacks: Vec<(EnvName, String)>,
    /// Operations accepted but never started (a crash between the write and the start),
    /// started now.
    pub started: Vec<(EnvName, String)>,
    /// Snapshots deleted past their tier's retention, by name.
    pub expired_snapshots: Vec<(EnvName, String)>,
    /// Operations whose approval expired: their flows were failed, nothing changed.
    pub expired_approvals: Vec<(EnvName, String)>,
    /// Versions stopped at the end of their rollback window, by service.
    pub cooled: Vec<(EnvName, String)>,
    /// Daily backups started, by label (`daily-YYYYMMDD`).
    pub backups: Vec<(EnvName, String)>,
    /// Weekly machine images of the database hosts started, by label (`weekly-YYYYwWW`).
    pub images: Vec<(EnvName, String)>,
    /// Machine images deregistered past their tier's retention, by name.
    pub expired_images: Vec<(EnvName, String)>,
}

/// How long an accepted operation may stay pending before housekeeping starts its flow: the
/// request that recorded it starts it within milliseconds unless it crashed in between.
pub const START_GRACE: time::Duration = time::Duration::minutes(1);

impl Jobs {
    /// Destroys previews past their TTL, and stops and releases operations whose lease ran
    /// out (the operation is marked failed with the cause; a lost provisioning is rolled back).
    pub async fn housekeeping(&self) -> Result<Housekeeping, JobError> {
        let now = self.clock.now();
        let mut done = Housekeeping::default();
        for env in self.all_environments(None).await? {
            let lost =
                env.active_operation.is_some() && env.lease_expires_at.is_some_and(|t| t <= now);
            if !lost && let Some(op) = self.start_if_forgotten(&env, now, START_GRACE).await? {
                done.started.push((env.name.clone(), op));
                continue;
            }
            // Before the lease: a wait holds its environment an hour past its approval's expiry.
            if let Some(op) = self.expire_approval(&env, now).await? {
                done.expired_approvals.push((env.name.clone(), op));
                continue;
            }
            if lost {
                if let Some((op, released)) = self.release_lost(&env, now).await? {
                    done.lost_operations.push((env.name.clone(), op.id.clone()));
                    let rollback = op.rolls_back();
                    if rollback && let Some(destroy) = self.destroy(&released, now).await? {
                        done.rollbacks.push((env.name.clone(), destroy));
                    }
                }
                continue;
            }
            let expired = env.tier == Tier::Preview
                && env.active_operation.is_none()
                && !matches!(env.status.phase, Phase::Deleted | Phase::Deleting)
                && env.expires_at.is_some_and(|t| t <= now);
            if expired {
                // Destroyed from the record as read: nothing else writes it first.
                if let Some(op) = self.destroy(&env, now).await? {
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
                    done.expired_previews.push((env.name.clone(), op));
                }
                continue;
            }
            if env.active_operation.is_none() && env.status.phase != Phase::Deleted {
                for service in self.cool_warm(&env, now).await? {
                    done.cooled.push((env.name.clone(), service));
                }
                if env.status.phase == Phase::Ready
                    && let Some(label) = self.back_up_if_due(&env, now).await
                {
                    done.backups.push((env.name.clone(), label));
                }
                if env.status.phase == Phase::Ready
                    && let Some(label) = self.image_if_due(&env, now).await
                {
                    done.images.push((env.name.clone(), label));
                }
                for name in self.sweep_images(&env, now).await {
                    done.expired_images.push((env.name.clone(), name));
                }
                for name in self.sweep_snapshots(&env, now).await {
                    done.expired_snapshots.push((env.name.clone(), name));
                }
                self.record_recovery_points(&env.name, now).await?;
            }
        }
        Ok(done)
    }

    /// Starts the flow of every operation accepted at least `grace` ago whose flow never
    /// started: the outbox a crash between a request's write and its start leaves. Starting is
    /// idempotent (the operation names its execution). A local plane runs it at start-up.
    pub async fn start_accepted(
        &self,
        grace: time::Duration,
    ) -> Result<Vec<(EnvName, String)>, JobError> {
        let now = self.clock.now();
        let mut started = Vec::new();
        for env in self.all_environments(None).await? {
            if let Some(op) = self.start_if_forgotten(&env, now, grace).await? {
                started.push((env.name.clone(), op));
            }
        }
        Ok(started)
    }

    async fn start_if_forgotten(
        &self,
        env: &Environment,
        now: OffsetDateTime,
        grace: time::Duration,
    ) -> Result<Option<String>, JobError> {
        let (Some(workflows), Some(id)) = (&self.workflows, &env.active_operation) else {
            return Ok(None);
        };
        let Some(op) = self.store.operation(id).await? else {
            return Ok(None);
        };
        // The flow's first step marks it running: pending means it never ran.
        if op.status != envplane_domain::OperationStatus::Pending || now - op.requested_at < grace {
            return Ok(None);
        }
        let Some(flow) = Flow::for_operation(op.kind) else {
            return Ok(None);
        };
        match workflows.start(flow, &env.name, id).await {
            Ok(()) => {
                tracing::warn!(environment = %env.name, operation = %id, "an accepted operation had not started; started it");
                Ok(Some(id.clone()))
            }
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, operation = %id, "an accepted operation could not be started; next run tries again");
                Ok(None)
            }
        }
    }

    /// Deletes the environment's snapshots older than its tier's retention; a failure is
    /// logged and the next run tries again.
    async fn sweep_snapshots(&self, env: &Environment, now: OffsetDateTime) -> Vec<String> {
        let policy = envplane_domain::Blueprint::for_tier(env.tier).backups;
        let snapshots = match self.cloud.snapshots(&env.name).await {
            Ok(snapshots) => snapshots,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "snapshots not swept");
                return Vec::new();
            }
        };
        let points: Vec<_> = snapshots
            .iter()
            .map(|s| envplane_domain::backup::RecoveryPoint {
                id: s.id.clone(),
                taken_at: s.started_at,
            })
            .collect();
        // Past the retention, never the newest, never a yearly archive.
        let expired = envplane_domain::backup::expired(&points, &policy, now);
        let mut deleted = Vec::new();
        for snapshot in snapshots.into_iter().filter(|s| expired.contains(&s.id)) {
            match self.cloud.delete_snapshot(&snapshot).await {
                Ok(()) => deleted.push(snapshot.name),
                Err(error) => {
                    tracing::warn!(%error, snapshot = %snapshot.id, "an expired snapshot was not deleted");
                }
            }
        }
        deleted
    }

    /// Records on the environment the recovery points the cloud holds for it, when they
    /// changed (read again first: this run may have changed the record already). A concurrent
    /// change wins; the next run records them.
    pub(crate) async fn record_recovery_points(
        &self,
        name: &EnvName,
        now: OffsetDateTime,
    ) -> Result<(), JobError> {
        let Some(env) = self.store.environment(name).await? else {
            return Ok(());
        };
        let Ok(snapshots) = self.cloud.snapshots(name).await else {
            return Ok(());
        };
        let points = snapshots
            .into_iter()
            .map(|s| envplane_domain::backup::RecordedPoint {
                id: s.id,
                name: s.name,
                taken_at: s.started_at,
            })
            .collect();
        if let Some(next) = envplane_domain::backup::recorded(&env, points, now) {
            match self.store.commit(Change::of(&env, next)).await {
                Ok(()) | Err(envplane_store::CommitError::VersionConflict) => {}
                Err(envplane_store::CommitError::Store(e)) => return Err(e.into()),
                Err(other) => {
                    tracing::debug!(error = %other, "recovery points not recorded this run")
                }
            }
        }
        Ok(())
    }

    /// Records a delete of `env` by the scheduler (audited) and starts its destroy flow;
    /// `None` when someone else acted first.
    async fn destroy(
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
        match self.store.commit(Change::mutation(env, mutation)).await {
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
        Ok(Some(op))
    }

    /// Stops the lost operation's execution, so that it makes no further call, and only then
    /// fails it and releases the environment; answers the operation and the released record.
    /// When the execution cannot be stopped, nothing is released: the next run tries again.
    async fn release_lost(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Result<Option<(Operation, Environment)>, JobError> {
        let Some(id) = env.active_operation.clone() else {
            return Ok(None);
        };
        let Some(op) = self.store.operation(&id).await? else {
            return Ok(None);
        };
        let t = lifecycle::expire(env, &op, now);
        let cause = t.operation.error.as_ref().map(|e| e.cause.clone());
        if let Some(workflows) = &self.workflows
            && let Some(flow) = Flow::for_operation(op.kind)
            && let Err(error) = workflows
                .stop(flow, &id, cause.as_deref().unwrap_or("lease expired"))
                .await
        {
            tracing::warn!(%error, environment = %env.name, operation = %id, "a lost operation's execution could not be stopped; its lock stays");
            return Ok(None);
        }
        let released = t.environment.clone();
        match self.store.commit(Change::transition(env, t)).await {
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
            cause,
            now,
        );
        publish_or_log(&self.events, event).await;
        Ok(Some((op, released)))
    }
}
