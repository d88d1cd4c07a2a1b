//! Approvals: an approver's decision on an operation that waits for approvers, and the list of
//! operations waiting. The rules (four eyes, distinct approvers, no bypass, bound to the plan,
//! expiry) are `envplane_domain::approval`'s; this module records a decision and resumes or
//! fails the flow that waits on it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use envplane_domain::approval::{self, ApprovalError, Standing, Verdict};
use envplane_domain::operation::OperationStatus;
use envplane_domain::{Action, Caller, Operation};
use envplane_store::{Change, CommitError, EnvironmentQuery};
use envplane_workflow::WorkflowError;
use serde_json::json;

use crate::AppState;
use crate::body::JsonBody;
use crate::conditional::Contention;
use crate::problem::{ApiError, Problem};
use crate::routes::operations::{operation_id, operation_with_environment};
use crate::routes::{Params, authorize};
use crate::views::{ApprovalList, ApprovalStanding, DecisionRequest};

/// Longest comment kept with a decision.
const MAX_COMMENT: usize = 1000;

fn standing_of(op: &Operation) -> Standing {
    let rejected = op.approval.as_ref().is_some_and(|a| {
        a.decisions
            .iter()
            .any(|d| d.verdict == Verdict::Reject && d.plan_digest == a.plan_digest)
    });
    match op.approval.as_ref() {
        _ if rejected => Standing::Rejected,
        Some(a) if a.granted() => Standing::Approved,
        _ => Standing::Pending,
    }
}

fn view(op: Operation) -> ApprovalStanding {
    let standing = standing_of(&op);
    let (approvers, required) = op
        .approval
        .as_ref()
        .map_or((0, 0), |a| (a.approvers(), a.required));
    ApprovalStanding {
        operation: op.redacted(),
        standing,
        approvers,
        required,
    }
}

fn refused(error: ApprovalError) -> ApiError {
    match error {
        ApprovalError::Forbidden(detail) => ApiError::Forbidden { detail },
        ApprovalError::Conflict(detail) => ApiError::Conflict {
            detail,
            operation: None,
        },
    }
}

/// Records a decision on an operation waiting for approval. Approvers only, never the one who
/// asked for the operation (admins included); each approver counts once; once enough distinct
/// approvers approved the current plan, the flow goes on; a rejection fails the operation,
/// which has changed nothing. Every decision is audited with the approver and the plan digest.
/// Sending the same decision again resumes the flow again (a retry after a 503).
#[utoipa::path(post, path = "/v1/operations/{id}/approvals", tag = "approvals",
    params(("id" = String, Path, description = "Operation id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Recorded; where the approval stands", body = ApprovalStanding),
        (status = 400, description = "Not an operation id, or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an approver, or the operation's requester", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such operation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not awaiting approval, already decided, expired, or the plan changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Recorded, but the waiting flow could not be resumed: send the same decision again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ApprovalStanding>, ApiError> {
    authorize(&caller, Action::Read)?;
    operation_id(&id)?;
    let request: DecisionRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid("", format!("not a decision: {e}")))?;
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT)
    {
        return Err(ApiError::invalid(
            "comment",
            format!("at most {MAX_COMMENT} characters"),
        ));
    }
    let mut contention = Contention::new();
    let (decided, standing) = loop {
        let (op, env) = operation_with_environment(&state, &id).await?;
        // The same decision again: the flow is resumed again, nothing new is recorded.
        if let Some(repeat) = repeated(&op, &caller, request.decision) {
            break (op, repeat);
        }
        let now = state.clock.now();
        let (next, standing) = approval::decide(
            &op,
            &caller,
            request.decision,
            request.comment.clone(),
            request.plan_digest.as_deref(),
            now,
        )
        .map_err(refused)?;
        if env.active_operation.as_deref() != Some(id.as_str()) {
            return Err(ApiError::Conflict {
                detail: format!("operation {id} no longer holds {}", env.name),
                operation: env.active_operation.clone(),
            });
        }
        let t = approval::recorded(&env, next, standing, &caller, now);
        let decided = t.operation.clone();
        match state.store.commit(Change::transition(&env, t)).await {
            Ok(()) => break (decided, standing),
            Err(CommitError::VersionConflict | CommitError::Contended) => {
                contention.again().await?;
            }
            Err(other) => return Err(other.into()),
        }
    };
    resume(&state, &decided, standing, &caller).await?;
    Ok(Json(view(decided)))
}

