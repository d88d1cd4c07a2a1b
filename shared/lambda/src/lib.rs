//! What envplane's Lambda entry points share, so each `main` only builds its clients and hands
//! them to shared code: JSON logging, the SDK configuration suited to the function's role, and
//! the environment variables the template sets.
#![forbid(unsafe_code)]

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub mod emf;

/// JSON log lines carrying the current span (environment and operation ids), filtered by
/// `RUST_LOG` (default `info`), without timestamps: CloudWatch stamps every line. Metric
/// events become embedded-metric-format lines instead ([`emf`]).
pub fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() != envplane_cloud::METRICS
        }));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(logs)
        .with(emf::EmfLayer)
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

/// The trust store of the functions' HTTPS client: Mozilla's root certificates compiled into
/// the binary (`webpki-root-certs`), so that a cold start reads no certificate file — the
/// system store is one file per certificate on some images, each opened and parsed at init
/// (measured by `coldstart-bench`).
fn compiled_in_roots() -> TrustStore {
    use base64::Engine;
    let mut store = TrustStore::empty().with_native_roots(false);
    let mut pem = String::new();
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&base64::engine::general_purpose::STANDARD.encode(der.as_ref()));
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    store.add_pem_certificate(pem.into_bytes());
    store
}

/// The HTTPS client every SDK client of a function shares: rustls with aws-lc, trusting the
/// compiled-in roots.
fn https_client() -> Result<SharedHttpClient, aws_smithy_http_client::HttpClientError> {
    let tls = TlsContext::builder()
        .with_trust_store(compiled_in_roots())
        .build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(tls)
        .build_https())
}

/// The SDK configuration for a function of `role`, from the Lambda environment.
pub async fn sdk_config(role: Role) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let loader = match https_client() {
        Ok(client) => loader.http_client(client),
        // The SDK's default client (the system's roots) is still a working client.
        Err(e) => {
            tracing::warn!(error = %e, "compiled-in roots unavailable; using the system's");
            loader
        }
    };
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
