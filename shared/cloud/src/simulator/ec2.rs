//! The simulated EC2: volume modifications, the database host's stop / type change / start,
//! security group rules and route table associations, with EC2's refusals.

use envplane_domain::resources::{Observed, Power};

use crate::{CloudError, Modification, ResourceState};

/// Applies `change` to an EC2 resource. `Ok(false)` when the change is not an EC2 one.
pub(super) fn modify(
    id: &str,
    observed: &mut Observed,
    state: &mut ResourceState,
    change: &Modification,
) -> Result<bool, CloudError> {
    match (observed, change) {
        (
            Observed::Volume(v),
            Modification::ModifyVolume {
                size_gb,
                iops,
                throughput_mibps,
            },
        ) => {
            v.size_gb = Some(*size_gb);
            v.iops = Some(*iops);
            v.throughput_mibps = Some(*throughput_mibps);
        }
        (Observed::DbInstance(host), Modification::StopInstance) => {
            host.power = Power::Stopping;
            *state = ResourceState::Creating;
        }
        (Observed::DbInstance(host), Modification::InstanceType { instance_type }) => {
            if host.power != Power::Stopped {
                return Err(CloudError::Conflict(format!(
                    "IncorrectInstanceState: {id} must be stopped to change its type"
                )));
            }
            host.instance_type = Some(instance_type.clone());
        }
        (Observed::DbInstance(host), Modification::StartInstance) => host.power = Power::Pending,
        (Observed::SecurityGroup(g), Modification::AuthorizeIngress { rules }) => {
            for rule in rules {
                if !g.ingress.contains(rule) {
                    g.ingress.push(rule.clone());
                }
            }
        }
        (Observed::SecurityGroup(g), Modification::RevokeIngress { rules }) => {
            g.ingress.retain(|r| !rules.contains(r));
        }
        (Observed::RouteTable(t), Modification::AssociateSubnets { subnets }) => {
            for name in subnets {
                if !t.subnets.contains(name) {
                    t.subnets.push(name.clone());
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A change that has run its time settles: a stopping host stops, a starting one runs.
pub(super) fn settle(observed: &mut Observed, state: &mut ResourceState) {
    if let Observed::DbInstance(host) = observed {
        match host.power {
            Power::Stopping => host.power = Power::Stopped,
            Power::Pending => {
                host.power = Power::Running;
                *state = ResourceState::Active;
            }
            _ => {}
        }
    }
}

/// Whether a resource can be usable: a host only while it runs.
pub(super) fn powered(observed: &Observed) -> bool {
    match observed {
        Observed::DbInstance(host) => host.power == Power::Running,
        _ => true,
    }
}

/// A subnet was deleted: the route tables that served it no longer do, as in AWS.
pub(super) fn forget_subnet(observed: &mut Observed, subnet: &str) {
    if let Observed::RouteTable(t) = observed {
        t.subnets.retain(|n| n != subnet);
    }
}
