//! How envplane's Lambdas log.
#![forbid(unsafe_code)]

/// JSON log lines carrying the current span (environment and operation ids), filtered by
/// `RUST_LOG` (default `info`), without timestamps: CloudWatch stamps every line.
pub fn init_lambda_logging() {
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
