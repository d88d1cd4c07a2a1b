//! The daily backup: when an environment's tier says it is due (05:00 UTC by default) and
//! nothing was taken since, a snapshot of its database volume, named for the day so that a
//! retried run finds it rather than taking another. Run by housekeeping, which runs every few
//! minutes on AWS (its schedule) and locally (the plane's own timer).

use envplane_domain::resources::ResourceKind;
use envplane_domain::{Blueprint, EnvName, Environment, backup, names};
use time::OffsetDateTime;

use super::{JobError, Jobs};

impl Jobs {
    /// `name`'s resource of `kind` named `resource`, as the cloud lists it.
    async fn resource_named(
        &self,
        name: &EnvName,
        kind: ResourceKind,
        resource: &str,
    ) -> Result<Option<envplane_cloud::Resource>, envplane_cloud::CloudError> {
        Ok(self
            .cloud
            .list(name)
            .await?
            .into_iter()
            .find(|r| r.kind() == kind && r.name == resource))
    }

    /// `name`'s snapshot taken under `label`, once the cloud lists it.
    async fn snapshot_labelled(
        &self,
        name: &EnvName,
        label: &str,
    ) -> Result<Option<envplane_cloud::Snapshot>, envplane_cloud::CloudError> {
        Ok(self
            .cloud
            .snapshots(name)
            .await?
            .into_iter()
            .find(|s| s.name.ends_with(label)))
    }

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
        let volume = match self
            .resource_named(&env.name, ResourceKind::Volume, &volume_name)
            .await
        {
            Ok(volume) => volume?,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "no backup: the volume was not found");
                return None;
            }
        };
        let label = backup::daily_label(now);
        match self.cloud.snapshot(&env.name, &label, &volume).await {
            Ok(_) => {
                self.base_backup(env, &label).await;
                Some(label)
            }
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "the daily backup was not started; the next run tries again");
                None
            }
        }
    }

    /// The database's own backup for the snapshot labelled `label` (a base backup locally, so
    /// that a restore of that recovery point replays from it), under the snapshot's id.
    async fn base_backup(&self, env: &Environment, label: &str) {
        let Some(databases) = &self.databases else {
            return;
        };
        let snapshot = match self.snapshot_labelled(&env.name, label).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "the base backup waits for the next run");
                return;
            }
        };
        let Some(snapshot) = snapshot else {
            return;
        };
        if let Err(error) = databases.back_up(&env.name, &snapshot.id).await {
            tracing::warn!(%error, environment = %env.name, snapshot = %snapshot.id, "the base backup was not taken");
        }
    }

    /// Takes a backup of `name` now (`POST …/backups`): a snapshot of its data volume labelled
    /// `backup-<unix nanos>`, the database's base backup under the snapshot's id, and the
    /// environment's recovery points recorded again. The new point.
    pub async fn back_up_now(&self, name: &EnvName) -> Result<backup::RecordedPoint, JobError> {
        self.store
            .environment(name)
            .await?
            .filter(|e| e.status.phase != envplane_domain::Phase::Deleted)
            .ok_or_else(|| JobError::NotReady(format!("no environment named {name}")))?;
        let volume_name = names::data_volume(name);
        let volume = self
            .resource_named(name, ResourceKind::Volume, &volume_name)
            .await?
            .ok_or_else(|| {
                JobError::NotReady(format!(
                    "{name} has no data volume {volume_name} to back up yet"
                ))
            })?;
        let now = self.clock.now();
        let label = format!("backup-{}", now.unix_timestamp_nanos());
        self.cloud.snapshot(name, &label, &volume).await?;
        let snapshot = self.snapshot_labelled(name, &label).await?.ok_or_else(|| {
            JobError::NotReady(format!("the snapshot {label} of {name} is not listed yet"))
        })?;
        if let Some(databases) = &self.databases {
            databases.back_up(name, &snapshot.id).await?;
        }
        self.record_recovery_points(name, now).await?;
        Ok(backup::RecordedPoint {
            id: snapshot.id,
            name: snapshot.name,
            taken_at: snapshot.started_at,
        })
    }

    /// Starts `env`'s weekly machine image of its database host when it is due; its label when
    /// it did.
    pub(crate) async fn image_if_due(
        &self,
        env: &Environment,
        now: OffsetDateTime,
    ) -> Option<String> {
        let policy = Blueprint::for_tier(env.tier).backups;
        let images = match self.cloud.images(&env.name).await {
            Ok(images) => images,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "images not looked at");
                return None;
            }
        };
        let newest = images.iter().map(|i| i.created_at).max();
        if !backup::image_due(&policy, newest, now) {
            return None;
        }
        let host_name = names::database_host(&env.name);
        let host = match self
            .resource_named(&env.name, ResourceKind::DbInstance, &host_name)
            .await
        {
            Ok(host) => host?,
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "no image: the host was not found");
                return None;
            }
        };
        let label = backup::weekly_label(now);
        match self.cloud.image(&env.name, &label, &host).await {
            Ok(()) => Some(label),
            Err(error) => {
                tracing::warn!(%error, environment = %env.name, "the weekly image was not started; the next run tries again");
                None
            }
        }
    }

    /// Deregisters `env`'s images past its tier's retention (never the newest); their names.
    pub(crate) async fn sweep_images(&self, env: &Environment, now: OffsetDateTime) -> Vec<String> {
        let policy = Blueprint::for_tier(env.tier).backups;
        let Ok(images) = self.cloud.images(&env.name).await else {
            return Vec::new();
        };
        let points: Vec<_> = images
            .iter()
            .map(|i| backup::RecoveryPoint {
                id: i.id.clone(),
                taken_at: i.created_at,
            })
            .collect();
        let expired = backup::expired(&points, &policy, now);
        let mut deleted = Vec::new();
        for image in images.into_iter().filter(|i| expired.contains(&i.id)) {
            match self.cloud.delete_image(&image).await {
                Ok(()) => deleted.push(image.name),
                Err(error) => {
                    tracing::warn!(%error, image = %image.id, "an expired image was not deregistered")
                }
            }
        }
        deleted
    }
}
