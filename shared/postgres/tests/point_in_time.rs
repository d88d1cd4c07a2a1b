//! Point-in-time restore on a real PostgreSQL: 1,000 rows, a base backup, 500 more in five
//! timed batches, then a restore to a time between two batches holds exactly the rows
//! committed before it — and the heartbeats say how much was recovered. Skipped only where
//! PostgreSQL is missing and `ENVPLANE_REQUIRE_POSTGRES` is unset (the test command sets it).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use envplane_postgres::{Binaries, Cluster, Heartbeat, Recovery, newest_heartbeat};
use time::OffsetDateTime;

fn binaries() -> Option<Binaries> {
    match Binaries::find() {
        Ok(bins) => Some(bins),
        Err(e) if std::env::var_os("ENVPLANE_REQUIRE_POSTGRES").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

async fn count(cluster: &Cluster) -> (i64, Option<i32>) {
    let client = cluster.client().await.unwrap();
    let row = client
        .query_one("SELECT count(*), max(id) FROM items", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_point_in_time_holds_exactly_what_was_committed_before_it() {
    let Some(bins) = binaries() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let primary = Cluster::init(
        bins.clone(),
        &dir.path().join("primary"),
        &archive,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    primary.start().await.unwrap();
    let heartbeat = Heartbeat::start(&primary, Duration::from_millis(100))
        .await
        .unwrap();
    let client = primary.client().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO items (id) SELECT generate_series(1, 1000);",
        )
        .await
        .unwrap();
    let backup = primary
        .base_backup(&dir.path().join("backups/first"))
        .await
        .unwrap();

    // Five batches of 100, 300 ms apart; the target falls between the second and the third.
    let mut committed = Vec::new();
    for batch in 0..5 {
        let from = 1001 + batch * 100;
        client
            .execute(
                "INSERT INTO items (id) SELECT generate_series($1::int, $2::int)",
                &[&from, &(from + 99)],
            )
            .await
            .unwrap();
        committed.push(OffsetDateTime::now_utc());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let target = committed[1] + time::Duration::milliseconds(150);
    assert_eq!(count(&primary).await, (1500, Some(1500)));
    primary.archive_now().await.unwrap();

    let started = std::time::Instant::now();
    let restored = Cluster::restore(
        bins.clone(),
        &backup,
        &archive,
        Recovery::Time(target),
        &dir.path().join("restored"),
        &dir.path().join("restored-archive"),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(
        count(&restored).await,
        (1200, Some(1200)),
        "exactly the rows before {target}"
    );
    // What was recovered, measured: the newest heartbeat is at most one beat before the target.
    let newest = newest_heartbeat(&restored.client().await.unwrap())
        .await
        .unwrap()
        .unwrap();
    let gap = target - newest;
    assert!(
        gap >= time::Duration::ZERO && gap < time::Duration::milliseconds(400),
        "newest heartbeat {newest} against the target {target}"
    );
    // The restored cluster is a writable primary of its own.
    restored
        .client()
        .await
        .unwrap()
        .execute("INSERT INTO items (id) VALUES (99999)", &[])
        .await
        .unwrap();
    println!(
        "restore to {target}: 1200 of 1500 rows, newest heartbeat {} ms before the target, in {:.2} s",
        gap.whole_milliseconds(),
        took.as_secs_f64()
    );

    // A restore without a target replays everything archived.
    let latest = Cluster::restore(
        bins.clone(),
        &backup,
        &archive,
        Recovery::End,
        &dir.path().join("latest"),
        &dir.path().join("latest-archive"),
    )
    .await
    .unwrap();
    assert_eq!(count(&latest).await, (1500, Some(1500)));
    // A restore of the recovery point as taken holds what the backup held, nothing after.
    let as_taken = Cluster::restore(
        bins,
        &backup,
        &archive,
        Recovery::Immediate,
        &dir.path().join("as-taken"),
        &dir.path().join("as-taken-archive"),
    )
    .await
    .unwrap();
    assert_eq!(count(&as_taken).await, (1000, Some(1000)));
    drop(heartbeat);
}
