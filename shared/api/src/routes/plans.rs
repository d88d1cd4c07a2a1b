//! Plans: what a change would do, priced and timed, written nowhere.

use axum::Json;
use axum::extract::{Path, State};
use envplane_domain::spec;
use envplane_domain::{Action, Caller};

use crate::AppState;
use crate::body::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::routes::{authorize, live, path_name, record_span};

/// What-if: what a merge patch would change (resources, monthly cost, time, approvals). Writes nothing.
#[utoipa::path(post, path = "/v1/environments/{name}/plan", tag = "environments",
    request_body(content = Object, description = "The merge patch to evaluate, as PATCH would take it"),
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The plan", body = envplane_domain::plan::ChangePlan),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The change is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn plan_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(patch): JsonBody,
) -> Result<Json<envplane_domain::plan::ChangePlan>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    // A plan shows replacements rather than refusing them: that is what it is for.
    let next = spec::apply_patch(&env.spec, env.tier, &patch, true)?;
    Ok(Json(envplane_domain::plan::what_if(
        &name, env.tier, &env.spec, &next,
    )))
}
