//! In-place changes the update flow makes, one call each.

use envplane_domain::resources::{IngressRule, ResourceKind};
use serde::{Deserialize, Serialize};

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
    /// Add ingress rules (source groups by envplane name).
    AuthorizeIngress {
        /// The rules.
        rules: Vec<IngressRule>,
    },
    /// Remove ingress rules.
    RevokeIngress {
        /// The rules.
        rules: Vec<IngressRule>,
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
            Modification::AuthorizeIngress { rules } => write!(f, "add ingress {}", json(rules)),
            Modification::RevokeIngress { rules } => write!(f, "remove ingress {}", json(rules)),
            Modification::AssociateSubnets { subnets } => {
                write!(f, "associate {}", subnets.join(", "))
            }
        }
    }
}

/// Rules as the JSON operators know from the plan: `[{"from":"0.0.0.0/0","port":80}]`.
fn json(rules: &[IngressRule]) -> serde_json::Value {
    serde_json::to_value(rules).unwrap_or(serde_json::Value::Null)
}
