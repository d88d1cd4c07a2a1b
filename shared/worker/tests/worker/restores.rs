//! Restores and drills through the shipped `restore.asl.json`, run by the local executor, on
//! the simulated cloud and a **real PostgreSQL** per environment (`LocalDatabases`): rows
//! written, a backup, more rows at recorded times, then a restore to a time between them
//! holds exactly the rows written before it — into a new environment, and in place after its
//! approvers; a production drill measures its RTO and RPO, records its evidence in the
//! drilled environment's audit chain and leaves nothing behind.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use envplane_cloud::{Cloud, Databases, Faults, LatencyProfile, Simulator};
use envplane_domain::environment::Phase;
use envplane_domain::operation::OperationStatus;
use envplane_domain::restore::{self, DrillOutcome, RestoreInto, RestorePoint};
use envplane_domain::{EnvName, Tier};
use envplane_postgres::{Binaries, LocalDatabases};
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_worker::testing::Approving;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Failure, Outcome, TaskContext, TaskRunner, VirtualClock};
use time::OffsetDateTime;

use crate::support::{definition, task_states};

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

fn name(raw: &str) -> EnvName {
    EnvName::parse(raw).unwrap()
}

/// The worker, failing every attempt of the Task state `fail_at` with an error no Retry takes.
struct Failing {
    inner: Arc<dyn TaskRunner>,
    fail_at: String,
    injected: AtomicU32,
}

#[async_trait]
impl TaskRunner for Failing {
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure> {
        if context.state == self.fail_at {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Failure::new(
                "Envplane.Invalid",
                format!("injected failure at {}", context.state),
            ));
        }
        self.inner.run(resource, payload, context).await
    }
}

struct Plane {
    store: Arc<dyn StateStore>,
    simulator: Arc<Simulator>,
    databases: Arc<LocalDatabases>,
    executor: Executor,
    worker: Worker,
    clock: Arc<VirtualClock>,
    _dir: tempfile::TempDir,
}

impl Plane {
    /// Runs `flow` for `op` failing at `state`; the outcome and how many failures were injected.
    async fn run_failing(&self, env: &str, op: &str, state: &str) -> (Outcome, u32) {
        let failing = Arc::new(Failing {
            inner: Arc::new(self.worker.clone()),
            fail_at: state.to_owned(),
            injected: AtomicU32::new(0),
        });
        let approving = Approving::new(failing.clone(), self.store.clone());
        let executor = Executor::new(approving.clone(), self.clock.clone());
        approving.attach(executor.clone());
        let input = execution_input(&name(env), op);
        let outcome = executor.execute(&definition("restore"), input, op).await;
        (outcome, failing.injected.load(Ordering::SeqCst))
    }

    fn new(bins: Binaries) -> Self {
        Self::with_events(bins, Arc::new(envplane_notify::Silent))
    }

