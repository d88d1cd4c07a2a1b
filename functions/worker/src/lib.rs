//! The worker Lambda's handler: runs one action and reports a failure under the `Envplane.*`
//! error name the state machines' Retry and Catch match on.
#![forbid(unsafe_code)]

use envplane_worker::{Worker, WorkerError};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

/// A failed action as Lambda reports it: `errorType` is what Step Functions sees as the error.
#[derive(Debug)]
pub struct StepFailure(pub WorkerError);

impl From<StepFailure> for Diagnostic {
    fn from(failure: StepFailure) -> Self {
        Diagnostic {
            error_type: failure.0.name().to_owned(),
            error_message: failure.0.to_string(),
        }
    }
}

/// Handles one invocation.
pub async fn handle(worker: &Worker, event: LambdaEvent<Value>) -> Result<Value, StepFailure> {
    worker.handle(event.payload).await.map_err(StepFailure)
}
