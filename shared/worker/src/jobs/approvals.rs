//! Approvals past their expiry: the waiting flow is failed with `Envplane.ApprovalExpired`, so
//! the operation ends having changed nothing. On AWS the wait's own `TimeoutSeconds` does the
//! same; locally (and should a time-out be missed) housekeeping does it from the record.

use envplane_domain::Environment;
use envplane_domain::approval::APPROVAL_EXPIRED;
use envplane_domain::operation::OperationStatus;
use envplane_workflow::WorkflowError;
use time::OffsetDateTime;

use super::{JobError, Jobs};

impl Jobs {
    /// Fails the wait of `env`'s operation when its approval expired; the operation's id when
    /// it did.
    pub(crate) async fn expire_approval(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Result<Option<String>, JobError> {
        let (Some(id), Some(workflows)) = (&env.active_operation, &self.workflows) else {
            return Ok(None);
        };
        let Some(op) = self.store.operation_of(&env.name, id).await? else {
            return Ok(None);
        };
        let Some(approval) = op.approval.as_ref() else {
            return Ok(None);
        };
        let (Some(token), true) = (
            approval.task_token.as_deref(),
            op.status == OperationStatus::AwaitingApproval && approval.expires_at <= now,
        ) else {
            return Ok(None);
        };
        let cause = format!(
            "no decision from {} approver(s) by {}; nothing was changed",
            approval.required, approval.expires_at
        );
        match workflows
            .send_task_failure(token, APPROVAL_EXPIRED, &cause)
            .await
        {
            Ok(()) => Ok(Some(op.id.clone())),
            // Its flow no longer waits: the lease sweep releases the environment later.
            Err(WorkflowError::UnknownToken(_)) => Ok(None),
            // Tried again on the next run.
            Err(e) => {
                tracing::warn!(operation = %op.id, error = %e, "an expired approval's flow could not be failed");
                Ok(None)
            }
        }
    }
}
