//! The worker's one error enum, each variant named for the flows' Retry and Catch.

use envplane_cloud::CloudError;
use envplane_store::{CommitError, StoreError};
use envplane_workflow::Failure;

/// A failed action, named for the flows' Retry and Catch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The cloud or the store throttled: retry with backoff and jitter.
    #[error("{0}")]
    Throttled(String),
    /// A passing failure: retry.
    #[error("{0}")]
    Transient(String),
    /// The request can never succeed: compensate and fail.
    #[error("{0}")]
    Invalid(String),
    /// The state of the world forbids it (the operation no longer holds the environment, a
    /// dependency, a quota): compensate and fail.
    #[error("{0}")]
    Conflict(String),
}

impl WorkerError {
    /// The error name Step Functions sees.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerError::Throttled(_) => "Envplane.Throttled",
            WorkerError::Transient(_) => "Envplane.Transient",
            WorkerError::Invalid(_) => "Envplane.Invalid",
            WorkerError::Conflict(_) => "Envplane.Conflict",
        }
    }
}

impl From<CloudError> for WorkerError {
    fn from(e: CloudError) -> Self {
        match e {
            CloudError::Throttled(m) => WorkerError::Throttled(m),
            CloudError::Transient(m) => WorkerError::Transient(m),
            CloudError::Invalid(m) => WorkerError::Invalid(m),
            CloudError::Conflict(m) => WorkerError::Conflict(m),
        }
    }
}

impl From<StoreError> for WorkerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Throttled(m) => WorkerError::Throttled(m),
            other => WorkerError::Transient(other.to_string()),
        }
    }
}

impl From<CommitError> for WorkerError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(e) => e.into(),
            // Someone else changed the record between read and write: read again.
            CommitError::VersionConflict | CommitError::Contended => {
                WorkerError::Transient(e.to_string())
            }
            other => WorkerError::Conflict(other.to_string()),
        }
    }
}

impl From<WorkerError> for Failure {
    fn from(e: WorkerError) -> Self {
        Failure::new(e.name(), e.to_string())
    }
}
