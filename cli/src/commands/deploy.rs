//! `envplane deploy` and `envplane deployments …`: a service's new version, followed live —
//! weight, requests, error rate and p99 against the thresholds, and each verdict.

use std::time::Duration;

use anyhow::Context;
use envplane_api::views::DeploymentView;
use envplane_domain::OperationStatus;
use serde_json::{Value, json};

use super::{client, new_key};
use crate::output::{print_json, word};
use crate::{ClientArgs, Output};

/// `envplane deploy` arguments.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Environment.
    pub name: String,
    /// frontend or backend.
    #[arg(long)]
    pub service: String,
    /// The version to deploy.
    #[arg(long)]
    pub version: String,
    /// The container image (default: derived from the version).
    #[arg(long)]
    pub image: Option<String>,
    /// A container environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// canary, blue_green or rolling (default: the tier's).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Canary policy overrides as JSON, e.g. '{"steps":[10,50,100],"interval_seconds":30}'.
    #[arg(long)]
    pub canary: Option<String>,
    /// Follow the deployment until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Only show what it would do: transitions, approvers, duration, extra capacity.
    #[arg(long, conflicts_with = "wait")]
    pub plan: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `envplane deployments …`
#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCommand {
    /// Show a deployment: weight, analyses with their figures and verdicts, decision.
    Get {
        /// Deployment (operation) id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Promote a deployment waiting at a gate or held for insufficient data.
    Promote {
        /// Deployment (operation) id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Abort a deployment waiting at a gate or a hold: all traffic back on the stable version.
    Abort {
        /// Deployment (operation) id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Roll back a succeeded deployment within its rollback window (30 minutes by default):
    /// the version it replaced, still warm, takes all traffic back in one change.
    Rollback {
        /// Deployment (operation) id.
        id: String,
        /// Follow the rollback until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `envplane promote` arguments.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The environment whose versions are promoted.
    #[arg(long)]
    pub from: String,
    /// The environment they go to (its strategy, gates and approvals apply).
    #[arg(long)]
    pub to: String,
    /// A service to promote (repeatable; default: every service `--from` runs).
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Follow the promotion until it ends.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Promotes, and follows each service's deployment with `--wait`.
pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    let mut body = json!({ "from": args.from, "to": args.to });
    if !args.services.is_empty() {
        body["services"] = json!(args.services);
    }
    let api = client(&args.client)?;
    let accepted = api.promote(&body, &new_key()).await?;
    let id = accepted.response.operation.id.clone();
    if args.client.output == Output::Json && !args.wait {
        print_json(&accepted.response);
        return Ok(());
    }
    println!("promotion {id} from {} to {}", args.from, args.to);
    if accepted.response.operation.approval.is_some() {
        println!("it waits for approvers: `envplane approve {id}`");
    }
    if args.wait {
        follow(&args.client, &id).await?;
        let shown = api.promotion(&id).await?;
        for d in &shown.done {
            println!(
                "  {} {} is stable on {}",
                d.service.as_str(),
                d.release.version,
                shown.to
            );
        }
    }
    Ok(())
}

/// Deploys, and follows the deployment with `--wait`.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let mut env = serde_json::Map::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?}: expected KEY=VALUE"))?;
        env.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    let mut body = json!({
        "service": args.service, "version": args.version, "env": env,
    });
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    if let Some(strategy) = &args.strategy {
        body["strategy"] = json!(strategy);
    }
    if let Some(canary) = &args.canary {
        body["canary"] = serde_json::from_str(canary).context("--canary is not JSON")?;
    }
    let api = client(&args.client)?;
    if args.plan {
        let plan = api.plan_deployment(&args.name, &body).await?;
        if args.client.output == Output::Json {
            print_json(&plan);
        } else {
            print_plan(&plan);
        }
        return Ok(());
    }
    let accepted = api.deploy(&args.name, &body, &new_key()).await?;
    let id = accepted.response.operation.id.clone();
    if args.client.output == Output::Json && !args.wait {
        print_json(&accepted.response);
        return Ok(());
    }
    println!(
        "deployment {id} of {} {} to {}",
        args.service, args.version, args.name
    );
    if args.wait {
        follow(&args.client, &id).await?;
    }
    Ok(())
}

fn print_plan(plan: &envplane_domain::release_plan::DeploymentPlan) {
    println!(
        "{} {} (replacing {}) by {}, after {} approver(s)",
        plan.service.as_str(),
        plan.version,
        plan.previous.as_deref().unwrap_or("nothing"),
        word(&plan.strategy),
        plan.approvals
    );
    for t in &plan.transitions {
        println!(
            "  t+{:>5} s  {:>3} %{}{}",
            t.at_seconds,
            t.weight,
            if t.gate {
                "  after a person's approval"
            } else {
                ""
            },
            if t.analysed {
                "  then one interval analysed"
            } else {
                ""
            }
        );
    }
    let extra = &plan.extra_capacity;
    println!(
        "at least {} s; the replaced version stays warm {} s; extra capacity {} × {} for {:.2} node-hours{}",
        plan.minimum_seconds,
        plan.rollback_window_seconds,
        extra.nodes,
        extra.instance_type,
        extra.node_hours,
        extra
            .cost_usd
            .map_or(String::new(), |c| format!(" (${c:.2})"))
    );
}

/// Prints each new analysis until the deployment ends; fails when it does not succeed.
async fn follow(args: &ClientArgs, id: &str) -> anyhow::Result<()> {
    let api = client(args)?;
    let mut shown = 0;
    let mut service = None;
    let mut waiting_said = false;
    loop {
        let view = api.deployment(id).await?;
        // A promotion deploys its services in turn: each has its own analyses.
        let now = view.deployment.as_ref().map(|d| d.service);
        if now != service {
            if let Some(s) = now.filter(|_| service.is_some()) {
                println!("next: {}", s.as_str());
            }
            service = now;
            shown = 0;
        }
        let analyses = view
            .deployment
            .as_ref()
            .map(|d| d.analyses.clone())
            .unwrap_or_default();
        for analysis in analyses.iter().skip(shown) {
            if args.output == Output::Json {
                println!("{}", serde_json::to_string(analysis)?);
            } else {
                let m = &analysis.metrics;
                println!(
                    "{:>3} %  {:>6} requests  {:>5} errors  p99 {:>7}  {}: {}",
                    analysis.weight,
                    m.requests,
                    m.errors,
                    m.p99_ms.map_or("—".into(), |p| format!("{p:.0} ms")),
                    word(&analysis.verdict),
                    analysis.reasons.join("; ")
                );
            }
        }
        shown = analyses.len();
        match view.status {
            OperationStatus::Succeeded => {
                let version = view
                    .deployment
                    .as_ref()
                    .map_or("", |d| d.release.version.as_str());
                println!("deployment {id} succeeded: {version} is stable");
                return Ok(());
            }
            OperationStatus::Failed | OperationStatus::Cancelled => {
                let cause = view
                    .error
                    .map(|e| format!("{}: {}", e.error, e.cause))
                    .unwrap_or_default();
                anyhow::bail!("deployment {id} {}: {cause}", word(&view.status));
            }
            OperationStatus::AwaitingApproval if !waiting_said => {
                println!(
                    "deployment {id} waits for a person: `envplane deployments promote {id}` or `… abort {id}`"
                );
                waiting_said = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_view(args: &ClientArgs, view: &DeploymentView) {
    if args.output == Output::Json {
        print_json(view);
        return;
    }
    let Some(d) = &view.deployment else {
        println!("{}: {}", view.id, word(&view.status));
        return;
    };
    println!(
        "{}  {} {} to {}: {} at {} % ({})",
        view.id,
        d.service.as_str(),
        d.release.version,
        view.environment,
        word(&view.status),
        d.progress.weight,
        word(&d.strategy)
    );
    if let Some(url) = &view.url {
        println!("load balancer  {url}");
    }
    for a in &d.analyses {
        println!(
            "  {:>3} %  {}: {}",
            a.weight,
            word(&a.verdict),
            a.reasons.join("; ")
        );
    }
}

/// Runs a `deployments` command.
pub async fn run(command: DeploymentsCommand) -> anyhow::Result<()> {
    if let DeploymentsCommand::Rollback {
        id,
        wait,
        client: args,
    } = command
    {
        let accepted = client(&args)?.rollback_deployment(&id, &new_key()).await?;
        let rollback = accepted.response.operation.id.clone();
        if args.output == Output::Json && !wait {
            print_json(&accepted.response);
            return Ok(());
        }
        println!("rollback {rollback} of deployment {id}");
        if wait {
            follow(&args, &rollback).await?;
        }
        return Ok(());
    }
    let (args, view) = match command {
        DeploymentsCommand::Get { id, client: args } => {
            let view = client(&args)?.deployment(&id).await?;
            (args, view)
        }
        DeploymentsCommand::Promote { id, client: args } => {
            let view = client(&args)?.decide_deployment(&id, true).await?;
            (args, view)
        }
        DeploymentsCommand::Abort { id, client: args } => {
            let view = client(&args)?.decide_deployment(&id, false).await?;
            (args, view)
        }
        DeploymentsCommand::Rollback { .. } => return Ok(()),
    };
    print_view(&args, &view);
    Ok(())
}
