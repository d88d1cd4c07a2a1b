//! Deployments: a service's new version rolled out by the deploy flow (canary, blue/green or
//! rolling), what its analyses found, and a person's promote or abort at a gate or a hold.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use envplane_domain::operation::{OperationKind, OperationStatus};
use envplane_domain::{Action, Caller, Operation, Tier, commands, deployment};

use crate::AppState;
use crate::body::JsonBody;
use crate::idempotency::Idempotency;
use crate::mutation::{self, new_request};
use crate::problem::{ApiError, Problem};
use crate::routes::operations::{operation_id, operation_with_environment};
use crate::routes::{Params, authorize, command_error, live, path_name, record_span};
use crate::views::DeploymentView;

/// Deploys a service's new version: `{"service", "version", "image"?, "env"?, "strategy"?,
/// "canary"?}`, with the tier's defaults for what it leaves out (dev rolls out at once;
/// production goes 5 → 25 → 100 % with a gate before 100). Runs as an operation, after the
/// tier's approvals; `GET /v1/deployments/{id}` follows it.
#[utoipa::path(post, path = "/v1/environments/{name}/deployments", tag = "deployments",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("dry_run" = Option<bool>, Query, description = "Plan only: answer 200 with the deployment's transitions, approvers, minimum duration and extra capacity, writing nothing"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body(content = Object, description = "The deployment: service, version and optional image, env, strategy and canary policy"),
    responses(
        (status = 200, description = "With dry_run: the plan", body = envplane_domain::release_plan::DeploymentPlan),
        (status = 202, description = "Recorded; the deploy flow runs it", body = crate::views::MutationResponse),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    if Params::parse(query, &["dry_run"])?.flag("dry_run")? {
        crate::idempotency::check_syntax(&headers)?;
        let env = live(state.store.environment(&name).await?, &name)?;
        authorize(&caller, Action::Read)?;
        let mut planned = deployment::parse(&body, &env)?;
        planned.previous = env.releases.get(&planned.service).cloned();
        let approvals = envplane_domain::approval::required_for(&env, OperationKind::Deploy);
        let plan = envplane_domain::release_plan::plan(&env, &planned, approvals);
        return Ok(Json(plan).into_response());
    }
    let idempotency = Idempotency::from_headers(
        &headers,
        &caller,
        "POST",
        &format!("/v1/environments/{name}/deployments"),
        &body,
    )?;
    mutation::of_existing(&state, &caller, &name, idempotency.as_ref(), None, |env| {
        let deployment = deployment::parse(&body, env)?;
        let mutation = commands::deploy(env, deployment, &new_request(&state, &caller))
            .map_err(command_error)?;
        let location = format!("/v1/deployments/{}", mutation.operation.id);
        Ok((mutation, location))
    })
    .await
}

/// The deploy operation `id`, or 404.
async fn deploy_operation(
    state: &AppState,
    id: &str,
) -> Result<(Operation, envplane_domain::Environment), ApiError> {
    operation_id(id)?;
    let (op, env) = operation_with_environment(state, id).await?;
    if !op.deploys() || op.deployment.is_none() {
        return Err(ApiError::NotFound(format!(
            "operation {id} is not a deployment"
        )));
    }
    Ok((op, env))
}

async fn view(state: &AppState, op: Operation) -> DeploymentView {
    let url = match (&state.traffic, &op.deployment) {
        (Some(traffic), Some(d)) => traffic.url(&op.environment, d.service).await,
        _ => None,
    };
    DeploymentView::of(op, url)
}

