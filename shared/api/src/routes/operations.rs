//! Operations: the long-running changes and their steps.

use axum::Json;
use axum::extract::{Path, State};
use envplane_domain::{Action, Caller, Operation};

use crate::AppState;
use crate::problem::{ApiError, Problem};
use crate::routes::{authorize, record_span};

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
    if ulid::Ulid::from_string(&id).is_err() {
        return Err(ApiError::bad_request(
            "id",
            format!("{id:?} is not an operation id (a ULID)"),
        ));
    }
    let mut op = state
        .store
        .operation(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))?;
    record_span(op.environment.as_str(), Some(&op.id));
    if let Some(workflows) = &state.workflows
        && let Ok(Some(steps)) = workflows.steps(&op.id).await
    {
        op.steps = steps;
    }
    Ok(Json(op))
}
