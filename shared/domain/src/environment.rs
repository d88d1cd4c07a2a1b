//! The environment record: desired spec, status and the bookkeeping that keeps changes safe.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditHead;
use crate::blueprint::Tier;
use crate::name::EnvName;
use crate::spec::EnvironmentSpec;

/// Where an environment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted; waiting for its provisioning flow.
    Pending,
    /// Resources are being created.
    Provisioning,
    /// Everything is up.
    Ready,
    /// A change is being applied.
    Updating,
    /// Being destroyed.
    Deleting,
    /// The last operation failed; see the conditions for the cause.
    Failed,
    /// Destroyed. The record stays as a tombstone so the audit chain goes on if the name is reused.
    Deleted,
}

impl Phase {
    /// Every phase, for parsing filters.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Updating,
        Phase::Deleting,
        Phase::Failed,
        Phase::Deleted,
    ];

    /// The phase's name as used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Provisioning => "provisioning",
            Phase::Ready => "ready",
            Phase::Updating => "updating",
            Phase::Deleting => "deleting",
            Phase::Failed => "failed",
            Phase::Deleted => "deleted",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown phase {s:?}; phases: {}",
                    Phase::ALL.map(Phase::as_str).join(", ")
                )
            })
    }
}

/// One observed fact about an environment, e.g. `NetworkReady`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Condition {
    /// Which condition, e.g. `ClusterReady`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it holds.
    pub status: bool,
    /// Machine-readable reason, e.g. `NodegroupCreating`.
    pub reason: String,
    /// What a person should know.
    pub message: String,
    /// When the status last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
}

/// Phase and conditions of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentStatus {
    /// Where the environment is in its life.
    pub phase: Phase,
    /// Observed facts.
    pub conditions: Vec<Condition>,
}

/// An environment as the store keeps it (the `META` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Environment {
    /// Unique name.
    #[schema(value_type = String)]
    pub name: EnvName,
    /// Tier it was created from.
    pub tier: Tier,
    /// Desired state.
    pub spec: EnvironmentSpec,
    /// Observed state summary.
    pub status: EnvironmentStatus,
    /// Optimistic-lock version, bumped by every change; the ETag.
    pub version: u64,
    /// The operation that currently holds the environment, if any.
    pub active_operation: Option<String>,
    /// When the active operation's hold lapses unless renewed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_expires_at: Option<OffsetDateTime>,
    /// Newest link of the audit chain.
    pub audit_head: AuditHead,
    /// When created.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Who created it.
    pub created_by: String,
    /// When last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Who last changed it.
    pub updated_by: String,
    /// The resources found in the cloud when the last operation finished.
    #[serde(default)]
    pub resources: Vec<ObservedResource>,
    /// When a preview is due for destruction.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// The last drift check's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::DriftReport>,
    /// The stable version of each service, once deployed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub releases: std::collections::BTreeMap<crate::names::Service, crate::deployment::Release>,
    /// Versions replaced by a deployment still running, without traffic, for its rollback
    /// window.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub warm: std::collections::BTreeMap<crate::names::Service, crate::deployment::WarmRelease>,
    /// What the deployment of each stable version found (a promotion attaches it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub evidence: std::collections::BTreeMap<crate::names::Service, crate::deployment::Evidence>,
    /// The database's recovery points, oldest first, as housekeeping last found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_points: Vec<crate::backup::RecordedPoint>,
}

/// A resource of the environment as last observed in the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObservedResource {
    /// Its kind.
    pub kind: crate::resources::ResourceKind,
    /// The cloud's id.
    pub id: String,
    /// envplane's name for it.
    pub name: String,
    /// Its state as the cloud reported it.
    pub state: String,
}

impl Environment {
    /// The strong ETag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}
