//! Operations: the long-running changes and their steps.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use envplane_domain::operation::OperationStatus;
use envplane_domain::{Action, Caller, Operation, commands, lifecycle};
use envplane_store::{Change, CommitError, Expected};

use crate::AppState;
use crate::conditional::Contention;
use crate::mutation::{self, new_request};
use crate::problem::{ApiError, Problem};
use crate::routes::{authorize, command_error, record_span};
use crate::views::CancelResponse;

/// The operation id in a path.
pub(crate) fn operation_id(id: &str) -> Result<(), ApiError> {
    ulid::Ulid::from_string(id)
        .map(drop)
        .map_err(|_| ApiError::bad_request("id", format!("{id:?} is not an operation id (a ULID)")))
}

/// An operation and the environment it acts on, read as they are now (404 for either missing).
pub(crate) async fn operation_with_environment(
    state: &AppState,
    id: &str,
) -> Result<(Operation, envplane_domain::Environment), ApiError> {
    let op = state
        .store
        .operation(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))?;
    record_span(op.environment.as_str(), Some(&op.id));
    let env = state
        .store
        .environment(&op.environment)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no environment {}", op.environment)))?;
    Ok((op, env))
}

/// An operation and its steps.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 404, description = "No such operation", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    authorize(&caller, Action::Read)?;
    operation_id(&id)?;
    let mut op = state
        .store
        .operation(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))?;
    record_span(op.environment.as_str(), Some(&op.id));
    if let Some(workflows) = &state.workflows
        && let Some(flow) = envplane_workflow::Flow::for_operation(op.kind)
        && let Ok(Some(steps)) = workflows.steps(flow, &op.id).await
    {
        op.steps = steps;
    }
    Ok(Json(op.redacted()))
}

/// Cancels a running operation. Its execution is stopped first, so that it makes no further
/// call; then it ends `cancelled`, the environment is released and the cancel is audited with
/// the caller. A cancelled provisioning is rolled back at once by a delete operation (unless
/// it asked to keep what it made), answered as `rollback`.
#[utoipa::path(post, path = "/v1/operations/{id}/cancel", tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, description = "Cancelled (or already cancelled); nothing to roll back", body = CancelResponse),
        (status = 202, description = "Cancelled; the rollback of what it made is running", body = CancelResponse),
        (status = 400, description = "Not an operation id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low for the environment's tier", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such operation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The operation has ended", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Its execution could not be stopped; nothing was changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn cancel_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&caller, Action::Read)?;
    operation_id(&id)?;
    let mut contention = Contention::new();
    loop {
        let (op, env) = operation_with_environment(&state, &id).await?;
        authorize(&caller, Action::Mutate(env.tier))?;
        if op.status == OperationStatus::Cancelled {
            let done = CancelResponse {
                operation: op.redacted(),
                rollback: None,
            };
            return Ok((StatusCode::OK, Json(done)).into_response());
        }
        let status = serde_json::to_value(op.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !op.status.is_active() {
            return Err(ApiError::Conflict {
                detail: format!("operation {id} has ended ({status}); there is nothing to cancel"),
                operation: None,
            });
        }
        if env.active_operation.as_deref() != Some(id.as_str()) {
            return Err(ApiError::Conflict {
                detail: format!(
                    "operation {id} no longer holds {} ({status}); there is nothing to cancel",
                    env.name
                ),
                operation: env.active_operation.clone(),
            });
        }
        let cause = format!("cancelled by {}", caller.principal);
        if let Some(workflows) = &state.workflows
            && let Some(flow) = envplane_workflow::Flow::for_operation(op.kind)
        {
            workflows.stop(flow, &id, &cause).await.map_err(|e| {
                ApiError::Unavailable(format!(
                    "the execution of operation {id} could not be stopped ({e}); nothing was changed"
                ))
            })?;
        }
        let t = lifecycle::cancel(&env, &op, &caller, state.clock.now());
        let (released, cancelled) = (t.environment.clone(), t.operation.clone());
        match state.store.commit(Change::transition(&env, t)).await {
            Ok(()) => {}
            Err(CommitError::VersionConflict | CommitError::Contended) => {
                contention.again().await?;
                continue;
            }
            Err(other) => return Err(other.into()),
        }
        if !op.rolls_back() {
            let done = CancelResponse {
                operation: cancelled.redacted(),
                rollback: None,
            };
            return Ok((StatusCode::OK, Json(done)).into_response());
        }
        // What the cancelled provisioning made goes, as a failed one's does.
        let m =
            commands::delete(&released, &new_request(&state, &caller)).map_err(command_error)?;
        let rollback = m.operation.clone();
        let location = format!("/v1/operations/{}", rollback.id);
        let started = mutation::commit(
            &state,
            m,
            Expected::Version(released.version),
            None,
            None,
            location,
        )
        .await?;
        if started.status() != StatusCode::ACCEPTED {
            // Cancelled, but the rollback could not start (and was failed): say so.
            return Ok(started);
        }
        let done = CancelResponse {
            operation: cancelled.redacted(),
            rollback: Some(rollback),
        };
        return Ok((StatusCode::ACCEPTED, Json(done)).into_response());
    }
}

/// A query parameter naming one value of an enum the API serializes in snake case.
fn enum_param<T: serde::de::DeserializeOwned>(
    params: &crate::routes::Params,
    name: &str,
    known: &str,
) -> Result<Option<T>, ApiError> {
    params
        .get(name)
        .map(|raw| {
            serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
                ApiError::bad_request(name, format!("unknown {name} {raw:?}; one of: {known}"))
            })
        })
        .transpose()
}

