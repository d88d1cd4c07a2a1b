//! `envplane serve`: the control plane in one process on an embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use envplane_api::{AppState, Authenticator};
use envplane_aws::{AwsCloud, CallCounter, Clients};
use envplane_cloud::{Cloud, Faults, LOCAL_STACK, LatencyProfile, Simulator};
use envplane_domain::{Caller, Role, Tier};
use envplane_notify::{Publisher, Silent, SlackWebhook};
use envplane_store::{DynamoStore, EmbeddedStore, StateStore};
use envplane_worker::Worker;
use envplane_worker::jobs::{CallMeter, Jobs};
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
    /// server) instead of the simulated cloud; flows still run here. The EKS roles are
    /// ENVPLANE_CLUSTER_ROLE_ARN and ENVPLANE_NODE_ROLE_ARN, or else found or made as
    /// envplane-eks-cluster and envplane-eks-nodes; the database image is ENVPLANE_DB_IMAGE_ID or
    /// else Amazon Linux 2023's latest; resources carry envplane:stack=$ENVPLANE_STACK (default
    /// envplane-local).
    #[arg(long, conflicts_with = "latency")]
    aws: bool,
    /// With --aws: keep state in this DynamoDB table (created when missing), not in DATA_DIR.
    #[arg(long, requires = "aws")]
    table: Option<String>,
    /// Post every event (operations, drift, expired previews) to this Slack incoming webhook.
    #[arg(long, env = "ENVPLANE_SLACK_WEBHOOK", hide_env_values = true)]
    slack_webhook: Option<String>,
    /// Seconds between drift checks of every tier (0: never).
    #[arg(long, default_value_t = 900)]
    drift_interval: u64,
    /// Seconds between housekeeping runs: expired previews, lost operations (0: never).
    #[arg(long, default_value_t = 60)]
    housekeeping_interval: u64,
    /// Seconds between DR drills of every ready prod and staging environment with a recovery
    /// point (0: never; on AWS the template's monthly and quarterly schedules run them).
    #[arg(long, default_value_t = 0)]
    drill_interval: u64,
    /// AWS API calls one drift cycle may make.
    #[arg(long, default_value_t = envplane_worker::jobs::DEFAULT_CALL_BUDGET)]
    drift_budget: u64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        // Colours only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    // Single-user mode makes everyone an admin: only on this machine's own addresses.
    if args.dev_auth && !args.listen.ip().is_loopback() {
        bail!(
            "--dev-auth makes every caller an admin, so it listens on loopback only (not {}): use a tokens file to listen there",
            args.listen
        );
    }
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
    // The plane's time goes on from the latest its cloud recorded, whatever the time scale of
    // the last run: a restart never finds deletions ending in its future.
    let cloud_file = args.data_dir.join("cloud.json");
    let origin = match Simulator::latest_time(&cloud_file).map_err(anyhow::Error::msg)? {
        Some(latest) if !args.aws => latest.max(time::OffsetDateTime::now_utc()),
        _ => time::OffsetDateTime::now_utc(),
    };
    let clock = Arc::new(ScaledClock::from(scale, origin));
    let reader = clock.clone();
    let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
    // Roles and image from the variables, or found (made) in the account.
    let aws_settings = match &sdk {
        Some(config) => Some(crate::aws_setup::settings(config, LOCAL_STACK).await?),
        None => None,
    };
    let (cloud, calls): (Arc<dyn Cloud>, CallMeter) = match (&sdk, &aws_settings) {
        (Some(config), Some(settings)) => {
            let settings = settings.clone();
            let counter = CallCounter::default();
            (
                Arc::new(AwsCloud::new(Clients::counted(config, &counter), settings)),
                Arc::new(move || counter.get()),
            )
        }
        _ => {
            let simulator = Arc::new(
                Simulator::persistent(
                    args.latency,
                    args.faults.unwrap_or(Faults::NONE),
                    now.clone(),
                    &cloud_file,
                )
                .map_err(anyhow::Error::msg)?,
            );
            let meter = simulator.clone();
            (simulator, Arc::new(move || meter.calls()))
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let events: Arc<dyn Publisher> = match &args.slack_webhook {
        Some(url) => Arc::new(SlackWebhook::new(
            url.clone(),
            Some(format!("http://{address}")),
        )),
        None => Arc::new(Silent),
    };
    // Deployed versions run here, behind a weighted proxy per service; with --aws on the
    // environments' EKS clusters behind their load balancers.
    let traffic: Option<Arc<dyn envplane_cloud::Traffic>> = match (&sdk, &aws_settings) {
        (Some(config), Some(settings)) => {
            let stack = settings.stack.clone();
            Some(Arc::new(
                envplane_kube::aws_traffic(config, stack)
                    .map_err(|e| anyhow::anyhow!("--aws: {e}"))?,
            ))
        }
        _ => Some(Arc::new(envplane_traffic::LocalTraffic::new())),
    };
    let databases = match (&sdk, &aws_settings) {
        (Some(config), Some(settings)) => {
            let stack = settings.stack.clone();
            let region = config
                .region()
                .map(ToString::to_string)
                .ok_or_else(|| anyhow::anyhow!("--aws: no AWS region configured"))?;
            let databases: Arc<dyn envplane_cloud::Databases> =
                Arc::new(envplane_aws::AwsDatabases::new(
                    envplane_aws::DatabaseClients::new(config),
                    stack,
                    region,
                    settings.db_instance_profile.clone(),
                    settings.backup_bucket.clone(),
                ));
            Some(databases)
        }
        _ => local_databases(&args),
    };
    let mut worker = Worker::new(store.clone(), cloud.clone())
        .with_clock(now.clone())
        .with_events(events.clone());
    if let Some(traffic) = &traffic {
        worker = worker.with_traffic(traffic.clone());
    }
    if let Some(databases) = &databases {
        worker = worker.with_databases(databases.clone());
    }
    let executor = Executor::new(Arc::new(worker), clock);
    let workflows = Arc::new(LocalWorkflows::new(
        executor,
        &args.data_dir.join("executions"),
    )?);
    let mut jobs = Jobs::new(store.clone(), cloud, calls)
        .with_workflows(workflows.clone())
        .with_events(events)
        .with_clock(now.clone());
    if let Some(traffic) = &traffic {
        jobs = jobs.with_traffic(traffic.clone());
    }
    if let Some(databases) = &databases {
        jobs = jobs.with_databases(databases.clone());
    }
    let on_demand = Arc::new(JobsOnDemand(jobs.clone()));
    let resumed = workflows.resume_all()?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed executions interrupted by the last stop");
    }
    // Operations accepted just before a crash, whose flows never started (the outbox).
    let started = jobs.start_accepted(time::Duration::ZERO).await?;
    if !started.is_empty() {
        tracing::info!(
            ?started,
            "started accepted operations the last stop left unstarted"
        );
    }
    spawn_jobs(jobs, &args);
    // One clock for the API's requests and leases, the flows and housekeeping, so that a
    // time-scaled plane never takes a running operation's lease for expired.
    let mut state = AppState::new(store, auth)
        .with_workflows(workflows)
        .with_clock(now);
    if let Some(traffic) = traffic {
        state = state.with_traffic(traffic);
    }
    if let Some(databases) = databases {
        state = state.with_databases(databases);
    }
    state = state.with_on_demand(on_demand);
    let app = envplane_api::router(state);
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

/// The environments' databases on this machine: a real PostgreSQL per environment under
/// DATA_DIR/databases. Without PostgreSQL the plane runs on, without restores and drills,
/// and says so.
fn local_databases(args: &ServeArgs) -> Option<Arc<dyn envplane_cloud::Databases>> {
    match envplane_postgres::Binaries::find() {
        Ok(bins) => Some(Arc::new(envplane_postgres::LocalDatabases::new(
            bins,
            &args.data_dir.join("databases"),
            // Production's archive_timeout: the floor of what a restore can lose.
            std::time::Duration::from_secs(60),
        ))),
        Err(error) => {
            tracing::warn!(%error, "no local PostgreSQL: environments run without a database, and restores and drills fail");
            None
        }
    }
}

/// The jobs' work on request, as `envplane serve` runs it.
struct JobsOnDemand(Jobs);

#[async_trait::async_trait]
impl envplane_api::OnDemand for JobsOnDemand {
    async fn back_up(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::backup::RecordedPoint, String> {
        self.0.back_up_now(name).await.map_err(|e| e.to_string())
    }

    async fn check_drift(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::drift::DriftReport, String> {
        self.0.drift_now(name).await.map_err(|e| e.to_string())
    }
}

/// Runs the scheduled jobs in this process, as EventBridge runs the scheduler in AWS.
fn spawn_jobs(jobs: Jobs, args: &ServeArgs) {
    let every = |seconds: u64| (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
    if let Some(period) = every(args.drift_interval) {
        let (jobs, budget) = (jobs.clone(), args.drift_budget);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match jobs.drift(&Tier::ALL, budget).await {
                    Ok(run) => {
                        for line in &run.checked {
                            tracing::info!(environment = %line.environment, status = ?line.status, api_calls = line.api_calls, summary = %line.summary, "drift checked");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "drift cycle failed"),
                }
            }
        });
    }
    if let Some(period) = every(args.drill_interval) {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match jobs.drills(&[Tier::Prod, Tier::Staging]).await {
                    Ok(started) if !started.is_empty() => {
                        tracing::info!(?started, "DR drills started");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "DR drills not started"),
                }
            }
        });
    }
    if let Some(period) = every(args.housekeeping_interval) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                match jobs.housekeeping().await {
                    Ok(done)
                        if !done.expired_previews.is_empty()
                            || !done.lost_operations.is_empty() =>
                    {
                        tracing::info!(expired_previews = ?done.expired_previews, lost_operations = ?done.lost_operations, "housekeeping");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "housekeeping failed"),
                }
            }
        });
    }
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
