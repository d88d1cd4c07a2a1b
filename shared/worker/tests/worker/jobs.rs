//! The scheduled jobs on the simulated cloud: drift found, reported, announced and repaired by
//! a reconcile; the call budget and the throttle breaker; expired previews and lost operations;
//! and Block Kit messages reaching a local webhook.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use envplane_cloud::{
    Cloud, CloudError, Faults, LatencyProfile, Modification, Resource, Simulator, SnapshotState,
};
use envplane_domain::drift::DriftStatus;
use envplane_domain::environment::Phase;
use envplane_domain::events::{Event, EventKind};
use envplane_domain::operation::{OperationKind, OperationStatus};
use envplane_domain::resources::Planned;
use envplane_domain::{EnvName, Tier};
use envplane_notify::{NotifyError, Publisher, SlackWebhook};
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_worker::jobs::Jobs;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, VirtualClock, WorkflowError, Workflows};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The simulator, with a switch that makes every describe throttle.
struct Throttleable {
    inner: Arc<Simulator>,
    throttle: AtomicBool,
}

#[async_trait]
impl Cloud for Throttleable {
    async fn ensure(
        &self,
        env: &EnvName,
        op: &str,
        p: &[Planned],
    ) -> Result<Vec<Resource>, CloudError> {
        self.inner.ensure(env, op, p).await
    }
    async fn list(&self, env: &EnvName) -> Result<Vec<Resource>, CloudError> {
        if self.throttle.load(Ordering::SeqCst) {
            return Err(CloudError::Throttled("DescribeVpcs: Rate exceeded".into()));
        }
        self.inner.list(env).await
    }
    async fn delete(&self, r: &Resource) -> Result<(), CloudError> {
        self.inner.delete(r).await
    }
    async fn modify(
        &self,
        env: &EnvName,
        r: &Resource,
        m: &Modification,
    ) -> Result<(), CloudError> {
        self.inner.modify(env, r, m).await
    }
    async fn snapshot(
        &self,
        env: &EnvName,
        op: &str,
        v: &Resource,
    ) -> Result<SnapshotState, CloudError> {
        self.inner.snapshot(env, op, v).await
    }
    async fn snapshots(&self, env: &EnvName) -> Result<Vec<envplane_cloud::Snapshot>, CloudError> {
        self.inner.snapshots(env).await
    }
    async fn delete_snapshot(&self, s: &envplane_cloud::Snapshot) -> Result<(), CloudError> {
        self.inner.delete_snapshot(s).await
    }
    async fn image(&self, env: &EnvName, label: &str, host: &Resource) -> Result<(), CloudError> {
        self.inner.image(env, label, host).await
    }
    async fn images(&self, env: &EnvName) -> Result<Vec<envplane_cloud::Image>, CloudError> {
        self.inner.images(env).await
    }
    async fn delete_image(&self, image: &envplane_cloud::Image) -> Result<(), CloudError> {
        self.inner.delete_image(image).await
    }
}

/// Keeps every event.
#[derive(Default)]
struct Recorded(Mutex<Vec<Event>>);

