//! A real PostgreSQL as an environment's database host on a local plane, and what backups and
//! restores do to it: a cluster made with `initdb`, listening on loopback only, archiving its
//! WAL to a directory (the local stand-in for the stack's bucket); base backups with
//! `pg_basebackup`; restores into a new data directory that replay the archive up to a point
//! in time (`restore_command`, `recovery_target_time`) and then promote. A heartbeat table
//! (`envplane.heartbeat`) lets a restore measure what it recovered instead of assuming it.
//!
//! Run as root (as CI is), every PostgreSQL program runs as the `postgres` user, which owns
//! the directories: PostgreSQL refuses to run as root.
#![forbid(unsafe_code)]

mod cluster;
mod heartbeat;
mod hosts;

pub use cluster::{Backup, Cluster, Recovery};
pub use heartbeat::{Heartbeat, newest_heartbeat};
pub use hosts::LocalDatabases;

use std::path::{Path, PathBuf};

/// What can go wrong with a local database host.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No PostgreSQL programs found.
    #[error(
        "PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin (set ENVPLANE_PG_BIN, or install Debian's postgresql package)"
    )]
    NotInstalled,
    /// A program failed.
    #[error("{program} failed: {detail}")]
    Program {
        /// Which.
        program: String,
        /// Its exit and standard error.
        detail: String,
    },
    /// A file or process could not be handled.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A query failed.
    #[error("query: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Where PostgreSQL's programs are: `ENVPLANE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` with an `initdb`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds them.
    pub fn find() -> Result<Self, PgError> {
        if let Ok(dir) = std::env::var("ENVPLANE_PG_BIN") {
            let dir = PathBuf::from(dir);
            return if dir.join("initdb").exists() {
                Ok(Self { dir })
            } else {
                Err(PgError::NotInstalled)
            };
        }
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| PgError::NotInstalled)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((major, bin))
            })
            .collect();
        found.sort();
        found
            .pop()
            .map(|(_, dir)| Self { dir })
            .ok_or(PgError::NotInstalled)
    }

    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Whether this process is root: PostgreSQL's programs then run as `postgres`.
pub(crate) fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Hands `path` (recursively) to the `postgres` user when running as root, and lets it reach
/// the path's parent (temporary directories are private to their owner).
pub(crate) fn hand_over(path: &Path) -> Result<(), PgError> {
    if !is_root() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::PermissionsExt;
        let mut permissions = std::fs::metadata(parent)?.permissions();
        permissions.set_mode(permissions.mode() | 0o711);
        std::fs::set_permissions(parent, permissions)?;
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(PgError::Program {
            program: "chown".into(),
            detail: format!("{status} on {}", path.display()),
        })
    }
}
