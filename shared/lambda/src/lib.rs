//! What envplane's Lambda entry points share, so each `main` only builds its clients and hands
//! them to shared code: JSON logging, the SDK configuration suited to the function's role, and
//! the environment variables the template sets.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

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
/// compiled-in roots (the system's when those cannot be read).
fn https_client() -> SharedHttpClient {
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    match TlsContext::builder()
        .with_trust_store(compiled_in_roots())
        .build()
    {
        Ok(tls) => builder.tls_context(tls).build_https(),
        // The SDK's default context (the system's roots) still makes a working client.
        Err(e) => {
            tracing::warn!(error = %e, "compiled-in roots unavailable; using the system's");
            builder.build_https()
        }
    }
}

/// An HTTP client made when a request first needs one. Its trust store and TLS configuration
/// cost a cold start ~150 root certificates encoded and parsed, and the SDK also makes (and
/// throws away) a connector each time an SDK client is built, "so that native certs load at
/// client initialization": ten times over for the worker's clients, all before the function
/// could take its first event (measured with `perf` under `coldstart-bench`). Here nothing of
/// it happens until the first call to AWS.
#[derive(Debug, Default)]
struct OnFirstUse(OnceLock<SharedHttpClient>);

impl HttpClient for OnFirstUse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0
            .get_or_init(https_client)
            .http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        // What the inner client says, without making it: hyper 1.x, as its builder reports.
        Some(ConnectorMetadata::new("hyper", Some(Cow::Borrowed("1.x"))))
    }
}

/// The SDK configuration for a function of `role`, from the Lambda environment.
pub async fn sdk_config(role: Role) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(OnFirstUse::default()));
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
