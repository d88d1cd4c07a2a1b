//! Restores and DR drills: a database restored from a recovery point or to a point in time,
//! in place (after its approvers) or into a new environment; a drill restoring the newest
//! recovery point into an isolated environment, its evidence (RTO, RPO, targets, what was
//! left) on the drill and in the drilled environment's audit chain.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use envplane_domain::restore::{self, RestoreInto, RestorePoint};
use envplane_domain::restore_plan;
use envplane_domain::{Action, Caller, Environment, Phase, commands};
use envplane_store::{CommitError, Expected};
use serde_json::Value;

use crate::AppState;
use crate::body::JsonBody;
use crate::conditional::Contention;
use crate::idempotency::{Idempotency, replay_or_none};
use crate::mutation::{self, new_request};
use crate::problem::{ApiError, Problem};
use crate::routes::environments::allocate;
use crate::routes::operations::operation_id;
use crate::routes::{Params, authorize, command_error, live, path_name, record_span};
use crate::views::{DrillHistory, DrillRecord, DrillView};

/// Restores environment `name`'s database: `{"backup_id": "snap-…"}` or `{"point_in_time":
/// RFC 3339}`, with `"target": "in_place"` (waits for approvers: one, two on production) or
/// `{"new_environment": NAME}` (made with `name`'s tier and spec in a free VPC block).
#[utoipa::path(post, path = "/v1/environments/{name}/restores", tag = "backups",
    params(
        ("name" = String, Path, description = "The environment whose backups are restored"),
        ("dry_run" = Option<bool>, Query, description = "Plan only: answer 200 with the steps, the RTO to expect, approvers and cost, writing nothing"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body(content = Object, description = "backup_id or point_in_time, and target"),
    responses(
        (status = 200, description = "With dry_run: the plan", body = envplane_domain::restore_plan::RestorePlan),
        (status = 202, description = "Recorded; the restore flow runs it", body = crate::views::MutationResponse),
        (status = 400, description = "Malformed JSON, name or header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the environment, or the new environment's name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields: no such recovery point, a time outside the restorable window, a bad target", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_restore(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let dry_run = Params::parse(query, &["dry_run"])?.flag("dry_run")?;
    let path = format!("/v1/environments/{name}/restores");
    let source = live(state.store.environment(&name).await?, &name)?;
    if dry_run {
        crate::idempotency::check_syntax(&headers)?;
        authorize(&caller, Action::Read)?;
        let (point, into) = restore::parse(&body, &source, state.clock.now())?;
        return Ok(Json(restore_plan::plan(&source, point, into)).into_response());
    }
    let idempotency = Idempotency::from_headers(&headers, &caller, "POST", &path, &body)?;
    authorize(&caller, Action::Mutate(source.tier))?;
    let (point, into) = restore::parse(&body, &source, state.clock.now())?;
    match into {
        RestoreInto::InPlace => {
            mutation::of_existing(&state, &caller, &name, idempotency.as_ref(), None, |env| {
                let (point, into) = restore::parse(&body, env, state.clock.now())?;
                let mutation =
                    commands::restore(env, point, into, None, None, &new_request(&state, &caller))
                        .map_err(command_error)?;
                let location = format!("/v1/operations/{}", mutation.operation.id);
                Ok((mutation, location))
            })
            .await
        }
        into => {
            into_new(
                &state,
                &caller,
                &source,
                point,
                |_| into.clone(),
                idempotency.as_ref(),
            )
            .await
        }
    }
}

/// Starts a DR drill of environment `name`: its newest recovery point (the newest base
/// backup, the whole WAL archive replayed) restored into an isolated drill environment (its
/// own VPC block, no traffic), checked, measured and torn down whatever happens.
#[utoipa::path(post, path = "/v1/environments/{name}/dr-drills", tag = "backups",
    params(
        ("name" = String, Path, description = "The environment drilled"),
        ("dry_run" = Option<bool>, Query, description = "Plan only: answer 200 with the steps, the RTO to expect against the target, and what the drill costs, writing nothing"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    responses(
        (status = 200, description = "With dry_run: the plan", body = envplane_domain::restore_plan::RestorePlan),
        (status = 202, description = "Recorded; the restore flow runs the drill (GET /v1/dr-drills/{id})", body = crate::views::MutationResponse),
        (status = 400, description = "Malformed name or header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No free VPC block for the drill", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The environment has no recovery point yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The drill's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_drill(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let dry_run = Params::parse(query, &["dry_run"])?.flag("dry_run")?;
    let path = format!("/v1/environments/{name}/dr-drills");
    let source = live(state.store.environment(&name).await?, &name)?;
    if dry_run {
        crate::idempotency::check_syntax(&headers)?;
        authorize(&caller, Action::Read)?;
        let drill = restore::drill_name(&name, &ulid::Ulid::new().to_string())
            .map_err(|e| ApiError::invalid("name", e))?;
        let plan = restore_plan::plan(
            &source,
            RestorePoint::Latest,
            RestoreInto::Drill { name: drill },
        );
        return Ok(Json(plan).into_response());
    }
    let idempotency = Idempotency::from_headers(&headers, &caller, "POST", &path, &Value::Null)?;
    authorize(&caller, Action::Mutate(source.tier))?;
    if source.recovery_points.is_empty() {
        return Err(ApiError::invalid(
            "name",
            format!(
                "{name} has no recovery point yet: a drill restores the newest one (take a backup first)"
            ),
        ));
    }
    let source_name = name.clone();
    into_new(
        &state,
        &caller,
        &source,
        RestorePoint::Latest,
        move |operation| {
            restore::drill_name(&source_name, operation)
                .map(|name| RestoreInto::Drill { name })
                .unwrap_or(RestoreInto::InPlace)
        },
        idempotency.as_ref(),
    )
    .await
}

/// Records a restore into a new environment (or a drill's): a free VPC block, the name's
/// tombstone if any, one atomic commit; a lost race for the block picks another.
async fn into_new(
    state: &AppState,
    caller: &Caller,
    source: &Environment,
    point: RestorePoint,
    into: impl Fn(&str) -> RestoreInto,
    idempotency: Option<&Idempotency>,
) -> Result<Response, ApiError> {
    let mut block = allocate(state, None).await?;
    let mut tombstone: Option<Environment> = None;
    let mut contention = Contention::new();
    loop {
        if let Some(response) = replay_or_none(state, idempotency).await? {
            return Ok(response);
        }
        let request = new_request(state, caller);
        let target = into(&request.operation_id);
        let (RestoreInto::NewEnvironment { name } | RestoreInto::Drill { name }) = &target else {
            return Err(ApiError::invalid(
                "name",
                "no drill environment name can be made from it",
            ));
        };
        let name = name.clone();
        let mutation = commands::restore(
            source,
            point.clone(),
            target,
            tombstone.as_ref(),
            Some(block),
            &request,
        )
        .map_err(command_error)?;
        let expected = tombstone
            .as_ref()
            .map_or(Expected::Absent, |t| Expected::Version(t.version));
        let location = if mutation.operation.kind == envplane_domain::OperationKind::Drill {
            format!("/v1/dr-drills/{}", mutation.operation.id)
        } else {
            format!("/v1/operations/{}", mutation.operation.id)
        };
        record_span(name.as_str(), Some(&mutation.operation.id));
        match mutation::commit(
            state,
            mutation,
            expected,
            Some(block),
            idempotency,
            location,
        )
        .await
        {
            Ok(response) => return Ok(response),
            Err(CommitError::CidrTaken(taken)) => {
                block = allocate(state, Some((taken, true))).await?
            }
            Err(CommitError::IdempotencyKeyUsed | CommitError::Contended) => {}
            Err(CommitError::AlreadyExists | CommitError::VersionConflict) => {
                match state.store.environment(&name).await? {
                    Some(existing) if existing.status.phase == Phase::Deleted => {
                        tombstone = Some(existing);
                        continue;
                    }
                    Some(_) => {
                        return Err(ApiError::Conflict {
                            detail: format!(
                                "an environment named {name} already exists: restore into another name"
                            ),
                            operation: None,
                        });
                    }
                    None => {}
                }
            }
            Err(other) => return Err(other.into()),
        }
        contention.again().await?;
    }
}

/// A DR drill: its steps so far and, once it ended, its evidence.
#[utoipa::path(get, path = "/v1/dr-drills/{id}", tag = "backups",
    params(("id" = String, Path, description = "The drill's operation id")),
    responses(
        (status = 200, description = "The drill", body = DrillView),
        (status = 400, description = "Not an operation id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such drill", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_drill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DrillView>, ApiError> {
    authorize(&caller, Action::Read)?;
    operation_id(&id)?;
    let op = state
        .store
        .operation(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no drill {id}")))?;
    DrillView::of(op)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("operation {id} is not a drill")))
}

/// Environment `name`'s drills, oldest first, as its audit chain holds their evidence.
#[utoipa::path(get, path = "/v1/environments/{name}/dr-drills", tag = "backups",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "Its drills: achieved RTO and RPO against the targets", body = DrillHistory),
        (status = 400, description = "Not an environment name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_drills(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<DrillHistory>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    live(state.store.environment(&name).await?, &name)?;
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page = state.store.audit_events(&name, after, 100).await?;
        for event in &page.items {
            after = after.max(event.seq);
            if event.action != restore::DRILL_EVIDENCE {
                continue;
            }
            let (Some(id), Ok(evidence)) = (
                event.operation.clone(),
                serde_json::from_value(event.change["evidence"].clone()),
            ) else {
                continue;
            };
            items.push(DrillRecord {
                id,
                seq: event.seq,
                recorded_at: event.at,
                evidence,
            });
        }
        if page.next.is_none() || page.items.is_empty() {
            break;
        }
    }
    Ok(Json(DrillHistory { items }))
}
