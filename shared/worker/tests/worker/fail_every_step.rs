//! Fail every step, check what is left (as omicron does for each saga): for each flow, a
//! failure is injected at each Task state in turn, on the shipped state machines run by the
//! local executor over the simulated cloud. Every run must end with the operation failed with
//! its cause and the environment released; a failed provisioning leaves nothing of the
//! environment in the cloud (rolled back), and after any other failure (or a kept
//! provisioning) a plain delete leaves nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use envplane_cloud::{Cloud, Faults, LatencyProfile, Simulator};
use envplane_domain::environment::Phase;
use envplane_domain::operation::{OnFailure, OperationStatus};
use envplane_domain::{EnvName, Tier};
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_traffic::LocalTraffic;
use envplane_worker::testing::Approving;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::{Executor, Failure, Outcome, TaskContext, TaskRunner, VirtualClock};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::{definition, task_states};

/// The worker, failing every attempt of the Task states named in `fail_at` with an error no
/// Retry takes.
struct Failing {
    worker: Worker,
    fail_at: Vec<String>,
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
        if self.fail_at.contains(&context.state) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Failure::new(
                "Envplane.Invalid",
                format!("injected failure at {}", context.state),
            ));
        }
        self.worker.run(resource, payload, context).await
    }
}

struct Plane {
    store: Arc<dyn StateStore>,
    simulator: Arc<Simulator>,
    worker: Worker,
    traffic: Arc<LocalTraffic>,
    _dir: tempfile::TempDir,
}

impl Plane {
    fn new() -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let simulator = Arc::new(Simulator::new(
            LatencyProfile::Instant,
            Faults::NONE,
            Arc::new(|| OffsetDateTime::UNIX_EPOCH),
        ));
        let traffic = Arc::new(LocalTraffic::new());
        let worker = Worker::new(store.clone(), simulator.clone()).with_traffic(traffic.clone());
        Self {
            store,
            simulator,
            worker,
            traffic,
            _dir: dir,
        }
    }

    /// Runs `flow` for `op`, failing at the named states; answers the outcome and how many
    /// failures were injected.
    async fn run(&self, flow: &str, env: &EnvName, op: &str, fail_at: &[&str]) -> (Outcome, u32) {
        let runner = Arc::new(Failing {
            worker: self.worker.clone(),
            fail_at: fail_at.iter().map(|s| (*s).to_owned()).collect(),
            injected: AtomicU32::new(0),
        });
        // Production's updates and destruction wait for two approvers: they approve, unless
        // the wait itself is the step failed.
        let approving = Approving::new(runner.clone(), self.store.clone());
        let executor = Executor::new(
            approving.clone(),
            Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
        );
        approving.attach(executor.clone());
        let outcome = executor
            .execute(&definition(flow), execution_input(env, op), op)
            .await;
        (outcome, runner.injected.load(Ordering::SeqCst))
    }

    /// Resources of `env` the cloud still holds.
    async fn left(&self, env: &EnvName) -> Vec<String> {
        self.simulator
            .list(env)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    /// Checks that `op` failed with the injected cause and released `env`.
    async fn assert_failed_and_released(&self, env: &EnvName, op: &str, state: &str) {
        let operation = self.store.operation(op).await.unwrap().unwrap();
        assert_eq!(
            operation.status,
            OperationStatus::Failed,
            "{env} at {state}"
        );
        let cause = operation.error.expect("a cause").cause;
        assert!(
            cause.contains(&format!("injected failure at {state}")),
            "{env} at {state}: {cause}"
        );
        let record = self.store.environment(env).await.unwrap().unwrap();
        assert_eq!(record.active_operation, None, "{env} at {state}: lock held");
        assert_eq!(record.status.phase, Phase::Failed, "{env} at {state}");
    }

    /// A plain delete, as an operator would run after a failure: it must leave nothing.
    async fn delete_leaves_nothing(&self, env: &EnvName) {
        let op = mutations::delete(self.store.as_ref(), env).await;
        let (outcome, _) = self.run("destroy", env, &op, &[]).await;
        assert_eq!(outcome.status, "SUCCEEDED", "{env}: {outcome:?}");
        assert_eq!(self.left(env).await, Vec::<String>::new(), "{env}");
    }

    async fn ready(&self, env: &EnvName, tier: Tier, cidr: u8) {
        let op = mutations::create(self.store.as_ref(), env, tier, cidr, |_| {}).await;
        let (outcome, _) = self.run("provision", env, &op, &[]).await;
        assert_eq!(outcome.status, "SUCCEEDED", "{env}: {outcome:?}");
    }
}

