//! [`LocalDatabases`]: the database port on a local plane — one real PostgreSQL per
//! environment on loopback, under `root/<environment>/`:
//!
//! - `archive/` the WAL archive (the stack's bucket on AWS), filled continuously;
//! - `backups/<id>/` a base backup per recovery point, `backups/<id>.taken` when it ended;
//! - `hosts/<name>/` a cluster per host: `primary` first, then one per restore;
//! - `current` the host that serves the environment's endpoint.
//!
//! Every call is idempotent; a restarted plane finds its hosts again (`current` is started on
//! the first call that needs it). Dropping the adapter stops every cluster it started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use envplane_cloud::{CloudError, Databases, Health, RecoveryTarget, RestoreProgress};
use envplane_domain::EnvName;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::{Backup, Binaries, Cluster, Heartbeat, PgError, Recovery, newest_heartbeat};

/// How often a host writes its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// The first host of an environment.
const PRIMARY: &str = "primary";

struct Serving {
    host: String,
    cluster: Cluster,
    _heartbeat: Heartbeat,
}

#[derive(Default)]
struct Hosts {
    serving: BTreeMap<EnvName, Serving>,
    /// Restored clusters not switched to yet, by environment and restore.
    restored: BTreeMap<(EnvName, String), Cluster>,
}

/// Real PostgreSQL hosts for a local plane.
pub struct LocalDatabases {
    bins: Binaries,
    root: PathBuf,
    archive_timeout: Duration,
    hosts: Mutex<Hosts>,
}

fn failed(e: PgError) -> CloudError {
    match e {
        PgError::NotInstalled => CloudError::Invalid(e.to_string()),
        other => CloudError::Transient(other.to_string()),
    }
}

fn io(e: std::io::Error) -> CloudError {
    CloudError::Transient(e.to_string())
}

impl LocalDatabases {
    /// Hosts under `root`, archiving a WAL segment at least every `archive_timeout` (the
    /// floor of what a restore can lose).
    pub fn new(bins: Binaries, root: &Path, archive_timeout: Duration) -> Self {
        Self {
            bins,
            root: root.to_owned(),
            archive_timeout,
            hosts: Mutex::default(),
        }
    }

    fn env_dir(&self, env: &EnvName) -> PathBuf {
        self.root.join(env.as_str())
    }

    fn archive(&self, env: &EnvName) -> PathBuf {
        self.env_dir(env).join("archive")
    }

    fn host_dir(&self, env: &EnvName, host: &str) -> PathBuf {
        self.env_dir(env).join("hosts").join(host)
    }

    fn backup_dir(&self, env: &EnvName, id: &str) -> PathBuf {
        self.env_dir(env).join("backups").join(id)
    }

