//! `envplane approvals`, `envplane approve`, `envplane reject`: an approver's inbox and
//! decisions.

use envplane_api::views::{ApprovalStanding, DecisionRequest};
use envplane_domain::approval::Verdict;

use super::client;
use crate::output::{print_json, time, word};
use crate::{ClientArgs, Output};

/// A decision's arguments.
#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    /// Operation id.
    pub id: String,
    /// Why (kept in the audit history).
    #[arg(long)]
    pub comment: Option<String>,
    /// The plan digest you reviewed (`envplane approvals` shows it): refused if the plan has
    /// changed since.
    #[arg(long)]
    pub plan_digest: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Lists the operations waiting for approvers.
pub async fn list(args: &ClientArgs) -> anyhow::Result<()> {
    let list = client(args)?.approvals().await?;
    if args.output == Output::Json {
        print_json(&list);
        return Ok(());
    }
    if list.items.is_empty() {
        println!("nothing waits for approval");
    }
    for item in &list.items {
        let op = &item.operation;
        let Some(approval) = &op.approval else {
            continue;
        };
        println!(
            "{}  {} of {} by {}: {} of {} approvers; plan {}; expires {}",
            op.id,
            word(&op.kind),
            op.environment,
            op.requested_by,
            item.approvers,
            item.required,
            approval.plan_digest,
            time(approval.expires_at)
        );
    }
    Ok(())
}

/// Approves or rejects an operation.
pub async fn decide(args: DecisionArgs, verdict: Verdict) -> anyhow::Result<()> {
    let request = DecisionRequest {
        decision: verdict,
        comment: args.comment,
        plan_digest: args.plan_digest,
    };
    let standing = client(&args.client)?.decide(&args.id, &request).await?;
    if args.client.output == Output::Json {
        print_json(&standing);
    } else {
        print_standing(&standing);
    }
    Ok(())
}

fn print_standing(standing: &ApprovalStanding) {
    println!(
        "operation {}: {} ({} of {} approvers)",
        standing.operation.id,
        word(&standing.standing),
        standing.approvers,
        standing.required
    );
}
