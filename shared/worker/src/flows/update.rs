//! Updating (and reconciling): each group's step creates what is missing, then makes one
//! in-place step per resource that differs (a scaling call, one minor version, a volume
//! change, the next stage of a host resize, rules, associations) and reports what is moving.

use envplane_cloud::{Modification, Resource, ResourceState, SnapshotState};
use envplane_domain::EnvName;
use envplane_domain::drift::differences;
use envplane_domain::operation::AppliedChange;
use envplane_domain::resources::{self, Desired, Group, Observed, Planned, Power, ResourceKind};
use envplane_domain::spec::{eks_version, next_eks_version};
use serde::Serialize;
use serde_json::Value;

use crate::flows::poll::{Estimate, answer, next_wait};
use crate::{Poll, Worker, WorkerError};

/// What a resource needs next.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Nothing: it matches the spec.
    InSync,
    /// It is moving (being created, updated, stopped); look again later.
    Wait,
    /// Make these changes, each with the words the operation records.
    Apply(Vec<(Modification, String)>),
}

/// A value as the JSON operators read in messages (`"t3.large"`, `2`, `null`).
fn shown<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A change described as it is shown: `add ingress [...]`.
fn described(change: Modification) -> (Modification, String) {
    let description = change.to_string();
    (change, description)
}