    /// `env`'s serving host, started (made first when `env` has none yet).
    async fn serving<'a>(
        &self,
        hosts: &'a mut Hosts,
        env: &EnvName,
    ) -> Result<&'a Serving, CloudError> {
        if !hosts.serving.contains_key(env) {
            let current = self.env_dir(env).join("current");
            let (host, cluster) = match std::fs::read_to_string(&current) {
                Ok(host) => {
                    let host = host.trim().to_owned();
                    let cluster = Cluster::open(
                        self.bins.clone(),
                        &self.host_dir(env, &host),
                        &self.archive(env),
                    )
                    .map_err(failed)?;
                    cluster.start().await.map_err(failed)?;
                    (host, cluster)
                }
                Err(_) => {
                    let dir = self.host_dir(env, PRIMARY);
                    if dir.exists() {
                        // A host whose making was interrupted: made again.
                        std::fs::remove_dir_all(&dir).map_err(io)?;
                    }
                    let cluster = Cluster::init(
                        self.bins.clone(),
                        &dir,
                        &self.archive(env),
                        self.archive_timeout,
                    )
                    .await
                    .map_err(failed)?;
                    cluster.start().await.map_err(failed)?;
                    std::fs::write(&current, PRIMARY).map_err(io)?;
                    (PRIMARY.to_owned(), cluster)
                }
            };
            let heartbeat = Heartbeat::start(&cluster, HEARTBEAT_EVERY)
                .await
                .map_err(failed)?;
            hosts.serving.insert(
                env.clone(),
                Serving {
                    host,
                    cluster,
                    _heartbeat: heartbeat,
                },
            );
        }
        hosts
            .serving
            .get(env)
            .ok_or_else(|| CloudError::Transient(format!("{env}'s database did not start")))
    }

    /// `source`'s base backups with when each ended, oldest first.
    fn backups(&self, source: &EnvName) -> Vec<(String, Backup)> {
        let dir = self.env_dir(source).join("backups");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, Backup)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".taken")?.to_owned();
                let text = std::fs::read_to_string(e.path()).ok()?;
                let taken_at = OffsetDateTime::parse(
                    text.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                let backup = Backup {
                    dir: dir.join(&name),
                    taken_at,
                };
                Some((name, backup))
            })
            .collect();
        found.sort_by_key(|(_, b)| b.taken_at);
        found
    }

    /// The base backup and how far to replay for `target`.
    fn plan(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
    ) -> Result<(Backup, Recovery), CloudError> {
        let backups = self.backups(source);
        let none = || CloudError::Invalid(format!("{source} has no recovery point to restore"));
        match target {
            RecoveryTarget::Backup(id) => backups
                .into_iter()
                .find(|(name, _)| name == id)
                .map(|(_, b)| (b, Recovery::Immediate))
                .ok_or_else(|| {
                    CloudError::Invalid(format!(
                        "{source} has no base backup for recovery point {id}"
                    ))
                }),
            RecoveryTarget::Time(at) => backups
                .into_iter()
                .rev()
                .find(|(_, b)| b.taken_at <= *at)
                .map(|(_, b)| (b, Recovery::Time(*at)))
                .ok_or_else(|| {
                    CloudError::Invalid(format!("{source} has no recovery point before {at}"))
                }),
            RecoveryTarget::Latest => backups
                .into_iter()
                .next_back()
                .map(|(_, b)| (b, Recovery::End))
                .ok_or_else(none),
        }
    }
}

#[async_trait]
impl Databases for LocalDatabases {
    async fn ensure(&self, env: &EnvName) -> Result<String, CloudError> {
        let mut hosts = self.hosts.lock().await;
        Ok(self
            .serving(&mut hosts, env)
            .await?
            .cluster
            .connection_string())
    }

    async fn endpoint(&self, env: &EnvName) -> Result<Option<String>, CloudError> {
        let hosts = self.hosts.lock().await;
        Ok(hosts
            .serving
            .get(env)
            .map(|s| s.cluster.connection_string()))
    }

