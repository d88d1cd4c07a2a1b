//! The common end of every mutation: one atomic commit of the environment, its operation, its
//! audit event and its idempotency record, then the operation's flow started.

use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use envplane_domain::commands::{CommandError, Mutation, Request};
use envplane_domain::{Caller, Environment, Operation, VpcCidr, lifecycle};
use envplane_store::{Change, CommitError, Expected};
use serde_json::Value;

use crate::AppState;
use crate::conditional::{self, Contention, if_match};
use crate::idempotency::{self, Idempotency, replay_or_none};
use crate::problem::ApiError;
use crate::routes::{authorize, command_error, live, path_name, record_span};
use crate::views::MutationResponse;

/// A new request's identity: the caller, now on the plane's clock, and the id its operation
/// gets.
pub(crate) fn new_request<'a>(state: &AppState, caller: &'a Caller) -> Request<'a> {
    Request {
        caller,
        at: state.clock.now(),
        operation_id: ulid::Ulid::new().to_string(),
    }
}

/// Starts the flow of an operation a mutation recorded. Starting is idempotent (the operation
/// id names the execution), so a replayed request also makes sure its flow runs. `Err` says
/// why the workflow service refused.
pub(crate) async fn launch(state: &AppState, operation: &Operation) -> Result<(), String> {
    let Some(workflows) = &state.workflows else {
        return Ok(());
    };
    let Some(flow) = envplane_workflow::Flow::for_operation(operation.kind) else {
        return Ok(());
    };
    workflows
        .start(flow, &operation.environment, &operation.id)
        .await
        .map_err(|e| e.to_string())
}

/// A flow that could not start: its operation fails and the environment is released in this
/// same request, which answers 503 (with `Retry-After`) rather than a 202 for an operation
/// that will never run.
pub(crate) async fn abandon(
    state: &AppState,
    environment: &Environment,
    operation: &Operation,
    why: &str,
) -> ApiError {
    tracing::error!(operation = %operation.id, why, "the operation's flow did not start; failing it");
    let t = lifecycle::abandon(environment, operation, why, state.clock.now());
    if let Err(error) = state.store.commit(Change::transition(environment, t)).await {
        // The lease runs out and housekeeping releases it.
        tracing::error!(%error, operation = %operation.id, "the unstarted operation could not be failed");
    }
    ApiError::Unavailable(format!(
        "operation {} was recorded but its flow could not be started ({why}); it was marked failed and nothing was changed: try again",
        operation.id
    ))
}

/// Writes a mutation with its idempotency record; the response is built as a replay builds it,
/// so a replay is byte-for-byte the first answer.
pub(crate) async fn commit(
    state: &AppState,
    mutation: Mutation,
    expected: Expected,
    claim_cidr: Option<VpcCidr>,
    idempotency: Option<&Idempotency>,
    location: String,
) -> Result<Response, CommitError> {
    let headers = vec![
        ("location".to_owned(), location),
        ("etag".to_owned(), mutation.environment.etag()),
    ];
    let body = MutationResponse {
        environment: mutation.environment.clone().into(),
        operation: mutation.operation.clone(),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| CommitError::Store(envplane_store::StoreError::Corrupt(e.to_string())))?;
    let record = idempotency.map(|i| {
        i.record(
            StatusCode::ACCEPTED,
            headers.clone(),
            body.clone(),
            mutation.operation.requested_at,
        )
    });
    let operation = mutation.operation.clone();
    let recorded = mutation.environment.clone();
    let change = Change {
        environment: mutation.environment,
        expected,
        operation: Some(mutation.operation),
        audit: Some(mutation.audit),
        idempotency: record,
        claim_cidr,
        release_cidr: None,
    };
    state.store.commit(change).await?;
    if let Err(why) = launch(state, &operation).await {
        return Ok(abandon(state, &recorded, &operation, &why)
            .await
            .into_response());
    }
    Ok(idempotency::response(
        StatusCode::ACCEPTED.as_u16(),
        &headers,
        body,
        false,
    ))
}

/// A mutation of an existing environment: replays a retried request, reads the environment,
/// checks the caller's role and `If-Match`, then commits what `mutate` decides under the
/// version read, reading again when a concurrent change wins (so a retry ends as 412 or 409
/// when the winner changed what matters).
pub(crate) async fn of_existing<F>(
    state: &AppState,
    caller: &Caller,
    name: &envplane_domain::EnvName,
    idempotency: Option<&Idempotency>,
    precondition: Option<conditional::Precondition>,
    mutate: F,
) -> Result<Response, ApiError>
where
    F: Fn(&Environment) -> Result<(Mutation, String), ApiError>,
{
    let mut contention = Contention::new();
    loop {
        if let Some(response) = replay_or_none(state, idempotency).await? {
            return Ok(response);
        }
        let env = live(state.store.environment(name).await?, name)?;
        authorize(caller, envplane_domain::Action::Mutate(env.tier))?;
        conditional::check(precondition.as_ref(), env.version, env.etag())?;
        let (mutation, location) = mutate(&env)?;
        record_span(name.as_str(), Some(&mutation.operation.id));
        match commit(
            state,
            mutation,
            Expected::Version(env.version),
            None,
            idempotency,
            location,
        )
        .await
        {
            Ok(response) => return Ok(response),
            Err(
                CommitError::VersionConflict
                | CommitError::Contended
                | CommitError::IdempotencyKeyUsed,
            ) => contention.again().await?,
            Err(other) => return Err(other.into()),
        }
    }
}

/// A mutation with no body that starts an operation (delete, reconcile): optional `If-Match`,
/// optional `Idempotency-Key`, answered with the operation's location.
pub(crate) async fn bodyless<F>(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    headers: &HeaderMap,
    method: &str,
    suffix: &str,
    command: F,
) -> Result<Response, ApiError>
where
    F: Fn(&Environment, &Request<'_>) -> Result<Mutation, CommandError>,
{
    let name = path_name(raw)?;
    record_span(name.as_str(), None);
    let idempotency = Idempotency::from_headers(
        headers,
        caller,
        method,
        &format!("/v1/environments/{name}{suffix}"),
        &Value::Null,
    )?;
    let precondition = if_match(headers)?;
    of_existing(
        state,
        caller,
        &name,
        idempotency.as_ref(),
        precondition,
        |env| {
            let mutation = command(env, &new_request(state, caller)).map_err(command_error)?;
            let location = format!("/v1/operations/{}", mutation.operation.id);
            Ok((mutation, location))
        },
    )
    .await
}
