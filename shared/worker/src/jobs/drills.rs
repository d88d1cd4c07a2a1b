//! Scheduled DR drills: every ready environment of the tiers a schedule names (monthly for
//! production, quarterly for staging by the template's defaults) is drilled — its newest
//! recovery point restored into an isolated environment in a free VPC block, checked,
//! measured and torn down by the restore flow, the evidence in its audit chain.

use std::collections::BTreeSet;

use envplane_domain::commands::{self, Request};
use envplane_domain::environment::Phase;
use envplane_domain::restore::{self, RestoreInto, RestorePoint};
use envplane_domain::{Caller, EnvName, Environment, Role, Tier, VpcCidr};
use envplane_store::{Change, CommitError, EnvironmentQuery, Expected};
use envplane_workflow::Flow;
use time::OffsetDateTime;

use super::{JobError, Jobs, SCHEDULER_PRINCIPAL};

impl Jobs {
    /// Starts a drill of every ready environment of `tiers` that has a recovery point and no
    /// operation running; answers each drilled environment with its drill's operation.
    pub async fn drills(&self, tiers: &[Tier]) -> Result<Vec<(EnvName, String)>, JobError> {
        let now = self.clock.now();
        let mut started = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_environments(&EnvironmentQuery {
                    cursor: cursor.clone(),
                    limit: 100,
                    ..EnvironmentQuery::default()
                })
                .await?;
            for env in &page.items {
                let drillable = tiers.contains(&env.tier)
                    && env.status.phase == Phase::Ready
                    && env.active_operation.is_none()
                    && env.expires_at.is_none()
                    && !env.recovery_points.is_empty();
                if drillable && let Some(op) = self.drill(env, now).await? {
                    started.push((env.name.clone(), op));
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(started)
    }

    /// Records one drill of `source` (a free block, tried again if another create took it)
    /// and starts its flow; `None` when no block is free.
    async fn drill(
        &self,
        source: &Environment,
        now: OffsetDateTime,
    ) -> Result<Option<String>, JobError> {
        let caller = Caller {
            principal: SCHEDULER_PRINCIPAL.into(),
            role: Role::Admin,
        };
        let mut taken: BTreeSet<VpcCidr> = BTreeSet::new();
        for _ in 0..4 {
            let mut in_use: BTreeSet<VpcCidr> =
                self.store.cidrs_in_use().await?.into_keys().collect();
            in_use.extend(taken.iter().copied());
            let Some(block) = VpcCidr::allocate(None, &in_use) else {
                tracing::warn!(environment = %source.name, "no drill: no free VPC block");
                return Ok(None);
            };
            let request = Request {
                caller: &caller,
                at: now,
                operation_id: ulid::Ulid::new().to_string(),
            };
            let Ok(name) = restore::drill_name(&source.name, &request.operation_id) else {
                return Ok(None);
            };
            let Ok(mutation) = commands::restore(
                source,
                RestorePoint::Latest,
                RestoreInto::Drill { name: name.clone() },
                None,
                Some(block),
                &request,
            ) else {
                return Ok(None);
            };
            let op = mutation.operation.id.clone();
            let change = Change {
                environment: mutation.environment,
                expected: Expected::Absent,
                operation: Some(mutation.operation),
                audit: Some(mutation.audit),
                idempotency: None,
                claim_cidr: Some(block),
                release_cidr: None,
            };
            match self.store.commit(change).await {
                Ok(()) => {}
                Err(CommitError::CidrTaken(lost)) => {
                    taken.insert(lost);
                    continue;
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
                Err(other) => {
                    tracing::warn!(error = %other, environment = %source.name, "no drill this run");
                    return Ok(None);
                }
            }
            if let Some(workflows) = &self.workflows
                && let Err(error) = workflows.start(Flow::Restore, &name, &op).await
            {
                // The outbox: housekeeping starts an accepted operation whose flow never did.
                tracing::error!(%error, drill = %name, operation = %op, "the drill's flow did not start");
            }
            return Ok(Some(op));
        }
        Ok(None)
    }
}
