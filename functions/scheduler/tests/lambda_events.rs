//! Schedule inputs, as JSON fixtures, through the scheduler Lambda's handler on an embedded
//! store and the simulated cloud.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_domain::{EnvName, Tier};
use envplane_fn_scheduler::handle;
use envplane_store::StateStore;
use envplane_worker::jobs::Jobs;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;

fn event(name: &str) -> LambdaEvent<Value> {
    let path = format!(
        "{}/../../tests/fixtures/scheduler/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let payload = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    LambdaEvent::new(payload, Context::default())
}

fn plane() -> (tempfile::TempDir, Arc<dyn StateStore>, Arc<Simulator>, Jobs) {
    let (dir, store) = envplane_store::testing::embedded_store();
    let store: Arc<dyn StateStore> = Arc::new(store);
    let simulator = Arc::new(Simulator::new(
        LatencyProfile::Instant,
        Faults::NONE,
        Arc::new(time::OffsetDateTime::now_utc),
    ));
    let meter = simulator.clone();
    let jobs = Jobs::new(
        store.clone(),
        simulator.clone(),
        Arc::new(move || meter.calls()),
    );
    (dir, store, simulator, jobs)
}

#[tokio::test]
async fn a_drift_schedule_checks_its_tier_within_its_budget() {
    let (_dir, store, _simulator, jobs) = plane();
    // Recorded but never provisioned: not Ready, so not checked.
    let env = EnvName::parse("prod").unwrap();
    envplane_store::testing::mutations::create(store.as_ref(), &env, Tier::Prod, 2, |_| {}).await;
    let answer = handle(&jobs, event("drift-prod.json")).await.unwrap();
    assert_eq!(answer["drift"]["budget"], 200);
    assert_eq!(answer["drift"]["checked"], serde_json::json!([]));
}

#[tokio::test]
async fn housekeeping_answers_its_account() {
    let (_dir, _store, _simulator, jobs) = plane();
    let answer = handle(&jobs, event("housekeeping.json")).await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"housekeeping": {"expired_previews": [], "lost_operations": [], "rollbacks": [], "started": [], "expired_snapshots": [], "expired_approvals": [], "cooled": [], "backups": [], "images": [], "expired_images": []}})
    );
}

#[tokio::test]
async fn an_unknown_job_is_an_invalid_input() {
    let (_dir, _store, _simulator, jobs) = plane();
    let error = handle(&jobs, event("unknown-job.json")).await.unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "Envplane.Invalid");
    assert!(
        diagnostic.error_message.contains("defragment"),
        "{}",
        diagnostic.error_message
    );
}

#[tokio::test]
async fn a_drill_schedule_drills_only_what_has_a_recovery_point() {
    let (_dir, store, _simulator, jobs) = plane();
    // Recorded but never provisioned and never backed up: nothing to drill.
    let env = EnvName::parse("prod").unwrap();
    envplane_store::testing::mutations::create(store.as_ref(), &env, Tier::Prod, 2, |_| {}).await;
    let answer = handle(&jobs, event("drills-prod.json")).await.unwrap();
    assert_eq!(answer, serde_json::json!({"drills": []}));
}
