//! Operations: the long-running changes an environment goes through.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::name::EnvName;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Provision a new environment.
    Create,
    /// Apply a spec change.
    Update,
    /// Destroy the environment.
    Delete,
    /// Bring the cloud back to the unchanged spec after drift.
    Reconcile,
    /// Deploy a service's new version (canary, blue/green or rolling).
    Deploy,
    /// Put back, in one weight change, the version a deployment replaced (within its window).
    Rollback,
    /// Deploy the versions another environment runs, service after service.
    Promote,
    /// Restore a database from a recovery point, in place or into a new environment.
    Restore,
    /// Restore the newest recovery point into an isolated environment, check it, measure the
    /// RTO and RPO, and tear it down whatever happened.
    Drill,
}

impl OperationKind {
    /// The kind's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Update => "update",
            OperationKind::Delete => "delete",
            OperationKind::Reconcile => "reconcile",
            OperationKind::Deploy => "deploy",
            OperationKind::Rollback => "rollback",
            OperationKind::Promote => "promote",
            OperationKind::Restore => "restore",
            OperationKind::Drill => "drill",
        }
    }

    /// The audit action recorded for requesting this kind of operation.
    pub fn audit_action(self) -> &'static str {
        match self {
            OperationKind::Create => "environment.create",
            OperationKind::Update => "environment.update",
            OperationKind::Delete => "environment.delete",
            OperationKind::Reconcile => "environment.reconcile",
            OperationKind::Deploy => "environment.deploy",
            OperationKind::Rollback => "environment.rollback",
            OperationKind::Promote => "environment.promote",
            OperationKind::Restore => "environment.restore",
            OperationKind::Drill => "environment.drill",
        }
    }

    /// What the operation is called in messages: `Provisioning of dev succeeded`.
    pub fn noun(self) -> &'static str {
        match self {
            OperationKind::Create => "Provisioning",
            OperationKind::Update => "Update",
            OperationKind::Delete => "Destruction",
            OperationKind::Reconcile => "Reconcile",
            OperationKind::Deploy => "Deployment",
            OperationKind::Rollback => "Rollback",
            OperationKind::Promote => "Promotion",
            OperationKind::Restore => "Restore",
            OperationKind::Drill => "DR drill",
        }
    }
}

/// What a failed provisioning leaves behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Delete, in reverse order, everything it made, as CloudFormation does (the default):
    /// nothing stays billed.
    #[default]
    Rollback,
    /// Keep what it made for inspection; a later delete removes it.
    Keep,
}

impl OnFailure {
    /// Parses `rollback` or `keep`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "rollback" => Ok(Self::Rollback),
            "keep" => Ok(Self::Keep),
            other => Err(format!("must be rollback or keep, got {other:?}")),
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Accepted; its flow has not started.
    Pending,
    /// Its flow is running.
    Running,
    /// Waiting for someone to approve.
    AwaitingApproval,
    /// Done.
    Succeeded,
    /// Stopped by an error; see `error`.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl OperationStatus {
    /// The status as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Pending => "pending",
            OperationStatus::Running => "running",
            OperationStatus::AwaitingApproval => "awaiting_approval",
            OperationStatus::Succeeded => "succeeded",
            OperationStatus::Failed => "failed",
            OperationStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the operation can still change the environment.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            OperationStatus::Pending | OperationStatus::Running | OperationStatus::AwaitingApproval
        )
    }
}

/// One step of an operation's flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationStep {
    /// State name in the flow.
    pub name: String,
    /// Step status.
    pub status: OperationStatus,
    /// When entered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// When left.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    /// Attempts that failed and were retried (throttling, transient errors).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The error of the last failed attempt, while it is retried or once it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What a wait loop's look found still pending (resource names), when the step is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// When the slowest of `waiting_for` is typically done, in seconds from that look (0 when
    /// it is overdue); absent when none of them exists yet to be timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_in_seconds: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationError {
    /// Error name, e.g. `Envplane.Conflict`.
    pub error: String,
    /// Root cause: which resource, which AWS error.
    pub cause: String,
}

/// An operation on an environment (the `OP#` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operation {
    /// ULID.
    pub id: String,
    /// The environment it acts on.
    #[schema(value_type = String)]
    pub environment: EnvName,
    /// What it does.
    pub kind: OperationKind,
    /// Where it is.
    pub status: OperationStatus,
    /// Who asked for it.
    pub requested_by: String,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// What was asked: the create request or the changes of an update.
    pub input: Value,
    /// The Step Functions execution running it, once started.
    pub execution_arn: Option<String>,
    /// Steps so far.
    pub steps: Vec<OperationStep>,
    /// What the flow changed in place, in order: each upgrade step, scaling call, resize.
    #[serde(default)]
    pub changes: Vec<AppliedChange>,
    /// Why it failed.
    pub error: Option<OperationError>,
    /// Bumped by every write of the record: each write is conditioned on the version it read
    /// (in-place changes are appended without one, see the store's `append_changes`).
    #[serde(default)]
    pub version: u64,
    /// The approvals it waits for, when its tier's policy asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::approval::Approval>,
    /// A deployment's version, steps and analyses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::deployment::Deployment>,
    /// A promotion's source, services and the deployments still to run or done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<crate::promotion::Promotion>,
    /// A restore's or a drill's source, point, target and measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::restore::Restore>,
}

impl Operation {
    /// The operation as shown to callers: without the task tokens its flow waits on (an
    /// approval's, a deployment's gate).
    pub fn redacted(mut self) -> Self {
        self.approval = self.approval.map(|a| a.redacted());
        if let Some(d) = self.deployment.as_mut() {
            d.wait_token = None;
        }
        self
    }

    /// Whether the operation runs the deploy flow (a deployment, a rollback, a promotion).
    pub fn deploys(&self) -> bool {
        matches!(
            self.kind,
            OperationKind::Deploy | OperationKind::Rollback | OperationKind::Promote
        )
    }

    /// What a failed provisioning leaves, as its request asked (operations recorded before
    /// the choice existed roll back).
    pub fn on_failure(&self) -> OnFailure {
        serde_json::from_value(self.input["on_failure"].clone()).unwrap_or_default()
    }

    /// Whether a failure (or a cancel, or a lost lease) of this operation is rolled back: a
    /// provisioning that did not ask to keep what it made.
    pub fn rolls_back(&self) -> bool {
        match self.kind {
            OperationKind::Create => self.on_failure() == OnFailure::Rollback,
            // A drill never leaves its environment; a restore into a new environment leaves
            // nothing billable, as a provisioning does.
            OperationKind::Drill => true,
            OperationKind::Restore => self
                .restore
                .as_ref()
                .is_some_and(|r| r.into != crate::restore::RestoreInto::InPlace),
            _ => false,
        }
    }

    /// Whether the operation makes its environment (a provisioning, a restore into a new
    /// environment, a drill): what a failure before anything was made leaves as a tombstone.
    pub fn creates(&self) -> bool {
        self.kind == OperationKind::Create
            || self.kind == OperationKind::Drill
            || self.restore.as_ref().is_some_and(|r| {
                matches!(r.into, crate::restore::RestoreInto::NewEnvironment { .. })
            })
    }
}

/// One in-place change a flow made to a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedChange {
    /// When the call was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The resource's name.
    pub resource: String,
    /// What was done, e.g. `version 1.29 → 1.30`.
    pub change: String,
    /// How long AWS typically takes to finish it, seconds: when the flow looks again.
    #[serde(default)]
    pub expected_seconds: u64,
}