    fn with_events(bins: Binaries, events: Arc<dyn envplane_notify::Publisher>) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let clock = Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH));
        let reader = clock.clone();
        let simulator = Arc::new(Simulator::new(
            LatencyProfile::Instant,
            Faults::NONE,
            Arc::new(move || reader.now()),
        ));
        let databases = Arc::new(LocalDatabases::new(
            bins,
            &dir.path().join("databases"),
            Duration::from_secs(60),
        ));
        let reader = clock.clone();
        let worker = Worker::new(store.clone(), simulator.clone())
            .with_clock(Arc::new(move || reader.now()))
            .with_databases(databases.clone())
            .with_events(events);
        let approving = Approving::new(Arc::new(worker.clone()), store.clone());
        let executor = Executor::new(approving.clone(), clock.clone());
        approving.attach(executor.clone());
        Self {
            store,
            simulator,
            databases,
            executor,
            worker,
            clock,
            _dir: dir,
        }
    }

    async fn run(&self, flow: &str, env: &str, op: &str) -> Outcome {
        let input = execution_input(&name(env), op);
        self.executor.execute(&definition(flow), input, op).await
    }

    async fn client(&self, env: &str) -> tokio_postgres::Client {
        let endpoint = self
            .databases
            .endpoint(&name(env))
            .await
            .unwrap()
            .expect("the database runs");
        let (client, connection) = tokio_postgres::connect(&endpoint, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    async fn rows(&self, env: &str) -> (i64, Option<i32>) {
        let row = self
            .client(env)
            .await
            .query_one("SELECT count(*), max(id) FROM items", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
}

/// `prod` provisioned with a real database: 1,000 rows, a backup (`snap-first`), then 500 more
/// in five batches 300 ms apart; answers the time between the second and third batch.
async fn written(plane: &Plane) -> OffsetDateTime {
    let op = mutations::create(plane.store.as_ref(), &name("prod"), Tier::Prod, 2, |_| {}).await;
    let outcome = plane.run("provision", "prod", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let client = plane.client("prod").await;
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO items (id) SELECT generate_series(1, 1000);",
        )
        .await
        .unwrap();
    plane
        .databases
        .back_up(&name("prod"), "snap-first")
        .await
        .unwrap();
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
    committed[1] + time::Duration::milliseconds(150)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restore_into_a_new_environment_and_in_place_holds_exactly_the_rows_before_it()
 {
    let Some(bins) = binaries() else {
        return;
    };
    let plane = Plane::new(bins);
    let target = written(&plane).await;
    assert_eq!(plane.rows("prod").await, (1500, Some(1500)));

    // Into a new environment: provisioned in its own block, then the database restored.
    let op = mutations::restore(
        plane.store.as_ref(),
        &name("prod"),
        RestorePoint::Time { at: target },
        RestoreInto::NewEnvironment {
            name: name("prod-copy"),
        },
        7,
    )
    .await;
    let outcome = plane.run("restore", "prod-copy", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    assert_eq!(plane.rows("prod-copy").await, (1200, Some(1200)));
    assert_eq!(
        plane.rows("prod").await,
        (1500, Some(1500)),
        "the source is untouched"
    );
    let copy = plane
        .store
        .environment(&name("prod-copy"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy.status.phase, Phase::Ready);
    assert_eq!(copy.tier, Tier::Prod);
    assert!(
        !plane
            .simulator
            .list(&name("prod-copy"))
            .await
            .unwrap()
            .is_empty()
    );
    let done = plane.store.operation(&op).await.unwrap().unwrap();
    let steps: Vec<&str> = done
        .restore
        .as_ref()
        .unwrap()
        .marks
        .iter()
        .map(|m| m.step.as_str())
        .collect();
    assert_eq!(steps, ["restored", "provisioned", "healthy", "switched"]);

    // In place: the operation waits for two approvers (production), then replaces the database.
    let op = mutations::restore(
        plane.store.as_ref(),
        &name("prod"),
        RestorePoint::Time { at: target },
        RestoreInto::InPlace,
        0,
    )
    .await;
    let waiting = plane.store.operation(&op).await.unwrap().unwrap();
    assert_eq!(waiting.approval.as_ref().map(|a| a.required), Some(2));
    let outcome = plane.run("restore", "prod", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let done = plane.store.operation(&op).await.unwrap().unwrap();
    assert_eq!(done.status, OperationStatus::Succeeded);
    assert_eq!(done.approval.map(|a| a.approvers()), Some(2));
    assert_eq!(plane.rows("prod").await, (1200, Some(1200)));
    // The restored database is the environment's own: writable, and archived again.
    plane
        .client("prod")
        .await
        .execute("INSERT INTO items (id) VALUES (99999)", &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_drill_records_its_rto_and_rpo_in_the_audit_and_leaves_nothing() {
    let Some(bins) = binaries() else {
        return;
    };
    let plane = Plane::new(bins);
    written(&plane).await;
    let drill = restore::drill_name(&name("prod"), "01JDRILLTEST0000000000ABCDEF").unwrap();
    let op = mutations::restore(
        plane.store.as_ref(),
        &name("prod"),
        RestorePoint::Latest,
        RestoreInto::Drill {
            name: drill.clone(),
        },
        9,
    )
    .await;
    let outcome = plane.run("restore", drill.as_str(), &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");

    let done = plane.store.operation(&op).await.unwrap().unwrap();
    let evidence = done.restore.unwrap().evidence.expect("evidence");
    assert_eq!(evidence.outcome, DrillOutcome::Passed, "{evidence:?}");
    assert_eq!(evidence.left, Vec::<String>::new());
    let rpo = evidence.rpo_seconds.expect("an RPO");
    assert!((0..=300).contains(&rpo), "RPO {rpo} s within prod's 5 min");
    assert_eq!(evidence.rpo_met, Some(true));
    assert_eq!(evidence.rto_met, Some(true));
    assert_eq!(
        evidence.targets.map(|t| (t.rto_minutes, t.rpo_minutes)),
        Some((60, 5))
    );
    let steps: Vec<&str> = evidence.timeline.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "restored",
            "provisioned",
            "healthy",
            "switched",
            "torn_down"
        ]
    );

    // Nothing left: no simulated resource, no PostgreSQL, the name and block free again.
    assert!(plane.simulator.list(&drill).await.unwrap().is_empty());
    assert!(!plane.databases.present().await.unwrap().contains(&drill));
    let gone = plane.store.environment(&drill).await.unwrap().unwrap();
    assert_eq!(gone.status.phase, Phase::Deleted);
    assert!(
        !plane
            .store
            .cidrs_in_use()
            .await
            .unwrap()
            .values()
            .any(|e| *e == drill)
    );

    // The evidence is in the drilled environment's audit chain, linked and verifiable.
    let audit = plane
        .store
        .audit_events(&name("prod"), 0, 100)
        .await
        .unwrap()
        .items;
    let attested = audit
        .iter()
        .find(|e| e.action == restore::DRILL_EVIDENCE)
        .expect("the drill's evidence in prod's audit");
    assert_eq!(attested.operation.as_deref(), Some(op.as_str()));
    assert_eq!(attested.change["evidence"]["rpo_seconds"], rpo);
}

/// Fail every step of a drill in turn: each run fails with its cause, its evidence says
/// `failed`, and its environment is gone — no simulated resource, no PostgreSQL, no data —
/// whatever step failed. Then every step of a restore in place: the environment keeps its
/// database, unchanged, and no restored host is left beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_or_a_drill_failing_at_any_step_leaves_nothing_of_it() {
    let Some(bins) = binaries() else {
        return;
    };
    let plane = Plane::new(bins);
    let target = written(&plane).await;
    let states = task_states("restore");
    assert!(states.len() >= 12, "{states:?}");
    let mut drilled = 0;
    for (i, state) in states.iter().enumerate() {
        let id = format!("01JFAILSTEP{i:02}0000000000000");
        let drill = restore::drill_name(&name("prod"), &id).unwrap();
        let op = mutations::restore(
            plane.store.as_ref(),
            &name("prod"),
            RestorePoint::Latest,
            RestoreInto::Drill {
                name: drill.clone(),
            },
            20 + u8::try_from(i).unwrap(),
        )
        .await;
        let (outcome, injected) = plane.run_failing(drill.as_str(), &op, state).await;
        let failed = plane.store.operation(&op).await.unwrap().unwrap();
        if injected == 0 {
            // Not on a drill's path (the approval of a restore in place).
            assert_eq!(outcome.status, "SUCCEEDED", "{state}: {outcome:?}");
            continue;
        }
        drilled += 1;
        assert_eq!(outcome.status, "FAILED", "{state}: {outcome:?}");
        assert_eq!(failed.status, OperationStatus::Failed, "{state}");
        let cause = failed
            .error
            .as_ref()
            .map(|e| e.cause.clone())
            .unwrap_or_default();
        assert!(
            cause.contains(&format!("injected failure at {state}")),
            "{state}: {cause}"
        );
        let evidence = failed
            .restore
            .unwrap()
            .evidence
            .expect("evidence of a failed drill");
        assert_eq!(evidence.outcome, DrillOutcome::Failed, "{state}");
        assert_eq!(evidence.left, Vec::<String>::new(), "{state}");
        assert!(
            plane.simulator.list(&drill).await.unwrap().is_empty(),
            "{state}"
        );
        assert!(
            !plane.databases.present().await.unwrap().contains(&drill),
            "{state}"
        );
        let record = plane.store.environment(&drill).await.unwrap().unwrap();
        assert_eq!(record.status.phase, Phase::Deleted, "{state}");
        assert_eq!(record.active_operation, None, "{state}");
    }
    assert!(
        drilled >= 11,
        "{drilled} of {} states failed a drill",
        states.len()
    );

    // In place: whichever step fails before the switch, prod keeps its 1,500 rows and nothing
    // restored is left beside its database.
    for state in ["Start", "AwaitApproval", "Replay", "Verify", "Switch"] {
        let op = mutations::restore(
            plane.store.as_ref(),
            &name("prod"),
            RestorePoint::Time { at: target },
            RestoreInto::InPlace,
            0,
        )
        .await;
        let (outcome, injected) = plane.run_failing("prod", &op, state).await;
        assert_eq!(outcome.status, "FAILED", "{state}: {outcome:?}");
        assert!(injected > 0, "{state} was never reached");
        let env = plane
            .store
            .environment(&name("prod"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(env.active_operation, None, "{state}");
        assert_eq!(plane.rows("prod").await, (1500, Some(1500)), "{state}");
        let hosts = plane._dir.path().join("databases/prod/hosts");
        let left: Vec<_> = std::fs::read_dir(&hosts)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["primary"], "{state}");
    }
}

/// Keeps every event.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<envplane_domain::events::Event>>);

#[async_trait]
impl envplane_notify::Publisher for Recorded {
    async fn publish(
        &self,
        event: &envplane_domain::events::Event,
    ) -> Result<(), envplane_notify::NotifyError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// The scheduled drill: every ready production environment with a recovery point is drilled
/// (one without a backup is not), and the result is announced (to Slack through the events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_drill_drills_production_and_announces_what_it_proved() {
    let Some(bins) = binaries() else {
        return;
    };
    let events = Arc::new(Recorded::default());
    let plane = Plane::with_events(bins, events.clone());
    let op = mutations::create(plane.store.as_ref(), &name("prod"), Tier::Prod, 2, |_| {}).await;
    assert_eq!(
        plane.run("provision", "prod", &op).await.status,
        "SUCCEEDED"
    );
    let op = mutations::create(plane.store.as_ref(), &name("other"), Tier::Prod, 3, |_| {}).await;
    assert_eq!(
        plane.run("provision", "other", &op).await.status,
        "SUCCEEDED"
    );
    let jobs = envplane_worker::jobs::Jobs::new(
        plane.store.clone(),
        plane.simulator.clone(),
        Arc::new(|| 0),
    )
    .with_databases(plane.databases.clone());
    let point = jobs.back_up_now(&name("prod")).await.unwrap();
    assert!(point.id.starts_with("snap-"), "{point:?}");

    let started = jobs.drills(&[Tier::Prod, Tier::Staging]).await.unwrap();
    assert_eq!(
        started.len(),
        1,
        "only prod has a recovery point: {started:?}"
    );
    let (drilled, op) = &started[0];
    assert_eq!(drilled, &name("prod"));
    let drill = plane.store.operation(op).await.unwrap().unwrap();
    assert_eq!(
        drill.requested_by,
        envplane_worker::jobs::SCHEDULER_PRINCIPAL
    );
    let outcome = plane.run("restore", drill.environment.as_str(), op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let announced: Vec<_> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == envplane_domain::events::EventKind::DrillPassed)
        .cloned()
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].environment, name("prod"));
    assert!(
        announced[0].summary.contains("RTO"),
        "{}",
        announced[0].summary
    );
}
