//! The steps every flow shares: start, finish, fail, and recording in-place changes. The
//! records they write come from the pure transitions in `envplane_domain::lifecycle`.

use envplane_domain::EnvName;
use envplane_domain::approval;
use envplane_domain::environment::ObservedResource;
use envplane_domain::events::EventKind;
use envplane_domain::lifecycle::{self, Leftovers};
use envplane_domain::operation::{AppliedChange, OperationError, OperationKind, OperationStatus};
use envplane_domain::resources::ResourceKind;
use serde_json::{Value, json};

use envplane_store::CommitError;

use crate::{Worker, WorkerError};

impl Worker {
    /// Marks the operation running, and answers whether it must wait for approvals before
    /// it changes anything.
    pub(crate) async fn start(&self, env: &EnvName, operation: &str) -> Result<Value, WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let approval = op.approval.as_ref().is_some_and(|a| !a.granted());
        let creates = op.creates();
        let drill = op.kind == OperationKind::Drill;
        let Some(mut t) = lifecycle::start(&record, &op, self.clock.now()) else {
            return Ok(
                json!({ "started": false, "approval": approval, "creates": creates, "drill": drill }),
            );
        };
        // A restore's clock starts here: a drill's RTO on the plane's clock, its RPO on the
        // database's (wall time, in which the heartbeats are written).
        if let Some(restore) = t.operation.restore.as_mut() {
            restore.started_at = Some(self.clock.now());
            restore.started_wall = Some(time::OffsetDateTime::now_utc());
        }
        let started = t.operation.clone();
        self.write(&record, t).await?;
        let summary = format!("{} of {} started", started.kind.noun(), record.name);
        self.announce(
            EventKind::OperationStarted,
            &record,
            &started,
            summary,
            None,
        )
        .await;
        Ok(json!({ "started": true, "approval": approval, "creates": creates, "drill": drill }))
    }

    /// Waits for the operation's approvals: records the task token that ends the wait and
    /// announces that approvers are needed. A retried step records the new token. Nothing has
    /// changed yet: a rejected or expired approval leaves the environment as it was.
    pub(crate) async fn await_approval(
        &self,
        env: &EnvName,
        operation: &str,
        token: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let Some(approval) = op.approval.clone() else {
            return Err(WorkerError::Invalid(format!(
                "operation {operation} needs no approval"
            )));
        };
        let t = approval::awaiting(&record, &op, token, self.clock.now());
        let waiting = t.operation.clone();
        self.write(&record, t).await?;
        let summary = format!(
            "{} of {} awaits {} approver(s) other than {} (plan {}), until {}",
            waiting.kind.noun(),
            record.name,
            approval.required,
            waiting.requested_by,
            &approval.plan_digest[..approval.plan_digest.len().min(12)],
            approval.expires_at
        );
        self.announce(
            EventKind::AwaitingApproval,
            &record,
            &waiting,
            summary,
            None,
        )
        .await;
        Ok(json!({ "awaiting": approval.required }))
    }

    /// Appends in-place changes to the operation's record. Nothing is read first: the flow's
    /// parallel branches append at the same time, and the calls are made, so a contended
    /// append is tried again rather than the step.
    pub(crate) async fn record_changes(
        &self,
        env: &EnvName,
        operation: &str,
        applied: Vec<AppliedChange>,
    ) -> Result<(), WorkerError> {
        let mut attempt: u32 = 0;
        loop {
            match self.store.append_changes(env, operation, &applied).await {
                Err(CommitError::Contended) if attempt < 8 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)))
                        .await;
                }
                Err(CommitError::VersionConflict) => {
                    return Err(WorkerError::Conflict(format!(
                        "operation {operation} no longer holds {env}"
                    )));
                }
                other => return other.map_err(Into::into),
            }
        }
    }

    /// Finishes the operation: a destroyed environment becomes a tombstone, any other is
    /// ready with the resources the cloud now holds.
    pub(crate) async fn succeed(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        // A retried finish after its write was committed: done, not a conflict.
        if let Some(done) = self.store.operation_of(env, operation).await?
            && done.status == OperationStatus::Succeeded
        {
            let phase = if matches!(done.kind, OperationKind::Delete | OperationKind::Drill) {
                "deleted"
            } else {
                "ready"
            };
            return Ok(json!({ "phase": phase }));
        }
        let (record, op) = self.held(env, operation).await?;
        let deleted = matches!(op.kind, OperationKind::Delete | OperationKind::Drill);
        let resources = if deleted {
            Vec::new()
        } else {
            self.cloud
                .list(env)
                .await?
                .into_iter()
                .map(|r| ObservedResource {
                    kind: r.kind(),
                    state: r.state.as_str().to_owned(),
                    id: r.id,
                    name: r.name,
                })
                .collect()
        };
        let mut t = lifecycle::succeed(&record, &op, resources, self.clock.now());
        self.attest(&record, &mut t.operation, None).await?;
        let done = t.operation.clone();
        self.write(&record, t).await?;
        let summary = format!(
            "{} of {} succeeded{}",
            done.kind.noun(),
            record.name,
            match done.changes.len() {
                0 => String::new(),
                n => format!(" ({n} in-place changes)"),
            }
        );
        self.announce(EventKind::OperationSucceeded, &record, &done, summary, None)
            .await;
        Ok(json!({ "phase": if deleted { "deleted" } else { "ready" } }))
    }

    /// A step failed: the teardown steps a rollback takes, dependents first. Only a
    /// provisioning rolls back, and not when its request asked to keep what it made.
    pub(crate) async fn failing(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (_, op) = self.held(env, operation).await?;
        let rollback = op.rolls_back();
        let steps: Vec<Value> = if rollback {
            ResourceKind::TEARDOWN_STEPS
                .iter()
                .map(|kinds| json!({ "kinds": kinds }))
                .collect()
        } else {
            Vec::new()
        };
        Ok(json!({ "rollback": rollback, "steps": steps }))
    }

    /// Records the error a Catch caught (`{"Error", "Cause"}`), and what became of what the
    /// flow had made, and releases the environment.
    pub(crate) async fn fail(
        &self,
        env: &EnvName,
        operation: &str,
        error: Value,
        rolled_back: bool,
        rollback_error: Option<Value>,
    ) -> Result<Value, WorkerError> {
        // A retried compensation after its write was committed: done, not a conflict.
        if let Some(done) = self.store.operation_of(env, operation).await?
            && matches!(
                done.status,
                OperationStatus::Failed | OperationStatus::Cancelled
            )
        {
            let name = done.error.map(|e| e.error);
            return Ok(json!({ "phase": "failed", "error": name }));
        }
        let (record, op) = self.held(env, operation).await?;
        let text = |error: &Value, key: &str, otherwise: &str| {
            error
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or(otherwise)
                .to_owned()
        };
        let leftovers = match rollback_error {
            Some(e) => Leftovers::RollbackFailed(format!(
                "{}: {}",
                text(&e, "Error", "Envplane.Failed"),
                text(&e, "Cause", "no cause recorded")
            )),
            None if rolled_back => Leftovers::RolledBack,
            None if op.creates() && !op.rolls_back() => Leftovers::Kept,
            None => Leftovers::AsStopped,
        };
        let error = OperationError {
            error: text(&error, "Error", "Envplane.Failed"),
            cause: text(&error, "Cause", "no cause recorded"),
        };
        let name = error.error.clone();
        let cause = format!("{name}: {}", error.cause);
        let mut t = lifecycle::fail(&record, &op, error, leftovers, self.clock.now());
        self.attest(&record, &mut t.operation, Some(cause)).await?;
        let failed = t.operation.clone();
        self.write(&record, t).await?;
        let summary = format!("{} of {} failed: {name}", failed.kind.noun(), record.name);
        let cause = failed.error.as_ref().map(|e| e.cause.clone());
        self.announce(EventKind::OperationFailed, &record, &failed, summary, cause)
            .await;
        Ok(json!({ "phase": "failed", "error": name }))
    }
}
