//! What the executor's black-box tests share.

use envplane_workflow::{Failure, TaskContext, TaskRunner};
use serde_json::Value;

/// Runs no task: any Task state fails with `Envplane.Invalid`.
pub struct NoTasks;

#[async_trait::async_trait]
impl TaskRunner for NoTasks {
    async fn run(&self, resource: &str, _: Value, _: &TaskContext) -> Result<Value, Failure> {
        Err(Failure::new(
            "Envplane.Invalid",
            format!("no task {resource}"),
        ))
    }
}
