//! The worker: what each Task state of the flows does, one module per flow (`flows/`) and one
//! per scheduled job (`jobs/`). Every action is idempotent (resources are found by their
//! envplane tags before anything is created, records change under version conditions) and
//! answers with small JSON; every error carries the `Envplane.*` name the state machines
//! retry or catch on.
#![forbid(unsafe_code)]

mod action;
mod error;
mod flows;
pub mod jobs;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use envplane_cloud::{Cloud, SharedClock, system_clock};
use envplane_domain::events::{Event, EventKind};
use envplane_domain::lifecycle::{self, Transition};
use envplane_domain::{EnvName, Environment, Operation};
use envplane_notify::{Publisher, publish_or_log};
use envplane_store::{Change, StateStore};
use envplane_workflow::{Failure, TaskContext, TaskRunner};
use serde_json::Value;
use tracing::Instrument;

pub use action::{Action, Poll, Task};
pub use envplane_domain::lifecycle::SYSTEM_PRINCIPAL;
pub use envplane_workflow::execution_input;
pub use error::WorkerError;
pub use flows::poll::{MAX_OVERDUE_WAIT, MAX_POLLS, MAX_WAIT, MIN_WAIT};
pub use flows::restore::restore_id;

/// Runs the flows' actions against a store and a cloud.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn StateStore>,
    cloud: Arc<dyn Cloud>,
    clock: SharedClock,
    events: Arc<dyn Publisher>,
    traffic: Option<Arc<dyn envplane_cloud::Traffic>>,
    databases: Option<Arc<dyn envplane_cloud::Databases>>,
}

impl Worker {
    /// A worker over a store and a cloud, on the system clock.
    pub fn new(store: Arc<dyn StateStore>, cloud: Arc<dyn Cloud>) -> Self {
        Self {
            store,
            cloud,
            clock: system_clock(),
            events: Arc::new(envplane_notify::Silent),
            traffic: None,
            databases: None,
        }
    }

    /// The same worker running the environments' databases (started with their hosts,
    /// removed with them, backed up, restored) through `databases`.
    pub fn with_databases(mut self, databases: Arc<dyn envplane_cloud::Databases>) -> Self {
        self.databases = Some(databases);
        self
    }

    /// The same worker announcing operations starting, succeeding and failing there.
    pub fn with_events(mut self, events: Arc<dyn Publisher>) -> Self {
        self.events = events;
        self
    }

    /// The same worker deploying services' versions through `traffic`.
    pub fn with_traffic(mut self, traffic: Arc<dyn envplane_cloud::Traffic>) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// The same worker reading time from `clock` (the clock of a time-scaled local plane).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs one action, given as the Task state's payload, and reports how long it took
    /// (`StepDuration` by action, a [`METRICS`] event).
    pub async fn handle(&self, payload: Value) -> Result<Value, WorkerError> {
        let started = std::time::Instant::now();
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let outcome = self.run_action(payload).await;
        tracing::info!(
            target: METRICS,
            metric = "StepDuration",
            value = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            unit = "Milliseconds",
            action = action.as_str(),
            outcome = if outcome.is_ok() { "ok" } else { "failed" },
        );
        outcome
    }

    async fn run_action(&self, payload: Value) -> Result<Value, WorkerError> {
        let task: Task = serde_json::from_value(payload)
            .map_err(|e| WorkerError::Invalid(format!("bad task payload: {e}")))?;
        let env = EnvName::parse(&task.environment)
            .map_err(|e| WorkerError::Invalid(format!("environment: {e}")))?;
        let span = tracing::info_span!("step", action = task.action.name(), environment = %env, operation = %task.operation);
        // The span follows the step's future across its awaits: a guard held over an await
        // would be left entered on whichever thread the future moved from (and a span closed
        // under another task's feet panics the subscriber).
        self.act(&env, task).instrument(span).await
    }

