//! One PostgreSQL cluster: made, started, backed up, restored to a point in time, stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::process::Command;

use crate::{Binaries, PgError, hand_over, is_root};

/// A running (or stopped) cluster; stopped at once when dropped.
#[derive(Debug)]
pub struct Cluster {
    bins: Binaries,
    data: PathBuf,
    archive: PathBuf,
    port: u16,
}

/// How far a restore replays the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// To the base backup's end: the recovery point as it was taken.
    Immediate,
    /// To a time.
    Time(OffsetDateTime),
    /// Everything archived.
    End,
}

/// A base backup: a data directory copy from which a restore replays the archive.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Where it is.
    pub dir: PathBuf,
    /// When it was taken (its end: the earliest time a restore from it can reach).
    pub taken_at: OffsetDateTime,
}

fn free_port() -> Result<u16, PgError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Runs `program` (as `postgres` when root) and fails with its standard error.
async fn run(bins: &Binaries, program: &str, args: &[&str]) -> Result<String, PgError> {
    let path = bins.program(program);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    // The programs run where `postgres` may stand, whatever this process's directory.
    let output = command.args(args).current_dir("/").output().await?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(PgError::Program {
            program: program.to_owned(),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

impl Cluster {
    /// A new cluster in `root/data` archiving its WAL to `archive` (made if missing), a
    /// segment at least every `archive_timeout` even when idle (the RPO's floor), listening on
    /// a free loopback port. Not started.
    pub async fn init(
        bins: Binaries,
        root: &Path,
        archive: &Path,
        archive_timeout: Duration,
    ) -> Result<Self, PgError> {
        let data = root.join("data");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(archive)?;
        hand_over(root)?;
        hand_over(archive)?;
        run(
            &bins,
            "initdb",
            &[
                "-D",
                &text(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        )
        .await?;
        let cluster = Self {
            bins,
            data,
            archive: archive.to_owned(),
            port: free_port()?,
        };
        cluster.configure(&format!(
            "wal_level = replica\narchive_mode = on\narchive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\narchive_timeout = {}\n",
            archive_timeout.as_secs().max(1),
            archive = text(archive),
        ))?;
        Ok(cluster)
    }

    /// Appends envplane's settings (and `extra`) to `postgresql.auto.conf`: loopback only,
    /// its own port and socket directory.
    fn configure(&self, extra: &str) -> Result<(), PgError> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.auto.conf"))?;
        write!(
            file,
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n{extra}",
            self.port,
            text(&self.data)
        )?;
        Ok(())
    }

    /// Starts it and waits until it accepts connections.
    pub async fn start(&self) -> Result<(), PgError> {
        // Beside the data directory: a base backup copies the data directory, not its log.
        let log = self.data.with_file_name("server.log");
        let started = run(
            &self.bins,
            "pg_ctl",
            &[
                "-D",
                &text(&self.data),
                "-l",
                &text(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .await;
        match started {
            Ok(_) => Ok(()),
            // The server's own words say why.
            Err(PgError::Program { program, detail }) => {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = said.lines().rev().take(5).collect();
                Err(PgError::Program {
                    program,
                    detail: format!(
                        "{detail}; server log: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Stops it (fast: sessions ended, a clean shutdown).
    pub async fn stop(&self) -> Result<(), PgError> {
        run(
            &self.bins,
            "pg_ctl",
            &["-D", &text(&self.data), "-m", "fast", "-w", "stop"],
        )
        .await
        .map(drop)
    }

    /// Archives its WAL to `archive` from now on (made if missing), and copies there what it
    /// archived before (a restored cluster's new timeline, kept apart until it is switched to,
    /// so that a discarded restore never leaves its timeline in the environment's archive).
    pub async fn archive_to(&mut self, archive: &Path) -> Result<(), PgError> {
        std::fs::create_dir_all(archive)?;
        hand_over(archive)?;
        let client = self.client().await?;
        let command = format!("test ! -f {to}/%f && cp %p {to}/%f", to = text(archive));
        client
            .execute(
                &format!("ALTER SYSTEM SET archive_command = '{command}'"),
                &[],
            )
            .await?;
        client.execute("SELECT pg_reload_conf()", &[]).await?;
        if self.archive != archive && self.archive.exists() {
            for entry in std::fs::read_dir(&self.archive)? {
                let entry = entry?;
                let target = archive.join(entry.file_name());
                if !target.exists() {
                    std::fs::copy(entry.path(), &target)?;
                }
            }
            hand_over(archive)?;
        }
        self.archive = archive.to_owned();
        Ok(())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// How a user connects: `psql "…"`.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// A client session (its connection driven on the runtime).
    pub async fn client(&self) -> Result<tokio_postgres::Client, PgError> {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL session ended");
            }
        });
        Ok(client)
    }

    /// Closes the current WAL segment and waits until the archive holds it: what was committed
    /// before this call can then be restored.
    pub async fn archive_now(&self) -> Result<(), PgError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await?;
        let segment: String = row.get(0);
        for _ in 0..300 {
            if self.archive.join(&segment).exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(PgError::Timeout(format!(
            "WAL segment {segment} was not archived"
        )))
    }

    /// A base backup into `dest` (which must not exist), the WAL it needs streamed with it.
    pub async fn base_backup(&self, dest: &Path) -> Result<Backup, PgError> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
            hand_over(parent)?;
        }
        run(
            &self.bins,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &text(dest),
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        )
        .await?;
        Ok(Backup {
            dir: dest.to_owned(),
            taken_at: OffsetDateTime::now_utc(),
        })
    }

    /// A cluster made earlier in `root/data` (by `init` or `restore`), on the port it was
    /// given then: what a restarted plane finds again. Not started.
    pub fn open(bins: Binaries, root: &Path, archive: &Path) -> Result<Self, PgError> {
        let data = root.join("data");
        let settings = std::fs::read_to_string(data.join("postgresql.auto.conf"))?;
        // The last `port = N` wins, as PostgreSQL reads it.
        let port = settings
            .lines()
            .filter_map(|l| l.strip_prefix("port = "))
            .filter_map(|p| p.trim().parse::<u16>().ok())
            .next_back()
            .ok_or_else(|| PgError::Program {
                program: "postgresql.auto.conf".into(),
                detail: format!("no port in {}", data.display()),
            })?;
        Ok(Self {
            bins,
            data,
            archive: archive.to_owned(),
            port,
        })
    }

    /// A new cluster in `root/data` from `backup`, replaying `from_archive` as far as
    /// `recovery` says, then promoted: started, writable, on its own port, archiving its own
    /// WAL (a new timeline) to `archive_to`.
    pub async fn restore(
        bins: Binaries,
        backup: &Backup,
        from_archive: &Path,
        recovery: Recovery,
        root: &Path,
        archive_to: &Path,
    ) -> Result<Self, PgError> {
        let data = root.join("data");
        std::fs::create_dir_all(root)?;
        std::fs::create_dir_all(archive_to)?;
        copy_dir(&backup.dir, &data)?;
        // PostgreSQL refuses a data directory others may read.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        }
        hand_over(root)?;
        hand_over(archive_to)?;
        let cluster = Self {
            bins,
            data,
            archive: archive_to.to_owned(),
            port: free_port()?,
        };
        let mut settings = format!(
            "restore_command = 'cp {}/%f %p'\nrecovery_target_action = 'promote'\narchive_command = 'test ! -f {to}/%f && cp %p {to}/%f'\n",
            text(from_archive),
            to = text(archive_to),
        );
        if recovery == Recovery::Immediate {
            settings.push_str("recovery_target = 'immediate'\n");
        }
        if let Recovery::Time(at) = recovery {
            // PostgreSQL reads microseconds and an explicit offset.
            let format = time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
            );
            let at = at
                .to_offset(time::UtcOffset::UTC)
                .format(&format)
                .map_err(|e| PgError::Program {
                    program: "recovery_target_time".into(),
                    detail: e.to_string(),
                })?;
            settings.push_str(&format!("recovery_target_time = '{at}'\n"));
        }
        cluster.configure(&settings)?;
        std::fs::write(cluster.data.join("recovery.signal"), "")?;
        hand_over(&cluster.data)?;
        cluster.start().await?;
        cluster.until_promoted().await?;
        Ok(cluster)
    }

    async fn until_promoted(&self) -> Result<(), PgError> {
        for _ in 0..600 {
            if let Ok(client) = self.client().await
                && let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await
                && !row.get::<_, bool>(0)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(PgError::Timeout(
            "the restored cluster did not finish its recovery".into(),
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nothing left running: an immediate stop, ignored when it is not running.
        let pg_ctl = self.bins.program("pg_ctl");
        let data = text(&self.data);
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = command
            .args(args)
            .current_dir("/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Copies a directory tree (a base backup is small: the local hosts' data).
fn copy_dir(from: &Path, to: &Path) -> Result<(), PgError> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
