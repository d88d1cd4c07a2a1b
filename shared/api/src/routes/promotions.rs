//! Promotions: the versions one environment runs, deployed to another as one operation with
//! the target's strategy and approvals, the source's evidence attached.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use envplane_domain::{Action, Caller, EnvName, commands, promotion};

use crate::AppState;
use crate::body::JsonBody;
use crate::idempotency::Idempotency;
use crate::mutation::{self, new_request};
use crate::problem::{ApiError, Problem};
use crate::routes::operations::{operation_id, operation_with_environment};
use crate::routes::{authorize, command_error, record_span};
use crate::views::PromotionView;

/// The live environment a body field names, or a 422 naming the field.
async fn named(
    state: &AppState,
    name: &EnvName,
    field: &str,
) -> Result<envplane_domain::Environment, ApiError> {
    let found = state.store.environment(name).await?;
    found
        .filter(|e| e.status.phase != envplane_domain::Phase::Deleted)
        .ok_or_else(|| ApiError::invalid(field, format!("no environment named {name}")))
}

/// Promotes what `from` runs to `to`: `{"from": "staging", "to": "prod", "services"?:
/// ["frontend", "backend"]}` (default: every service `from` runs). One operation on `to`
/// deploys each service in turn with `to`'s strategy, gates and approvals; a failure puts
/// back what it already replaced.
#[utoipa::path(post, path = "/v1/promotions", tag = "deployments",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body(content = Object, description = "from, to and optionally the services"),
    responses(
        (status = 202, description = "Recorded; the deploy flow runs it", body = crate::views::MutationResponse),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the target", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields: an unknown environment, a service the source does not run, nothing to promote", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_promotion(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    authorize(&caller, Action::Read)?;
    let request = promotion::parse(&body)?;
    record_span(request.to.as_str(), None);
    let idempotency =
        Idempotency::from_headers(&headers, &caller, "POST", "/v1/promotions", &body)?;
    let source = named(&state, &request.from, "from").await?;
    named(&state, &request.to, "to").await?;
    mutation::of_existing(
        &state,
        &caller,
        &request.to,
        idempotency.as_ref(),
        None,
        |target| {
            let (first, plan) = promotion::plan(&source, target, request.services.as_deref())?;
            let mutation = commands::promote(target, first, plan, &new_request(&state, &caller))
                .map_err(command_error)?;
            let location = format!("/v1/promotions/{}", mutation.operation.id);
            Ok((mutation, location))
        },
    )
    .await
}

/// A promotion: its services done, running and pending, its approvals, the source's evidence.
#[utoipa::path(get, path = "/v1/promotions/{id}", tag = "deployments",
    params(("id" = String, Path, description = "The promotion's operation id")),
    responses(
        (status = 200, description = "The promotion", body = PromotionView),
        (status = 400, description = "Not an operation id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such promotion", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_promotion(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PromotionView>, ApiError> {
    authorize(&caller, Action::Read)?;
    operation_id(&id)?;
    let (op, _) = operation_with_environment(&state, &id).await?;
    PromotionView::of(op)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("operation {id} is not a promotion")))
}
