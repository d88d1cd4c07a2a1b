//! Versions kept warm past their rollback window: stopped, and forgotten by the environment.
//! Never while an operation holds the environment: a deployment replaces the warm version
//! itself, and a failing promotion may still need it to put the old version back.

use envplane_cloud::Slot;
use envplane_domain::Environment;
use envplane_domain::deployment;
use envplane_store::{Change, CommitError};
use time::OffsetDateTime;

use super::{JobError, Jobs};

impl Jobs {
    /// Stops `env`'s warm versions whose window closed; the services whose version stopped.
    pub(crate) async fn cool_warm(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, JobError> {
        let Some(traffic) = &self.traffic else {
            return Ok(Vec::new());
        };
        if env.active_operation.is_some() {
            return Ok(Vec::new());
        }
        let mut record = env.clone();
        let mut stopped = Vec::new();
        let due: Vec<_> = env
            .warm
            .iter()
            .filter(|(_, w)| w.until <= now)
            .map(|(s, _)| *s)
            .collect();
        for service in due {
            if let Err(error) = traffic.retire(&env.name, service, Slot::Canary).await {
                tracing::warn!(environment = %env.name, service = service.as_str(), %error, "a warm version could not be stopped; the next run tries again");
                continue;
            }
            let cooled = deployment::cooled(&record, service, now);
            match self.store.commit(Change::of(&record, cooled.clone())).await {
                Ok(()) => {
                    record = cooled;
                    stopped.push(service.as_str().to_owned());
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
                // Someone changed the environment meanwhile: the next run looks again.
                Err(_) => break,
            }
        }
        Ok(stopped)
    }
}