/// The standing when `caller` already gave `verdict` on the operation's current plan.
fn repeated(op: &Operation, caller: &Caller, verdict: Verdict) -> Option<Standing> {
    let approval = op.approval.as_ref()?;
    approval
        .decisions
        .iter()
        .any(|d| {
            d.principal == caller.principal
                && d.plan_digest == approval.plan_digest
                && d.verdict == verdict
        })
        .then(|| standing_of(op))
}

/// Ends the flow's wait as the decision says: goes on once approved, fails on a rejection.
async fn resume(
    state: &AppState,
    op: &Operation,
    standing: Standing,
    caller: &Caller,
) -> Result<(), ApiError> {
    let (Some(workflows), Some(token)) = (
        &state.workflows,
        op.approval.as_ref().and_then(|a| a.task_token.as_deref()),
    ) else {
        return Ok(());
    };
    let sent = match standing {
        Standing::Pending => return Ok(()),
        Standing::Approved => {
            let approvers: Vec<String> = op
                .approval
                .iter()
                .flat_map(|a| a.decisions.iter())
                .filter(|d| d.verdict == Verdict::Approve)
                .map(|d| d.principal.clone())
                .collect();
            workflows
                .send_task_success(token, json!({ "approved_by": approvers }))
                .await
        }
        Standing::Rejected => {
            let cause = format!(
                "rejected by {}{}",
                caller.principal,
                op.approval
                    .as_ref()
                    .and_then(|a| a.decisions.last())
                    .and_then(|d| d.comment.as_deref())
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            );
            workflows
                .send_task_failure(token, approval::REJECTED, &cause)
                .await
        }
    };
    match sent {
        Ok(()) => Ok(()),
        // The flow no longer waits (it expired, or was resumed by an earlier send).
        Err(WorkflowError::UnknownToken(_)) => {
            tracing::warn!(operation = %op.id, "no flow waits on the approval's task token any more");
            Ok(())
        }
        Err(e) => Err(ApiError::Unavailable(format!(
            "the decision was recorded but the flow of operation {} could not be resumed ({e}): send the same decision again",
            op.id
        ))),
    }
}

/// Operations waiting for approvers (`status=pending`, the only status listed), with their
/// standing and plan digest; what an approver's inbox shows.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals",
    params(("status" = Option<String>, Query, description = "Only `pending`, the default")),
    responses(
        (status = 200, description = "Operations waiting for approvers", body = ApprovalList),
        (status = 400, description = "Unknown parameter or status", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_approvals(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    authorize(&caller, Action::Read)?;
    let params = Params::parse(query, &["status"])?;
    if let Some(status) = params.get("status").filter(|s| *s != "pending") {
        return Err(ApiError::bad_request(
            "status",
            format!("only pending approvals are listed, got {status:?}"),
        ));
    }
    // An operation waiting for approval holds its environment: walk the environments held by
    // an operation (a few hundred at most per stack) and read those operations.
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_environments(&EnvironmentQuery {
                limit: crate::routes::MAX_PAGE_SIZE,
                cursor,
                ..EnvironmentQuery::default()
            })
            .await?;
        for env in &page.items {
            let Some(id) = &env.active_operation else {
                continue;
            };
            if let Some(op) = state.store.operation_of(&env.name, id).await?
                && op.status == OperationStatus::AwaitingApproval
            {
                items.push(view(op));
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Json(ApprovalList { items }))
}
