//! The workflow port of envplane and its local adapter: an executor of Amazon States Language
//! that runs the very definitions shipped in `statemachines/`, resolving Task resources to
//! in-process handlers.
#![forbid(unsafe_code)]

pub mod asl;
pub mod choice;
mod clock;
pub mod executor;
mod history;
mod intrinsics;
pub mod local;
pub mod paths;
mod steps;

use std::collections::BTreeMap;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::operation::{OperationKind, OperationStep};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use asl::{DefinitionError, StateMachine};
pub use executor::{
    Clock, Executor, Failure, Observer, Outcome, ScaledClock, TaskContext, TaskRunner, VirtualClock,
};
pub use local::LocalWorkflows;
pub use steps::Steps;

/// The flows envplane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Create every resource of an environment.
    Provision,
    /// Remove every resource of an environment.
    Destroy,
    /// Bring an environment's resources to its spec: updates and reconciles.
    Update,
    /// Deploy a service's new version, step by step with analysis.
    Deploy,
    /// Restore a database: in place, into a new environment, or into a drill's.
    Restore,
}

/// The definitions as shipped: the same bytes `template.yaml` deploys.
const PROVISION: &str = include_str!("../../../statemachines/provision.asl.json");
const DESTROY: &str = include_str!("../../../statemachines/destroy.asl.json");
const UPDATE: &str = include_str!("../../../statemachines/update.asl.json");
const DEPLOY: &str = include_str!("../../../statemachines/deploy.asl.json");
const RESTORE: &str = include_str!("../../../statemachines/restore.asl.json");

/// The substitution the shipped definitions' Task resources use for the worker.
pub const WORKER_SUBSTITUTION: &str = "WorkerFunctionArn";
/// What the local executor substitutes for the worker's ARN.
pub const LOCAL_WORKER: &str = "local:worker";

impl Flow {
    /// Every flow.
    pub const ALL: [Flow; 5] = [
        Flow::Provision,
        Flow::Destroy,
        Flow::Update,
        Flow::Deploy,
        Flow::Restore,
    ];

    /// The flow that carries out an operation of this kind.
    pub fn for_operation(kind: OperationKind) -> Option<Flow> {
        match kind {
            OperationKind::Create => Some(Flow::Provision),
            OperationKind::Delete => Some(Flow::Destroy),
            OperationKind::Update | OperationKind::Reconcile => Some(Flow::Update),
            OperationKind::Deploy | OperationKind::Rollback | OperationKind::Promote => {
                Some(Flow::Deploy)
            }
            OperationKind::Restore | OperationKind::Drill => Some(Flow::Restore),
        }
    }

    /// The shipped definition's text.
    pub fn definition(self) -> &'static str {
        match self {
            Flow::Provision => PROVISION,
            Flow::Destroy => DESTROY,
            Flow::Update => UPDATE,
            Flow::Deploy => DEPLOY,
            Flow::Restore => RESTORE,
        }
    }

    /// The shipped definition, loaded for the local executor.
    pub fn local_definition(self) -> Result<StateMachine, DefinitionError> {
        StateMachine::load(
            self.definition(),
            &BTreeMap::from([(WORKER_SUBSTITUTION.to_owned(), LOCAL_WORKER.to_owned())]),
        )
    }
}

/// The input of a provision or destroy execution: ids, and the first state of every wait loop.
pub fn execution_input(environment: &EnvName, operation: &str) -> Value {
    let first = json!({ "wait": 0, "polls": 0, "ready": false });
    json!({
        "environment": environment,
        "operation": operation,
        "poll": { "network": first, "egress": first, "cluster": first, "node_groups": first, "database": first, "targets": first, "restore": first },
    })
}

/// Why a flow could not be started or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The workflow service (or local storage) failed; try again.
    #[error("workflow service unavailable: {0}")]
    Unavailable(String),
    /// A definition is unusable.
    #[error("invalid definition: {0}")]
    Invalid(String),
    /// A task token no flow waits on (completed, timed out, or its execution ended).
    #[error("no flow waits on that task token: {0}")]
    UnknownToken(String),
}

/// Starts and observes flows: Step Functions in AWS, the local executor in `envplane serve`.
#[async_trait]
pub trait Workflows: Send + Sync {
    /// Starts `flow` for an operation; starting the same operation again does nothing.
    async fn start(
        &self,
        flow: Flow,
        environment: &EnvName,
        operation: &str,
    ) -> Result<(), WorkflowError>;

    /// The steps an operation's `flow` has gone through, if it has run.
    async fn steps(
        &self,
        flow: Flow,
        operation: &str,
    ) -> Result<Option<Vec<OperationStep>>, WorkflowError>;

    /// Stops an operation's execution with `Envplane.Cancelled` and `cause`, so that it makes
    /// no further call; stopping one that has ended (or never started) does nothing.
    async fn stop(&self, flow: Flow, operation: &str, cause: &str) -> Result<(), WorkflowError>;

    /// Ends a `.waitForTaskToken` wait with `output`: the flow goes on (an approval granted).
    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), WorkflowError>;

    /// Ends a `.waitForTaskToken` wait with an error the flow catches (a rejection, an
    /// expired approval).
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_definitions_load() {
        for flow in Flow::ALL {
            assert!(flow.local_definition().is_ok(), "{flow:?}");
        }
    }
}
