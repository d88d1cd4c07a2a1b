//! The cloud port of envplane: create what a plan calls for, find what carries an
//! environment's tags, delete it. One adapter speaks to AWS through the SDK; the simulator
//! here stands in for it in local runs and in fault-injection tests.
#![forbid(unsafe_code)]

mod clock;
pub mod databases;
mod modification;
pub mod simulator;
pub mod traffic;
pub mod workloads;

use std::collections::BTreeMap;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::resources::{Observed, Planned, ResourceKind};
use serde::{Deserialize, Serialize};

pub use clock::{Clock, SharedClock, system_clock};

/// The `tracing` target of metric events: fields `metric`, `value` and `unit`, the others its
/// dimensions. The Lambdas turn them into CloudWatch embedded-metric-format lines; locally they
/// are log lines like any other.
pub const METRICS: &str = "envplane::metrics";
pub use databases::{Databases, Health, RecoveryTarget, RestoreProgress};
pub use modification::Modification;
pub use simulator::{
    ChangeDrawn, Faults, LOCAL_STACK, LatencyProfile, SimulatedDatabases, Simulator,
};
pub use traffic::{Slot, Traffic};
pub use workloads::{Track, Workload, Workloads};

/// Where a resource is in its life, as AWS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Being created.
    Creating,
    /// Usable.
    Active,
    /// Being deleted.
    Deleting,
    /// Creation failed.
    Failed,
}

impl ResourceState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Creating => "creating",
            ResourceState::Active => "active",
            ResourceState::Deleting => "deleting",
            ResourceState::Failed => "failed",
        }
    }
}

/// A resource as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The cloud's id (`vpc-…`, a cluster name…).
    pub id: String,
    /// envplane's name for it.
    pub name: String,
    /// Its state.
    pub state: ResourceState,
    /// What the cloud reports of it, by kind.
    pub observed: Observed,
    /// Whether an in-place change is still under way (an EKS update, a volume modification).
    #[serde(default)]
    pub updating: bool,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When it was created, where the cloud says; how long it has been coming tells when to look again.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<time::OffsetDateTime>,
}

impl Resource {
    /// Its kind.
    pub fn kind(&self) -> ResourceKind {
        self.observed.kind()
    }

    /// What the cloud reports of it as JSON (the kind under `kind`), for display and tests.
    pub fn attributes(&self) -> serde_json::Value {
        self.observed.to_json()
    }
}

/// Refuses to change or delete what `stack` did not make: `tags` (as the cloud holds them)
/// must carry the stack's tag and an environment's. The one ownership check every adapter
/// makes before a change or a delete.
pub fn check_owned(
    tags: &BTreeMap<String, String>,
    stack: &str,
    what: &str,
) -> Result<(), CloudError> {
    use envplane_domain::resources::tags as keys;
    if tags.get(keys::STACK).map(String::as_str) == Some(stack)
        && tags.contains_key(keys::ENVIRONMENT)
    {
        return Ok(());
    }
    Err(CloudError::Invalid(format!(
        "{what} does not carry this stack's tag {}={stack}: envplane never changes or deletes it",
        keys::STACK
    )))
}

/// Why a cloud call failed; the worker turns each into the `Envplane.*` error the flows match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The API throttled the call (retry with backoff).
    #[error("throttled: {0}")]
    Throttled(String),
    /// A passing failure (retry).
    #[error("transient failure: {0}")]
    Transient(String),
    /// The request can never succeed as made.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The cloud's state forbids it (a dependency, a quota).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Progress of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    /// Being taken.
    Pending,
    /// Done: the volume's data is safe.
    Completed,
}

/// A snapshot envplane took of an environment's volume (before a host resize): tracked, kept
/// for its tier's retention, and deleted with the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The cloud's id (`snap-…`).
    pub id: String,
    /// envplane's name for it (`{volume}-pre-{operation}`).
    pub name: String,
    /// When it was started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// A machine image envplane took of an environment's database host (the weekly AMI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The cloud's id (`ami-…`).
    pub id: String,
    /// envplane's name for it (`{host}-weekly-YYYYWww`).
    pub name: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// The snapshots it holds (deleted with it).
    pub snapshots: Vec<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The cloud, as the worker needs it.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// Creates each of `planned` that does not exist yet (found by name and environment tag),
    /// tagging it with the environment and `operation`; returns every one of them as it is now.
    /// A resource whose dependencies are not active yet is left for a later call.
    async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        planned: &[Planned],
    ) -> Result<Vec<Resource>, CloudError>;

    /// Every resource tagged with the environment.
    async fn list(&self, env: &EnvName) -> Result<Vec<Resource>, CloudError>;

    /// Starts deleting a resource; deleting one that is gone succeeds.
    async fn delete(&self, resource: &Resource) -> Result<(), CloudError>;

    /// Starts an in-place change of a resource of `env`. A change of the same kind already
    /// under way counts as made.
    async fn modify(
        &self,
        env: &EnvName,
        resource: &Resource,
        change: &Modification,
    ) -> Result<(), CloudError>;

    /// The snapshot `operation` takes of a volume: started by the first call (and tagged with
    /// the operation, so a retry finds it), then its progress.
    async fn snapshot(
        &self,
        env: &EnvName,
        operation: &str,
        volume: &Resource,
    ) -> Result<SnapshotState, CloudError>;

    /// The snapshots of `env`'s volumes this stack took.
    async fn snapshots(&self, env: &EnvName) -> Result<Vec<Snapshot>, CloudError>;

    /// Deletes one of them; deleting one that is gone succeeds, and anything without this
    /// stack's tag is refused.
    async fn delete_snapshot(&self, snapshot: &Snapshot) -> Result<(), CloudError>;

    /// Starts a machine image of `host` labelled `label` (without rebooting it), tagged with
    /// the environment and the stack; a retried call finds it.
    async fn image(&self, env: &EnvName, label: &str, host: &Resource) -> Result<(), CloudError>;

    /// The machine images of `env`'s hosts this stack took.
    async fn images(&self, env: &EnvName) -> Result<Vec<Image>, CloudError>;

    /// Deregisters one of them and deletes its snapshots; anything without this stack's tag is
    /// refused.
    async fn delete_image(&self, image: &Image) -> Result<(), CloudError>;
}
