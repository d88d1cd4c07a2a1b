//! Leases that hold: every step renews its operation's lease, so housekeeping running beside a
//! flow longer than one lease (an EKS upgrade across five minor versions, on AWS-like times)
//! never takes it for lost; and an operation that really is lost is stopped before its lock is
//! released.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_domain::commands::OPERATION_LEASE;
use envplane_domain::operation::OperationStatus;
use envplane_domain::{EnvName, Tier};
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_worker::jobs::Jobs;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{
    Executor, Failure, Flow, LocalWorkflows, TaskContext, TaskRunner, VirtualClock, Workflows,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// A store, a virtual clock and a simulated cloud on that clock: what every test here runs on.
struct Rig {
    dir: tempfile::TempDir,
    store: Arc<dyn StateStore>,
    clock: Arc<VirtualClock>,
    now: envplane_cloud::SharedClock,
    cloud: Arc<Simulator>,
}

impl Rig {
    fn new(profile: LatencyProfile) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let clock = Arc::new(VirtualClock::new(OffsetDateTime::now_utc()));
        let reader = clock.clone();
        let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
        let cloud = Arc::new(Simulator::new(profile, Faults::NONE, now.clone()));
        Self {
            dir,
            store: Arc::new(store),
            clock,
            now,
            cloud,
        }
    }

    /// The worker on this rig's store, cloud and clock.
    fn worker(&self) -> Worker {
        Worker::new(self.store.clone(), self.cloud.clone()).with_clock(self.now.clone())
    }

    /// The scheduled jobs on this rig.
    fn jobs(&self) -> Jobs {
        Jobs::new(self.store.clone(), self.cloud.clone(), Arc::new(|| 0))
            .with_clock(self.now.clone())
    }

    /// Flows run in-process by `runner`, their executions kept under the rig's directory.
    fn workflows(&self, runner: Arc<dyn TaskRunner>) -> Arc<LocalWorkflows> {
        let executor = Executor::new(runner, self.clock.clone());
        Arc::new(LocalWorkflows::new(executor, &self.dir.path().join("executions")).unwrap())
    }
}

/// The worker, with housekeeping run before every step on the same clock: as if the
/// scheduler's job fired between any two steps.
struct Housekept {
    worker: Worker,
    jobs: Jobs,
}

#[async_trait]
impl TaskRunner for Housekept {
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure> {
        let done = self.jobs.housekeeping().await.unwrap();
        assert!(
            done.lost_operations.is_empty(),
            "taken for lost at {}: {done:?}",
            context.state
        );
        self.worker.run(resource, payload, context).await
    }
}

