//! Drift: the last check's report, and reconcile.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use envplane_domain::commands;
use envplane_domain::{Action, Caller};
use serde_json::Value;

use crate::AppState;
use crate::mutation;
use crate::problem::{ApiError, Problem};
use crate::routes::{authorize, live, path_name, record_span};
use crate::views::MutationResponse;

/// The last drift check's report: what differed between the cloud and the spec, and the AWS
/// calls the check made.
#[utoipa::path(get, path = "/v1/environments/{name}/drift", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The last report; `unchecked` when none since the environment last changed", body = envplane_domain::drift::DriftReport),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_drift(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<envplane_domain::drift::DriftReport>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    Ok(Json(env.drift.unwrap_or_else(|| {
        envplane_domain::drift::DriftReport::unchecked(env.updated_at, env.tier)
    })))
}

/// Reconcile: runs the update flow to bring the cloud back to the unchanged spec.
#[utoipa::path(post, path = "/v1/environments/{name}/reconcile", tag = "environments",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("If-Match" = Option<String>, Header, description = "Only if still at this ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    responses(
        (status = 202, description = "Recorded; the update flow puts the cloud back to the spec", body = MutationResponse),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn reconcile_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    mutation::bodyless(
        &state,
        &caller,
        &raw,
        &headers,
        "POST",
        "/reconcile",
        |env, request| {
            let reason = env
                .drift
                .as_ref()
                .map_or(Value::Null, |d| Value::String(d.summary()));
            commands::reconcile(env, reason, request)
        },
    )
    .await
}

/// Checks environment `name` for drift now, as a drift cycle does (one describe per kind of
/// resource), records the report and answers it.
#[utoipa::path(post, path = "/v1/environments/{name}/drift", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The new report", body = envplane_domain::drift::DriftReport),
        (status = 400, description = "Not an environment name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The environment is being changed (or failed): its resources are in motion", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This plane checks no drift on request", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn check_drift(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<envplane_domain::drift::DriftReport>, ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    authorize(&caller, Action::Mutate(env.tier))?;
    let Some(on_demand) = &state.on_demand else {
        return Err(ApiError::Unavailable(
            "this plane checks no drift on request".into(),
        ));
    };
    on_demand
        .check_drift(&name)
        .await
        .map(Json)
        .map_err(|detail| ApiError::Conflict {
            detail,
            operation: env.active_operation.clone(),
        })
}