    async fn back_up(&self, env: &EnvName, id: &str) -> Result<OffsetDateTime, CloudError> {
        let mut hosts = self.hosts.lock().await;
        if let Some((_, done)) = self.backups(env).into_iter().find(|(name, _)| name == id) {
            return Ok(done.taken_at);
        }
        let dest = self.backup_dir(env, id);
        if dest.exists() {
            // Interrupted before it was recorded: taken again.
            std::fs::remove_dir_all(&dest).map_err(io)?;
        }
        let serving = self.serving(&mut hosts, env).await?;
        let backup = serving.cluster.base_backup(&dest).await.map_err(failed)?;
        let stamp = backup
            .taken_at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| CloudError::Transient(e.to_string()))?;
        std::fs::write(dest.with_extension("taken"), stamp).map_err(io)?;
        Ok(backup.taken_at)
    }

    async fn restore(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
        into: &EnvName,
        restore: &str,
    ) -> Result<RestoreProgress, CloudError> {
        let mut hosts = self.hosts.lock().await;
        let key = (into.clone(), restore.to_owned());
        if hosts.restored.contains_key(&key)
            || hosts.serving.get(into).is_some_and(|s| s.host == restore)
        {
            return Ok(RestoreProgress::Done);
        }
        // A point in time while the source runs: what it committed up to now is archived
        // first, as a real host's archiver would have by the time the restore reads it.
        if matches!(target, RecoveryTarget::Time(_))
            && let Some(running) = hosts.serving.get(source)
        {
            running.cluster.archive_now().await.map_err(failed)?;
        }
        let (backup, recovery) = self.plan(source, target)?;
        let dir = self.host_dir(into, restore);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        // Its new timeline is archived apart until it is switched to.
        let cluster = Cluster::restore(
            self.bins.clone(),
            &backup,
            &self.archive(source),
            recovery,
            &dir,
            &dir.join("archive"),
        )
        .await
        .map_err(failed)?;
        hosts.restored.insert(key, cluster);
        // Done in the call: a local restore takes seconds.
        Ok(RestoreProgress::Done)
    }

    async fn verify(&self, into: &EnvName, restore: &str) -> Result<Health, CloudError> {
        let hosts = self.hosts.lock().await;
        let cluster = match hosts.restored.get(&(into.clone(), restore.to_owned())) {
            Some(cluster) => cluster,
            None => match hosts.serving.get(into) {
                Some(s) if s.host == restore => &s.cluster,
                _ => {
                    return Err(CloudError::Conflict(format!(
                        "{into} has no restored database {restore}"
                    )));
                }
            },
        };
        let client = cluster.client().await.map_err(failed)?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(|e| failed(e.into()))?;
        let newest_heartbeat = newest_heartbeat(&client).await.map_err(failed)?;
        Ok(Health { newest_heartbeat })
    }

    async fn switch(&self, into: &EnvName, restore: &str) -> Result<(), CloudError> {
        let mut hosts = self.hosts.lock().await;
        if hosts.serving.get(into).is_some_and(|s| s.host == restore) {
            return Ok(());
        }
        let Some(mut cluster) = hosts.restored.remove(&(into.clone(), restore.to_owned())) else {
            return Err(CloudError::Conflict(format!(
                "{into} has no restored database {restore}"
            )));
        };
        cluster
            .archive_to(&self.archive(into))
            .await
            .map_err(failed)?;
        let heartbeat = Heartbeat::start(&cluster, HEARTBEAT_EVERY)
            .await
            .map_err(failed)?;
        // The old host is stopped and kept: its directory stays for the rollback window.
        if let Some(old) = hosts.serving.remove(into) {
            old.cluster.stop().await.map_err(failed)?;
        }
        std::fs::write(self.env_dir(into).join("current"), restore).map_err(io)?;
        hosts.serving.insert(
            into.clone(),
            Serving {
                host: restore.to_owned(),
                cluster,
                _heartbeat: heartbeat,
            },
        );
        Ok(())
    }

    async fn discard(&self, into: &EnvName, restore: &str) -> Result<(), CloudError> {
        let mut hosts = self.hosts.lock().await;
        if hosts.serving.get(into).is_some_and(|s| s.host == restore) {
            return Err(CloudError::Conflict(format!(
                "restore {restore} already serves {into}: it is not discarded"
            )));
        }
        if let Some(cluster) = hosts.restored.remove(&(into.clone(), restore.to_owned())) {
            cluster.stop().await.map_err(failed)?;
        }
        let dir = self.host_dir(into, restore);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        Ok(())
    }

    async fn archived_until(&self, env: &EnvName) -> Result<Option<OffsetDateTime>, CloudError> {
        // WAL segments (24 hex digits, no suffix): when the newest was written to the archive.
        let Ok(entries) = std::fs::read_dir(self.archive(env)) else {
            return Ok(None);
        };
        let newest = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
            })
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max();
        Ok(newest.map(OffsetDateTime::from))
    }

    async fn remove(&self, env: &EnvName) -> Result<(), CloudError> {
        let mut hosts = self.hosts.lock().await;
        if let Some(serving) = hosts.serving.remove(env) {
            serving.cluster.stop().await.map_err(failed)?;
        }
        let restored: Vec<_> = hosts
            .restored
            .keys()
            .filter(|(e, _)| e == env)
            .cloned()
            .collect();
        for key in restored {
            if let Some(cluster) = hosts.restored.remove(&key) {
                cluster.stop().await.map_err(failed)?;
            }
        }
        let dir = self.env_dir(env);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        Ok(())
    }

    async fn present(&self) -> Result<Vec<EnvName>, CloudError> {
        let hosts = self.hosts.lock().await;
        let mut found: Vec<EnvName> = std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| EnvName::parse(e.file_name().to_str()?).ok())
                    .collect()
            })
            .unwrap_or_default();
        found.extend(hosts.serving.keys().cloned());
        found.extend(hosts.restored.keys().map(|(e, _)| e.clone()));
        found.sort();
        found.dedup();
        Ok(found)
    }
}