#[async_trait]
impl Publisher for Recorded {
    async fn publish(&self, event: &Event) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// Keeps every flow start.
#[derive(Default)]
struct Starts(Mutex<Vec<(Flow, String, String)>>);

#[async_trait]
impl Workflows for Starts {
    async fn start(&self, flow: Flow, env: &EnvName, op: &str) -> Result<(), WorkflowError> {
        self.0
            .lock()
            .unwrap()
            .push((flow, env.to_string(), op.to_owned()));
        Ok(())
    }
    async fn steps(
        &self,
        _flow: envplane_workflow::Flow,
        _op: &str,
    ) -> Result<Option<Vec<envplane_domain::operation::OperationStep>>, WorkflowError> {
        Ok(None)
    }
    async fn stop(&self, flow: Flow, op: &str, _cause: &str) -> Result<(), WorkflowError> {
        self.0
            .lock()
            .unwrap()
            .push((flow, "stopped".to_owned(), op.to_owned()));
        Ok(())
    }
    async fn send_task_success(
        &self,
        token: &str,
        _output: serde_json::Value,
    ) -> Result<(), WorkflowError> {
        Err(WorkflowError::UnknownToken(token.to_owned()))
    }
    async fn send_task_failure(
        &self,
        token: &str,
        _error: &str,
        _cause: &str,
    ) -> Result<(), WorkflowError> {
        Err(WorkflowError::UnknownToken(token.to_owned()))
    }
}

struct Plane {
    store: Arc<dyn StateStore>,
    simulator: Arc<Simulator>,
    cloud: Arc<Throttleable>,
    clock: Arc<VirtualClock>,
    executor: Executor,
    _dir: tempfile::TempDir,
}

impl Plane {
    fn new(faults: Faults, events: Arc<dyn Publisher>) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let clock = Arc::new(VirtualClock::new(OffsetDateTime::now_utc()));
        let reader = clock.clone();
        let simulator = Arc::new(Simulator::new(
            LatencyProfile::Instant,
            faults,
            Arc::new(move || reader.now()),
        ));
        let cloud = Arc::new(Throttleable {
            inner: simulator.clone(),
            throttle: AtomicBool::new(false),
        });
        let worker = Worker::new(store.clone(), cloud.clone()).with_events(events);
        let executor = Executor::new(Arc::new(worker), clock.clone());
        Self {
            store,
            simulator,
            cloud,
            clock,
            executor,
            _dir: dir,
        }
    }

    fn jobs(&self) -> Jobs {
        let simulator = self.simulator.clone();
        let clock = self.clock.clone();
        Jobs::new(
            self.store.clone(),
            self.cloud.clone(),
            Arc::new(move || simulator.calls()),
        )
        .with_clock(Arc::new(move || clock.now()))
    }

    async fn run(&self, flow: Flow, env: &EnvName, op: &str) -> &'static str {
        self.executor
            .execute(
                &flow.local_definition().unwrap(),
                execution_input(env, op),
                op,
            )
            .await
            .status
    }

    async fn ready(&self, name: &str, tier: Tier, cidr: u8) -> EnvName {
        let env = EnvName::parse(name).unwrap();
        let op = mutations::create(self.store.as_ref(), &env, tier, cidr, |s| {
            if tier == Tier::Preview {
                s.ttl_hours = Some(24);
            }
        })
        .await;
        assert_eq!(self.run(Flow::Provision, &env, &op).await, "SUCCEEDED");
        env
    }

    async fn reconcile(&self, env: &EnvName) -> String {
        mutations::reconcile(self.store.as_ref(), env).await
    }
}

#[tokio::test]
async fn drift_is_found_reported_announced_and_repaired_by_reconcile() {
    let events = Arc::new(Recorded::default());
    let plane = Plane::new(Faults::NONE, events.clone());
    let dev = plane.ready("dev", Tier::Dev, 0).await;
    let qa = plane.ready("qa", Tier::Qa, 1).await;
    let jobs = plane.jobs().with_events(events.clone());

    let clean = jobs.drift(&[Tier::Dev, Tier::Qa], 1000).await.unwrap();
    assert!(
        clean
            .checked
            .iter()
            .all(|l| l.status == DriftStatus::InSync),
        "{clean:?}"
    );

    // Out of band: a rule removed, a node group scaled, a subnet deleted.
    assert!(plane.simulator.tamper(
        &dev,
        "dev-sg-db",
        Some(&|a: &mut Value| a["ingress"] = json!([]))
    ));
    assert!(plane.simulator.tamper(
        &dev,
        "dev-backend",
        Some(&|a: &mut Value| a["desired"] = json!(3))
    ));
    assert!(plane.simulator.tamper(&dev, "dev-private-2", None));
    let run = jobs.drift(&[Tier::Dev, Tier::Qa], 1000).await.unwrap();
    let by_env: BTreeMap<String, DriftStatus> = run
        .checked
        .iter()
        .map(|l| (l.environment.to_string(), l.status))
        .collect();
    assert_eq!(by_env["dev"], DriftStatus::Drifted);
    assert_eq!(by_env["qa"], DriftStatus::InSync);
    assert!(
        run.checked.iter().all(|l| l.api_calls == 1),
        "one simulated describe each"
    );

    let record = plane.store.environment(&dev).await.unwrap().unwrap();
    let report = record.drift.clone().unwrap();
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].resource, "dev-private-2");
    let changed: Vec<(&str, &str)> = report
        .changed
        .iter()
        .map(|d| (d.resource.as_str(), d.attribute.as_str()))
        .collect();
    assert_eq!(
        changed,
        vec![
            ("dev-rt-private-2", "subnets"),
            ("dev-sg-db", "ingress"),
            ("dev-backend", "desired")
        ]
    );
    let condition = record
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Drifted")
        .unwrap();
    assert!(condition.status);
    assert!(
        condition.message.contains("dev-private-2 missing"),
        "{}",
        condition.message
    );
    let drift_events: Vec<Event> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::DriftFound)
        .cloned()
        .collect();
    assert_eq!(drift_events.len(), 1);
    assert_eq!(drift_events[0].environment, dev);

    // The same drift again is not announced again.
    jobs.drift(&[Tier::Dev], 1000).await.unwrap();
    assert_eq!(
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::DriftFound)
            .count(),
        1
    );

    let op = plane.reconcile(&dev).await;
    assert_eq!(plane.run(Flow::Update, &dev, &op).await, "SUCCEEDED");
    let operation = plane.store.operation(&op).await.unwrap().unwrap();
    assert_eq!(operation.kind, OperationKind::Reconcile);
    let repaired = jobs.drift(&[Tier::Dev], 1000).await.unwrap();
    assert_eq!(
        repaired.checked[0].status,
        DriftStatus::InSync,
        "{repaired:?}"
    );
    let _ = qa;
}

