//! `Idempotency-Key`: a retried mutation replays its first answer, byte for byte, for 24 hours.
//! Keys are scoped to their caller and bound to the request they first came with (method,
//! path, body and `If-Match`): the same key with another request is refused.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use envplane_domain::audit::{canonical_json, sha256_hex};
use envplane_domain::{Caller, Operation};
use envplane_store::IdempotencyRecord;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::AppState;
use crate::mutation::{abandon, launch};
use crate::problem::ApiError;

/// How long a stored idempotent response is replayed.
pub(crate) const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);

/// An idempotency key bound to its caller and to the request it first came with.
pub(crate) struct Idempotency {
    /// Where the record is stored: the caller and key, hashed.
    pub(crate) storage_key: String,
    /// The request the key was first used with, hashed.
    pub(crate) fingerprint: String,
}

/// What a replay needs of a stored mutation answer: the operation whose flow must run.
#[derive(Deserialize)]
struct StoredMutation {
    operation: Operation,
}

/// The `Idempotency-Key` header, checked: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        _ => Err(ApiError::bad_request(
            "Idempotency-Key",
            "must be 1–255 visible ASCII characters, e.g. a UUID",
        )),
    }
}

/// Refuses a malformed `Idempotency-Key` on a request that will not use it (a dry run): the
/// header is checked wherever the route takes one.
pub(crate) fn check_syntax(headers: &HeaderMap) -> Result<(), ApiError> {
    idempotency_key(headers).map(drop)
}

impl Idempotency {
    /// The request's key, if it sent one, bound to `caller` and to this request.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        caller: &Caller,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Option<Self>, ApiError> {
        let Some(key) = idempotency_key(headers)? else {
            return Ok(None);
        };
        let if_match = headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Some(Idempotency {
            // Keys are scoped to their caller: two callers choosing the same key do not collide.
            storage_key: sha256_hex(format!("{}\n{key}", caller.principal).as_bytes()),
            fingerprint: sha256_hex(
                format!("{method}\n{path}\n{}\n{if_match}", canonical_json(body)).as_bytes(),
            ),
        }))
    }

    /// The record to store with the mutation's answer.
    pub(crate) fn record(
        &self,
        status: StatusCode,
        headers: Vec<(String, String)>,
        body: String,
        requested_at: OffsetDateTime,
    ) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.storage_key.clone(),
            fingerprint: self.fingerprint.clone(),
            status: status.as_u16(),
            headers,
            body,
            expires_at: (requested_at + IDEMPOTENCY_TTL).unix_timestamp(),
        }
    }

    /// The stored response for this key, when an earlier request with it succeeded. Replaying
    /// also makes sure the operation's flow runs (starting is idempotent).
    pub(crate) async fn replay(&self, state: &AppState) -> Result<Option<Response>, ApiError> {
        match state.store.idempotency_record(&self.storage_key).await? {
            None => Ok(None),
            Some(record) if record.expires_at <= OffsetDateTime::now_utc().unix_timestamp() => {
                Ok(None)
            }
            Some(record) if record.fingerprint != self.fingerprint => {
                Err(ApiError::IdempotencyKeyReused)
            }
            Some(record) => {
                match serde_json::from_str::<StoredMutation>(&record.body) {
                    Ok(stored) => self.relaunch(state, &stored.operation).await?,
                    Err(error) => {
                        tracing::error!(%error, "a stored mutation answer names no operation");
                    }
                }
                Ok(Some(response(
                    record.status,
                    &record.headers,
                    record.body,
                    true,
                )))
            }
        }
    }
}

impl Idempotency {
    /// Makes sure a replayed answer's operation runs; an operation whose flow could not be
    /// started is never answered as a success.
    async fn relaunch(&self, state: &AppState, operation: &Operation) -> Result<(), ApiError> {
        let current = state.store.operation(&operation.id).await?;
        let unstarted = current
            .as_ref()
            .and_then(|op| op.error.as_ref())
            .is_some_and(|e| e.error == envplane_domain::lifecycle::START_FAILED);
        if unstarted {
            return Err(ApiError::Unavailable(format!(
                "the first request with this Idempotency-Key recorded operation {} but its flow could not be started; it was marked failed: send the request again with a new key",
                operation.id
            )));
        }
        let Err(why) = launch(state, operation).await else {
            return Ok(());
        };
        match state.store.environment(&operation.environment).await? {
            Some(env) if env.active_operation.as_deref() == Some(operation.id.as_str()) => {
                Err(abandon(state, &env, operation, &why).await)
            }
            _ => Ok(()),
        }
    }
}

/// The replay of `idempotency`'s first answer, if there is one.
pub(crate) async fn replay_or_none(
    state: &AppState,
    idempotency: Option<&Idempotency>,
) -> Result<Option<Response>, ApiError> {
    match idempotency {
        Some(i) => i.replay(state).await,
        None => Ok(None),
    }
}

/// A mutation's answer, built the same way the first time and on replay.
pub(crate) fn response(
    status: u16,
    headers: &[(String, String)],
    body: String,
    replayed: bool,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            out.insert(name, value);
        }
    }
    if replayed {
        out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
