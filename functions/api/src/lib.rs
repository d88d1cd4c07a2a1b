//! The API Lambda: the envplane router on DynamoDB, callers identified by API Gateway.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use envplane_api::{AppState, Authenticator};
use envplane_domain::Role;
use envplane_store::StateStore;
use envplane_workflow::Workflows;

/// Environment variable holding a JSON map of IAM principal ARNs to roles, for IAM-authorized calls.
pub const IAM_ROLES_VAR: &str = "ENVPLANE_IAM_ROLES";

/// Environment variable holding the prefix JWT groups carry to grant a role (default
/// `envplane-`).
pub const GROUP_PREFIX_VAR: &str = "ENVPLANE_GROUP_PREFIX";

/// The handler Lambda runs: the API router over `store`, identifying callers from the
/// authorizer context API Gateway attaches to each event, starting flows on `workflows`.
pub fn app(
    store: Arc<dyn StateStore>,
    iam_roles: HashMap<String, Role>,
    group_prefix: Option<String>,
    workflows: Option<Arc<dyn Workflows>>,
) -> axum::Router {
    let group_prefix =
        group_prefix.unwrap_or_else(|| envplane_api::DEFAULT_GROUP_PREFIX.to_owned());
    let authenticator = Authenticator::ApiGateway {
        iam_roles,
        group_prefix,
    };
    let state = AppState::new(store, authenticator);
    let state = match workflows {
        Some(workflows) => state.with_workflows(workflows),
        None => state,
    };
    let router = envplane_api::router(state);
    // Callers that sign with IAM (pipelines, other accounts' automation) reach the same routes
    // under `/iam`, the HTTP API's one route with the AWS_IAM authorizer; API Gateway sends
    // JWT callers elsewhere, and a request here without an IAM principal is refused.
    axum::Router::new()
        .nest(
            "/iam",
            router.clone().layer(axum::middleware::from_fn(
                envplane_api::require_iam_principal,
            )),
        )
        .merge(router)
}

/// Parses the IAM role map (`{"arn:aws:iam::123:role/ci": "operator"}`: role ARNs without
/// their path, or user ARNs); empty when unset.
pub fn iam_roles(raw: Option<&str>) -> Result<HashMap<String, Role>, String> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(HashMap::new());
    };
    let map: HashMap<String, String> =
        serde_json::from_str(raw).map_err(|e| format!("{IAM_ROLES_VAR}: {e}"))?;
    map.into_iter()
        .map(|(arn, role)| {
            role.parse::<Role>()
                .map(|r| (arn.clone(), r))
                .map_err(|e| format!("{IAM_ROLES_VAR}[{arn}]: {e}"))
        })
        .collect()
}
