//! What envplane's Lambda entry points share, so each `main` only builds its clients and hands
//! them to shared code: JSON logging, the SDK configuration suited to the function's role, and
//! the environment variables the template sets.
#![forbid(unsafe_code)]

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// JSON log lines carrying the current span (environment and operation ids), filtered by
/// `RUST_LOG` (default `info`), without timestamps: CloudWatch stamps every line.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .init();
}

/// What a function does with AWS, which decides how long its calls may take and how they retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers API Gateway, which gives up after 30 s: every call bounded well inside that,
    /// retried briefly.
    Api,
    /// Runs one flow step: Step Functions retries with backoff and jitter
    /// (`Envplane.Throttled` / `Envplane.Transient`), so the SDK tries once more at most and a
    /// throttled step gives the flow's policy the say.
    Worker,
    /// Runs the scheduled jobs: adaptive retries back off under throttling before the drift
    /// cycle's breaker opens.
    Scheduler,
    /// Posts notifications: the SDK's defaults.
    Notifier,
}

/// The SDK configuration for a function of `role`, from the Lambda environment.
pub async fn sdk_config(role: Role) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let bounded = |connect, attempt, total| {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(connect))
            .operation_attempt_timeout(Duration::from_secs(attempt))
            .operation_timeout(Duration::from_secs(total))
            .build()
    };
    let loader = match role {
        Role::Api => loader
            .timeout_config(bounded(2, 3, 10))
            .retry_config(RetryConfig::standard().with_max_attempts(3)),
        Role::Worker => loader
            .timeout_config(bounded(3, 20, 45))
            .retry_config(RetryConfig::standard().with_max_attempts(2)),
        Role::Scheduler => loader.retry_config(RetryConfig::adaptive().with_max_attempts(3)),
        Role::Notifier => loader,
    };
    loader.load().await
}

/// A variable the template sets is missing or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not set")]
pub struct MissingVariable(pub String);

/// The value of a variable the function cannot run without.
pub fn required(name: &str) -> Result<String, MissingVariable> {
    optional(name).ok_or_else(|| MissingVariable(name.to_owned()))
}

/// The value of a variable, when set and not empty.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
