//! Backups: an environment's recovery points as housekeeping last found them, its tier's
//! backup policy and the window a restore can reach.

use axum::Json;
use axum::extract::{Path, State};
use envplane_domain::{Action, Blueprint, Caller};

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
    Ok(Json(BackupList {
        earliest: items.first().map(|p| p.taken_at),
        latest: items.last().map(|p| p.taken_at),
        items,
        policy: Blueprint::for_tier(env.tier).backups,
    }))
}
