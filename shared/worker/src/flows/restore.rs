//! Restores and drills: the source's database replayed beside the target's, checked, and
//! switched to; a drill's measurements (RTO on the plane's clock, RPO on the database's)
//! recorded on its operation and, when it ends, in the drilled environment's audit chain
//! with what its teardown left.

use std::sync::Arc;

use envplane_cloud::{Databases, RecoveryTarget, RestoreProgress};
use envplane_domain::events::EventKind;
use envplane_domain::restore::{self, DrillEvidence, DrillOutcome, Restore, RestorePoint};
use envplane_domain::{EnvName, Environment, Operation};
use serde_json::{Value, json};

use crate::flows::poll::answer;
use crate::{MIN_WAIT, Poll, Worker, WorkerError};

/// The name the restored database (its host, its data directory) has: one per operation, so
/// that a retried step finds it.
pub fn restore_id(operation: &str) -> String {
    format!("restore-{}", operation.to_ascii_lowercase())
}

fn target_of(point: &RestorePoint) -> RecoveryTarget {
    match point {
        RestorePoint::Backup { backup_id } => RecoveryTarget::Backup(backup_id.clone()),
        RestorePoint::Time { at } => RecoveryTarget::Time(*at),
        RestorePoint::Latest => RecoveryTarget::Latest,
    }
}

impl Worker {
    pub(crate) fn databases(&self) -> Result<&Arc<dyn Databases>, WorkerError> {
        self.databases.as_ref().ok_or_else(|| {
            WorkerError::Invalid("this worker has no database port to restore with".into())
        })
    }

    async fn restoring(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<(Environment, Operation, Restore), WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let restore = op.restore.clone().ok_or_else(|| {
            WorkerError::Invalid(format!("operation {operation} restores nothing"))
        })?;
        Ok((record, op, restore))
    }

