//! The simulated EKS: node group scaling and version upgrades, one minor version at a time,
//! node groups never ahead of their control plane, as EKS refuses.

use envplane_domain::resources::Observed;
use envplane_domain::spec::{eks_version, next_eks_version};

use crate::{CloudError, Modification};

/// Applies `change` to a cluster or node group whose control plane runs `cluster_version`.
/// `Ok(false)` when the change is not an EKS one.
pub(super) fn modify(
    name: &str,
    observed: &mut Observed,
    change: &Modification,
    cluster_version: Option<&str>,
) -> Result<bool, CloudError> {
    match (observed, change) {
        (Observed::NodeGroup(g), Modification::Scale { min, desired, max }) => {
            g.min = Some(*min);
            g.desired = Some(*desired);
            g.max = Some(*max);
        }
        (Observed::Cluster(c), Modification::Version { version }) => {
            c.version = Some(upgrade(name, c.version.as_deref(), version)?);
        }
        (Observed::NodeGroup(g), Modification::Version { version }) => {
            let next = upgrade(name, g.version.as_deref(), version)?;
            if cluster_version.and_then(eks_version) < eks_version(version) {
                return Err(CloudError::Invalid(format!(
                    "InvalidParameterException: node group {name} cannot run {version}, newer than its control plane"
                )));
            }
            g.version = Some(next);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `version` if it is one minor version above `current`.
fn upgrade(name: &str, current: Option<&str>, version: &str) -> Result<String, CloudError> {
    let current = current
        .ok_or_else(|| CloudError::Invalid(format!("{name} reports no Kubernetes version")))?;
    if next_eks_version(current, version).as_deref() != Some(version) {
        return Err(CloudError::Invalid(format!(
            "InvalidParameterException: {name} cannot move from {current} to {version}: one minor version up at a time"
        )));
    }
    Ok(version.to_owned())
}
