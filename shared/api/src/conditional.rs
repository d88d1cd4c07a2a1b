//! Conditional requests and contention: `If-Match` against the environment's version, and the
//! short randomized retries every mutation (create included) makes when a concurrent change
//! won the race, before it answers 409.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use envplane_store::CommitError;

use crate::problem::ApiError;

/// Tries of a mutation whose commit met a concurrent one, before answering 409.
const COMMIT_ATTEMPTS: u32 = 6;

/// The version an `If-Match` header names: `"3"` → 3. `Ok(None)` without the header.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<(u64, String)>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let version = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "If-Match",
                format!("{text:?} is not an ETag of this API (a quoted version, e.g. \"3\")"),
            )
        })?;
    Ok(Some((version, text.to_owned())))
}

/// Refuses a change based on a version other than the current one.
pub(crate) fn check(
    precondition: Option<&(u64, String)>,
    current: u64,
    etag: String,
) -> Result<(), ApiError> {
    match precondition {
        Some((version, given)) if *version != current => Err(ApiError::PreconditionFailed {
            given: given.clone(),
            current: etag,
        }),
        _ => Ok(()),
    }
}

/// Counts a mutation's attempts against concurrent changes.
pub(crate) struct Contention {
    attempt: u32,
}

impl Contention {
    /// A mutation's first attempt.
    pub(crate) fn new() -> Self {
        Self { attempt: 0 }
    }

    /// After a lost race: pauses a short randomized time, so that retries spread out, and lets
    /// the mutation read and try again; after the last attempt, 409.
    pub(crate) async fn again(&mut self) -> Result<(), ApiError> {
        self.attempt += 1;
        if self.attempt >= COMMIT_ATTEMPTS {
            return Err(CommitError::Contended.into());
        }
        let jitter = u64::from(ulid::Ulid::new().random() as u16 % 20);
        tokio::time::sleep(Duration::from_millis(5 * u64::from(self.attempt) + jitter)).await;
        Ok(())
    }
}
