//! The scheduler Lambda's handler: the job an EventBridge schedule names, with its account as
//! the result (and in the logs, one line per environment with its AWS call count).
#![forbid(unsafe_code)]

use envplane_domain::Tier;
use envplane_worker::jobs::{DEFAULT_CALL_BUDGET, JobError, Jobs};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::{Value, json};

/// What a schedule asks for (the rule's constant input).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "job", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Check the environments of these tiers for drift.
    Drift {
        /// The tiers.
        tiers: Vec<Tier>,
        /// AWS calls the cycle may make.
        #[serde(default)]
        budget: Option<u64>,
    },
    /// Destroy expired previews, release lost operations.
    Housekeeping,
    /// Drill every ready environment of these tiers (monthly prod, quarterly staging).
    Drills {
        /// The tiers.
        tiers: Vec<Tier>,
    },
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The input names no job this function runs.
    #[error("bad schedule input: {0}")]
    BadInput(String),
    /// The job failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl From<SchedulerError> for Diagnostic {
    fn from(error: SchedulerError) -> Self {
        let error_type = match &error {
            SchedulerError::BadInput(_) => "Envplane.Invalid",
            SchedulerError::Job(_) => "Envplane.Transient",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// Runs the job of one scheduled invocation.
pub async fn handle(jobs: &Jobs, event: LambdaEvent<Value>) -> Result<Value, SchedulerError> {
    run(jobs, event.payload).await
}

/// Runs the job `input` names.
pub async fn run(jobs: &Jobs, input: Value) -> Result<Value, SchedulerError> {
    let job: Job =
        serde_json::from_value(input).map_err(|e| SchedulerError::BadInput(e.to_string()))?;
    match job {
        Job::Drift { tiers, budget } => {
            let run = jobs
                .drift(&tiers, budget.unwrap_or(DEFAULT_CALL_BUDGET))
                .await?;
            for line in &run.checked {
                tracing::info!(
                    environment = %line.environment,
                    status = ?line.status,
                    api_calls = line.api_calls,
                    kinds = line.kinds,
                    summary = %line.summary,
                    "drift checked"
                );
            }
            if let Some(reason) = &run.stopped {
                tracing::warn!(reason = %reason, skipped = run.skipped.len(), "drift cycle stopped early");
            }
            Ok(json!({ "drift": run }))
        }
        Job::Drills { tiers } => {
            let started = jobs.drills(&tiers).await?;
            for (environment, operation) in &started {
                tracing::info!(%environment, %operation, "DR drill started");
            }
            Ok(json!({ "drills": started }))
        }
        Job::Housekeeping => {
            let done = jobs.housekeeping().await?;
            tracing::info!(
                expired_previews = done.expired_previews.len(),
                lost_operations = done.lost_operations.len(),
                "housekeeping done"
            );
            Ok(json!({ "housekeeping": done }))
        }
    }
}