#[tokio::test]
async fn the_call_budget_and_the_throttle_breaker_stop_a_cycle() {
    let plane = Plane::new(Faults::NONE, Arc::new(Recorded::default()));
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        plane.ready(name, Tier::Dev, u8::try_from(i).unwrap()).await;
    }
    let jobs = plane.jobs();
    // A call per kind and one more are set aside per environment until one is measured.
    let per_environment = envplane_domain::resources::ResourceKind::TEARDOWN.len() as u64 + 1;
    let run = jobs.drift(&[Tier::Dev], per_environment + 1).await.unwrap();
    assert_eq!(run.checked.len(), 2, "{run:?}");
    assert_eq!(run.skipped.len(), 1);
    assert!(run.stopped.unwrap().contains("budget"));

    plane.cloud.throttle.store(true, Ordering::SeqCst);
    let run = jobs.drift(&[Tier::Dev], 1000).await.unwrap();
    assert_eq!(run.checked.len(), 1, "stops at the first throttle: {run:?}");
    assert_eq!(run.checked[0].status, DriftStatus::Incomplete);
    assert_eq!(run.skipped.len(), 2);
    assert!(run.stopped.unwrap().contains("throttled"));
}

#[tokio::test]
async fn expired_previews_are_destroyed_and_lost_operations_released() {
    let events = Arc::new(Recorded::default());
    let plane = Plane::new(Faults::NONE, events.clone());
    let preview = plane.ready("pr-42", Tier::Preview, 0).await;
    plane.ready("dev", Tier::Dev, 1).await;
    // An operation recorded whose flow never ran.
    let stuck = EnvName::parse("stuck").unwrap();
    let stuck_op = mutations::create(plane.store.as_ref(), &stuck, Tier::Qa, 2, |_| {}).await;
    let starts = Arc::new(Starts::default());
    let jobs = plane
        .jobs()
        .with_workflows(starts.clone())
        .with_events(events.clone());

    let now = jobs.housekeeping().await.unwrap();
    assert!(now.expired_previews.is_empty() && now.lost_operations.is_empty());

    plane
        .clock
        .sleep(std::time::Duration::from_secs(25 * 3600))
        .await;
    let done = jobs.housekeeping().await.unwrap();
    assert_eq!(done.expired_previews.len(), 1, "{done:?}");
    assert_eq!(done.expired_previews[0].0, preview);
    assert_eq!(
        done.lost_operations,
        vec![(stuck.clone(), stuck_op.clone())]
    );
    let (flow, env, op) = starts.0.lock().unwrap()[0].clone();
    assert_eq!((flow, env.as_str()), (Flow::Destroy, "pr-42"));
    assert_eq!(plane.run(Flow::Destroy, &preview, &op).await, "SUCCEEDED");
    let gone = plane.store.environment(&preview).await.unwrap().unwrap();
    assert_eq!(gone.status.phase, Phase::Deleted);
    let audit = plane
        .store
        .audit_events(&preview, 0, 10)
        .await
        .unwrap()
        .items;
    assert!(audit.iter().any(|e| e.principal == "envplane-scheduler"));

    let op = plane.store.operation(&stuck_op).await.unwrap().unwrap();
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.error.unwrap().error, "Envplane.LeaseExpired");
    // The lost provisioning's execution was stopped before its lock was released, and what it
    // made is rolled back by a destroy the scheduler started.
    let starts = starts.0.lock().unwrap().clone();
    assert_eq!(
        starts[1],
        (Flow::Provision, "stopped".to_owned(), stuck_op.clone())
    );
    let (flow, env, rollback) = starts[2].clone();
    assert_eq!((flow, env.as_str()), (Flow::Destroy, "stuck"));
    assert_eq!(done.rollbacks, vec![(stuck.clone(), rollback.clone())]);
    assert_eq!(
        plane.run(Flow::Destroy, &stuck, &rollback).await,
        "SUCCEEDED"
    );
    let rolled_back = plane.store.environment(&stuck).await.unwrap().unwrap();
    assert_eq!(rolled_back.status.phase, Phase::Deleted);
    assert!(rolled_back.active_operation.is_none());
    let kinds: Vec<EventKind> = events.0.lock().unwrap().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::PreviewExpired));
    assert!(kinds.contains(&EventKind::OperationFailed));
}

