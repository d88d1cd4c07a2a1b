//! Deploying a service's new version: launch it beside the stable one with the first weight,
//! then, each interval, judge the canary's figures and move on as `envplane_domain::canary`
//! says — bake, advance, wait at a gate or hold for a person, roll back in one weight change,
//! or complete (the new version becomes the stable one). Every step records the deployment on
//! its operation; every verdict keeps its figures and thresholds.

use std::sync::Arc;

use envplane_cloud::{Slot, Traffic};
use envplane_domain::canary::{self, Decision, Strategy};
use envplane_domain::deployment::{self, Deployment};
use envplane_domain::events::EventKind;
use envplane_domain::operation::OperationStatus;
use envplane_domain::promotion;
use envplane_domain::{EnvName, Environment, Operation};
use serde_json::{Value, json};

use crate::{Worker, WorkerError};

impl Worker {
    fn traffic(&self) -> Result<&Arc<dyn Traffic>, WorkerError> {
        self.traffic.as_ref().ok_or_else(|| {
            WorkerError::Invalid("this worker has no traffic port to deploy with".into())
        })
    }

    /// The environment, its deploy operation and the deployment it carries.
    async fn deploying(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<(Environment, Operation, Deployment), WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let deployment = op.deployment.clone().ok_or_else(|| {
            WorkerError::Invalid(format!("operation {operation} deploys nothing"))
        })?;
        Ok((record, op, deployment))
    }

    async fn record_deployment(
        &self,
        record: &Environment,
        op: &Operation,
        deployment: Deployment,
        status: Option<OperationStatus>,
    ) -> Result<(), WorkerError> {
        let t = deployment::progressed(record, op, deployment, status, self.clock.now());
        self.write(record, t).await
    }