/// The next in-place step for an active resource that is not being updated (the host has its
/// own sequence). Versions move one minor at a time, node groups only up to their control plane.
fn next_step(p: &Planned, r: &Resource, cluster_version: Option<&str>) -> Step {
    let diff = differences(p, &r.observed);
    if diff.is_empty() {
        return Step::InSync;
    }
    let changed = |a: &str| diff.iter().any(|d| d.attribute == a);
    let mut out = Vec::new();
    // One minor version up; a node group waits (`None`) until its control plane is there.
    let version_step = |actual: Option<&str>, target: &str| {
        // An unreported version is unknown, not different (drift never lists it).
        let Some(actual) = actual else {
            return Some(Vec::new());
        };
        match next_eks_version(actual, target) {
            Some(next)
                if p.kind() == ResourceKind::Cluster
                    || cluster_version.and_then(eks_version) >= eks_version(&next) =>
            {
                let description = format!("version {actual} → {next}");
                Some(vec![(Modification::Version { version: next }, description)])
            }
            Some(_) => None,
            None => Some(Vec::new()),
        }
    };
    match (&p.desired, &r.observed) {
        (Desired::Cluster(want), Observed::Cluster(seen)) if changed("version") => {
            match version_step(seen.version.as_deref(), &want.version) {
                Some(steps) => out.extend(steps),
                None => return Step::Wait,
            }
        }
        (Desired::NodeGroup(want), Observed::NodeGroup(seen)) => {
            if changed("version") {
                match version_step(seen.version.as_deref(), &want.version) {
                    Some(steps) => out.extend(steps),
                    None => return Step::Wait,
                }
            }
            if out.is_empty() && (changed("min") || changed("desired") || changed("max")) {
                let (min, desired, max) = (want.min, want.desired, want.max);
                out.push((
                    Modification::Scale { min, desired, max },
                    format!(
                        "scaling {}/{}/{} → {min}/{desired}/{max} (min/desired/max)",
                        shown(&seen.min),
                        shown(&seen.desired),
                        shown(&seen.max)
                    ),
                ));
            }
        }
        (Desired::Volume(want), Observed::Volume(_)) => {
            out.push(described(Modification::ModifyVolume {
                size_gb: want.size_gb,
                iops: want.iops,
                throughput_mibps: want.throughput_mibps,
            }))
        }
        (Desired::SecurityGroup(want), Observed::SecurityGroup(seen)) if changed("ingress") => {
            let missing: Vec<_> = want
                .ingress
                .iter()
                .filter(|w| !seen.ingress.contains(w))
                .cloned()
                .collect();
            let extra: Vec<_> = seen
                .ingress
                .iter()
                .filter(|a| !want.ingress.contains(a))
                .cloned()
                .collect();
            if !missing.is_empty() {
                out.push(described(Modification::AuthorizeIngress { rules: missing }));
            }
            if !extra.is_empty() {
                out.push(described(Modification::RevokeIngress { rules: extra }));
            }
        }
        (Desired::RouteTable(want), Observed::RouteTable(seen)) if changed("subnets") => {
            let missing: Vec<String> = want
                .subnets
                .iter()
                .filter(|s| !seen.subnets.contains(s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                out.push(described(Modification::AssociateSubnets {
                    subnets: missing,
                }));
            }
        }
        _ => {}
    }
    if out.is_empty() {
        // Differences no in-place call can fix (a subnet's block): drift, not an update step.
        return Step::InSync;
    }
    Step::Apply(out)
}

/// The instance type a node group is asked to run and the one it runs, when they differ:
/// a change only a replacement makes.
fn replacement(p: &Planned, r: &Resource) -> Option<(Value, Value)> {
    match (&p.desired, &r.observed) {
        (Desired::NodeGroup(want), Observed::NodeGroup(seen))
            if differences(p, &r.observed)
                .iter()
                .any(|d| d.attribute == "instance_type") =>
        {
            Some((shown(&seen.instance_type), shown(&want.instance_type)))
        }
        _ => None,
    }
}

impl Worker {
    /// Brings a group's resources to the spec: creates what is missing (as `ensure` does), then
    /// makes one in-place step per resource that differs and answers which are still moving.
    pub(crate) async fn converge(
        &self,
        env: &EnvName,
        operation: &str,
        group: Group,
        poll: Poll,
    ) -> Result<Value, WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let allow_replacement = op.input["allow_replacement"].as_bool() == Some(true);
        let planned: Vec<Planned> = resources::plan(env, &record.spec)
            .into_iter()
            .filter(|p| p.group == group)
            .collect();
        let mut pending: Vec<String> = Vec::new();
        let mut applied: Vec<AppliedChange> = Vec::new();
        let mut slowest: Option<Estimate> = None;
        let now = self.clock.now();

        // Replacements first: a node group on the wrong instance type goes, and `ensure`
        // recreates it once it is gone. Only node groups need the rest of the environment (their
        // control plane's version), so only their step pays for a full look.
        let current = if group == Group::NodeGroups {
            self.cloud.list(env).await?
        } else {
            Vec::new()
        };
        for p in &planned {
            let Some(r) = current.iter().find(|r| r.name == p.name) else {
                continue;
            };
            let Some((runs, asked)) = replacement(p, r) else {
                continue;
            };
            if !allow_replacement {
                return Err(WorkerError::Invalid(format!(
                    "{} runs {runs} but the spec asks for {asked}: that replaces the node group, which this operation was not allowed to do",
                    p.name
                )));
            }
            let typical = ResourceKind::NodeGroup.typical_delete_seconds();
            let estimate = if r.state == ResourceState::Deleting {
                // Under way: as long as a deletion typically takes, from when it was asked for.
                op.changes
                    .iter()
                    .rfind(|c| c.resource == p.name)
                    .map_or(Estimate::of(typical, 0), |c| {
                        Estimate::of(c.expected_seconds, (now - c.at).whole_seconds())
                    })
            } else {
                self.cloud.delete(r).await?;
                applied.push(AppliedChange {
                    at: now,
                    resource: p.name.clone(),
                    change: format!("replacing: instance type {runs} → {asked}"),
                    expected_seconds: typical,
                });
                // Look again soon: a deletion that finishes at once costs no long wait.
                Estimate::of(1, 0)
            };
            pending.push(p.name.clone());
            slowest = Estimate::slower(slowest, estimate);
        }

        let existing = self.cloud.ensure(env, operation, &planned).await?;
        let cluster_version = current.iter().find_map(|r| match &r.observed {
            Observed::Cluster(c) => c.version.clone(),
            _ => None,
        });
        for p in &planned {
            if pending.contains(&p.name) {
                continue;
            }
            let Some(r) = existing.iter().find(|r| r.name == p.name) else {
                pending.push(p.name.clone());
                continue;
            };
            if r.state == ResourceState::Failed {
                return Err(WorkerError::Conflict(format!(
                    "{} {} ({}) failed",
                    r.kind().as_str(),
                    r.name,
                    r.id
                )));
            }
            let step = if p.kind() == ResourceKind::DbInstance {
                self.host_step(env, operation, p, r, &existing).await?
            } else if (r.state != ResourceState::Active
                // A group whose rules were all removed still exists: converge restores them.
                && !(r.kind() == ResourceKind::SecurityGroup && r.state == ResourceState::Creating))
                || r.updating
            {
                Step::Wait
            } else {
                next_step(p, r, cluster_version.as_deref())
            };
            match step {
                Step::InSync => continue,
                Step::Wait => {
                    pending.push(p.name.clone());
                    let last_change = op
                        .changes
                        .iter()
                        .chain(applied.iter())
                        .rev()
                        .find(|c| c.resource == p.name);
                    let created_since = |c: &AppliedChange| r.created_at.is_some_and(|t| t > c.at);
                    let estimate = match last_change {
                        Some(c) if !(r.state == ResourceState::Creating && created_since(c)) => {
                            Estimate::of(c.expected_seconds, (now - c.at).whole_seconds())
                        }
                        _ if r.state == ResourceState::Creating => {
                            let age = r.created_at.map_or(0, |t| (now - t).whole_seconds());
                            Estimate::of(r.kind().typical_create_seconds(), age)
                        }
                        _ => Estimate::of(0, 0),
                    };
                    slowest = Estimate::slower(slowest, estimate);
                }
                Step::Apply(changes) => {
                    for (change, description) in changes {
                        // EBS allows one modification of a volume per six hours: never twice;
                        // until AWS reports the new size, wait as for any change under way.
                        let made = matches!(change, Modification::ModifyVolume { .. })
                            .then(|| {
                                op.changes
                                    .iter()
                                    .rfind(|c| c.resource == p.name && c.change == description)
                            })
                            .flatten();
                        if let Some(c) = made {
                            let elapsed = (now - c.at).whole_seconds();
                            slowest = Estimate::slower(
                                slowest,
                                Estimate::of(c.expected_seconds, elapsed),
                            );
                            continue;
                        }
                        self.cloud.modify(env, r, &change).await?;
                        applied.push(AppliedChange {
                            at: now,
                            resource: p.name.clone(),
                            change: description,
                            expected_seconds: change.typical_seconds(r.kind()),
                        });
                        // Look again soon: a change that finishes at once costs no long wait;
                        // one still under way is then waited for as long as it typically lasts.
                        slowest = Estimate::slower(slowest, Estimate::of(1, 0));
                    }
                    pending.push(p.name.clone());
                }
            }
        }
        if !applied.is_empty() {
            self.record_changes(env, operation, applied).await?;
        }
        let pending: Vec<&str> = pending.iter().map(String::as_str).collect();
        answer(&pending, next_wait(slowest), poll.polls, slowest)
    }

    /// The next stage of resizing the database host: snapshot its volume, stop it, change its
    /// type, start it, and check it runs the new type.
    async fn host_step(
        &self,
        env: &EnvName,
        operation: &str,
        p: &Planned,
        host: &Resource,
        existing: &[Resource],
    ) -> Result<Step, WorkerError> {
        let (Desired::DbInstance(want), Observed::DbInstance(seen)) = (&p.desired, &host.observed)
        else {
            return Err(WorkerError::Invalid(format!(
                "{} is not a database host",
                p.name
            )));
        };
        let wanted = want.instance_type.as_str();
        let start = || (Modification::StartInstance, "start".to_owned());
        let Some(actual) = seen.instance_type.as_deref().filter(|t| *t != wanted) else {
            return Ok(match seen.power {
                Power::Running if host.state == ResourceState::Active => Step::InSync,
                // Resumed after the type changed but before the host was started.
                Power::Stopped => Step::Apply(vec![start()]),
                _ => Step::Wait,
            });
        };
        let volume = existing
            .iter()
            .find(|r| r.kind() == ResourceKind::Volume)
            .ok_or_else(|| {
                WorkerError::Conflict(format!("{}: the data volume is missing", p.name))
            })?;
        if self.cloud.snapshot(env, operation, volume).await? == SnapshotState::Pending {
            return Ok(Step::Wait);
        }
        Ok(match seen.power {
            Power::Running => Step::Apply(vec![(
                Modification::StopInstance,
                format!("snapshot of {} taken; stop to change type", volume.name),
            )]),
            Power::Stopped => Step::Apply(vec![
                (
                    Modification::InstanceType {
                        instance_type: wanted.to_owned(),
                    },
                    format!("instance type {actual} → {wanted}"),
                ),
                start(),
            ]),
            _ => Step::Wait,
        })
    }
}
