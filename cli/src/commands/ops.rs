//! `envplane ops …`: follow and inspect operations.

use std::time::{Duration, Instant};

use envplane_domain::OperationStatus;
use envplane_domain::operation::OperationStep;

use super::client;
use crate::output::{json_line, print_json, time, word};
use crate::{ClientArgs, Output};

/// `envplane ops …`
#[derive(Debug, clap::Subcommand)]
pub enum OpsCommand {
    /// Follow an operation's steps until it ends; fails when the operation fails.
    Watch {
        /// Operation id.
        id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a running operation: its execution stops, the environment is released, and a
    /// provisioning is rolled back (follow the rollback with --wait).
    Cancel {
        /// Operation id.
        id: String,
        /// Follow the rollback until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List operations, newest first: an environment's, or every environment's.
    List {
        /// Environment (every environment's when left out).
        environment: Option<String>,
        /// Only this status (pending, running, awaiting_approval, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only this kind (create, update, delete, reconcile, deploy, rollback, promote,
        /// restore, drill).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many (every page is followed until then).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one operation.
    Get {
        /// Operation id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs an `ops` command.
pub async fn run(command: OpsCommand) -> anyhow::Result<()> {
    match command {
        OpsCommand::List {
            environment,
            status,
            kind,
            limit,
            client: args,
        } => list(&args, environment.as_deref(), status, kind, limit).await,
        OpsCommand::Watch {
            id,
            interval,
            client: args,
        } => watch(&args, &id, Duration::from_secs_f64(interval.max(0.05))).await,
        OpsCommand::Cancel {
            id,
            wait,
            client: args,
        } => {
            let answer = client(&args)?.cancel_operation(&id).await?;
            if args.output == Output::Json {
                print_json(&answer);
            } else {
                let op = &answer.operation;
                println!(
                    "operation {} on {} is {}",
                    op.id,
                    op.environment,
                    word(&op.status)
                );
                if let Some(rollback) = &answer.rollback {
                    println!(
                        "rolling back what it made: operation {} ({})",
                        rollback.id,
                        word(&rollback.kind)
                    );
                }
            }
            match &answer.rollback {
                Some(rollback) if wait => watch(&args, &rollback.id, Duration::from_secs(1)).await,
                _ => Ok(()),
            }
        }
        OpsCommand::Get { id, client: args } => {
            let op = client(&args)?.operation(&id).await?;
            if args.output == Output::Json {
                print_json(&op);
                return Ok(());
            }
            let rows = [
                ("id", op.id.clone()),
                ("environment", op.environment.to_string()),
                ("kind", word(&op.kind)),
                ("status", word(&op.status)),
                ("requested_by", op.requested_by.clone()),
                ("requested_at", time(op.requested_at)),
                ("updated_at", time(op.updated_at)),
            ];
            for (key, value) in rows {
                println!("{key:<13} {value}");
            }
            if let Some(error) = &op.error {
                println!("{:<13} {}: {}", "error", error.error, error.cause);
            }
            Ok(())
        }
    }
}

/// Polls an operation, printing each step as it starts and ends, each retry, each in-place
/// change and each wait loop's news ([`super::watch::Progress`]), until the operation ends;
/// fails when the operation fails. After 30 s without news it says what is still running.
pub async fn watch(args: &ClientArgs, id: &str, interval: Duration) -> anyhow::Result<()> {
    let api = client(args)?;
    let mut progress = super::watch::Progress::default();
    let mut shown: Vec<OperationStep> = Vec::new();
    let mut changes_shown = 0;
    let started = Instant::now();
    let mut last_news = Instant::now();
    loop {
        let op = api.operation(id).await?;
        let at = started.elapsed().as_secs_f64();
        if args.output == Output::Json {
            // Every changed step and every change as a JSON line, for scripts.
            for (i, step) in op.steps.iter().enumerate() {
                if shown.get(i) != Some(step) {
                    println!("{}", json_line(step));
                    last_news = Instant::now();
                }
            }
            shown.clone_from(&op.steps);
            for change in op.changes.iter().skip(changes_shown) {
                println!("{}", json_line(change));
            }
            changes_shown = op.changes.len();
        } else {
            let lines = progress.lines(&op, at);
            if !lines.is_empty() {
                last_news = Instant::now();
            }
            for line in lines {
                println!("{line}");
            }
            if last_news.elapsed() >= Duration::from_secs(30) {
                if let Some(line) = progress.quiet(&op, at) {
                    println!("{line}");
                }
                last_news = Instant::now();
            }
        }
        match op.status {
            OperationStatus::Succeeded => {
                println!(
                    "operation {id} succeeded after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            OperationStatus::Failed | OperationStatus::Cancelled => {
                let (error, cause) = op
                    .error
                    .as_ref()
                    .map_or(("unknown error", "no cause recorded"), |e| {
                        (e.error.as_str(), e.cause.as_str())
                    });
                anyhow::bail!("operation {id} {}: {error}: {cause}", word(&op.status));
            }
            _ => tokio::time::sleep(interval).await,
        }
    }
}

/// `envplane ops list ENV`: the environment's operations, newest first, following pages up to
/// `limit`.
async fn list(
    args: &ClientArgs,
    environment: Option<&str>,
    status: Option<String>,
    kind: Option<String>,
    limit: usize,
) -> anyhow::Result<()> {
    let api = client(args)?;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    while items.len() < limit {
        let page = api
            .operations(
                environment,
                status.as_deref(),
                kind.as_deref(),
                cursor.as_deref(),
            )
            .await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    items.truncate(limit);
    if args.output == Output::Json {
        print_json(&items);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|op| {
            vec![
                op.id.clone(),
                op.environment.to_string(),
                word(&op.kind),
                word(&op.status),
                op.requested_by.clone(),
                op.requested_at.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        match environment {
            Some(environment) => println!("no operation of {environment} matches"),
            None => println!("no operation matches"),
        }
    } else {
        crate::output::print_table(
            &[
                "OPERATION",
                "ENVIRONMENT",
                "KIND",
                "STATUS",
                "BY",
                "REQUESTED",
            ],
            &rows,
        );
    }
    Ok(())
}
