//! `envplane env …`: create, inspect, list, change, plan, check and destroy environments.

use envplane_client::EnvironmentFilter;
use envplane_domain::operation::OnFailure;
use serde_json::json;

use super::{accepted_then_watch, client, new_key, overrides};
use crate::output::{print_environment, print_json, print_table, word};
use crate::{ClientArgs, Output};

/// `envplane env …`
#[derive(Debug, clap::Subcommand)]
pub enum EnvCommand {
    /// Create an environment from its tier's blueprint.
    Create {
        /// Name: a lowercase DNS label of at most 40 characters.
        name: String,
        /// dev, qa, staging, prod or preview.
        #[arg(long)]
        tier: String,
        /// Override a blueprint default, e.g. --set cluster.frontend.desired=3 (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Idempotency key (default: a fresh one, reused by this command's own retries).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Keep what a failed provisioning made, for inspection, instead of rolling it back;
        /// `env delete` removes it.
        #[arg(long)]
        keep_on_failure: bool,
        /// Follow the provisioning until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one environment.
    Get {
        /// Environment name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List environments.
    List {
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Only this phase.
        #[arg(long)]
        phase: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Follow every page.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the desired spec, e.g. --set cluster.frontend.desired=3.
    Update {
        /// Environment name.
        name: String,
        /// Field to change (repeatable); `null` removes an optional field.
        #[arg(long = "set", value_name = "PATH=VALUE", required = true)]
        set: Vec<String>,
        /// Allow changes that replace a resource (a node group's instance type).
        #[arg(long)]
        allow_replacement: bool,
        /// Follow the update until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the last drift check: what differs between the cloud and the spec.
    Drift {
        /// Environment name.
        name: String,
        /// Check now (as a drift cycle does) instead of showing the last check.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put the cloud back to the environment's spec (after drift).
    Reconcile {
        /// Environment name.
        name: String,
        /// Follow the reconcile until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What a change would do (resources, monthly cost, time, approvals), without doing it.
    Plan {
        /// Environment name.
        name: String,
        /// Field to change (repeatable), as with `update`.
        #[arg(long = "set", value_name = "PATH=VALUE", required = true)]
        set: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Destroy an environment.
    Delete {
        /// Environment name.
        name: String,
        /// Only if the environment is still at this ETag.
        #[arg(long)]
        if_match: Option<String>,
        /// Follow the teardown until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs an `env` command.
pub async fn run(command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Create {
            name,
            tier,
            set,
            idempotency_key,
            keep_on_failure,
            wait,
            client: args,
        } => {
            let mut body = overrides(&set)?;
            body["name"] = json!(name);
            body["tier"] = json!(tier);
            let key = idempotency_key.unwrap_or_else(new_key);
            let on_failure = if keep_on_failure {
                OnFailure::Keep
            } else {
                OnFailure::Rollback
            };
            let accepted = client(&args)?
                .create_environment(&body, on_failure, &key)
                .await?;
            accepted_then_watch(&args, accepted, "create", wait).await
        }
        EnvCommand::Get { name, client: args } => {
            let env = client(&args)?.environment(&name).await?.value;
            match args.output {
                Output::Json => print_json(&env),
                Output::Table => print_environment(&env),
            }
            Ok(())
        }
        EnvCommand::List {
            tier,
            phase,
            limit,
            all,
            client: args,
        } => list(&args, tier, phase, limit, all).await,
        EnvCommand::Plan {
            name,
            set,
            client: args,
        } => plan(&args, &name, &set).await,
        EnvCommand::Update {
            name,
            set,
            allow_replacement,
            wait,
            client: args,
        } => {
            let api = client(&args)?;
            let etag = api.environment(&name).await?.etag;
            let patch = overrides(&set)?;
            let accepted = api
                .update_environment(&name, &patch, &etag, allow_replacement, &new_key())
                .await?;
            accepted_then_watch(&args, accepted, "update", wait).await
        }
        EnvCommand::Drift {
            name,
            now,
            client: args,
        } => drift(&args, &name, now).await,
        EnvCommand::Reconcile {
            name,
            wait,
            client: args,
        } => {
            let accepted = client(&args)?.reconcile(&name, &new_key()).await?;
            accepted_then_watch(&args, accepted, "reconcile", wait).await
        }
        EnvCommand::Delete {
            name,
            if_match,
            wait,
            client: args,
        } => {
            let accepted = client(&args)?
                .delete_environment(&name, if_match.as_deref(), &new_key())
                .await?;
            accepted_then_watch(&args, accepted, "delete", wait).await
        }
    }
}

async fn list(
    args: &ClientArgs,
    tier: Option<String>,
    phase: Option<String>,
    limit: usize,
    all: bool,
) -> anyhow::Result<()> {
    let api = client(args)?;
    let filter = EnvironmentFilter {
        tier,
        phase,
        limit: Some(limit),
    };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = api.environments(&filter, cursor.as_deref()).await?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if !all || cursor.is_none() {
            break;
        }
    }
    if args.output == Output::Json {
        print_json(&json!({ "items": items, "next_cursor": cursor }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|view| {
            let e = &view.environment;
            vec![
                e.name.to_string(),
                e.tier.to_string(),
                e.status.phase.as_str().to_owned(),
                e.spec.network.vpc_cidr.to_string(),
                e.spec.cluster.version.clone(),
                format!("${:.2}", view.cost.monthly_usd.usd()),
                e.active_operation.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "TIER",
            "PHASE",
            "VPC",
            "EKS",
            "COST/MONTH",
            "OPERATION",
        ],
        &rows,
    );
    if let Some(cursor) = cursor {
        println!("(more: --all, or the API with cursor={cursor})");
    }
    Ok(())
}

async fn plan(args: &ClientArgs, name: &str, set: &[String]) -> anyhow::Result<()> {
    let plan = client(args)?.plan(name, &overrides(set)?).await?;
    if args.output == Output::Json {
        print_json(&plan);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plan
        .resources
        .iter()
        .map(|r| {
            let changes: Vec<String> = r
                .changes
                .iter()
                .map(|(k, (from, to))| format!("{k}: {from} → {to}"))
                .collect();
            vec![
                word(&r.action),
                r.kind.as_str().to_owned(),
                r.name.clone(),
                changes.join(", "),
            ]
        })
        .collect();
    print_table(&["ACTION", "KIND", "NAME", "CHANGES"], &rows);
    if plan
        .resources
        .iter()
        .any(|r| r.action == envplane_domain::plan::ResourceAction::Replace)
    {
        println!(
            "a replacement is refused unless allowed: update with --allow-replacement to apply this"
        );
    }
    let approvals = if plan.approvals.is_empty() {
        "none".to_owned()
    } else {
        plan.approvals
            .iter()
            .map(word)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "monthly cost: ${:.2} → ${:.2} ({:+.2}); about {} s and {} state transitions to apply; approvals: {approvals}",
        plan.monthly_cost_before.usd(),
        plan.monthly_cost_after.usd(),
        plan.monthly_cost_delta_usd,
        plan.estimated_seconds,
        plan.estimated_transitions,
    );
    Ok(())
}

async fn drift(args: &ClientArgs, name: &str, now: bool) -> anyhow::Result<()> {
    let api = client(args)?;
    let report = if now {
        api.check_drift(name).await?
    } else {
        api.drift(name).await?
    };
    if args.output == Output::Json {
        print_json(&report);
        return Ok(());
    }
    println!(
        "{name}: {} (checked {}, {} AWS calls){}",
        word(&report.status),
        crate::output::time(report.checked_at),
        report.api_calls,
        report
            .note
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default()
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (what, list) in [
        ("missing", &report.missing),
        ("not in spec", &report.unexpected),
    ] {
        for r in list {
            rows.push(vec![
                what.to_owned(),
                r.kind.as_str().to_owned(),
                r.resource.clone(),
                String::new(),
            ]);
        }
    }
    for d in &report.changed {
        rows.push(vec![
            "changed".to_owned(),
            d.kind.as_str().to_owned(),
            d.resource.clone(),
            format!("{}: {} (spec {})", d.attribute, d.actual, d.expected),
        ]);
    }
    if !rows.is_empty() {
        print_table(&["DRIFT", "KIND", "RESOURCE", "DETAIL"], &rows);
        println!("to put it back: envplane env reconcile {name} --wait");
    }
    Ok(())
}

/// `envplane backups ENV`: recovery points, the restorable window, the policy.
pub async fn backups(name: &str, args: &ClientArgs) -> anyhow::Result<()> {
    let list = client(args)?.backups(name).await?;
    if args.output == Output::Json {
        print_json(&list);
        return Ok(());
    }
    let policy = &list.policy;
    println!(
        "daily at {:02}:00 UTC, kept {} days{}",
        policy.daily_at_utc_hour,
        policy.snapshot_retention_days,
        if policy.yearly_archive {
            ", one a year archived"
        } else {
            ""
        }
    );
    match (list.earliest, list.latest) {
        (Some(from), Some(to)) => println!("restorable from {from} to {to}"),
        _ => println!("no recovery point yet"),
    }
    for point in &list.items {
        println!("  {}  {}  {}", point.taken_at, point.id, point.name);
    }
    Ok(())
}