    async fn act(&self, env: &EnvName, task: Task) -> Result<Value, WorkerError> {
        let op = task.operation.as_str();
        match task.action {
            Action::Start => self.start(env, op).await,
            Action::AwaitApproval { token } => self.await_approval(env, op, &token).await,
            Action::DeployLaunch => self.deploy_launch(env, op).await,
            Action::DeployAnalyse => self.deploy_analyse(env, op).await,
            Action::DeployWait { token } => self.deploy_wait(env, op, &token).await,
            Action::DeployAdvance => self.deploy_advance(env, op).await,
            Action::DeployRollback => self.deploy_rollback(env, op).await,
            Action::DeployComplete => self.deploy_complete(env, op).await,
            Action::RestoreReplay { poll } => self.restore_replay(env, op, poll).await,
            Action::RestoreVerify => self.restore_verify(env, op).await,
            Action::RestoreSwitch => self.restore_switch(env, op).await,
            Action::RestoreDiscard => self.restore_discard(env, op).await,
            Action::Ensure { group, poll } => self.ensure(env, op, group, poll).await,
            Action::Converge { group, poll } => self.converge(env, op, group, poll).await,
            Action::Teardown { kinds, poll } => self.teardown(env, op, &kinds, poll).await,
            Action::Failing => self.failing(env, op).await,
            Action::Succeed => self.succeed(env, op).await,
            Action::Fail {
                error,
                rolled_back,
                rollback_error,
            } => self.fail(env, op, error, rolled_back, rollback_error).await,
        }
    }

    /// The environment and its operation, provided the operation still holds the environment.
    async fn held(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<(Environment, Operation), WorkerError> {
        let record =
            self.store.environment(env).await?.ok_or_else(|| {
                WorkerError::Conflict(format!("environment {env} does not exist"))
            })?;
        if record.active_operation.as_deref() != Some(operation) {
            return Err(WorkerError::Conflict(format!(
                "operation {operation} no longer holds {env} (held by {})",
                record.active_operation.as_deref().unwrap_or("nothing")
            )));
        }
        let op = self
            .store
            .operation_of(env, operation)
            .await?
            .ok_or_else(|| {
                WorkerError::Conflict(format!("operation {operation} of {env} does not exist"))
            })?;
        // Every step is the operation's heartbeat: the lease is renewed once half of it is gone.
        if let Some(renewed) = lifecycle::renew(&record, self.clock.now()) {
            self.store
                .commit(Change::of(&record, renewed.clone()))
                .await?;
            return Ok((renewed, op));
        }
        Ok((record, op))
    }

    /// Writes a transition under the version `before` was read at.
    async fn write(&self, before: &Environment, t: Transition) -> Result<(), WorkerError> {
        let change = Change::transition(before, t);
        self.store.commit(change).await.map_err(Into::into)
    }

    async fn announce(
        &self,
        kind: EventKind,
        record: &Environment,
        op: &Operation,
        summary: String,
        cause: Option<String>,
    ) {
        let metric = match kind {
            EventKind::OperationStarted => Some("OperationsStarted"),
            EventKind::OperationSucceeded => Some("OperationsSucceeded"),
            EventKind::OperationFailed => Some("OperationsFailed"),
            _ => None,
        };
        if let Some(metric) = metric {
            tracing::info!(
                target: METRICS,
                metric,
                value = 1u64,
                unit = "Count",
                kind = op.kind.as_str(),
                tier = record.tier.as_str(),
            );
        }
        let event = Event::new(
            kind,
            record.name.clone(),
            record.tier,
            Some(op.id.clone()),
            summary,
            cause,
            self.clock.now(),
        );
        publish_or_log(&self.events, event).await;
    }
}

pub use envplane_cloud::METRICS;

/// The Lambda service integration's resource.
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

#[async_trait]
impl TaskRunner for Worker {
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        _context: &TaskContext,
    ) -> Result<Value, Failure> {
        // Through the Lambda service integration (`…:lambda:invoke`, which `.waitForTaskToken`
        // needs) the function receives only `Payload`, as it does on AWS.
        let payload = match payload {
            Value::Object(mut fields) if resource.starts_with(LAMBDA_INVOKE) => {
                fields.remove("Payload").unwrap_or(Value::Null)
            }
            other => other,
        };
        self.handle(payload).await.map_err(Into::into)
    }
}
