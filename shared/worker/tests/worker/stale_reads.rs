//! No change lost under stale reads: the update flow's parallel branches record their in-place
//! changes while the store's lookup of an operation by id lags (as DynamoDB's index can), on
//! the embedded store and on DynamoDB (moto).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_domain::{EnvName, Tier};
use envplane_store::StateStore;
use envplane_store::testing::{LaggingIndex, embedded_store, moto_store, mutations};
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, VirtualClock};
use time::OffsetDateTime;

/// Provisions `dev`, then changes both node groups, the database host's type and its volume in
/// one update (four parallel branches, seven recorded changes), and returns what the operation
/// recorded, read from the store underneath the lagging index.
async fn changes_recorded(store: Arc<dyn StateStore>) -> Vec<String> {
    let lagging: Arc<dyn StateStore> = Arc::new(LaggingIndex::new(store.clone()));
    let clock = Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH));
    let reader = clock.clone();
    let simulator = Arc::new(Simulator::new(
        LatencyProfile::Instant,
        Faults::NONE,
        Arc::new(move || reader.now()),
    ));
    let executor = Executor::new(
        Arc::new(Worker::new(lagging.clone(), simulator)),
        clock.clone(),
    );
    let env = EnvName::parse("dev").unwrap();
    let op = mutations::create(lagging.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    let outcome = executor
        .execute(
            &Flow::Provision.local_definition().unwrap(),
            execution_input(&env, &op),
            &op,
        )
        .await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let patch = serde_json::json!({
        "cluster": {"frontend": {"desired": 3}, "backend": {"desired": 3}},
        "database": {"instance_type": "t3.xlarge", "volume": {"size_gb": 80}},
    });
    let op = mutations::update(lagging.as_ref(), &env, &patch, false).await;
    let outcome = executor
        .execute(
            &Flow::Update.local_definition().unwrap(),
            execution_input(&env, &op),
            &op,
        )
        .await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let op = store.operation_of(&env, &op).await.unwrap().unwrap();
    op.changes
        .iter()
        .map(|c| format!("{}: {}", c.resource, c.change))
        .collect()
}

fn assert_nothing_lost(changes: &[String]) {
    for expected in [
        "dev-frontend: scaling 2/2/4 → 2/3/4 (min/desired/max)",
        "dev-backend: scaling 2/2/4 → 2/3/4 (min/desired/max)",
        "dev-db-data: volume to 80 GiB, 3000 IOPS, 125 MiB/s",
        "dev-db: snapshot of dev-db-data taken; stop to change type",
        "dev-db: instance type t3.large → t3.xlarge",
        "dev-db: start",
    ] {
        assert!(
            changes.iter().any(|c| c == expected),
            "lost {expected:?}; recorded {changes:#?}"
        );
    }
}

#[tokio::test]
async fn parallel_branches_lose_no_change_under_stale_reads_on_the_embedded_store() {
    let (_dir, store) = embedded_store();
    assert_nothing_lost(&changes_recorded(Arc::new(store)).await);
}

#[tokio::test]
async fn parallel_branches_lose_no_change_under_stale_reads_on_dynamodb() {
    let Some(store) = moto_store().await else {
        return;
    };
    assert_nothing_lost(&changes_recorded(Arc::new(store)).await);
}
