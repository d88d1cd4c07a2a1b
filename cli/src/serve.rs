//! `envplane serve`: the control plane in one process on an embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use envplane_api::{AppState, Authenticator};
use envplane_aws::{AwsCloud, AwsSettings};
use envplane_cloud::{Cloud, Faults, LatencyProfile, Simulator};
use envplane_domain::{Caller, Role};
use envplane_store::{DynamoStore, EmbeddedStore, StateStore};
use envplane_worker::Worker;
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, LocalWorkflows, ScaledClock};

/// Options of `envplane serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Tokens file for bearer authentication (default: DATA_DIR/tokens.json).
    #[arg(long, conflicts_with = "dev_auth")]
    tokens: Option<PathBuf>,
    /// Single-user mode: every request acts as `local-dev` with the admin role. For a laptop only.
    #[arg(long)]
    dev_auth: bool,
    /// How long simulated resources take: instant, or realistic (EKS ~10 min, NAT ~2 min…).
    #[arg(long, default_value = "instant", value_parser = LatencyProfile::parse)]
    latency: LatencyProfile,
    /// With --latency realistic: how many times faster than real time flows run.
    #[arg(long, default_value_t = 60.0)]
    time_scale: f64,
    /// Inject cloud failures, e.g. throttle=0.1,error=0.05,seed=7.
    #[arg(long, value_parser = Faults::parse, conflicts_with = "aws")]
    faults: Option<Faults>,
    /// Use AWS (the standard AWS configuration; AWS_ENDPOINT_URL is honoured, e.g. moto's
    /// server) instead of the simulated cloud; flows still run here. Needs
    /// ENVPLANE_CLUSTER_ROLE_ARN, ENVPLANE_NODE_ROLE_ARN and ENVPLANE_DB_IMAGE_ID.
    #[arg(long, conflicts_with = "latency")]
    aws: bool,
    /// With --aws: keep state in this DynamoDB table (created when missing), not in DATA_DIR.
    #[arg(long, requires = "aws")]
    table: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    let auth = if args.dev_auth {
        Authenticator::Dev(Caller {
            principal: "local-dev".into(),
            role: Role::Admin,
        })
    } else {
        let path = args
            .tokens
            .clone()
            .unwrap_or_else(|| args.data_dir.join("tokens.json"));
        if !path.exists() {
            bail!(
                "no tokens file at {}: make tokens with `envplane token --principal NAME --role ROLE`, or run with --dev-auth for single-user local use",
                path.display()
            );
        }
        Authenticator::from_tokens_file(&path)?
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store_path = args.data_dir.join("state.redb");
    let sdk = if args.aws {
        Some(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await,
        )
    } else {
        None
    };
    let store: Arc<dyn StateStore> = match (&sdk, &args.table) {
        (Some(config), Some(table)) => {
            let client = aws_sdk_dynamodb::Client::new(config);
            DynamoStore::ensure_table(&client, table).await?;
            Arc::new(DynamoStore::new(client, table.clone()))
        }
        _ => Arc::new(EmbeddedStore::open(&store_path)?),
    };
    let scale = if args.latency == LatencyProfile::Instant || args.aws {
        1.0
    } else {
        args.time_scale
    };
    let clock = Arc::new(ScaledClock::new(scale));
    let reader = clock.clone();
    let now: envplane_cloud::simulator::Now = Arc::new(move || reader.now());
    let cloud: Arc<dyn Cloud> = match &sdk {
        Some(config) => {
            let settings = AwsSettings::from_env().map_err(|e| anyhow::anyhow!("--aws: {e}"))?;
            Arc::new(AwsCloud::new(config, settings))
        }
        None => Arc::new(
            Simulator::persistent(
                args.latency,
                args.faults.unwrap_or(Faults::NONE),
                now.clone(),
                &args.data_dir.join("cloud.json"),
            )
            .map_err(anyhow::Error::msg)?,
        ),
    };
    let worker = Worker::new(store.clone(), cloud).with_clock(now);
    let executor = Executor::new(Arc::new(worker), clock);
    let workflows = Arc::new(LocalWorkflows::new(
        executor,
        &args.data_dir.join("executions"),
    )?);
    let resumed = workflows.resume_all()?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed executions interrupted by the last stop");
    }
    let app = envplane_api::router(AppState::new(store, auth).with_workflows(workflows));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, store = %store_path.display(), "envplane control plane is up");
    println!(
        "envplane listening on http://{address} (store {})",
        store_path.display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
