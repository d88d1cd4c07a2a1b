//! Four-eyes approvals: which operations wait for someone other than the requester, how many
//! distinct approvers they need, and what a decision does. Pure: the API records decisions,
//! the flows wait for them.
//!
//! The rules, all enforced here: the requester never approves their own operation; an
//! approver counts once however often they answer; an admin is one approver like any other
//! (no bypass); a decision is bound to the digest of the plan it saw, so a changed plan voids
//! earlier approvals; an approval expires (7 days by default) and the operation then fails
//! having changed nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::audit::{AuditEntry, AuditEvent, canonical_json, sha256_hex};
use crate::auth::{Caller, Role};
use crate::blueprint::Tier;
use crate::environment::Environment;
use crate::lifecycle::{self, Transition};
use crate::operation::{Operation, OperationKind, OperationStatus};
use crate::spec::EnvironmentSpec;

/// How long an operation waits for its approvals before it fails, changing nothing.
pub const APPROVAL_TTL: Duration = Duration::days(7);

/// The error an operation fails with when its approvals did not come in time.
pub const APPROVAL_EXPIRED: &str = "Envplane.ApprovalExpired";

/// The error an operation fails with when an approver rejects it.
pub const REJECTED: &str = "Envplane.Rejected";

/// How many distinct approvers, other than the requester, an operation of `kind` on `tier`
/// needs: production's infrastructure changes, reconciles and destruction need two; nothing
/// else waits. Creating production is already limited to approvers by role. The plan of a
/// change states the same count (`ChangePlan::approvals`), from this function.
pub fn required(tier: Tier, kind: OperationKind) -> u8 {
    match (tier, kind) {
        (Tier::Prod, OperationKind::Update | OperationKind::Reconcile | OperationKind::Delete) => 2,
        // Deploys: qa and staging by one approver, production by two (the blueprints'
        // "manual approval" deploy policy); dev deploys at once.
        // A promotion is a deploy of what another tier proved.
        (Tier::Qa | Tier::Staging, OperationKind::Deploy | OperationKind::Promote) => 1,
        (Tier::Prod, OperationKind::Deploy | OperationKind::Promote) => 2,
        // A rollback within the window puts back a version that was approved and ran: in
        // an incident it must not wait for two people.
        _ => 0,
    }
}

/// The same for an operation on `environment`: its spec's deploy policy may ask for a
/// different number of approvers for deployments and promotions (never fewer than two on
/// production, which the spec's validation refuses).
pub fn required_for(environment: &crate::Environment, kind: OperationKind) -> u8 {
    let deploys = matches!(kind, OperationKind::Deploy | OperationKind::Promote);
    match environment.spec.deploy.as_ref().and_then(|d| d.approvals) {
        Some(n) if deploys => n,
        _ => required(environment.tier, kind),
    }
}

/// The digest of what an operation will do: its kind, its input and the spec it applies.
/// Approvals are bound to it.
pub fn plan_digest(kind: OperationKind, input: &Value, spec: &EnvironmentSpec) -> String {
    let material = json!({ "kind": kind, "input": input, "spec": spec });
    sha256_hex(canonical_json(&material).as_bytes())
}

/// What an approver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
// Named apart from the canary analysis' `Verdict` in the OpenAPI document.
#[schema(as = ApprovalVerdict)]
pub enum Verdict {
    /// Go ahead.
    Approve,
    /// Do not: the operation fails, having changed nothing.
    Reject,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Who decided (the token's subject).
    pub principal: String,
    /// Their role when they decided.
    pub role: Role,
    /// What they decided.
    pub verdict: Verdict,
    /// Why, as they wrote it.
    pub comment: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The plan they decided on.
    pub plan_digest: String,
}

/// An operation's approval: what it needs and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    /// Distinct approvers needed, none of them the requester.
    pub required: u8,
    /// The digest of the plan waiting for approval.
    pub plan_digest: String,
    /// When the operation fails unless approved.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Every decision, in order (including those voided by a changed plan).
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Who changed the plan while it waited: authors, like the requester, never approve it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amended_by: Vec<String>,
    /// The flow's task token while it waits (Step Functions `.waitForTaskToken`); never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub task_token: Option<String>,
}

