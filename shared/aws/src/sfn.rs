//! The workflow port on AWS Step Functions.

use std::collections::BTreeMap;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::operation::OperationStep;
use envplane_workflow::{Flow, WorkflowError, Workflows, execution_input};

use crate::OnFirstUse;

mod history;

/// A token Step Functions no longer knows is not a service failure.
fn token_error<E, R>(token: &str, error: aws_sdk_sfn::error::SdkError<E, R>) -> WorkflowError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match crate::errors::code(&error) {
        Some("TaskDoesNotExist" | "InvalidToken" | "TaskTimedOut") => {
            WorkflowError::UnknownToken(token.to_owned())
        }
        _ => unavailable(error),
    }
}

/// Starts envplane's flows on Step Functions; the execution name is the operation id, so a
/// retried start cannot run an operation twice.
pub struct StepFunctions {
    client: OnFirstUse<aws_sdk_sfn::Client>,
    state_machines: BTreeMap<Flow, String>,
}

/// The state machine of every flow, from the variables the template sets
/// (`PROVISION_STATE_MACHINE_ARN`, `UPDATE_STATE_MACHINE_ARN`, `DESTROY_STATE_MACHINE_ARN`,
/// `DEPLOY_STATE_MACHINE_ARN`, `RESTORE_STATE_MACHINE_ARN`).
pub fn state_machines_from_env() -> Result<BTreeMap<Flow, String>, String> {
    let mut machines = BTreeMap::new();
    for (flow, variable) in [
        (Flow::Provision, "PROVISION_STATE_MACHINE_ARN"),
        (Flow::Destroy, "DESTROY_STATE_MACHINE_ARN"),
        (Flow::Update, "UPDATE_STATE_MACHINE_ARN"),
        (Flow::Deploy, "DEPLOY_STATE_MACHINE_ARN"),
        (Flow::Restore, "RESTORE_STATE_MACHINE_ARN"),
    ] {
        let arn = std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{variable} is not set"))?;
        machines.insert(flow, arn);
    }
    Ok(machines)
}

impl StepFunctions {
    /// The adapter over a client and the ARNs of the deployed state machines.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_sfn::Client>>,
        state_machines: BTreeMap<Flow, String>,
    ) -> Self {
        Self {
            client: client.into(),
            state_machines,
        }
    }

    /// The ARN of an operation's execution.
    fn execution_arn(&self, flow: Flow, operation: &str) -> Option<String> {
        let machine = self.state_machines.get(&flow)?;
        Some(format!(
            "{}:{operation}",
            machine.replacen(":stateMachine:", ":execution:", 1)
        ))
    }

    /// An execution's status (`RUNNING`, `SUCCEEDED`, `FAILED`, …).
    pub async fn status(
        &self,
        flow: Flow,
        operation: &str,
    ) -> Result<Option<String>, WorkflowError> {
        let arn = self
            .execution_arn(flow, operation)
            .ok_or_else(|| WorkflowError::Invalid(format!("no state machine for {flow:?}")))?;
        match self
            .client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o.status().as_str().to_owned())),
            Err(e) if crate::errors::code(&e) == Some("ExecutionDoesNotExist") => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(error: E) -> WorkflowError {
    WorkflowError::Unavailable(
        aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
    )
}

#[async_trait]
impl Workflows for StepFunctions {
    async fn start(
        &self,
        flow: Flow,
        environment: &EnvName,
        operation: &str,
    ) -> Result<(), WorkflowError> {
        let machine = self
            .state_machines
            .get(&flow)
            .ok_or_else(|| WorkflowError::Invalid(format!("no state machine for {flow:?}")))?;
        let input = execution_input(environment, operation);
        match self
            .client
            .start_execution()
            .state_machine_arn(machine)
            .name(operation)
            .input(input.to_string())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Started before, with the same input: that is the idempotent case.
            Err(e) if crate::errors::code(&e) == Some("ExecutionAlreadyExists") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn send_task_success(
        &self,
        token: &str,
        output: serde_json::Value,
    ) -> Result<(), WorkflowError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| token_error(token, e))
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| token_error(token, e))
    }

    async fn steps(
        &self,
        flow: Flow,
        operation: &str,
    ) -> Result<Option<Vec<OperationStep>>, WorkflowError> {
        let arn = self
            .execution_arn(flow, operation)
            .ok_or_else(|| WorkflowError::Invalid(format!("no state machine for {flow:?}")))?;
        let mut events = Vec::new();
        let mut pages = self
            .client
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => events.extend(page.events),
                Err(e) if crate::errors::code(&e) == Some("ExecutionDoesNotExist") => {
                    return Ok(None);
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(Some(history::steps(&events)))
    }

    async fn stop(&self, flow: Flow, operation: &str, cause: &str) -> Result<(), WorkflowError> {
        let arn = self
            .execution_arn(flow, operation)
            .ok_or_else(|| WorkflowError::Invalid(format!("no state machine for {flow:?}")))?;
        match self
            .client
            .stop_execution()
            .execution_arn(arn)
            .error("Envplane.Cancelled")
            .cause(cause)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Never started: nothing runs.
            Err(e) if crate::errors::code(&e) == Some("ExecutionDoesNotExist") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
