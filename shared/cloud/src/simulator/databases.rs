//! A modelled database host, for what no real PostgreSQL can show here: a restore on AWS
//! (a volume from the snapshot, a new host, WAL replay) takes minutes, each step drawn around
//! its median on the plane's clock, so a drill on the realistic profile measures a
//! whole-environment RTO. Also for fault injection. The local plane's default is the real
//! PostgreSQL of `envplane-postgres`, never this.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use envplane_domain::EnvName;
use time::OffsetDateTime;

use super::faults::{LatencyProfile, RESTORE_STEPS};
use crate::{CloudError, Databases, Health, RecoveryTarget, RestoreProgress, SharedClock};

struct Restoring {
    done_at: OffsetDateTime,
    /// The newest heartbeat the restore will hold (wall time).
    newest_heartbeat: OffsetDateTime,
}

#[derive(Default)]
struct State {
    serving: BTreeSet<EnvName>,
    restoring: BTreeMap<(EnvName, String), Restoring>,
    /// Every restore's steps, kept after its environment is gone (a drill's, for its report).
    drawn: BTreeMap<(EnvName, String), Vec<(&'static str, Duration)>>,
}

/// Modelled database hosts.
pub struct SimulatedDatabases {
    profile: LatencyProfile,
    seed: u64,
    clock: SharedClock,
    archive_timeout: Duration,
    state: Mutex<State>,
}

fn poisoned<T>(_: T) -> CloudError {
    CloudError::Transient("the simulated databases' state is poisoned".into())
}

impl SimulatedDatabases {
    /// Hosts whose restores take `profile`'s durations drawn with `seed`, on `clock`; a
    /// restore of the newest point loses up to `archive_timeout` of writes.
    pub fn new(
        profile: LatencyProfile,
        seed: u64,
        clock: SharedClock,
        archive_timeout: Duration,
    ) -> Self {
        Self {
            profile,
            seed,
            clock,
            archive_timeout,
            state: Mutex::default(),
        }
    }

    /// The steps the restore `restore` of `into` drew, in order, with their durations.
    pub fn steps_drawn(&self, into: &EnvName, restore: &str) -> Vec<(&'static str, Duration)> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.drawn.get(&(into.clone(), restore.to_owned())).cloned())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Databases for SimulatedDatabases {
    async fn ensure(&self, env: &EnvName) -> Result<String, CloudError> {
        self.state
            .lock()
            .map_err(poisoned)?
            .serving
            .insert(env.clone());
        Ok(format!("host=db.{env}.simulated port=5432 user=postgres"))
    }

    async fn endpoint(&self, env: &EnvName) -> Result<Option<String>, CloudError> {
        let serving = self.state.lock().map_err(poisoned)?.serving.contains(env);
        Ok(serving.then(|| format!("host=db.{env}.simulated port=5432 user=postgres")))
    }

    async fn back_up(&self, _env: &EnvName, _id: &str) -> Result<OffsetDateTime, CloudError> {
        Ok(self.clock.now())
    }

    async fn restore(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
        into: &EnvName,
        restore: &str,
    ) -> Result<RestoreProgress, CloudError> {
        let now = self.clock.now();
        let mut state = self.state.lock().map_err(poisoned)?;
        let key = (into.clone(), restore.to_owned());
        let State {
            restoring, drawn, ..
        } = &mut *state;
        let restoring = restoring.entry(key.clone()).or_insert_with(|| {
            let steps: Vec<(&'static str, Duration)> = RESTORE_STEPS
                .iter()
                .map(|(step, median)| {
                    let drawn =
                        self.profile
                            .restore_step(*median, self.seed, &format!("{restore} {step}"));
                    (*step, drawn)
                })
                .collect();
            let total: Duration = steps.iter().map(|(_, d)| *d).sum();
            // What the archive held when the restore began: up to one archive_timeout behind.
            let lag = match target {
                RecoveryTarget::Latest => self.profile.restore_step(
                    self.archive_timeout.as_secs_f64() / 2.0,
                    self.seed,
                    &format!("{restore} {source} archive lag"),
                ),
                _ => Duration::ZERO,
            };
            drawn.insert(key, steps);
            Restoring {
                done_at: now + total,
                newest_heartbeat: OffsetDateTime::now_utc() - lag.min(self.archive_timeout),
            }
        });
        if now >= restoring.done_at {
            return Ok(RestoreProgress::Done);
        }
        let left = (restoring.done_at - now).whole_seconds().max(1);
        Ok(RestoreProgress::Pending {
            wait_seconds: u64::try_from(left).unwrap_or(1),
        })
    }

    async fn verify(&self, into: &EnvName, restore: &str) -> Result<Health, CloudError> {
        let state = self.state.lock().map_err(poisoned)?;
        let restoring = state
            .restoring
            .get(&(into.clone(), restore.to_owned()))
            .ok_or_else(|| CloudError::Conflict(format!("{into} has no restore {restore}")))?;
        Ok(Health {
            newest_heartbeat: Some(restoring.newest_heartbeat),
        })
    }

    async fn switch(&self, into: &EnvName, _restore: &str) -> Result<(), CloudError> {
        self.state
            .lock()
            .map_err(poisoned)?
            .serving
            .insert(into.clone());
        Ok(())
    }

    async fn discard(&self, into: &EnvName, restore: &str) -> Result<(), CloudError> {
        self.state
            .lock()
            .map_err(poisoned)?
            .restoring
            .remove(&(into.clone(), restore.to_owned()));
        Ok(())
    }

    async fn archived_until(&self, env: &EnvName) -> Result<Option<OffsetDateTime>, CloudError> {
        // Archived continuously, up to one archive_timeout behind.
        let serving = self.state.lock().map_err(poisoned)?.serving.contains(env);
        Ok(serving.then(|| self.clock.now() - self.archive_timeout))
    }

    async fn remove(&self, env: &EnvName) -> Result<(), CloudError> {
        let mut state = self.state.lock().map_err(poisoned)?;
        state.serving.remove(env);
        state.restoring.retain(|(e, _), _| e != env);
        Ok(())
    }

    async fn present(&self) -> Result<Vec<EnvName>, CloudError> {
        let state = self.state.lock().map_err(poisoned)?;
        let mut found: BTreeSet<EnvName> = state.serving.clone();
        found.extend(state.restoring.keys().map(|(e, _)| e.clone()));
        Ok(found.into_iter().collect())
    }
}