#[tokio::test]
async fn a_provision_failing_at_any_step_rolls_back_to_nothing() {
    let plane = Plane::new();
    let states = task_states("provision");
    assert_eq!(
        states,
        [
            "Cluster",
            "Database",
            "Egress",
            "Finish",
            "Network",
            "NodeGroups",
            "Start",
            "Targets"
        ]
    );
    for (i, state) in states.iter().enumerate() {
        let env = EnvName::parse(&format!("p{i}")).unwrap();
        let cidr = u8::try_from(10 + i).unwrap();
        let op = mutations::create(plane.store.as_ref(), &env, Tier::Dev, cidr, |_| {}).await;
        let (outcome, injected) = plane.run("provision", &env, &op, &[state]).await;
        assert_eq!(outcome.status, "FAILED");
        assert!(injected >= 1, "{state} was never reached");
        plane.assert_failed_and_released(&env, &op, state).await;
        assert_eq!(plane.left(&env).await, Vec::<String>::new(), "at {state}");
        let record = plane.store.environment(&env).await.unwrap().unwrap();
        let rolled_back = record
            .status
            .conditions
            .iter()
            .find(|c| c.kind == "RolledBack")
            .expect("a RolledBack condition");
        assert!(rolled_back.status, "at {state}: {rolled_back:?}");
        println!("provision: failure at {state}: 0 resources left after the rollback");
    }
}

#[tokio::test]
async fn a_kept_provision_failing_at_any_step_keeps_what_it_made_until_a_delete() {
    let plane = Plane::new();
    let mut kept_total = 0;
    for (i, state) in task_states("provision").iter().enumerate() {
        let env = EnvName::parse(&format!("k{i}")).unwrap();
        let cidr = u8::try_from(30 + i).unwrap();
        let op = mutations::create_with(
            plane.store.as_ref(),
            &env,
            Tier::Dev,
            cidr,
            OnFailure::Keep,
            |_| {},
        )
        .await;
        let (outcome, _) = plane.run("provision", &env, &op, &[state]).await;
        assert_eq!(outcome.status, "FAILED");
        plane.assert_failed_and_released(&env, &op, state).await;
        let kept = plane.left(&env).await.len();
        kept_total += kept;
        plane.delete_leaves_nothing(&env).await;
        println!("provision (keep): failure at {state}: {kept} kept, 0 left after delete");
    }
    assert!(kept_total > 0, "keep kept nothing anywhere");
}

#[tokio::test]
async fn an_update_or_reconcile_failing_at_any_step_stops_and_a_delete_leaves_nothing() {
    let plane = Plane::new();
    for flow_kind in ["update", "reconcile"] {
        for (i, state) in task_states("update").iter().enumerate() {
            let env = EnvName::parse(&format!("{}{i}", &flow_kind[..1])).unwrap();
            let cidr = u8::try_from(if flow_kind == "update" { 50 } else { 70 } + i).unwrap();
            // Production, so that the approval wait is among the steps failed.
            plane.ready(&env, Tier::Prod, cidr).await;
            let op = if flow_kind == "update" {
                let patch = json!({"cluster": {"frontend": {"desired": 4}}, "database": {"volume": {"size_gb": 120}}});
                mutations::update(plane.store.as_ref(), &env, &patch, false).await
            } else {
                mutations::reconcile(plane.store.as_ref(), &env).await
            };
            let (outcome, _) = plane.run("update", &env, &op, &[state]).await;
            assert_eq!(outcome.status, "FAILED", "{flow_kind} at {state}");
            plane.assert_failed_and_released(&env, &op, state).await;
            plane.delete_leaves_nothing(&env).await;
            println!("{flow_kind}: failure at {state}: stopped, 0 left after delete");
        }
    }
}

#[tokio::test]
async fn a_destroy_failing_at_any_step_is_finished_by_the_next_delete() {
    let plane = Plane::new();
    let states = task_states("destroy");
    assert_eq!(states, ["AwaitApproval", "Delete", "Finish", "Start"]);
    for (i, state) in states.iter().enumerate() {
        let env = EnvName::parse(&format!("d{i}")).unwrap();
        plane
            .ready(&env, Tier::Prod, u8::try_from(90 + i).unwrap())
            .await;
        let op = mutations::delete(plane.store.as_ref(), &env).await;
        let (outcome, _) = plane.run("destroy", &env, &op, &[state]).await;
        assert_eq!(outcome.status, "FAILED");
        plane.assert_failed_and_released(&env, &op, state).await;
        plane.delete_leaves_nothing(&env).await;
        println!("destroy: failure at {state}: 0 left after the next delete");
    }
}

#[tokio::test]
async fn a_failed_rollback_is_reported_with_both_causes_and_a_delete_finishes_it() {
    let plane = Plane::new();
    let env = EnvName::parse("broken").unwrap();
    let op = mutations::create(plane.store.as_ref(), &env, Tier::Dev, 120, |_| {}).await;
    // The provisioning fails once the network exists, and every rollback delete fails too.
    let (outcome, _) = plane
        .run("provision", &env, &op, &["Targets", "Delete"])
        .await;
    assert_eq!(outcome.status, "FAILED");
    plane.assert_failed_and_released(&env, &op, "Targets").await;
    let cause = plane
        .store
        .operation(&op)
        .await
        .unwrap()
        .unwrap()
        .error
        .unwrap()
        .cause;
    assert!(
        cause.contains("rollback failed: Envplane.Invalid: injected failure at Delete"),
        "{cause}"
    );
    assert!(
        !plane.left(&env).await.is_empty(),
        "the rollback did not run"
    );
    plane.delete_leaves_nothing(&env).await;
}