impl Approval {
    /// A new approval of `required` approvers for the plan `plan_digest`, requested `at`.
    pub fn new(required: u8, plan_digest: String, at: OffsetDateTime) -> Self {
        Self {
            required,
            plan_digest,
            expires_at: at + APPROVAL_TTL,
            decisions: Vec::new(),
            amended_by: Vec::new(),
            task_token: None,
        }
    }

    /// Distinct approvers of the current plan so far.
    pub fn approvers(&self) -> usize {
        let mut seen: Vec<&str> = self
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve && d.plan_digest == self.plan_digest)
            .map(|d| d.principal.as_str())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Whether enough distinct approvers approved the current plan.
    pub fn granted(&self) -> bool {
        self.approvers() >= usize::from(self.required)
    }

    /// A copy without the task token, to show.
    pub fn redacted(&self) -> Self {
        Self {
            task_token: None,
            ..self.clone()
        }
    }
}

/// Where an approval stands after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// More approvers are needed.
    Pending,
    /// Enough distinct approvers approved: the flow goes on.
    Approved,
    /// Rejected: the operation fails, having changed nothing.
    Rejected,
}

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The caller may not decide (role, or they asked for the operation).
    #[error("{0}")]
    Forbidden(String),
    /// The operation is not (or no longer) waiting for this decision.
    #[error("{0}")]
    Conflict(String),
}

/// Records `caller`'s `verdict` on `operation`, made `at`: the operation with the decision (and
/// `running` once approved) and where the approval now stands. `seen_digest` is the plan the
/// caller reviewed, when they name it: a different current plan refuses the decision.
pub fn decide(
    operation: &Operation,
    caller: &Caller,
    verdict: Verdict,
    comment: Option<String>,
    seen_digest: Option<&str>,
    at: OffsetDateTime,
) -> Result<(Operation, Standing), ApprovalError> {
    let Some(approval) = &operation.approval else {
        return Err(ApprovalError::Conflict(format!(
            "operation {} does not need an approval",
            operation.id
        )));
    };
    if operation.status != OperationStatus::AwaitingApproval {
        return Err(ApprovalError::Conflict(format!(
            "operation {} is {}, not awaiting approval{}",
            operation.id,
            operation.status.as_str(),
            if operation.status == OperationStatus::Pending {
                " yet: try again in a moment"
            } else {
                ""
            }
        )));
    }
    if caller.role < Role::Approver {
        return Err(ApprovalError::Forbidden(format!(
            "deciding on an operation needs the approver role; {} holds {}",
            caller.principal,
            caller.role.as_str()
        )));
    }
    if caller.principal == operation.requested_by || approval.amended_by.contains(&caller.principal)
    {
        return Err(ApprovalError::Forbidden(format!(
            "{} asked for (or changed) operation {}: someone else must approve it (no one approves their own, admins included)",
            caller.principal, operation.id
        )));
    }
    if at >= approval.expires_at {
        return Err(ApprovalError::Conflict(format!(
            "the approval of operation {} expired at {}",
            operation.id, approval.expires_at
        )));
    }
    if let Some(seen) = seen_digest
        && seen != approval.plan_digest
    {
        return Err(ApprovalError::Conflict(format!(
            "the plan changed since you reviewed it ({seen}); it is now {}",
            approval.plan_digest
        )));
    }
    if approval
        .decisions
        .iter()
        .any(|d| d.principal == caller.principal && d.plan_digest == approval.plan_digest)
    {
        return Err(ApprovalError::Conflict(format!(
            "{} already decided on this plan of operation {}",
            caller.principal, operation.id
        )));
    }
    let mut next = operation.clone();
    let mut approval = approval.clone();
    approval.decisions.push(Decision {
        principal: caller.principal.clone(),
        role: caller.role,
        verdict,
        comment,
        at,
        plan_digest: approval.plan_digest.clone(),
    });
    let standing = match verdict {
        Verdict::Reject => Standing::Rejected,
        Verdict::Approve if approval.granted() => Standing::Approved,
        Verdict::Approve => Standing::Pending,
    };
    if standing == Standing::Approved {
        next.status = OperationStatus::Running;
    }
    next.approval = Some(approval);
    next.version += 1;
    next.updated_at = at;
    Ok((next, standing))
}

