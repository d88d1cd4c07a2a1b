//! The API's routes, one module per resource, and what every handler shares: reading the
//! path's name, the caller's role, the query string, and the span fields.

pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod backups;
pub(crate) mod blueprints;
pub(crate) mod deployments;
pub(crate) mod drift;
pub(crate) mod environments;
pub(crate) mod meta;
pub(crate) mod operations;
pub(crate) mod plans;
pub(crate) mod promotions;
pub(crate) mod restores;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use envplane_domain::commands::CommandError;
use envplane_domain::environment::Phase;
use envplane_domain::{Action, Caller, EnvName, Environment};

use crate::problem::ApiError;

/// Page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 100;

/// Puts the environment (and operation) on the request's span.
pub(crate) fn record_span(environment: &str, operation: Option<&str>) {
    let span = tracing::Span::current();
    span.record("environment", environment);
    if let Some(operation) = operation {
        span.record("operation", operation);
    }
}

/// The environment name in a path.
pub(crate) fn path_name(raw: &str) -> Result<EnvName, ApiError> {
    EnvName::parse(raw).map_err(|detail| {
        ApiError::bad_request(
            "name",
            format!("{raw:?} is not an environment name: {detail}"),
        )
    })
}

/// The environment unless it is missing or a tombstone.
pub(crate) fn live(env: Option<Environment>, name: &EnvName) -> Result<Environment, ApiError> {
    env.filter(|e| e.status.phase != Phase::Deleted)
        .ok_or_else(|| ApiError::NotFound(format!("no environment named {name}")))
}

/// Refuses a caller whose role is too low for `action`.
pub(crate) fn authorize(caller: &Caller, action: Action) -> Result<(), ApiError> {
    caller
        .authorize(action)
        .map_err(|required| ApiError::role_too_low(caller.role, required))
}

/// Why the domain refused a mutation, as a problem.
pub(crate) fn command_error(error: CommandError) -> ApiError {
    match error {
        CommandError::Busy { operation } => ApiError::Conflict {
            detail: format!(
                "operation {operation} is still running on this environment; wait for it or cancel it"
            ),
            operation: Some(operation),
        },
        CommandError::NoChange => ApiError::invalid("", "the patch changes nothing"),
        CommandError::NoBlock => ApiError::Conflict {
            detail: "no free VPC block is left for a new environment; destroy one first".into(),
            operation: None,
        },
    }
}

/// The query string's pairs, refusing parameters a route does not know.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses the query, accepting only `known` parameters.
    pub(crate) fn parse(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) = query.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
        for (key, _) in &pairs {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(
                    key.clone(),
                    format!("unknown query parameter; known: {}", known.join(", ")),
                ));
            }
        }
        Ok(Params(pairs))
    }

    /// A parameter's value; the last occurrence wins.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter, false when absent.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::bad_request(
                name,
                format!("must be true or false, got {other:?}"),
            )),
        }
    }

    /// The `limit` parameter: a page size from 1 to [`MAX_PAGE_SIZE`].
    pub(crate) fn page_size(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "limit",
                        format!("must be a number from 1 to {MAX_PAGE_SIZE}, got {raw:?}"),
                    )
                }),
        }
    }
}
