//! For tests that run flows of operations needing approvals without the HTTP layer: a task
//! runner that, once the flow waits for approval, records approvers' decisions as the API does
//! and ends the wait.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_workflow::{Executor, Failure, TaskContext, TaskRunner};
use serde_json::{Value, json};

/// Runs tasks with `inner`; after a `.waitForTaskToken` task it approves the operation with two
/// approvers (an approval wait) or promotes it (a deployment's gate or hold), completing the
/// token on the executor.
pub struct Approving {
    inner: Arc<dyn TaskRunner>,
    store: Arc<dyn StateStore>,
    executor: OnceLock<Executor>,
}

impl Approving {
    /// Wraps `inner`; call [`Approving::attach`] with the executor that runs it.
    pub fn new(inner: Arc<dyn TaskRunner>, store: Arc<dyn StateStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            store,
            executor: OnceLock::new(),
        })
    }

    /// The executor whose waits this runner ends.
    pub fn attach(&self, executor: Executor) {
        let _ = self.executor.set(executor);
    }
}

#[async_trait]
impl TaskRunner for Approving {
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure> {
        let task = payload.get("Payload").cloned().unwrap_or(Value::Null);
        let out = self.inner.run(resource, payload, context).await?;
        let (Some(token), Some(executor)) = (&context.token, self.executor.get()) else {
            return Ok(out);
        };
        let (Some(env), Some(op)) = (
            task["environment"]
                .as_str()
                .and_then(|e| EnvName::parse(e).ok()),
            task["operation"].as_str(),
        ) else {
            return Ok(out);
        };
        // A deployment waiting at a gate or a hold is promoted; an approval is approved.
        if task["action"] == "deploy.wait" {
            executor
                .send_task_success(token, json!({ "promoted_by": "approver-1" }))
                .map_err(|_| Failure::new("States.Runtime", "no wait on the gate's token"))?;
            return Ok(out);
        }
        let stored =
            mutations::approve(self.store.as_ref(), &env, op, &["approver-1", "approver-2"]).await;
        let token = stored.unwrap_or_else(|| token.clone());
        executor
            .send_task_success(
                &token,
                json!({ "approved_by": ["approver-1", "approver-2"] }),
            )
            .map_err(|_| Failure::new("States.Runtime", "no wait on the approval's token"))?;
        Ok(out)
    }
}
