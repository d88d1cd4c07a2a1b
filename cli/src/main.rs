//! `envplane`: the local control plane and a client for the envplane API.
#![forbid(unsafe_code)]

mod aws_setup;
mod commands;

mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// envplane: run application environments on AWS through one control plane.
#[derive(Debug, Parser)]
#[command(name = "envplane", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How client commands print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Where and as whom client commands call the API.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the envplane API.
    #[arg(
        long,
        env = "ENVPLANE_ENDPOINT",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub endpoint: String,
    /// Bearer token (not needed when the plane runs with --dev-auth).
    #[arg(long, env = "ENVPLANE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane locally: the API on an embedded store.
    Serve(serve::ServeArgs),
    /// Print the OpenAPI document of the API.
    Openapi,
    /// Make a new local API token and print the tokens-file entry for it.
    Token {
        /// Who the token stands for; recorded in the audit history.
        #[arg(long)]
        principal: String,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: envplane_domain::Role,
    },
    /// List the tier blueprints with their defaults and monthly cost.
    Blueprints {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create, inspect, list and destroy environments.
    #[command(subcommand)]
    Env(commands::env::EnvCommand),
    /// Inspect operations.
    #[command(subcommand)]
    Ops(commands::ops::OpsCommand),
    /// Run state machine definitions on the local executor.
    #[command(subcommand)]
    Flow(commands::flow::FlowCommand),
    /// Run the demo app a deployed version runs locally in place of its image: `GET /`
    /// answers its version, failing `DEMO_ERROR_RATE` of requests and taking `DEMO_LATENCY_MS`.
    DemoApp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Deploy a service's new version (the tier's strategy: canary on production), and with
    /// --wait follow each analysis.
    Deploy(commands::deploy::DeployArgs),
    /// Inspect, promote, abort or roll back deployments.
    #[command(subcommand)]
    Deployments(commands::deploy::DeploymentsCommand),
    /// Deploy the versions one environment runs to another (e.g. staging to prod), as one
    /// operation with the target's strategy, gates and approvals.
    Promote(commands::deploy::PromoteArgs),
    /// List an environment's recovery points, the window a restore can reach and its policy.
    Backups {
        /// Environment.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a backup of an environment now (a snapshot of its data volume).
    Backup {
        /// Environment.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore an environment's database to a time or a recovery point, in place (after
    /// approval) or into a new environment.
    Restore(commands::recovery::RestoreArgs),
    /// Run a DR drill: the newest recovery point restored into an isolated environment,
    /// checked, measured (RTO, RPO against the tier's targets) and torn down.
    Drill {
        /// Environment.
        name: String,
        /// Follow the drill's steps and print its evidence.
        #[arg(long)]
        wait: bool,
        /// Show what the drill would take (steps, RTO to expect against the target, cost) and
        /// start nothing.
        #[arg(long, conflicts_with = "wait")]
        plan: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List an environment's DR drills: achieved RTO and RPO against the targets.
    Drills {
        /// Environment.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the operations waiting for approvers (production's changes wait for two).
    Approvals {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve an operation waiting for approvers (never your own).
    Approve(commands::approvals::DecisionArgs),
    /// Reject an operation waiting for approvers: it fails, having changed nothing.
    Reject(commands::approvals::DecisionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Openapi => {
                print!("{}", envplane_api::openapi_json());
                Ok(())
            }
            Command::Token { principal, role } => {
                let token = format!("ep_{}{}", ulid::Ulid::new(), ulid::Ulid::new()).to_lowercase();
                let entry = envplane_api::Authenticator::token_entry(&principal, role, &token);
                println!("token (shown once; give it to {principal}): {token}");
                println!("add to the tokens file's \"tokens\" list: {entry}");
                Ok(())
            }
            Command::Blueprints { client } => commands::blueprints::run(&client).await,
            Command::Env(command) => commands::env::run(command).await,
            Command::Ops(command) => commands::ops::run(command).await,
            Command::Backups { name, client } => commands::env::backups(&name, &client).await,
            Command::Backup { name, client } => commands::recovery::backup(&name, &client).await,
            Command::Restore(args) => commands::recovery::restore(args).await,
            Command::Drill {
                name,
                wait,
                plan,
                client,
            } => commands::recovery::drill(&name, wait, plan, &client).await,
            Command::Drills { name, client } => commands::recovery::drills(&name, &client).await,
            Command::Flow(command) => commands::flow::run(command).await,
            Command::Approvals { client } => commands::approvals::list(&client).await,
            Command::Deploy(args) => commands::deploy::deploy(args).await,
            Command::Deployments(command) => commands::deploy::run(command).await,
            Command::Promote(args) => commands::deploy::promote(args).await,
            Command::DemoApp { listen } => {
                let behaviour =
                    envplane_traffic::DemoBehaviour::from_env(|k| std::env::var(k).ok())
                        .map_err(anyhow::Error::msg)?;
                let listener = tokio::net::TcpListener::bind(listen).await?;
                println!(
                    "demo app {} listening on http://{}",
                    behaviour.version,
                    listener.local_addr()?
                );
                envplane_traffic::serve_demo(listener, behaviour).await?;
                Ok(())
            }
            Command::Approve(args) => {
                commands::approvals::decide(args, envplane_domain::approval::Verdict::Approve).await
            }
            Command::Reject(args) => {
                commands::approvals::decide(args, envplane_domain::approval::Verdict::Reject).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Default data directory of `envplane serve`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(".envplane")
}