/// A deployment: its current weight, every analysis with its figures, thresholds and
/// verdict, the decision taken, and the service's local load balancer when there is one.
#[utoipa::path(get, path = "/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "The deployment's operation id")),
    responses(
        (status = 200, description = "The deployment", body = DeploymentView),
        (status = 400, description = "Not an operation id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deployment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    authorize(&caller, Action::Read)?;
    let (op, _) = deploy_operation(&state, &id).await?;
    Ok(Json(view(&state, op).await))
}

/// Who may end a deployment's wait: anyone who may change the environment; on production,
/// not the one who asked for the deployment (a gate is an approval).
fn may_decide(caller: &Caller, op: &Operation, tier: Tier) -> Result<(), ApiError> {
    authorize(caller, Action::Mutate(tier))?;
    if tier == Tier::Prod && caller.principal == op.requested_by {
        return Err(ApiError::Forbidden {
            detail: format!(
                "{} asked for deployment {}: someone else must promote or abort it on production",
                caller.principal, op.id
            ),
        });
    }
    Ok(())
}

/// The token of a deployment waiting for a person, or 409.
fn waiting_token(op: &Operation) -> Result<String, ApiError> {
    let token = op
        .deployment
        .as_ref()
        .and_then(|d| d.wait_token.clone())
        .filter(|_| op.status == OperationStatus::AwaitingApproval);
    token.ok_or_else(|| ApiError::Conflict {
        detail: format!(
            "deployment {} is {}, not waiting at a gate or a hold",
            op.id,
            op.status.as_str()
        ),
        operation: None,
    })
}

/// Promotes a deployment waiting at a gate or held for insufficient data: traffic moves to
/// the next step and the analysis goes on.
#[utoipa::path(post, path = "/v1/deployments/{id}/promote", tag = "deployments",
    params(("id" = String, Path, description = "The deployment's operation id")),
    responses(
        (status = 200, description = "Promoted; the deployment goes on", body = DeploymentView),
        (status = 403, description = "Role too low, or the requester on production", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deployment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for a person", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flow could not be resumed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn promote_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    let (op, env) = deploy_operation(&state, &id).await?;
    may_decide(&caller, &op, env.tier)?;
    let token = waiting_token(&op)?;
    resume(&state, &op, Ok(&token), &caller).await?;
    Ok(Json(view(&state, op).await))
}

/// Aborts a deployment waiting at a gate or a hold: all traffic goes back to the stable
/// version in one change and the operation fails (cancel a running one instead).
#[utoipa::path(post, path = "/v1/deployments/{id}/abort", tag = "deployments",
    params(("id" = String, Path, description = "The deployment's operation id")),
    responses(
        (status = 200, description = "Aborted; the rollback runs", body = DeploymentView),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deployment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for a person", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flow could not be resumed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn abort_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    let (op, env) = deploy_operation(&state, &id).await?;
    authorize(&caller, Action::Mutate(env.tier))?;
    let token = waiting_token(&op)?;
    resume(&state, &op, Err(&token), &caller).await?;
    Ok(Json(view(&state, op).await))
}

/// Rolls back a succeeded deployment within its rollback window: the version it replaced,
/// kept warm, takes all traffic back in one weight change and the deployed one stops. Runs as
/// an operation (`rollback`) through the deploy flow, without approvals: it restores a
/// version that was approved and ran, and an incident must not wait for two people.
#[utoipa::path(post, path = "/v1/deployments/{id}/rollback", tag = "deployments",
    params(
        ("id" = String, Path, description = "The deployment's operation id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    responses(
        (status = 202, description = "Recorded; the rollback runs (`GET /v1/deployments/{id}` of the new operation follows it)", body = crate::views::MutationResponse),
        (status = 400, description = "Not an operation id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deployment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not succeeded, replaced by a later deployment, its window closed, or another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn rollback_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (op, env) = deploy_operation(&state, &id).await?;
    record_span(op.environment.as_str(), None);
    // The role first: a caller who may not roll back learns nothing more from the refusal.
    authorize(&caller, Action::Mutate(env.tier))?;
    let done = match (&op.deployment, op.status) {
        (Some(d), OperationStatus::Succeeded) => d.clone(),
        _ => {
            return Err(ApiError::Conflict {
                detail: format!(
                    "deployment {id} is {}: only a succeeded deployment is rolled back (abort one that waits)",
                    op.status.as_str()
                ),
                operation: None,
            });
        }
    };
    let path = format!("/v1/deployments/{id}/rollback");
    let idempotency =
        Idempotency::from_headers(&headers, &caller, "POST", &path, &serde_json::Value::Null)?;
    mutation::of_existing(
        &state,
        &caller,
        &op.environment,
        idempotency.as_ref(),
        None,
        |env| {
            let request = new_request(&state, &caller);
            let undo = deployment::rollback_of(env, &done, &id, request.at).map_err(|e| {
                ApiError::Conflict {
                    detail: e.to_string(),
                    operation: None,
                }
            })?;
            let mutation = commands::deploy(env, undo, &request).map_err(command_error)?;
            let location = format!("/v1/deployments/{}", mutation.operation.id);
            Ok((mutation, location))
        },
    )
    .await
}

/// Ends the wait: promote (`Ok`) or abort (`Err`).
async fn resume(
    state: &AppState,
    op: &Operation,
    token: Result<&str, &str>,
    caller: &Caller,
) -> Result<(), ApiError> {
    let workflows = state
        .workflows
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("this plane runs no flows".into()))?;
    let sent = match token {
        Ok(token) => {
            workflows
                .send_task_success(
                    token,
                    serde_json::json!({ "promoted_by": caller.principal }),
                )
                .await
        }
        Err(token) => {
            workflows
                .send_task_failure(
                    token,
                    "Envplane.Aborted",
                    &format!("aborted by {}", caller.principal),
                )
                .await
        }
    };
    sent.map_err(|e| match e {
        envplane_workflow::WorkflowError::UnknownToken(_) => ApiError::Conflict {
            detail: format!("deployment {} no longer waits", op.id),
            operation: None,
        },
        other => ApiError::Unavailable(format!("the deploy flow could not be resumed: {other}")),
    })
}