/// Every environment's operations (destroyed ones' too), newest first, filtered by environment,
/// status and kind, a page at a time.
#[utoipa::path(get, path = "/v1/operations", tag = "operations",
    params(
        ("environment" = Option<String>, Query, description = "Only this environment's"),
        ("status" = Option<String>, Query, description = "Only this status: pending, running, awaiting_approval, succeeded, failed, cancelled"),
        ("kind" = Option<String>, Query, description = "Only this kind: create, update, delete, reconcile, deploy, rollback, promote, restore, drill"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of operations", body = crate::views::OperationPage),
        (status = 400, description = "Bad environment name, filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_all_operations(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<crate::views::OperationPage>, ApiError> {
    authorize(&caller, Action::Read)?;
    let params =
        crate::routes::Params::parse(query, &["environment", "status", "kind", "limit", "cursor"])?;
    let query = operation_query(&params)?;
    let page = match params.get("environment") {
        Some(raw) => {
            let name = envplane_domain::EnvName::parse_field(raw, "environment")
                .map_err(|e| ApiError::bad_request(e.field, e.detail))?;
            state.store.operations_of_environment(&name, &query).await?
        }
        None => state.store.operations(&query).await?,
    };
    Ok(Json(crate::views::OperationPage {
        items: page.items.into_iter().map(Operation::redacted).collect(),
        next_cursor: page.next,
    }))
}

/// The status, kind, limit and cursor parameters of an operations listing.
fn operation_query(
    params: &crate::routes::Params,
) -> Result<envplane_store::OperationQuery, ApiError> {
    Ok(envplane_store::OperationQuery {
        status: enum_param(
            params,
            "status",
            "pending, running, awaiting_approval, succeeded, failed, cancelled",
        )?,
        kind: enum_param(
            params,
            "kind",
            "create, update, delete, reconcile, deploy, rollback, promote, restore, drill",
        )?,
        limit: params.page_size()?,
        cursor: params.get("cursor").map(str::to_owned),
    })
}

/// The operations of environment `name`, newest first, filtered by status and kind, a page at
/// a time.
#[utoipa::path(get, path = "/v1/environments/{name}/operations", tag = "operations",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("status" = Option<String>, Query, description = "Only this status: pending, running, awaiting_approval, succeeded, failed, cancelled"),
        ("kind" = Option<String>, Query, description = "Only this kind: create, update, delete, reconcile, deploy, rollback, promote, restore, drill"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of its operations", body = crate::views::OperationPage),
        (status = 400, description = "Bad name, filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<crate::views::OperationPage>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = crate::routes::path_name(&raw)?;
    record_span(name.as_str(), None);
    let params = crate::routes::Params::parse(query, &["status", "kind", "limit", "cursor"])?;
    let query = operation_query(&params)?;
    // A destroyed environment's operations stay readable: its tombstone answers.
    if state.store.environment(&name).await?.is_none() {
        return Err(ApiError::NotFound(format!("no environment named {name}")));
    }
    let page = state.store.operations_of_environment(&name, &query).await?;
    Ok(Json(crate::views::OperationPage {
        items: page.items.into_iter().map(Operation::redacted).collect(),
        next_cursor: page.next,
    }))
}