/// A local Slack: every message posted is kept.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn headers(received: &Arc<Mutex<Vec<Value>>>) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            m["attachments"][0]["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_failed_operation_and_drift_reach_slack_as_block_kit() {
    let (url, received) = receiver().await;
    let slack: Arc<dyn Publisher> =
        Arc::new(SlackWebhook::new(url, Some("http://localhost:8080".into())));
    // Every cloud call fails: provisioning exhausts its retries and compensates.
    let failing = Plane::new(
        Faults {
            throttle: 0.0,
            error: 1.0,
            seed: 7,
        },
        slack.clone(),
    );
    let env = EnvName::parse("prod").unwrap();
    let op = mutations::create(failing.store.as_ref(), &env, Tier::Prod, 2, |_| {}).await;
    assert_eq!(failing.run(Flow::Provision, &env, &op).await, "FAILED");
    let messages = received.lock().unwrap().clone();
    let failed = messages
        .iter()
        .find(|m| m["attachments"][0]["blocks"][0]["text"]["text"] == "Operation failed: prod")
        .unwrap_or_else(|| panic!("no failure message in {messages:?}"));
    let attachment = &failed["attachments"][0];
    assert_eq!(attachment["color"], "#a30200", "critical in prod");
    let fields = attachment["blocks"][1]["fields"].to_string();
    assert!(
        fields.contains(&format!("http://localhost:8080/v1/operations/{op}")),
        "{fields}"
    );
    let cause = attachment["blocks"][3]["text"]["text"].as_str().unwrap();
    assert!(cause.contains("InternalError"), "{cause}");

    received.lock().unwrap().clear();
    let plane = Plane::new(Faults::NONE, Arc::new(Recorded::default()));
    let dev = plane.ready("dev", Tier::Dev, 0).await;
    assert!(plane.simulator.tamper(
        &dev,
        "dev-frontend",
        Some(&|a: &mut Value| a["max"] = json!(9))
    ));
    plane
        .jobs()
        .with_events(slack)
        .drift(&[Tier::Dev], 1000)
        .await
        .unwrap();
    assert_eq!(headers(&received), vec!["Drift found: dev"]);
    let message = received.lock().unwrap()[0].clone();
    assert_eq!(message["attachments"][0]["color"], "#daa038");
    assert!(
        message["attachments"][0]["blocks"][3]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("dev-frontend max: 9 (spec 4)")
    );
}
