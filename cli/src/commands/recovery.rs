//! `backup`, `restore`, `drill` and `drills`: recovery points taken on request, restores in
//! place or into a new environment, and DR drills with their RTO and RPO against the targets.

use envplane_api::views::DrillView;
use envplane_domain::OperationStatus;
use envplane_domain::restore::DrillEvidence;
use serde_json::json;

use super::{accepted_then_watch, client, new_key, print_accepted};
use crate::output::print_json;
use crate::{ClientArgs, Output};

/// Options of `envplane restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The environment whose backups are restored.
    name: String,
    /// Restore to this time (RFC 3339): the newest backup before it, the WAL replayed to it.
    #[arg(long, conflicts_with = "backup", required_unless_present = "backup")]
    at: Option<String>,
    /// Restore this recovery point as it was taken (`envplane backups ENV` lists them).
    #[arg(long)]
    backup: Option<String>,
    /// Restore into a new environment of this name (default: in place, after approval).
    #[arg(long)]
    into: Option<String>,
    /// Follow the operation until it ends.
    #[arg(long)]
    wait: bool,
    /// Show what it would take (steps, RTO to expect, approvers, cost) and change nothing.
    #[arg(long, conflicts_with = "wait")]
    plan: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `envplane backup ENV`: a recovery point now.
pub async fn backup(name: &str, args: &ClientArgs) -> anyhow::Result<()> {
    let point = client(args)?.create_backup(name).await?;
    if args.output == Output::Json {
        print_json(&point);
    } else {
        println!(
            "backup {} of {name} taken at {} ({})",
            point.id, point.taken_at, point.name
        );
    }
    Ok(())
}

/// `envplane restore ENV --at TIME | --backup ID [--into NAME] [--wait]`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let mut body = match (&args.at, &args.backup) {
        (Some(at), _) => json!({ "point_in_time": at }),
        (None, Some(id)) => json!({ "backup_id": id }),
        (None, None) => anyhow::bail!("give --at TIME or --backup ID"),
    };
    body["target"] = match &args.into {
        Some(name) => json!({ "new_environment": name }),
        None => json!("in_place"),
    };
    if args.plan {
        let plan = client(&args.client)?
            .plan_restore(&args.name, &body)
            .await?;
        print_plan(&args.client, &plan);
        return Ok(());
    }
    let accepted = client(&args.client)?
        .restore(&args.name, &body, &new_key())
        .await?;
    accepted_then_watch(&args.client, accepted, "Restore", args.wait).await
}

/// `envplane drill ENV [--wait]`: a DR drill; with --wait its steps live, then its RTO and RPO
/// against the tier's targets.
pub async fn drill(name: &str, wait: bool, plan: bool, args: &ClientArgs) -> anyhow::Result<()> {
    let api = client(args)?;
    if plan {
        print_plan(args, &api.plan_drill(name).await?);
        return Ok(());
    }
    let accepted = api.drill(name, &new_key()).await?;
    let id = accepted.response.operation.id.clone();
    if !wait {
        print_accepted(args, &accepted, "DR drill");
        return Ok(());
    }
    if args.output != Output::Json {
        println!("DR drill {id} of {name} started");
    }
    let mut shown = 0;
    loop {
        let view = api.drill_view(&id).await?;
        if args.output != Output::Json {
            for mark in view.drill.marks.iter().skip(shown) {
                println!("  {}  {}", mark.at, mark.step);
            }
        }
        shown = view.drill.marks.len();
        if !view.status.is_active() {
            return finish(args, &view);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn finish(args: &ClientArgs, view: &DrillView) -> anyhow::Result<()> {
    if args.output == Output::Json {
        print_json(view);
    } else if let Some(evidence) = &view.drill.evidence {
        print_evidence(evidence);
    }
    if view.status == OperationStatus::Succeeded {
        Ok(())
    } else {
        let why = view
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.error, e.cause))
            .unwrap_or_default();
        anyhow::bail!("DR drill {} {}: {why}", view.id, view.status.as_str())
    }
}

/// Prints a restore's or a drill's plan.
fn print_plan(args: &ClientArgs, plan: &envplane_domain::restore_plan::RestorePlan) {
    if args.output == Output::Json {
        print_json(plan);
        return;
    }
    for step in &plan.steps {
        println!("  {:>6} s  {}", step.seconds, step.step);
    }
    let target = plan.targets.map_or(String::new(), |t| {
        format!(
            " (target {} min: {})",
            t.rto_minutes,
            if plan.within_rto_target == Some(true) {
                "within"
            } else {
                "OVER"
            }
        )
    });
    println!(
        "RTO to expect: {} s ({:.1} min){target}",
        plan.estimated_rto_seconds,
        plan.estimated_rto_seconds as f64 / 60.0
    );
    if plan.approvals > 0 {
        println!("approvers needed besides you: {}", plan.approvals);
    }
    println!(
        "cost: ${:.2} while it runs; ${:.2}/month afterwards",
        plan.cost_usd,
        plan.monthly_usd_after.usd()
    );
}

fn seconds(value: Option<i64>) -> String {
    value.map_or("-".into(), |s| format!("{s} s"))
}

fn print_evidence(e: &DrillEvidence) {
    let target =
        |minutes: Option<u32>| minutes.map_or("no target".into(), |m| format!("target {m} min"));
    let met = |m: Option<bool>| match m {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    println!("outcome: {:?}", e.outcome);
    println!(
        "RTO {} ({}, {})",
        seconds(e.rto_seconds),
        target(e.targets.map(|t| t.rto_minutes)),
        met(e.rto_met)
    );
    println!(
        "RPO {} ({}, {})",
        seconds(e.rpo_seconds),
        target(e.targets.map(|t| t.rpo_minutes)),
        met(e.rpo_met)
    );
    if e.left.is_empty() {
        println!(
            "drill environment {} torn down: nothing left",
            e.drill_environment
        );
    } else {
        println!(
            "LEFT BEHIND by {}: {}",
            e.drill_environment,
            e.left.join(", ")
        );
    }
}

/// `envplane drills ENV`: the drills' achieved RTO and RPO against the targets over time.
pub async fn drills(name: &str, args: &ClientArgs) -> anyhow::Result<()> {
    let history = client(args)?.drills(name).await?;
    if args.output == Output::Json {
        print_json(&history);
        return Ok(());
    }
    if history.items.is_empty() {
        println!("no drill of {name} yet: envplane drill {name} --wait");
    }
    for d in &history.items {
        let e = &d.evidence;
        println!(
            "{}  {}  {:?}  RTO {}  RPO {}  left {}",
            d.recorded_at,
            d.id,
            e.outcome,
            seconds(e.rto_seconds),
            seconds(e.rpo_seconds),
            e.left.len()
        );
    }
    Ok(())
}