#[tokio::test]
async fn a_lease_is_renewed_across_a_five_version_upgrade() {
    let rig = Rig::new(LatencyProfile::Realistic);
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let executor = Executor::new(
        Arc::new(Housekept {
            worker: rig.worker(),
            jobs: rig.jobs(),
        }),
        clock.clone(),
    );
    let env = EnvName::parse("dev").unwrap();
    let definition = |flow: Flow| flow.local_definition().unwrap();

    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |s| {
        s.cluster.version = "1.28".into();
    })
    .await;
    let outcome = executor
        .execute(
            &definition(Flow::Provision),
            execution_input(&env, &op),
            &op,
        )
        .await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");

    // Five control-plane steps, each drawn around 20 minutes: longer than one lease.
    let patch = json!({"cluster": {"version": "1.33"}});
    let op = mutations::update(store.as_ref(), &env, &patch, false).await;
    // The lease the request took, on the same clock as the flow's.
    let taken = store
        .environment(&env)
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at
        .unwrap();
    let began = clock.now();
    let outcome = executor
        .execute(&definition(Flow::Update), execution_input(&env, &op), &op)
        .await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let took = clock.now() - began;
    let upgraded = store.operation(&op).await.unwrap().unwrap();
    let cluster_steps = upgraded
        .changes
        .iter()
        .filter(|c| c.resource == "dev-eks")
        .count();
    println!(
        "1.28 → 1.33: {cluster_steps} control plane upgrades, {} changes in {} min on the plane's clock, against a lease of {} min",
        upgraded.changes.len(),
        took.whole_minutes(),
        OPERATION_LEASE.whole_minutes()
    );
    assert_eq!(cluster_steps, 5);
    assert!(
        took > OPERATION_LEASE,
        "the upgrade outlasted its first lease"
    );
    assert!(
        clock.now() > taken,
        "the first lease ran out during the flow"
    );
    assert_eq!(upgraded.status, OperationStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_operation_is_stopped_before_its_lock_is_released() {
    let rig = Rig::new(LatencyProfile::Instant);
    let (store, clock, cloud) = (rig.store.clone(), rig.clock.clone(), rig.cloud.clone());
    // A worker that hangs in the cluster step, as a step whose calls never come back would;
    // the flag says whether the hung step was entered, and whether it was stopped.
    struct Flag(Arc<std::sync::atomic::AtomicU8>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(2, std::sync::atomic::Ordering::SeqCst);
        }
    }
    struct Hangs(Worker, Arc<std::sync::atomic::AtomicU8>);
    #[async_trait]
    impl TaskRunner for Hangs {
        async fn run(
            &self,
            resource: &str,
            payload: Value,
            context: &TaskContext,
        ) -> Result<Value, Failure> {
            // Both branches of the build hang: nothing of the flow is alive to renew its lease.
            if context.state == "Egress" {
                std::future::pending::<()>().await;
            }
            if context.state == "Cluster" {
                self.1.store(1, std::sync::atomic::Ordering::SeqCst);
                let _flag = Flag(self.1.clone());
                std::future::pending::<()>().await;
            }
            self.0.run(resource, payload, context).await
        }
    }
    let hung = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let workflows = rig.workflows(Arc::new(Hangs(rig.worker(), hung.clone())));
    let env = EnvName::parse("dev").unwrap();
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    workflows.start(Flow::Provision, &env, &op).await.unwrap();
    // Wait until the flow is stuck in its cluster step.
    for _ in 0..500 {
        if hung.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        hung.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never hung"
    );
    clock.sleep(std::time::Duration::from_secs(3 * 3600)).await;
    let jobs = rig.jobs().with_workflows(workflows.clone());
    let done = jobs.housekeeping().await.unwrap();
    assert_eq!(done.lost_operations.len(), 1, "{done:?}");
    // Housekeeping stopped the execution (the hung step was dropped) before it released the
    // lock: `release_lost` commits only once `stop` has returned.
    assert_eq!(
        hung.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the lost execution still runs"
    );
    let lost = store.operation(&op).await.unwrap().unwrap();
    assert_eq!(lost.error.unwrap().error, "Envplane.LeaseExpired");
    // The rollback destroy runs on the same workflows and leaves nothing.
    let (_, destroy) = done.rollbacks[0].clone();
    for _ in 0..400 {
        if store.operation(&destroy).await.unwrap().unwrap().status == OperationStatus::Succeeded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.operation(&destroy).await.unwrap().unwrap().status,
        OperationStatus::Succeeded
    );
    assert!(
        cloud.all_resources().is_empty(),
        "{:?}",
        cloud.all_resources()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_operation_whose_flow_never_started_is_started_by_housekeeping() {
    let rig = Rig::new(LatencyProfile::Instant);
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let workflows = rig.workflows(Arc::new(rig.worker()));
    let jobs = rig.jobs().with_workflows(workflows.clone());
    // Recorded as a request records it, and then the process died before starting the flow.
    let env = EnvName::parse("dev").unwrap();
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    let soon = jobs.housekeeping().await.unwrap();
    assert!(
        soon.started.is_empty(),
        "started within the grace: {soon:?}"
    );
    clock.sleep(std::time::Duration::from_secs(90)).await;
    let done = jobs.housekeeping().await.unwrap();
    assert_eq!(done.started, vec![(env.clone(), op.clone())]);
    for _ in 0..400 {
        if store.operation(&op).await.unwrap().unwrap().status == OperationStatus::Succeeded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.operation(&op).await.unwrap().unwrap().status,
        OperationStatus::Succeeded
    );
    assert!(jobs.housekeeping().await.unwrap().started.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_execution_lists_no_step_as_running() {
    let rig = Rig::new(LatencyProfile::Instant);
    let store = rig.store.clone();
    // The cluster step fails for good: the flow rolls back, compensates and fails.
    struct Breaks(Worker);
    #[async_trait]
    impl TaskRunner for Breaks {
        async fn run(
            &self,
            resource: &str,
            payload: Value,
            context: &TaskContext,
        ) -> Result<Value, Failure> {
            if context.state == "Cluster" {
                return Err(Failure::new("Envplane.Invalid", "injected"));
            }
            self.0.run(resource, payload, context).await
        }
    }
    let workflows = rig.workflows(Arc::new(Breaks(rig.worker())));
    let env = EnvName::parse("dev").unwrap();
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    workflows.start(Flow::Provision, &env, &op).await.unwrap();
    let mut steps = Vec::new();
    for _ in 0..400 {
        steps = workflows
            .steps(envplane_workflow::Flow::Update, &op)
            .await
            .unwrap()
            .unwrap_or_default();
        if steps.iter().any(|s| s.name == "Failed") && steps.iter().all(|s| s.ended_at.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let running: Vec<&str> = steps
        .iter()
        .filter(|s| s.status == OperationStatus::Running)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(running, Vec::<&str>::new(), "{steps:?}");
    let failed = steps
        .iter()
        .find(|s| s.name == "Failed")
        .expect("the Fail state");
    assert_eq!(failed.status, OperationStatus::Failed);
    assert!(
        steps
            .iter()
            .any(|s| s.name == "Compensate" && s.status == OperationStatus::Succeeded)
    );
}
