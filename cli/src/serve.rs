//! `envplane serve`: the control plane in one process on an embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use envplane_api::{AppState, Authenticator};
use envplane_domain::{Caller, Role};
use envplane_store::EmbeddedStore;

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
    let store = EmbeddedStore::open(&store_path)?;
    let app = envplane_api::router(AppState::new(Arc::new(store), auth));
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
