//! Response documents.

use envplane_domain::approval::{Standing, Verdict};
use envplane_domain::cost::CostBreakdown;
use envplane_domain::{AuditEvent, Blueprint, Environment, Operation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An environment as the API shows it: the stored record and its estimated monthly cost.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentView {
    /// The record.
    #[serde(flatten)]
    pub environment: Environment,
    /// Estimated monthly cost of the desired spec.
    pub cost: CostBreakdown,
    /// Subnet blocks the spec lays out.
    pub subnets: Subnets,
    /// Each deployed service's load balancer address (locally, the weighted proxy on
    /// loopback), on a single environment's read.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub load_balancers: std::collections::BTreeMap<envplane_domain::names::Service, String>,
    /// How to connect to its database (locally: `psql "host=127.0.0.1 port=…"`), on a single
    /// environment's read, where the plane runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Public and private subnet blocks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Subnets {
    /// One public /24 per AZ.
    pub public: Vec<String>,
    /// One private /24 per AZ.
    pub private: Vec<String>,
}

impl From<Environment> for EnvironmentView {
    fn from(environment: Environment) -> Self {
        let cost = CostBreakdown::of(&environment.spec, environment.tier);
        let (public, private) = environment.spec.subnets();
        Self {
            environment,
            cost,
            subnets: Subnets { public, private },
            load_balancers: std::collections::BTreeMap::new(),
            database: None,
        }
    }
}

/// The answer to a mutation: the environment as changed, and the operation that applies it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MutationResponse {
    /// The environment after the change was recorded.
    pub environment: EnvironmentView,
    /// The operation that carries the change out.
    pub operation: Operation,
}

/// A page of environments.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentPage {
    /// The environments of this page.
    pub items: Vec<EnvironmentView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of audit events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Events of this page, oldest first.
    pub items: Vec<AuditEvent>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// A tier's blueprint with its monthly cost.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlueprintView {
    /// The blueprint.
    #[serde(flatten)]
    pub blueprint: Blueprint,
    /// Estimated monthly cost of the blueprint's defaults.
    pub cost: CostBreakdown,
}

/// Liveness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
    /// Version of envplane.
    pub version: String,
}

/// Body of `POST /v1/environments`. Sections are optional and partial: what is given is
/// merged onto the tier's blueprint.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body, which is read as JSON to report every field error
pub struct CreateEnvironmentRequest {
    /// Unique name: a lowercase DNS label of at most 40 characters.
    #[schema(example = "dev")]
    pub name: String,
    /// Tier whose blueprint gives the defaults.
    pub tier: envplane_domain::Tier,
    /// Overrides of the network section, e.g. `{"vpc_cidr": "10.9.0.0/16"}`.
    pub network: Option<serde_json::Value>,
    /// Overrides of the cluster section, e.g. `{"frontend": {"desired": 3}}`.
    pub cluster: Option<serde_json::Value>,
    /// Overrides of the database section.
    pub database: Option<serde_json::Value>,
    /// Hours until destruction; previews only.
    pub ttl_hours: Option<u32>,
}

/// The answer to a cancel: the operation, cancelled, and the delete that rolls back what a
/// cancelled provisioning made (unless it asked to keep it).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The cancelled operation.
    pub operation: Operation,
    /// The operation rolling back what it made, when there is one.
    pub rollback: Option<Operation>,
}

/// An approver's decision (`POST /v1/operations/{id}/approvals`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Approve or reject.
    pub decision: Verdict,
    /// Why (kept in the audit history), at most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub comment: Option<String>,
    /// The plan digest the approver reviewed: refused (409) when the plan has changed since.
    #[serde(default)]
    pub plan_digest: Option<String>,
}

/// Where an operation's approval stands.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalStanding {
    /// The operation (its task token never shown).
    pub operation: Operation,
    /// Pending, approved or rejected.
    pub standing: Standing,
    /// Distinct approvers of the current plan so far.
    pub approvers: usize,
    /// Distinct approvers needed.
    pub required: u8,
}

/// Operations waiting for approvers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalList {
    /// Each waiting operation with its standing.
    pub items: Vec<ApprovalStanding>,
}

/// A deployment as shown: where it stands and what every analysis found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentView {
    /// The deployment's id (its operation's).
    pub id: String,
    /// The environment.
    #[schema(value_type = String)]
    pub environment: envplane_domain::EnvName,
    /// The operation's status (`awaiting_approval` at a gate or a hold).
    pub status: envplane_domain::OperationStatus,
    /// The service, version, strategy, policy, weight, analyses and last decision (its task
    /// token never shown); absent only for an operation that deploys nothing.
    pub deployment: Option<envplane_domain::deployment::Deployment>,
    /// Why it failed, with the evidence.
    pub error: Option<envplane_domain::operation::OperationError>,
    /// The service's load balancer (locally, the weighted proxy on loopback).
    pub url: Option<String>,
}

