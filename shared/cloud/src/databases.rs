//! The database port: the PostgreSQL on an environment's host, as backups, restores and
//! drills need it. Locally a real PostgreSQL per environment on loopback (`envplane-postgres`);
//! on AWS the host's PostgreSQL through SSM Run Command, its WAL in the stack's bucket.

use async_trait::async_trait;
use envplane_domain::EnvName;
use time::OffsetDateTime;

use crate::CloudError;

/// What a restore replays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The recovery point `id` as it was taken (the base backup of that snapshot).
    Backup(String),
    /// The newest backup before the time, the archive replayed up to it.
    Time(OffsetDateTime),
    /// The newest backup, the whole archive replayed: the newest recovery point there is.
    Latest,
}

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreProgress {
    /// Restored: the database answers beside the target's, not serving yet.
    Done,
    /// Still under way (a volume hydrating, a host booting, WAL replaying): look again in
    /// about this many seconds.
    Pending {
        /// Seconds until it may be done.
        wait_seconds: u64,
    },
}

/// What the checks of a restored database found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The newest heartbeat it holds (what it recovered up to).
    pub newest_heartbeat: Option<OffsetDateTime>,
}

/// The PostgreSQL of each environment's database host.
#[async_trait]
pub trait Databases: Send + Sync {
    /// Starts `env`'s database (made on the first call): WAL archived continuously, a
    /// heartbeat written every few seconds. Its connection string.
    async fn ensure(&self, env: &EnvName) -> Result<String, CloudError>;

    /// How to connect to `env`'s database, when it runs.
    async fn endpoint(&self, env: &EnvName) -> Result<Option<String>, CloudError>;

    /// A base backup of `env`'s database for the recovery point `id` (a retried call finds
    /// it); when it ended.
    async fn back_up(&self, env: &EnvName, id: &str) -> Result<OffsetDateTime, CloudError>;

    /// Restores `source`'s database at `target` beside `into`'s (a new data directory, a new
    /// host on AWS) under the name `restore`, not serving yet: started by the first call, its
    /// progress on the next ones (a retried call finds what the first made).
    async fn restore(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
        into: &EnvName,
        restore: &str,
    ) -> Result<RestoreProgress, CloudError>;

    /// Checks the restored database: it answers, and what it holds.
    async fn verify(&self, into: &EnvName, restore: &str) -> Result<Health, CloudError>;

    /// The restored database becomes `into`'s database (its endpoint now answers there); the
    /// one it replaces is stopped and kept for a rollback window.
    async fn switch(&self, into: &EnvName, restore: &str) -> Result<(), CloudError>;

    /// Removes a restore that was not switched to (the undo of `restore`).
    async fn discard(&self, into: &EnvName, restore: &str) -> Result<(), CloudError>;

    /// The latest time a point-in-time restore of `env` can reach: when the newest WAL
    /// segment the archive holds was closed; `None` when nothing is archived continuously.
    async fn archived_until(&self, env: &EnvName) -> Result<Option<OffsetDateTime>, CloudError>;

    /// Removes everything of `env`'s database host: what a teardown does.
    async fn remove(&self, env: &EnvName) -> Result<(), CloudError>;

    /// The environments that have a database here: what an orphan check counts.
    async fn present(&self) -> Result<Vec<EnvName>, CloudError>;
}