/// What the frontend's load balancer answers: the version serving it.
async fn serving(plane: &Plane, env: &EnvName) -> String {
    use envplane_cloud::Traffic;
    let url = plane
        .traffic
        .url(env, envplane_domain::names::Service::Frontend)
        .await
        .expect("a load balancer");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        versions.insert(answer["version"].as_str().unwrap().to_owned());
    }
    versions.into_iter().collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_failing_at_any_step_leaves_the_stable_version_serving_alone() {
    let plane = Plane::new();
    let states = task_states("deploy");
    // RollBack runs only after a failed analysis (the traffic test covers it); its own failure
    // is compensated like any step's.
    assert_eq!(
        states,
        [
            "Advance",
            "Analyse",
            "AwaitApproval",
            "AwaitDecision",
            "Complete",
            "Finish",
            "Launch",
            "Start"
        ]
    );
    for (i, state) in states.iter().enumerate() {
        // Production: approvals before the deployment, a gate before 100 %, and (with no
        // traffic here) holds at each step that the approvers promote.
        let env = EnvName::parse(&format!("dp{i}")).unwrap();
        plane
            .ready(&env, Tier::Prod, u8::try_from(140 + i).unwrap())
            .await;
        let first = mutations::deploy(
            plane.store.as_ref(),
            &env,
            &json!({"service": "frontend", "version": "v1"}),
        )
        .await;
        let (outcome, _) = plane.run("deploy", &env, &first, &[]).await;
        assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
        assert_eq!(serving(&plane, &env).await, "v1");

        let op = mutations::deploy(
            plane.store.as_ref(),
            &env,
            &json!({"service": "frontend", "version": "v2"}),
        )
        .await;
        let (outcome, injected) = plane.run("deploy", &env, &op, &[state]).await;
        assert_eq!(outcome.status, "FAILED", "at {state}: {outcome:?}");
        assert!(injected >= 1, "{state} was never reached");
        plane.assert_failed_and_released(&env, &op, state).await;
        let record = plane.store.environment(&env).await.unwrap().unwrap();
        let release = &record.releases[&envplane_domain::names::Service::Frontend];
        // Complete records v2 before Finish fails: the new version is then the stable one.
        let expected = if *state == "Finish" { "v2" } else { "v1" };
        assert_eq!(release.version, expected, "at {state}");
        assert_eq!(serving(&plane, &env).await, expected, "at {state}");
        println!("deploy: failure at {state}: {expected} alone serves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_failing_at_any_step_leaves_the_target_as_it_was() {
    use envplane_domain::deployment::Release;
    use envplane_domain::names::Service;
    let plane = Plane::new();
    // The source only needs what it runs: a record with its releases.
    let source = EnvName::parse("src").unwrap();
    mutations::create(plane.store.as_ref(), &source, Tier::Staging, 160, |_| {}).await;
    let before = plane.store.environment(&source).await.unwrap().unwrap();
    let mut ahead = before.clone();
    ahead.version += 1;
    for (service, version) in [(Service::Frontend, "v2"), (Service::Backend, "b1")] {
        let release = Release {
            version: version.into(),
            image: None,
            env: BTreeMap::new(),
        };
        ahead.releases.insert(service, release);
    }
    plane
        .store
        .commit(envplane_store::Change::of(&before, ahead))
        .await
        .unwrap();
    for (i, state) in task_states("deploy").iter().enumerate() {
        // Production runs frontend v1; the promotion brings backend b1 (its first: at once)
        // and then frontend v2 (by canary, a gate before 100 %, holds promoted).
        let env = EnvName::parse(&format!("pp{i}")).unwrap();
        plane
            .ready(&env, Tier::Prod, u8::try_from(170 + i).unwrap())
            .await;
        let first = mutations::deploy(
            plane.store.as_ref(),
            &env,
            &json!({"service": "frontend", "version": "v1"}),
        )
        .await;
        let (outcome, _) = plane.run("deploy", &env, &first, &[]).await;
        assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");

        let op = mutations::promote(
            plane.store.as_ref(),
            &source,
            &env,
            &[Service::Backend, Service::Frontend],
        )
        .await;
        let (outcome, injected) = plane.run("deploy", &env, &op, &[state]).await;
        assert_eq!(outcome.status, "FAILED", "at {state}: {outcome:?}");
        assert!(injected >= 1, "{state} was never reached");
        plane.assert_failed_and_released(&env, &op, state).await;
        let record = plane.store.environment(&env).await.unwrap().unwrap();
        let versions: Vec<_> = record
            .releases
            .values()
            .map(|r| r.version.as_str())
            .collect();
        // Complete records the last service before Finish fails: the promotion is then done.
        let expected = if *state == "Finish" {
            vec!["v2", "b1"]
        } else {
            vec!["v1"]
        };
        assert_eq!(versions, expected, "at {state}");
        let frontend = if *state == "Finish" { "v2" } else { "v1" };
        assert_eq!(serving(&plane, &env).await, frontend, "at {state}");
        println!("promote: failure at {state}: {versions:?} run");
    }
}