    /// Restores the source's database at the requested point beside the target's: started by
    /// the first poll, done on a later one (at once locally). A new environment's restore runs
    /// beside its provisioning: it needs only the network.
    pub(crate) async fn restore_replay(
        &self,
        env: &EnvName,
        operation: &str,
        poll: Poll,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut restore) = self.restoring(env, operation).await?;
        let progress = self
            .databases()?
            .restore(
                &restore.source,
                &target_of(&restore.point),
                env,
                &restore_id(operation),
            )
            .await?;
        if let RestoreProgress::Pending { wait_seconds } = progress {
            let pending = format!("database of {env} (restore {})", restore_id(operation));
            return answer(
                &[pending.as_str()],
                wait_seconds.max(MIN_WAIT),
                poll.polls,
                None,
            );
        }
        if restore.mark("restored", self.clock.now()) {
            let t = restore::progressed(&record, &op, restore, self.clock.now());
            self.write(&record, t).await?;
        }
        answer(&[], 0, poll.polls, None)
    }

    /// Checks the restored database and records when it passed and what it recovered.
    pub(crate) async fn restore_verify(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut restore) = self.restoring(env, operation).await?;
        let health = self
            .databases()?
            .verify(env, &restore_id(operation))
            .await?;
        if restore.healthy_at.is_none() {
            let now = self.clock.now();
            // Verify runs once the new environment's provisioning and the restore both ended.
            if op.creates() {
                restore.mark("provisioned", now);
            }
            restore.healthy_at = Some(now);
            restore.mark("healthy", now);
            restore.newest_heartbeat = health.newest_heartbeat;
            let t = restore::progressed(&record, &op, restore.clone(), self.clock.now());
            self.write(&record, t).await?;
        }
        Ok(
            json!({ "healthy_at": restore.healthy_at, "newest_heartbeat": restore.newest_heartbeat }),
        )
    }

    /// The restored database becomes the target's.
    pub(crate) async fn restore_switch(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut restore) = self.restoring(env, operation).await?;
        let databases = self.databases()?;
        databases.switch(env, &restore_id(operation)).await?;
        let endpoint = databases.endpoint(env).await?;
        if restore.mark("switched", self.clock.now()) {
            let t = restore::progressed(&record, &op, restore, self.clock.now());
            self.write(&record, t).await?;
        }
        Ok(json!({ "endpoint": endpoint }))
    }

    /// Removes a restored database that was not switched to. A restore in place keeps its
    /// database; any other target is rolled back with it.
    pub(crate) async fn restore_discard(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (_, op) = self.held(env, operation).await?;
        match (&op.restore, &self.databases) {
            (Some(_), Some(databases)) => {
                databases.discard(env, &restore_id(operation)).await?;
                Ok(json!({ "discarded": true }))
            }
            _ => Ok(json!({ "discarded": false })),
        }
    }

    /// A drill ends: its evidence — RTO, RPO, targets, what its environment left — goes on its
    /// operation (`op`, about to be written) and into the drilled environment's audit chain.
    pub(crate) async fn attest(
        &self,
        record: &Environment,
        op: &mut Operation,
        error: Option<String>,
    ) -> Result<(), WorkerError> {
        let Some(mut restore) = op.restore.clone().filter(|r| r.is_drill()) else {
            return Ok(());
        };
        // A drill that failed before its first step still has evidence: from its request.
        restore.started_at.get_or_insert(op.requested_at);
        let left = self.left_by(&record.name).await?;
        let now = self.clock.now();
        if left.is_empty() {
            restore.mark("torn_down", now);
        }
        let Some(evidence) = restore::evidence(&restore, record.tier, error, left) else {
            return Ok(());
        };
        restore.evidence = Some(evidence.clone());
        op.restore = Some(restore.clone());
        // The drilled environment's chain; a concurrent write of it is read again.
        for _ in 0..8 {
            let Some(source) = self.store.environment(&restore.source).await? else {
                return Ok(());
            };
            let (next, event) = restore::attested(&source, op, &evidence, now);
            let change = envplane_store::Change {
                audit: Some(event),
                ..envplane_store::Change::of(&source, next)
            };
            match self.store.commit(change).await {
                Err(envplane_store::CommitError::VersionConflict) => continue,
                Err(other) => return Err(other.into()),
                Ok(()) => {
                    self.announce_drill(&source, op, &evidence).await;
                    return Ok(());
                }
            }
        }
        Err(WorkerError::Transient(format!(
            "the evidence of drill {} was not recorded on {}: retried",
            op.id, restore.source
        )))
    }

    /// Tells subscribers (Slack) what a drill proved; a missed target or a failure is a
    /// warning, critical on production.
    async fn announce_drill(&self, source: &Environment, op: &Operation, e: &DrillEvidence) {
        let kind = if e.outcome == DrillOutcome::Passed {
            EventKind::DrillPassed
        } else {
            EventKind::DrillMissed
        };
        let seconds = |v: Option<i64>| v.map_or("none".to_owned(), |s| format!("{s} s"));
        let target =
            |m: Option<u32>| m.map_or("no target".to_owned(), |m| format!("target {m} min"));
        let summary = format!(
            "DR drill of {} {}: RTO {} ({}), RPO {} ({}){}",
            source.name,
            match e.outcome {
                DrillOutcome::Passed => "passed",
                DrillOutcome::Missed => "missed a target",
                DrillOutcome::Failed => "failed",
            },
            seconds(e.rto_seconds),
            target(e.targets.map(|t| t.rto_minutes)),
            seconds(e.rpo_seconds),
            target(e.targets.map(|t| t.rpo_minutes)),
            if e.left.is_empty() {
                String::new()
            } else {
                format!("; left behind: {}", e.left.join(", "))
            }
        );
        let event = envplane_domain::events::Event::new(
            kind,
            source.name.clone(),
            source.tier,
            Some(op.id.clone()),
            summary,
            e.error.clone(),
            self.clock.now(),
        );
        envplane_notify::publish_or_log(&self.events, event).await;
    }

    /// What of `env` is left in the cloud and among the database hosts.
    async fn left_by(&self, env: &EnvName) -> Result<Vec<String>, WorkerError> {
        let mut left: Vec<String> = self
            .cloud
            .list(env)
            .await?
            .into_iter()
            .map(|r| format!("{} {}", r.kind().as_str(), r.name))
            .collect();
        left.extend(
            self.cloud
                .snapshots(env)
                .await?
                .into_iter()
                .map(|s| format!("snapshot {}", s.name)),
        );
        if let Some(databases) = &self.databases
            && databases.present().await?.contains(env)
        {
            left.push("db_instance database host (PostgreSQL)".to_owned());
        }
        Ok(left)
    }
}
