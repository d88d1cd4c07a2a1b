//! Step Functions task payloads, as JSON fixtures, through the worker Lambda's handler.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_domain::commands::{self, Request};
use envplane_domain::{Blueprint, Caller, EnvName, Role, Tier, VpcCidr};
use envplane_fn_worker::handle;
use envplane_store::{Change, Expected, StateStore};
use envplane_worker::Worker;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;

const OPERATION: &str = "01JD0000000000000000000001";

fn event(name: &str) -> LambdaEvent<Value> {
    let path = format!(
        "{}/../../tests/fixtures/worker/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let payload = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    LambdaEvent::new(payload, Context::default())
}

async fn worker() -> (tempfile::TempDir, Arc<dyn StateStore>, Worker) {
    let (dir, store) = envplane_store::testing::embedded_store();
    let store: Arc<dyn StateStore> = Arc::new(store);
    let caller = Caller {
        principal: "alice".into(),
        role: Role::Admin,
    };
    let request = Request {
        caller: &caller,
        at: time::OffsetDateTime::now_utc(),
        operation_id: OPERATION.into(),
    };
    let m = commands::create(
        EnvName::parse("dev").unwrap(),
        Tier::Dev,
        Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
        None,
        Default::default(),
        &request,
    );
    let change = Change {
        environment: m.environment,
        expected: Expected::Absent,
        operation: Some(m.operation),
        audit: Some(m.audit),
        idempotency: None,
        claim_cidr: None,
        release_cidr: None,
    };
    store.commit(change).await.unwrap();
    let cloud = Simulator::new(
        LatencyProfile::Instant,
        Faults::NONE,
        Arc::new(time::OffsetDateTime::now_utc),
    );
    let worker = Worker::new(store.clone(), Arc::new(cloud));
    (dir, store, worker)
}

fn diagnostic(result: Result<Value, envplane_fn_worker::StepFailure>) -> Diagnostic {
    result.expect_err("should fail").into()
}

#[tokio::test]
async fn steps_answer_small_json() {
    let (_dir, store, worker) = worker().await;
    assert_eq!(
        handle(&worker, event("start.json")).await.unwrap()["started"],
        true
    );
    let network = handle(&worker, event("ensure-network.json")).await.unwrap();
    assert_eq!(
        (
            network["ready"].as_bool(),
            network["wait"].as_u64(),
            network["polls"].as_u64()
        ),
        (Some(true), Some(2), Some(1))
    );
    let env = store
        .environment(&EnvName::parse("dev").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env.status.phase.as_str(), "provisioning");
}

#[tokio::test]
async fn failures_carry_the_error_names_the_flows_match() {
    let (_dir, store, worker) = worker().await;
    let unknown = diagnostic(handle(&worker, event("unknown-action.json")).await);
    assert_eq!(unknown.error_type, "Envplane.Invalid");
    assert!(unknown.error_message.contains("launch.rockets"));
    let stale = diagnostic(handle(&worker, event("stale-operation.json")).await);
    assert_eq!(stale.error_type, "Envplane.Conflict");
    assert!(stale.error_message.contains("no longer holds"));

    let failed = handle(&worker, event("compensate.json")).await.unwrap();
    assert_eq!(failed["phase"], "failed");
    let env = store
        .environment(&EnvName::parse("dev").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (env.status.phase.as_str(), env.active_operation.as_deref()),
        ("failed", None)
    );
    assert_eq!(
        env.status.conditions[0].message,
        "CreateNatGateway: NatGatewayLimitExceeded"
    );
    let op = store.operation(OPERATION).await.unwrap().unwrap();
    assert_eq!(op.error.unwrap().error, "Envplane.Conflict");
}
