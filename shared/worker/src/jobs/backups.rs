//! The daily backup: when an environment's tier says it is due (05:00 UTC by default) and
//! nothing was taken since, a snapshot of its database volume, named for the day so that a
//! retried run finds it rather than taking another. Run by housekeeping, which runs every few
//! minutes on AWS (its schedule) and locally (the plane's own timer).

use envplane_domain::resources::ResourceKind;
use envplane_domain::{Blueprint, Environment, backup, names};
use time::OffsetDateTime;

use super::Jobs;

impl Jobs {
    /// Starts `env`'s daily backup when it is due; its label when it did.
    pub(crate) async fn back_up_if_due(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Option<String> {
        let policy = Blueprint::for_tier(env.tier).backups;
        let taken = match self.cloud.snapshots(&env.name).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "backups not looked at");
                return None;
            }
        };
        let newest = taken.iter().map(|s| s.started_at).max();
        if !backup::due(&policy, newest, now) {
            return None;
        }
        let volume_name = names::data_volume(&env.name);
        let volume = match self.cloud.list(&env.name).await {
            Ok(resources) => resources
                .into_iter()
                .find(|r| r.kind() == ResourceKind::Volume && r.name == volume_name)?,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "no backup: the volume was not found");
                return None;
            }
        };
        let label = backup::daily_label(now);
        match self.cloud.snapshot(&env.name, &label, &volume).await {
            Ok(_) => Some(label),
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "the daily backup was not started; the next run tries again");
                None
            }
        }
    }
}
