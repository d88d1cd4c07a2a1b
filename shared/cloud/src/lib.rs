//! The cloud port of envplane: create what a plan calls for, find what carries an
//! environment's tags, delete it. One adapter speaks to AWS through the SDK; the simulator
//! here stands in for it in local runs and in fault-injection tests.
#![forbid(unsafe_code)]

pub mod simulator;

use std::collections::BTreeMap;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::resources::{Planned, ResourceKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use simulator::{Faults, LatencyProfile, Simulator};

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

/// A resource as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Its kind.
    pub kind: ResourceKind,
    /// The cloud's id (`vpc-…`, a cluster name…).
    pub id: String,
    /// envplane's name for it.
    pub name: String,
    /// Its state.
    pub state: ResourceState,
    /// What it was made with, as reported back.
    pub attributes: Value,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When it was created, where the cloud says; how long it has been coming tells when to look again.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<time::OffsetDateTime>,
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

/// An in-place change to one resource: what the update flow calls, one step at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Modification {
    /// Node group scaling (`UpdateNodegroupConfig`).
    Scale {
        /// Fewest nodes.
        min: u32,
        /// Nodes wanted now.
        desired: u32,
        /// Most nodes.
        max: u32,
    },
    /// Kubernetes version of the control plane (`UpdateClusterVersion`) or of a node group
    /// (`UpdateNodegroupVersion`): one minor version up.
    Version {
        /// The version to move to.
        version: String,
    },
    /// gp3 size and performance (`ModifyVolume`).
    ModifyVolume {
        /// GiB.
        size_gb: u32,
        /// IOPS.
        iops: u32,
        /// MiB/s.
        throughput_mibps: u32,
    },
    /// Stop the host, before its type can change.
    StopInstance,
    /// Change a stopped host's instance type.
    InstanceType {
        /// The new type.
        instance_type: String,
    },
    /// Start the host.
    StartInstance,
    /// Add ingress rules, in the plan's shape (`{port, from}` or `{port, from_group}`).
    AuthorizeIngress {
        /// The rules.
        rules: Vec<Value>,
    },
    /// Remove ingress rules, in the plan's shape.
    RevokeIngress {
        /// The rules.
        rules: Vec<Value>,
    },
    /// Associate a route table with subnets (by envplane name).
    AssociateSubnets {
        /// The subnets' names.
        subnets: Vec<String>,
    },
}

impl Modification {
    /// Typical seconds AWS takes to finish the change: a control plane upgrade ~20 min, a node
    /// group rollout ~10, a minute for scaling or a host's start.
    pub fn typical_seconds(&self, kind: ResourceKind) -> u64 {
        match (kind, self) {
            (ResourceKind::Cluster, Modification::Version { .. }) => 1200,
            (ResourceKind::NodeGroup, Modification::Version { .. }) => 600,
            (_, Modification::Scale { .. } | Modification::StartInstance) => 60,
            (_, Modification::StopInstance) => 30,
            (_, Modification::ModifyVolume { .. }) => 10,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Modification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Modification::Scale { min, desired, max } => {
                write!(f, "scaling to min {min}, desired {desired}, max {max}")
            }
            Modification::Version { version } => write!(f, "version to {version}"),
            Modification::ModifyVolume {
                size_gb,
                iops,
                throughput_mibps,
            } => write!(
                f,
                "volume to {size_gb} GiB, {iops} IOPS, {throughput_mibps} MiB/s"
            ),
            Modification::StopInstance => f.write_str("stop"),
            Modification::InstanceType { instance_type } => {
                write!(f, "instance type to {instance_type}")
            }
            Modification::StartInstance => f.write_str("start"),
            Modification::AuthorizeIngress { rules } => {
                write!(f, "add ingress {}", serde_json::Value::from(rules.clone()))
            }
            Modification::RevokeIngress { rules } => {
                write!(
                    f,
                    "remove ingress {}",
                    serde_json::Value::from(rules.clone())
                )
            }
            Modification::AssociateSubnets { subnets } => {
                write!(f, "associate {}", subnets.join(", "))
            }
        }
    }
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
}