/// The flow reached its approval: the operation waits, holding the task token that ends the
/// wait, and keeps its environment until the approval expires (an hour more, for the flow to
/// fail), rather than for one ordinary lease.
pub fn awaiting(
    environment: &Environment,
    operation: &Operation,
    token: &str,
    at: OffsetDateTime,
) -> Transition {
    let mut op = lifecycle::next_operation(operation, at);
    op.status = OperationStatus::AwaitingApproval;
    let mut env = lifecycle::next(environment, at);
    if let Some(approval) = op.approval.as_mut() {
        approval.task_token = Some(token.to_owned());
        env.lease_expires_at = Some(approval.expires_at + Duration::hours(1));
        env.status.conditions.retain(|c| c.kind != "Approved");
        env.status.conditions.push(lifecycle::condition(
            "Approved",
            false,
            "AwaitingApproval",
            format!(
                "operation {} waits for {} approver(s) other than {} until {}",
                op.id, approval.required, op.requested_by, approval.expires_at
            ),
            at,
        ));
    }
    Transition {
        environment: env,
        operation: op,
        audit: None,
        release_cidr: false,
    }
}

/// `caller`'s decision was taken ([`decide`]): the operation as decided, audited with the
/// approver, their verdict, comment and the plan's digest. Once approved, the environment's
/// lease runs from now again.
pub fn recorded(
    environment: &Environment,
    decided: Operation,
    standing: Standing,
    caller: &Caller,
    at: OffsetDateTime,
) -> Transition {
    let mut env = lifecycle::next(environment, at);
    let approval = decided.approval.clone();
    let last = approval.as_ref().and_then(|a| a.decisions.last().cloned());
    if standing == Standing::Approved {
        env.lease_expires_at = Some(at + crate::commands::OPERATION_LEASE);
        env.status.conditions.retain(|c| c.kind != "Approved");
        env.status.conditions.push(lifecycle::condition(
            "Approved",
            true,
            "Approved",
            format!("operation {} approved", decided.id),
            at,
        ));
    }
    let action = match standing {
        Standing::Approved => "operation.approved",
        Standing::Rejected => "operation.rejected",
        Standing::Pending => "operation.approval",
    };
    let entry = AuditEntry {
        principal: caller.principal.clone(),
        role: caller.role,
        action: action.into(),
        operation: Some(decided.id.clone()),
        change: json!({
            "verdict": last.as_ref().map(|d| d.verdict),
            "comment": last.as_ref().and_then(|d| d.comment.clone()),
            "plan_digest": approval.as_ref().map(|a| a.plan_digest.clone()),
            "approvers": approval.as_ref().map(Approval::approvers),
            "required": approval.as_ref().map(|a| a.required),
            "standing": standing,
        }),
    };
    let audit = AuditEvent::link(&environment.name, &environment.audit_head, at, entry);
    env.audit_head = audit.head();
    Transition {
        environment: env,
        operation: decided,
        audit: Some(audit),
        release_cidr: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::EnvName;

    fn caller(principal: &str, role: Role) -> Caller {
        Caller {
            principal: principal.into(),
            role,
        }
    }

    fn waiting(required: u8) -> Operation {
        let at = OffsetDateTime::UNIX_EPOCH;
        Operation {
            id: "01OP".into(),
            environment: EnvName::parse("prod").unwrap_or_else(|e| panic!("{e}")),
            kind: OperationKind::Delete,
            status: OperationStatus::AwaitingApproval,
            requested_by: "alice".into(),
            requested_at: at,
            updated_at: at,
            input: json!({}),
            execution_arn: None,
            steps: Vec::new(),
            changes: Vec::new(),
            error: None,
            version: 2,
            approval: Some(Approval::new(required, "d1".into(), at)),
            deployment: None,
            promotion: None,
            restore: None,
        }
    }

    fn at(hours: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::hours(hours)
    }

    #[test]
    fn production_infrastructure_changes_and_destruction_need_two() {
        for kind in [
            OperationKind::Update,
            OperationKind::Reconcile,
            OperationKind::Delete,
        ] {
            assert_eq!(required(Tier::Prod, kind), 2);
            assert_eq!(required(Tier::Staging, kind), 0);
            assert_eq!(required(Tier::Dev, kind), 0);
        }
        assert_eq!(required(Tier::Prod, OperationKind::Create), 0);
    }

    #[test]
    fn two_distinct_approvers_other_than_the_requester_and_no_bypass() {
        let op = waiting(2);
        let requester = caller("alice", Role::Admin);
        assert!(matches!(
            decide(&op, &requester, Verdict::Approve, None, None, at(1)),
            Err(ApprovalError::Forbidden(_))
        ));
        assert!(matches!(
            decide(
                &op,
                &caller("olga", Role::Operator),
                Verdict::Approve,
                None,
                None,
                at(1)
            ),
            Err(ApprovalError::Forbidden(_))
        ));
        // An admin is one approver, not two.
        let (op, standing) = decide(
            &op,
            &caller("root", Role::Admin),
            Verdict::Approve,
            None,
            None,
            at(1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standing, Standing::Pending);
        assert!(matches!(
            decide(
                &op,
                &caller("root", Role::Admin),
                Verdict::Approve,
                None,
                None,
                at(2)
            ),
            Err(ApprovalError::Conflict(_))
        ));
        let (op, standing) = decide(
            &op,
            &caller("bob", Role::Approver),
            Verdict::Approve,
            Some("looks right".into()),
            Some("d1"),
            at(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standing, Standing::Approved);
        assert_eq!(op.status, OperationStatus::Running);
        assert_eq!(op.version, 4);
    }

    #[test]
    fn a_changed_plan_voids_earlier_approvals_and_a_stale_review_is_refused() {
        let (mut op, _) = decide(
            &waiting(2),
            &caller("bob", Role::Approver),
            Verdict::Approve,
            None,
            None,
            at(1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        if let Some(a) = op.approval.as_mut() {
            a.plan_digest = "d2".into();
        }
        assert_eq!(op.approval.as_ref().map(Approval::approvers), Some(0));
        assert!(matches!(
            decide(
                &op,
                &caller("carol", Role::Approver),
                Verdict::Approve,
                None,
                Some("d1"),
                at(2)
            ),
            Err(ApprovalError::Conflict(_))
        ));
        // bob may decide again on the new plan.
        let (op, standing) = decide(
            &op,
            &caller("bob", Role::Approver),
            Verdict::Approve,
            None,
            None,
            at(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standing, Standing::Pending);
        let (_, standing) = decide(
            &op,
            &caller("carol", Role::Approver),
            Verdict::Reject,
            None,
            None,
            at(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standing, Standing::Rejected);
    }

    #[test]
    fn an_expired_or_unstarted_approval_takes_no_decision() {
        let op = waiting(1);
        assert!(matches!(
            decide(
                &op,
                &caller("bob", Role::Approver),
                Verdict::Approve,
                None,
                None,
                at(24 * 7)
            ),
            Err(ApprovalError::Conflict(_))
        ));
        let mut pending = waiting(1);
        pending.status = OperationStatus::Pending;
        assert!(matches!(
            decide(
                &pending,
                &caller("bob", Role::Approver),
                Verdict::Approve,
                None,
                None,
                at(1)
            ),
            Err(ApprovalError::Conflict(_))
        ));
    }
}