    /// Runs the new version. Without a stable version, or rolling, it takes all traffic at
    /// once (`complete` next); otherwise it starts at the first step (blue/green: all of it)
    /// and the first interval begins.
    pub(crate) async fn deploy_launch(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut d) = self.deploying(env, operation).await?;
        let traffic = self.traffic()?;
        let wait = u64::from(d.canary.interval_seconds);
        if d.rollback_of.is_some() {
            // The replaced version is still warm in the canary slot: it takes all traffic
            // back in one change, and `complete` stops the version it undoes.
            traffic.promote(env, d.service, &d.release).await?;
            d.progress.weight = 100;
            d.decision = Some(Decision::Complete);
            self.record_deployment(&record, &op, d, None).await?;
            return Ok(json!({ "next": "complete", "wait": wait }));
        }
        // The version kept warm by the last deployment is replaced in the canary slot: its
        // rollback window ends here.
        let record = if record.warm.contains_key(&d.service) {
            let cooled = deployment::cooled(&record, d.service, self.clock.now());
            self.store
                .commit(envplane_store::Change::of(&record, cooled.clone()))
                .await?;
            cooled
        } else {
            record
        };
        if d.previous.is_none() || d.strategy == Strategy::Rolling {
            traffic
                .launch(env, d.service, Slot::Canary, &d.release)
                .await?;
            traffic.set_weight(env, d.service, 100).await?;
            d.progress.weight = 100;
            d.decision = Some(Decision::Complete);
            self.record_deployment(&record, &op, d, None).await?;
            return Ok(json!({ "next": "complete", "wait": wait }));
        }
        let first = match d.strategy {
            Strategy::BlueGreen => 100,
            _ => d.canary.steps.first().copied().unwrap_or(100),
        };
        traffic
            .launch(env, d.service, Slot::Canary, &d.release)
            .await?;
        traffic.set_weight(env, d.service, first).await?;
        // The first interval starts now: what came before is not the new version's.
        traffic
            .metrics(env, d.service, Slot::Canary, d.canary.interval())
            .await?;
        d.progress.weight = first;
        self.record_deployment(&record, &op, d, None).await?;
        Ok(json!({ "next": "bake", "wait": wait }))
    }

    /// Judges the interval that just ended and acts on the decision: a new weight in one
    /// change, or all traffic back on the stable version.
    pub(crate) async fn deploy_analyse(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut d) = self.deploying(env, operation).await?;
        let traffic = self.traffic()?;
        let metrics = traffic
            .metrics(env, d.service, Slot::Canary, d.canary.interval())
            .await?;
        let analysis = canary::analyse(d.progress.weight, metrics, &d.canary);
        let (progress, decision) = canary::next(d.progress, &analysis, &d.canary);
        match &decision {
            Decision::Advance { to } => traffic.set_weight(env, d.service, *to).await?,
            Decision::RollBack { .. } => traffic.set_weight(env, d.service, 0).await?,
            Decision::Bake
            | Decision::AwaitGate { .. }
            | Decision::Hold { .. }
            | Decision::Complete => {}
        }
        let next = match &decision {
            Decision::Advance { .. } | Decision::Bake => "bake",
            Decision::AwaitGate { .. } | Decision::Hold { .. } => "wait",
            Decision::Complete => "complete",
            Decision::RollBack { .. } => "rollback",
        };
        let reason = match &decision {
            Decision::RollBack { reason } | Decision::Hold { reason } => Some(reason.clone()),
            _ => None,
        };
        tracing::info!(weight = analysis.weight, verdict = ?analysis.verdict, reasons = ?analysis.reasons, next, "canary analysis");
        d.progress = progress;
        d.analyses.push(analysis);
        d.decision = Some(decision);
        let wait = u64::from(d.canary.interval_seconds);
        let t = deployment::analysed(&record, &op, d, self.clock.now());
        self.write(&record, t).await?;
        Ok(json!({ "next": next, "wait": wait, "reason": reason }))
    }

    /// Waits for a person: at a gate, or on a canary held for insufficient data. The operation
    /// shows `awaiting_approval` and keeps the token that `promote` or `abort` completes.
    pub(crate) async fn deploy_wait(
        &self,
        env: &EnvName,
        operation: &str,
        token: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut d) = self.deploying(env, operation).await?;
        d.wait_token = Some(token.to_owned());
        let why = match &d.decision {
            Some(Decision::AwaitGate { to }) => format!("a gate before {to} %"),
            Some(Decision::Hold { reason }) => reason.clone(),
            _ => "a person's decision".to_owned(),
        };
        let service = d.service;
        self.record_deployment(&record, &op, d, Some(OperationStatus::AwaitingApproval))
            .await?;
        let summary = format!(
            "Deployment of {} to {} waits for {why}: promote or abort",
            service.as_str(),
            record.name
        );
        self.announce(EventKind::AwaitingApproval, &record, &op, summary, None)
            .await;
        Ok(json!({ "waiting": why }))
    }

    /// A person promoted: the canary moves to the step after its weight (through a gate too),
    /// and the bake goes on; at the last step already, the deployment completes.
    pub(crate) async fn deploy_advance(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut d) = self.deploying(env, operation).await?;
        let wait = u64::from(d.canary.interval_seconds);
        let Some(to) = d
            .canary
            .steps
            .iter()
            .copied()
            .find(|s| *s > d.progress.weight)
        else {
            // Promoted at the last step (held there for want of data): it completes.
            d.wait_token = None;
            d.decision = Some(Decision::Complete);
            self.record_deployment(&record, &op, d, Some(OperationStatus::Running))
                .await?;
            return Ok(json!({ "next": "complete", "wait": wait }));
        };
        self.traffic()?.set_weight(env, d.service, to).await?;
        d.progress.weight = to;
        d.progress.inconclusive = 0;
        d.wait_token = None;
        d.decision = Some(Decision::Advance { to });
        self.record_deployment(&record, &op, d, Some(OperationStatus::Running))
            .await?;
        Ok(json!({ "next": "bake", "wait": wait }))
    }

    /// All traffic back on the stable version in one change, and the new version stopped; a
    /// promotion also puts back the versions it already replaced (still warm), so the target
    /// never runs half a promotion. Safe to repeat: a compensation after any failure runs it.
    pub(crate) async fn deploy_rollback(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, mut d) = self.deploying(env, operation).await?;
        let traffic = self.traffic()?;
        // Completed (only the operation's last write failed): the release stands, and the
        // version it replaced stays warm for its window, as after a success.
        if record
            .evidence
            .get(&d.service)
            .is_some_and(|e| e.operation == op.id)
        {
            return Ok(
                json!({ "Error": "Envplane.RolledBack", "Cause": "nothing to roll back: the deployment completed" }),
            );
        }
        // A rollback that failed leaves traffic where it is: both versions still run.
        if d.rollback_of.is_none() {
            if d.previous.is_some() {
                traffic.set_weight(env, d.service, 0).await?;
            }
            // A first deployment that failed before completing leaves nothing running either.
            traffic.retire(env, d.service, Slot::Canary).await?;
        }
        let undone = op.promotion.as_ref().map_or(&[][..], |p| &p.done[..]);
        for done in undone.iter().rev() {
            match &done.previous {
                Some(previous) => traffic.promote(env, done.service, previous).await?,
                None => traffic.retire(env, done.service, Slot::Stable).await?,
            }
        }
        let reason = match &d.decision {
            Some(Decision::RollBack { reason }) => reason.clone(),
            _ => "rolled back after a failure".to_owned(),
        };
        if d.rollback_of.is_none() {
            d.progress.weight = 0;
        }
        d.wait_token = None;
        let mut t = deployment::progressed(&record, &op, d, None, self.clock.now());
        if !undone.is_empty() {
            t = promotion::undone(t);
        }
        self.write(&record, t).await?;
        Ok(json!({ "Error": "Envplane.RolledBack", "Cause": reason }))
    }

    /// The new version is stable: it takes all traffic (the one it replaces stays warm for the
    /// rollback window), and the environment records the release, audited with every verdict.
    /// A rollback stops the version it undid instead. A promotion then goes on to its next
    /// service (`next: launch`).
    pub(crate) async fn deploy_complete(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<Value, WorkerError> {
        let (record, op, d) = self.deploying(env, operation).await?;
        let traffic = self.traffic()?;
        if d.rollback_of.is_some() {
            traffic.retire(env, d.service, Slot::Canary).await?;
        } else {
            traffic.promote(env, d.service, &d.release).await?;
        }
        let mut t = deployment::completed(&record, &op, self.clock.now()).ok_or_else(|| {
            WorkerError::Invalid(format!("operation {operation} deploys nothing"))
        })?;
        let next = promotion::next_service(&mut t);
        self.write(&record, t).await?;
        Ok(match next {
            Some(service) => json!({ "next": "launch", "service": service.as_str() }),
            None => json!({ "next": "finish", "stable": d.release.version }),
        })
    }
}