/// A promotion as shown: the versions it carries from one environment to another, which are
/// done, which runs now and which wait, with the source's evidence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PromotionView {
    /// The promotion's id (its operation's).
    pub id: String,
    /// The source environment.
    #[schema(value_type = String)]
    pub from: envplane_domain::EnvName,
    /// The target environment.
    #[schema(value_type = String)]
    pub to: envplane_domain::EnvName,
    /// The operation's status (`awaiting_approval` for its approvers or at a gate).
    pub status: envplane_domain::OperationStatus,
    /// Who asked for it.
    pub requested_by: String,
    /// The services, in order.
    #[schema(value_type = Vec<String>)]
    pub services: Vec<envplane_domain::names::Service>,
    /// Deployments completed so far (undone again if a later one fails).
    pub done: Vec<envplane_domain::deployment::Deployment>,
    /// The deployment running now.
    pub current: Option<envplane_domain::deployment::Deployment>,
    /// Deployments still to run.
    pub pending: Vec<envplane_domain::deployment::Deployment>,
    /// The source's analyses of each promoted version.
    #[schema(value_type = Object)]
    pub evidence: std::collections::BTreeMap<
        envplane_domain::names::Service,
        envplane_domain::deployment::Evidence,
    >,
    /// Its approvals, when the target's tier asks for them.
    pub approval: Option<envplane_domain::approval::Approval>,
    /// Why it failed.
    pub error: Option<envplane_domain::operation::OperationError>,
}

impl PromotionView {
    /// The view of a promotion's operation; `None` for any other operation.
    pub fn of(op: Operation) -> Option<Self> {
        let op = op.redacted();
        let mut promotion = op.promotion?;
        let mut current = op.deployment;
        // Done: the last deployment is one of those done, not a current one.
        if op.status == envplane_domain::OperationStatus::Succeeded {
            promotion.done.extend(current.take());
        }
        Some(Self {
            id: op.id,
            from: promotion.from,
            to: op.environment,
            status: op.status,
            requested_by: op.requested_by,
            services: promotion.services,
            done: promotion.done,
            current,
            pending: promotion.pending,
            evidence: promotion.evidence,
            approval: op.approval,
            error: op.error,
        })
    }
}

impl DeploymentView {
    /// The view of a deploy operation.
    pub fn of(op: Operation, url: Option<String>) -> Self {
        let op = op.redacted();
        Self {
            id: op.id,
            environment: op.environment,
            status: op.status,
            deployment: op.deployment,
            error: op.error,
            url,
        }
    }
}

/// An environment's recovery points and what they allow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    /// Recovery points, oldest first.
    pub items: Vec<envplane_domain::backup::RecordedPoint>,
    /// The earliest time a restore can reach (the oldest point), if any.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub earliest: Option<time::OffsetDateTime>,
    /// The latest time a restore can reach: the newest archived WAL segment where the WAL is
    /// archived continuously (locally), else the newest point.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub latest: Option<time::OffsetDateTime>,
    /// The tier's policy: the daily hour (UTC), retention, yearly archive.
    pub policy: envplane_domain::blueprint::BackupPolicy,
}

/// A DR drill: its operation's status and what it measured.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DrillView {
    /// The drill's operation id.
    pub id: String,
    /// Where it is.
    pub status: envplane_domain::OperationStatus,
    /// Who asked for it (the scheduler's drills: `system:envplane`).
    pub requested_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: time::OffsetDateTime,
    /// Source, recovery point, drill environment, steps so far and, once ended, the evidence.
    pub drill: envplane_domain::restore::Restore,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<envplane_domain::operation::OperationError>,
}

impl DrillView {
    /// The view of a drill's operation; `None` for any other operation.
    pub fn of(op: envplane_domain::Operation) -> Option<Self> {
        let drill = op.restore.filter(|r| r.is_drill())?;
        Some(Self {
            id: op.id,
            status: op.status,
            requested_by: op.requested_by,
            requested_at: op.requested_at,
            drill,
            error: op.error,
        })
    }
}

/// One drill in an environment's history, as its audit chain holds it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DrillRecord {
    /// The drill's operation id.
    pub id: String,
    /// The audit event's sequence number.
    pub seq: u64,
    /// When the evidence was recorded.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: time::OffsetDateTime,
    /// What the drill proved.
    pub evidence: envplane_domain::restore::DrillEvidence,
}

/// An environment's drills, oldest first: achieved RTO and RPO against the targets over time.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DrillHistory {
    /// The drills.
    pub items: Vec<DrillRecord>,
}

/// A page of an environment's operations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationPage {
    /// The operations of this page, newest first (without their in-place changes: `GET
    /// /v1/operations/{id}` has them).
    pub items: Vec<envplane_domain::Operation>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
