//! Provisioning: each group's step creates what is missing and reports what is not usable
//! yet, waiting as long as the slowest pending resource typically takes.

use envplane_cloud::ResourceState;
use envplane_domain::EnvName;
use envplane_domain::resources::{self, Group};
use serde_json::Value;

use crate::flows::poll::{Estimate, answer, next_wait};
use crate::{Poll, Worker, WorkerError};

impl Worker {
    /// Creates the group's missing resources (those whose dependencies are usable) and answers
    /// which are still pending.
    pub(crate) async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        group: Group,
        poll: Poll,
    ) -> Result<Value, WorkerError> {
        let (record, _) = self.held(env, operation).await?;
        let planned: Vec<_> = resources::plan(env, &record.spec)
            .into_iter()
            .filter(|p| p.group == group)
            .collect();
        let existing = self.cloud.ensure(env, operation, &planned).await?;
        if let Some(failed) = existing.iter().find(|r| r.state == ResourceState::Failed) {
            return Err(WorkerError::Conflict(format!(
                "{} {} ({}) failed to create",
                failed.kind().as_str(),
                failed.name,
                failed.id
            )));
        }
        let pending: Vec<&str> = planned
            .iter()
            .filter(|p| {
                !existing
                    .iter()
                    .any(|r| r.name == p.name && r.state == ResourceState::Active)
            })
            .map(|p| p.name.as_str())
            .collect();
        // The host is up: its PostgreSQL is started (made on the first call), archiving and
        // writing its heartbeat from now on.
        if group == Group::Database
            && pending.is_empty()
            && let Some(databases) = &self.databases
        {
            databases.ensure(env).await?;
        }
        let now = self.clock.now();
        // The slowest pending resource that exists, by its typical creation time.
        let slowest = existing
            .iter()
            .filter(|r| pending.contains(&r.name.as_str()))
            .map(|r| {
                let age = r.created_at.map_or(0, |t| (now - t).whole_seconds());
                Estimate::of(r.kind().typical_create_seconds(), age)
            })
            .fold(None, Estimate::slower);
        answer(&pending, next_wait(slowest), poll.polls, slowest)
    }
}
