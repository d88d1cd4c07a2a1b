//! Destruction: each step deletes the environment's resources of some kinds, dependents
//! first, and waits for them to be gone.

use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::EnvName;
use envplane_domain::resources::{self, ResourceKind};
use serde_json::Value;

use crate::flows::poll::{Estimate, answer, backoff, next_wait, seconds};
use crate::{Poll, Worker, WorkerError};

/// `kinds` with every kind of the teardown steps before the first step holding one of them
/// (dependents come first, so deleting them again is always in order).
fn with_earlier_steps(kinds: &[ResourceKind]) -> Vec<ResourceKind> {
    let mut all: Vec<ResourceKind> = ResourceKind::TEARDOWN_STEPS
        .iter()
        .take_while(|step| !step.iter().any(|k| kinds.contains(k)))
        .flat_map(|step| step.iter().copied())
        .collect();
    for kind in kinds {
        if !all.contains(kind) {
            all.push(*kind);
        }
    }
    all
}

impl Worker {
    /// Starts deleting what is left of `kinds` and answers what is not gone yet.
    pub(crate) async fn teardown(
        &self,
        env: &EnvName,
        operation: &str,
        kinds: &[ResourceKind],
        poll: Poll,
    ) -> Result<Value, WorkerError> {
        let (record, _) = self.held(env, operation).await?;
        // A step also takes what an earlier step should have taken and that appeared since:
        // a resource whose creation was in flight when a flow failed (a node group created by
        // a parallel branch as the rollback began) would otherwise block its parent for good.
        let kinds = with_earlier_steps(kinds);
        let kinds = kinds.as_slice();
        // The database host's PostgreSQL goes with it: stopped, its data and archive removed.
        if kinds.contains(&ResourceKind::DbInstance)
            && let Some(databases) = &self.databases
        {
            databases.remove(env).await?;
        }
        let mut remaining = match self.of_kinds(env, kinds).await {
            Ok(found) => found,
            // A throttled look is tried again after backing off, as the deletes are, rather
            // than failing the step: only a loop that never gets through gives up.
            Err(WorkerError::Throttled(why) | WorkerError::Transient(why)) => {
                let pending = format!("(not looked at yet: {why})");
                return answer(&[pending.as_str()], backoff(poll.wait), poll.polls, None);
            }
            Err(other) => return Err(other),
        };
        // Dependents first (reverse plan order), so a step that holds a chain, such as the
        // security groups that reference each other, mostly clears in one pass.
        let order: Vec<String> = resources::plan(env, &record.spec)
            .into_iter()
            .map(|p| p.name)
            .collect();
        remaining.sort_by_key(|r| std::cmp::Reverse(order.iter().position(|n| *n == r.name)));
        for resource in remaining
            .iter()
            .filter(|r| r.state != ResourceState::Deleting)
        {
            match self.cloud.delete(resource).await {
                Ok(()) => {}
                // AWS refuses while a dependent is still being deleted, or throttled this one
                // call: the next poll tries again, and the deletes that went through stay made,
                // rather than the whole step failing on one resource.
                Err(
                    e @ (CloudError::Conflict(_)
                    | CloudError::Throttled(_)
                    | CloudError::Transient(_)),
                ) => {
                    tracing::info!(resource = %resource.name, error = %e, "not deleted yet: tried again at the next poll");
                }
                Err(other) => return Err(other.into()),
            }
        }
        // What is left after this pass: deletions that finish at once do not cost a wait. When
        // that look fails, what was there is taken as still there, for the next poll.
        let left = if remaining.is_empty() {
            Vec::new()
        } else {
            match self.of_kinds(env, kinds).await {
                Ok(left) => left,
                Err(WorkerError::Throttled(_) | WorkerError::Transient(_)) => remaining,
                Err(other) => return Err(other),
            }
        };
        // The snapshots envplane took of the volumes go with them (never someone else's:
        // the cloud answers only this stack's).
        let snapshots = if kinds.contains(&ResourceKind::Volume) {
            self.delete_snapshots(env).await?
        } else {
            Vec::new()
        };
        let names: Vec<&str> = left
            .iter()
            .map(|r| r.name.as_str())
            .chain(snapshots.iter().map(String::as_str))
            .collect();
        // Deletions report no start time: the first look comes when the slowest kind's
        // deletion may first be done, later ones every twentieth of its typical time. Nor can
        // the look say when they are due, for the same reason.
        let slowest = left
            .iter()
            .map(|r| {
                let typical = r.kind().typical_delete_seconds();
                let elapsed = if poll.polls == 0 { 0 } else { seconds(typical) };
                Estimate::of(typical, elapsed)
            })
            .fold(None, Estimate::slower);
        answer(&names, next_wait(slowest), poll.polls, None)
    }

    /// Deletes the environment's snapshots; answers those still there (a throttled delete is
    /// tried again on the next poll).
    pub(crate) async fn delete_snapshots(&self, env: &EnvName) -> Result<Vec<String>, WorkerError> {
        let mut left = Vec::new();
        for snapshot in self.cloud.snapshots(env).await? {
            match self.cloud.delete_snapshot(&snapshot).await {
                Ok(()) => {}
                Err(CloudError::Throttled(_) | CloudError::Transient(_)) => {
                    left.push(snapshot.name)
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(left)
    }

    async fn of_kinds(
        &self,
        env: &EnvName,
        kinds: &[ResourceKind],
    ) -> Result<Vec<Resource>, WorkerError> {
        Ok(self
            .cloud
            .list(env)
            .await?
            .into_iter()
            .filter(|r| kinds.contains(&r.kind()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_also_takes_the_kinds_of_the_steps_before_it() {
        let second = ResourceKind::TEARDOWN_STEPS[1];
        let kinds = with_earlier_steps(second);
        // A node group that appeared after the first step is deleted before its cluster.
        for kind in ResourceKind::TEARDOWN_STEPS[0].iter().chain(second) {
            assert!(kinds.contains(kind), "{kind:?} in {kinds:?}");
        }
        assert!(!kinds.contains(&ResourceKind::Vpc));
        assert_eq!(
            with_earlier_steps(ResourceKind::TEARDOWN_STEPS[0]),
            ResourceKind::TEARDOWN_STEPS[0]
        );
    }
}
