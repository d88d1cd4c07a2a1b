//! Backups: an environment's recovery points as housekeeping last found them, its tier's
//! backup policy and the window a restore can reach.

use axum::Json;
use axum::extract::{Path, State};
use envplane_domain::audit::AuditEntry;
use envplane_domain::backup::RecordedPoint;
use envplane_domain::{Action, AuditEvent, Blueprint, Caller};

use crate::AppState;
use crate::problem::{ApiError, Problem};
use crate::routes::{authorize, live, path_name, record_span};
use crate::views::BackupList;

/// The recovery points of environment `name`, its policy and the restorable window.
#[utoipa::path(get, path = "/v1/environments/{name}/backups", tag = "backups",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "Its recovery points", body = BackupList),
        (status = 400, description = "Not an environment name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_backups(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<BackupList>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    let items = env.recovery_points.clone();
    // With the WAL archived continuously, a restore reaches past the newest point: up to the
    // newest archived segment.
    let archived = match &state.databases {
        Some(databases) if !items.is_empty() => {
            databases.archived_until(&name).await.ok().flatten()
        }
        _ => None,
    };
    let newest = items.last().map(|p| p.taken_at);
    Ok(Json(BackupList {
        earliest: items.first().map(|p| p.taken_at),
        latest: newest.max(archived.filter(|_| newest.is_some())),
        items,
        policy: Blueprint::for_tier(env.tier).backups,
    }))
}

/// Takes a backup of environment `name` now: a snapshot of its data volume (tagged with the
/// environment, the stack and `Backup=true`) and, locally, the database's base backup under
/// the snapshot's id; audited with the caller. Answers the new recovery point.
#[utoipa::path(post, path = "/v1/environments/{name}/backups", tag = "backups",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 201, description = "The new recovery point", body = envplane_domain::backup::RecordedPoint),
        (status = 400, description = "Not an environment name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to back up yet (no data volume)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This plane takes no backups on request", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_backup(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<(axum::http::StatusCode, Json<RecordedPoint>), ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    authorize(&caller, Action::Mutate(env.tier))?;
    let Some(backups) = &state.on_demand else {
        return Err(ApiError::Unavailable(
            "this plane takes no backups on request".into(),
        ));
    };
    let point = backups
        .back_up(&name)
        .await
        .map_err(|detail| ApiError::Conflict {
            detail,
            operation: None,
        })?;
    // Audited with the caller; a concurrent change of the record is read again.
    for _ in 0..8 {
        let env = live(state.store.environment(&name).await?, &name)?;
        let event = AuditEvent::link(
            &name,
            &env.audit_head,
            state.clock.now(),
            AuditEntry {
                principal: caller.principal.clone(),
                role: caller.role,
                action: "environment.backup".into(),
                operation: None,
                change: serde_json::json!({ "backup_id": point.id, "name": point.name }),
            },
        );
        let mut next = env.clone();
        next.version += 1;
        next.updated_at = state.clock.now();
        next.audit_head = event.head();
        let change = envplane_store::Change {
            audit: Some(event),
            ..envplane_store::Change::of(&env, next)
        };
        match state.store.commit(change).await {
            Err(envplane_store::CommitError::VersionConflict) => continue,
            other => {
                other?;
                return Ok((axum::http::StatusCode::CREATED, Json(point)));
            }
        }
    }
    Err(ApiError::Unavailable(
        "the backup was taken but its audit event lost every race; try again".into(),
    ))
}
