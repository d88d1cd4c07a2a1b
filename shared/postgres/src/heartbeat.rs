//! The heartbeat: a row written every few seconds into `envplane.heartbeat`, so that a restore
//! or a drill measures what it recovered — its RPO is the time between the start of the
//! disaster and the newest heartbeat the restored database holds.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{Cluster, PgError};

const SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS envplane; \
     CREATE TABLE IF NOT EXISTS envplane.heartbeat (at timestamptz PRIMARY KEY DEFAULT clock_timestamp())";

/// A running heartbeat writer; stops when dropped.
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Writes a heartbeat into `cluster` every `every`, from now on (the table made first).
    pub async fn start(cluster: &Cluster, every: Duration) -> Result<Self, PgError> {
        let client = cluster.client().await?;
        client.batch_execute(SCHEMA).await?;
        client
            .execute("INSERT INTO envplane.heartbeat DEFAULT VALUES", &[])
            .await?;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                if let Err(e) = client
                    .execute("INSERT INTO envplane.heartbeat DEFAULT VALUES", &[])
                    .await
                {
                    tracing::warn!(error = %e, "a heartbeat was not written");
                    return;
                }
            }
        });
        Ok(Self { task })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The newest heartbeat `client`'s database holds, if any.
pub async fn newest_heartbeat(
    client: &tokio_postgres::Client,
) -> Result<Option<OffsetDateTime>, PgError> {
    let row = client
        .query_one("SELECT max(at) FROM envplane.heartbeat", &[])
        .await?;
    Ok(row.get(0))
}
