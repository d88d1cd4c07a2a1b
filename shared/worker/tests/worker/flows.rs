//! The shipped state machines, run unchanged by the local executor, with the worker on an
//! embedded store and the simulated cloud.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envplane_cloud::{Cloud, Faults, LatencyProfile, Simulator};
use envplane_domain::environment::Phase;
use envplane_domain::operation::OperationStatus;
use envplane_domain::resources::ResourceKind;
use envplane_domain::{EnvName, Tier};
use envplane_store::StateStore;
use envplane_worker::testing::Approving;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Outcome, VirtualClock};
use time::OffsetDateTime;

use crate::support::definition;

struct Plane {
    store: Arc<dyn StateStore>,
    simulator: Arc<Simulator>,
    executor: Executor,
    clock: Arc<VirtualClock>,
    _dir: tempfile::TempDir,
}

impl Plane {
    fn new(faults: Faults) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let clock = Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH));
        let reader = clock.clone();
        let simulator = Arc::new(Simulator::new(
            LatencyProfile::Instant,
            faults,
            Arc::new(move || reader.now()),
        ));
        let worker = Worker::new(store.clone(), simulator.clone());
        // Production's updates and destruction wait for two approvers, who approve.
        let approving = Approving::new(Arc::new(worker), store.clone());
        let executor = Executor::new(approving.clone(), clock.clone());
        approving.attach(executor.clone());
        Self {
            store,
            simulator,
            executor,
            clock,
            _dir: dir,
        }
    }

    async fn create(&self, name: &str, tier: Tier, cidr: u8) -> String {
        self.create_with(name, tier, cidr, |_| {}).await
    }

    async fn create_with(
        &self,
        name: &str,
        tier: Tier,
        cidr: u8,
        edit: impl FnOnce(&mut envplane_domain::EnvironmentSpec),
    ) -> String {
        envplane_store::testing::mutations::create(
            self.store.as_ref(),
            &EnvName::parse(name).unwrap(),
            tier,
            cidr,
            edit,
        )
        .await
    }

    async fn delete(&self, name: &str) -> String {
        envplane_store::testing::mutations::delete(
            self.store.as_ref(),
            &EnvName::parse(name).unwrap(),
        )
        .await
    }

    /// Records a merge patch as PATCH does and returns the update operation's id.
    async fn update(
        &self,
        name: &str,
        patch: serde_json::Value,
        allow_replacement: bool,
    ) -> String {
        envplane_store::testing::mutations::update(
            self.store.as_ref(),
            &EnvName::parse(name).unwrap(),
            &patch,
            allow_replacement,
        )
        .await
    }

    /// The in-place changes an operation recorded, as `resource: change`.
    async fn changes(&self, op: &str) -> Vec<String> {
        self.store
            .operation(op)
            .await
            .unwrap()
            .unwrap()
            .changes
            .iter()
            .map(|c| format!("{}: {}", c.resource, c.change))
            .collect()
    }

    async fn resource(&self, name: &str, resource: &str) -> envplane_cloud::Resource {
        self.simulator
            .list(&EnvName::parse(name).unwrap())
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.name == resource)
            .unwrap()
    }

    async fn run(&self, flow: &str, name: &str, op: &str) -> Outcome {
        let input = execution_input(&EnvName::parse(name).unwrap(), op);
        self.executor.execute(&definition(flow), input, op).await
    }

    async fn kinds(&self, name: &str) -> BTreeMap<ResourceKind, usize> {
        let mut counts = BTreeMap::new();
        for r in self
            .simulator
            .list(&EnvName::parse(name).unwrap())
            .await
            .unwrap()
        {
            *counts.entry(r.kind()).or_insert(0) += 1;
        }
        counts
    }
}

#[tokio::test]
async fn dev_qa_and_prod_reach_ready_with_their_blueprints_resources() {
    let plane = Plane::new(Faults::NONE);
    for (name, tier, cidr) in [
        ("dev", Tier::Dev, 0),
        ("qa", Tier::Qa, 1),
        ("prod", Tier::Prod, 2),
    ] {
        let op = plane.create(name, tier, cidr).await;
        let outcome = plane.run("provision", name, &op).await;
        assert_eq!(outcome.status, "SUCCEEDED", "{name}: {outcome:?}");
        let env = plane
            .store
            .environment(&EnvName::parse(name).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(env.status.phase, Phase::Ready);
        assert_eq!(env.active_operation, None);
        assert!(env.status.conditions.iter().all(|c| c.status));
        assert_eq!(
            plane.store.operation(&op).await.unwrap().unwrap().status,
            OperationStatus::Succeeded
        );
    }
    // The environment records what was found in the cloud.
    let recorded = plane
        .store
        .environment(&EnvName::parse("prod").unwrap())
        .await
        .unwrap()
        .unwrap()
        .resources;
    let subnets = recorded
        .iter()
        .filter(|r| r.kind == ResourceKind::Subnet)
        .count();
    let nats = recorded
        .iter()
        .filter(|r| r.kind == ResourceKind::NatGateway)
        .count();
    // 28 before the load balancer: + a green target group per service, the ALB, its listener.
    assert_eq!((recorded.len(), subnets, nats), (32, 6, 3));
    assert!(recorded.iter().all(|r| r.state == "active"));
    let prod = plane.kinds("prod").await;
    assert_eq!(prod[&ResourceKind::Subnet], 6);
    assert_eq!(prod[&ResourceKind::NatGateway], 3);
    assert_eq!(prod[&ResourceKind::NodeGroup], 2);
    assert_eq!(prod[&ResourceKind::DbInstance], 1);
    let dev = plane.kinds("dev").await;
    assert_eq!(
        (dev[&ResourceKind::Subnet], dev[&ResourceKind::NatGateway]),
        (4, 1)
    );
    let prod_resources = plane
        .simulator
        .list(&EnvName::parse("prod").unwrap())
        .await
        .unwrap();
    let backend = prod_resources
        .iter()
        .find(|r| r.name == "prod-backend")
        .unwrap();
    assert_eq!(
        (
            backend.attributes()["instance_type"].as_str(),
            backend.attributes()["desired"].as_u64()
        ),
        (Some("t3.xlarge"), Some(3))
    );
    let volume = prod_resources
        .iter()
        .find(|r| r.kind() == ResourceKind::Volume)
        .unwrap();
    assert_eq!(
        (
            volume.attributes()["size_gb"].as_u64(),
            volume.tags.get("Backup").map(String::as_str)
        ),
        (Some(100), Some("true"))
    );
}

#[tokio::test]
async fn destroy_leaves_nothing_and_frees_the_name_and_block() {
    let plane = Plane::new(Faults::NONE);
    let op = plane.create("prod", Tier::Prod, 2).await;
    assert_eq!(
        plane.run("provision", "prod", &op).await.status,
        "SUCCEEDED"
    );
    let op = plane.delete("prod").await;
    let outcome = plane.run("destroy", "prod", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    assert!(
        plane.simulator.all_resources().is_empty(),
        "{:?}",
        plane.simulator.all_resources()
    );
    let env = plane
        .store
        .environment(&EnvName::parse("prod").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (env.status.phase, env.active_operation),
        (Phase::Deleted, None)
    );
    assert!(plane.store.cidrs_in_use().await.unwrap().is_empty());

    // The name comes back with its audit chain continued.
    let op = plane.create("prod", Tier::Prod, 2).await;
    assert_eq!(
        plane.run("provision", "prod", &op).await.status,
        "SUCCEEDED"
    );
    let env = plane
        .store
        .environment(&EnvName::parse("prod").unwrap())
        .await
        .unwrap()
        .unwrap();
    let events = plane
        .store
        .audit_events(&env.name, 0, 100)
        .await
        .unwrap()
        .items;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "environment.create",
            "environment.delete",
            // Production's destruction waited for two approvers.
            "operation.approval",
            "operation.approved",
            "environment.deleted",
            "environment.create"
        ]
    );
    assert!(envplane_domain::audit::verify_chain(&events, &env.audit_head).valid);
}

#[tokio::test]
async fn fifty_create_delete_cycles_under_faults_leave_no_orphans_and_no_locks() {
    let plane = Plane::new(Faults {
        throttle: 0.1,
        error: 0.05,
        seed: 42,
    });
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..50u8 {
        let name = format!("cycle-{i}");
        let op = plane.create(&name, Tier::Dev, 16 + i).await;
        let created = plane.run("provision", &name, &op).await;
        let env = plane
            .store
            .environment(&EnvName::parse(&name).unwrap())
            .await
            .unwrap()
            .unwrap();
        match created.status {
            "SUCCEEDED" => assert_eq!(env.status.phase, Phase::Ready),
            _ => {
                assert_eq!(env.status.phase, Phase::Failed, "{created:?}");
                let op = plane.store.operation(&op).await.unwrap().unwrap();
                assert!(
                    !op.error.as_ref().unwrap().cause.is_empty(),
                    "a failure names its cause"
                );
            }
        }
        *outcomes
            .entry(if created.status == "SUCCEEDED" {
                "ready"
            } else {
                "failed"
            })
            .or_default() += 1;
        // One delete gets through the same faults: a throttled or failed delete of one
        // resource is tried again on the next poll, not the whole step.
        let op = plane.delete(&name).await;
        let destroyed = plane.run("destroy", &name, &op).await;
        assert_eq!(destroyed.status, "SUCCEEDED", "{name}: {destroyed:?}");
    }
    let orphans = plane.simulator.all_resources().len();
    let page = plane
        .store
        .list_environments(&envplane_store::EnvironmentQuery {
            limit: 100,
            phase: Some(Phase::Deleted),
            ..Default::default()
        })
        .await
        .unwrap();
    let stuck_locks = page
        .items
        .iter()
        .filter(|e| e.active_operation.is_some())
        .count();
    let distinct: BTreeSet<_> = page.items.iter().map(|e| e.name.to_string()).collect();
    println!(
        "50 cycles with throttle=0.1,error=0.05: {outcomes:?}; orphaned resources: {orphans}; stuck locks: {stuck_locks}; simulated API calls: {}",
        plane.simulator.calls()
    );
    assert_eq!(distinct.len(), 50);
    assert_eq!(orphans, 0);
    assert_eq!(stuck_locks, 0);
}

#[tokio::test]
async fn an_upgrade_from_1_29_to_1_31_passes_through_1_30_control_plane_first() {
    let plane = Plane::new(Faults::NONE);
    let op = plane
        .create_with("dev", Tier::Dev, 0, |s| s.cluster.version = "1.29".into())
        .await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let op = plane
        .update(
            "dev",
            serde_json::json!({"cluster": {"version": "1.31"}}),
            false,
        )
        .await;
    let outcome = plane.run("update", "dev", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let changes = plane.changes(&op).await;
    assert_eq!(
        changes,
        vec![
            "dev-eks: version 1.29 → 1.30",
            "dev-eks: version 1.30 → 1.31",
            "dev-frontend: version 1.29 → 1.30",
            "dev-backend: version 1.29 → 1.30",
            "dev-frontend: version 1.30 → 1.31",
            "dev-backend: version 1.30 → 1.31",
        ]
    );
    assert_eq!(
        plane.resource("dev", "dev-eks").await.attributes()["version"],
        "1.31"
    );
    assert_eq!(
        plane.resource("dev", "dev-backend").await.attributes()["version"],
        "1.31"
    );
    let env = plane
        .store
        .environment(&EnvName::parse("dev").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env.status.phase, Phase::Ready);
    assert!(env.active_operation.is_none());
    let op = plane.store.operation(&op).await.unwrap().unwrap();
    assert_eq!(op.status, OperationStatus::Succeeded);
}

#[tokio::test]
async fn scaling_a_resize_and_volume_growth_apply_in_place_snapshot_first() {
    let plane = Plane::new(Faults::NONE);
    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let ids_before: BTreeSet<String> = plane
        .simulator
        .all_resources()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let op = plane
        .update(
            "dev",
            serde_json::json!({
                "cluster": {"frontend": {"desired": 3}},
                "database": {"instance_type": "t3.xlarge", "volume": {"size_gb": 80, "iops": 4000}},
            }),
            false,
        )
        .await;
    let outcome = plane.run("update", "dev", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    // The node groups and the database are changed by parallel branches: order within each.
    let changes = plane.changes(&op).await;
    assert!(changes.contains(&"dev-frontend: scaling 2/2/4 → 2/3/4 (min/desired/max)".to_owned()));
    let database: Vec<&String> = changes.iter().filter(|c| c.starts_with("dev-db")).collect();
    assert_eq!(
        database,
        vec![
            "dev-db-data: volume to 80 GiB, 4000 IOPS, 125 MiB/s",
            "dev-db: snapshot of dev-db-data taken; stop to change type",
            "dev-db: instance type t3.large → t3.xlarge",
            "dev-db: start",
        ]
    );
    let db = plane.resource("dev", "dev-db").await;
    assert_eq!(db.attributes()["instance_type"], "t3.xlarge");
    assert_eq!(db.attributes()["power"], "running");
    assert_eq!(
        plane.resource("dev", "dev-frontend").await.attributes()["desired"],
        3
    );
    // In place: the same resources, nothing created or replaced.
    let ids_after: BTreeSet<String> = plane
        .simulator
        .all_resources()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids_before, ids_after);
}

#[tokio::test]
async fn a_node_group_instance_type_change_replaces_it_only_when_allowed() {
    let plane = Plane::new(Faults::NONE);
    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let before = plane.resource("dev", "dev-backend").await;
    let op = plane
        .update(
            "dev",
            serde_json::json!({"cluster": {"backend": {"instance_type": "t3.xlarge"}}}),
            true,
        )
        .await;
    let began = plane.clock.now();
    let outcome = plane.run("update", "dev", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    // On the instant cloud the replacement waits for nothing it need not: no typical
    // three-minute deletion is sat out once the old group is gone.
    let took = plane.clock.now() - began;
    assert!(took < time::Duration::seconds(30), "took {took}");
    let after = plane.resource("dev", "dev-backend").await;
    assert_ne!(before.id, after.id, "a new node group");
    assert_eq!(after.attributes()["instance_type"], "t3.xlarge");
    assert_eq!(
        plane.changes(&op).await,
        vec!["dev-backend: replacing: instance type \"t3.large\" → \"t3.xlarge\""]
    );
}

#[tokio::test]
async fn out_of_band_changes_are_put_back_by_the_update_flow() {
    let plane = Plane::new(Faults::NONE);
    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let env = EnvName::parse("dev").unwrap();
    assert!(plane.simulator.tamper(
        &env,
        "dev-sg-alb",
        Some(&|a: &mut serde_json::Value| {
            a["ingress"] = serde_json::json!([{"port": 443, "from": "0.0.0.0/0"}]);
        })
    ));
    assert!(plane.simulator.tamper(
        &env,
        "dev-frontend",
        Some(&|a: &mut serde_json::Value| {
            a["desired"] = 4.into();
        })
    ));
    // The subnet goes with its route table association, as AWS makes a person do.
    assert!(plane.simulator.tamper(&env, "dev-public-2", None));
    let op = plane
        .update(
            "dev",
            serde_json::json!({"cluster": {"backend": {"max": 5}}}),
            false,
        )
        .await;
    let outcome = plane.run("update", "dev", &op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    assert_eq!(
        plane.resource("dev", "dev-sg-alb").await.attributes()["ingress"],
        serde_json::json!([{"port": 443, "from": "0.0.0.0/0"}, {"port": 80, "from": "0.0.0.0/0"}])
    );
    assert_eq!(
        plane.resource("dev", "dev-frontend").await.attributes()["desired"],
        2
    );
    plane.resource("dev", "dev-public-2").await;
    let served = plane.resource("dev", "dev-rt-public").await.attributes()["subnets"].clone();
    assert_eq!(served, serde_json::json!(["dev-public-1", "dev-public-2"]));
    assert!(
        plane
            .changes(&op)
            .await
            .contains(&"dev-rt-public: associate dev-public-2".to_owned())
    );
}

#[tokio::test]
async fn deletes_get_through_the_faults_creates_get_through() {
    // The fault rates of the probe that found deletes far more fragile than creates.
    let plane = Plane::new(Faults {
        throttle: 0.3,
        error: 0.2,
        seed: 7,
    });
    let (mut created, mut deleted, mut failed) = (0, 0, Vec::new());
    let runs = 48u8;
    for i in 0..runs {
        let name = format!("probe-{i}");
        let op = plane.create(&name, Tier::Dev, 100 + i).await;
        if plane.run("provision", &name, &op).await.status == "SUCCEEDED" {
            created += 1;
        }
        let op = plane.delete(&name).await;
        let outcome = plane.run("destroy", &name, &op).await;
        if outcome.status == "SUCCEEDED" {
            deleted += 1;
        } else {
            let op = plane.store.operation(&op).await.unwrap().unwrap();
            println!("{name}: delete failed: {:?}", op.error);
            failed.push(name);
        }
    }
    println!(
        "throttle 0.3, error 0.2: {created}/{runs} creates and {deleted}/{runs} deletes succeeded"
    );
    // Each run draws its faults as its branches interleave: allow the noise of a run or two
    // (a delete that failed outright used to fail nearly every time).
    assert!(
        deleted + 2 >= created,
        "{deleted} deletes against {created} creates"
    );
    // A delete that failed is run again, as an operator would: nothing is left behind.
    for name in failed {
        let op = plane.delete(&name).await;
        assert_eq!(plane.run("destroy", &name, &op).await.status, "SUCCEEDED");
    }
    assert_eq!(plane.simulator.all_resources().len(), 0, "orphans");
}

#[test]
fn the_destroy_flow_tears_down_in_the_domains_steps() {
    let path = format!(
        "{}/../../statemachines/destroy.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let steps: Vec<Vec<ResourceKind>> = json["States"]["Steps"]["Result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_value(s["kinds"].clone()).unwrap())
        .collect();
    let domain: Vec<Vec<ResourceKind>> = ResourceKind::TEARDOWN_STEPS
        .iter()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(
        steps, domain,
        "a rollback deletes in the destroy flow's order"
    );
}

#[tokio::test]
async fn foreign_look_alikes_of_every_kind_are_never_adopted_or_deleted() {
    let plane = Plane::new(Faults::NONE);
    let env = EnvName::parse("dev").unwrap();
    let spec = envplane_domain::Blueprint::for_tier(Tier::Dev)
        .spec(envplane_domain::VpcCidr::from_second_octet(0));
    // Someone else's resources with envplane's names and the environment's tag, but not this
    // stack's: one of every kind the environment has.
    let planned = envplane_domain::resources::plan(&env, &spec);
    for (i, p) in planned.iter().enumerate() {
        let foreign = envplane_cloud::Resource {
            id: format!("foreign-{i}"),
            name: p.name.clone(),
            state: envplane_cloud::ResourceState::Active,
            observed: envplane_domain::resources::Observed::as_created(&p.desired, || {
                p.name.clone()
            }),
            updating: false,
            tags: BTreeMap::from([
                ("envplane:environment".to_owned(), "dev".to_owned()),
                ("envplane:stack".to_owned(), "someone-else".to_owned()),
                ("Name".to_owned(), p.name.clone()),
            ]),
            created_at: None,
        };
        assert!(plane.simulator.plant(foreign));
    }
    let kinds: BTreeSet<ResourceKind> = planned.iter().map(|p| p.kind()).collect();
    assert_eq!(
        kinds.len(),
        ResourceKind::TEARDOWN.len(),
        "every kind planted"
    );

    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let ours = plane.simulator.list(&env).await.unwrap();
    assert_eq!(ours.len(), planned.len());
    assert!(
        ours.iter().all(|r| !r.id.starts_with("foreign-")),
        "adopted"
    );
    let op = plane.delete("dev").await;
    assert_eq!(plane.run("destroy", "dev", &op).await.status, "SUCCEEDED");
    let left: Vec<String> = plane
        .simulator
        .all_resources()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left.len(), planned.len(), "{left:?}");
    assert!(left.iter().all(|id| id.starts_with("foreign-")));
}

#[tokio::test]
async fn snapshots_are_kept_for_their_retention_and_go_with_their_environment() {
    let plane = Plane::new(Faults::NONE);
    let env = EnvName::parse("dev").unwrap();
    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let resize = |size: &str| serde_json::json!({"database": {"instance_type": size}});
    let op = plane.update("dev", resize("t3.xlarge"), false).await;
    assert_eq!(plane.run("update", "dev", &op).await.status, "SUCCEEDED");
    assert_eq!(plane.simulator.snapshots(&env).await.unwrap().len(), 1);

    // Within dev's seven days it stays; past them housekeeping deletes it, but never the
    // newest recovery point.
    let jobs = || {
        envplane_worker::jobs::Jobs::new(
            plane.store.clone(),
            plane.simulator.clone(),
            Arc::new(|| 0),
        )
        .with_clock({
            let clock = plane.clock.clone();
            Arc::new(move || clock.now())
        })
    };
    let days = |n: u64| std::time::Duration::from_secs(n * 24 * 3600);
    assert!(
        jobs()
            .housekeeping()
            .await
            .unwrap()
            .expired_snapshots
            .is_empty()
    );
    plane.clock.sleep(days(8)).await;
    let kept = jobs().housekeeping().await.unwrap();
    assert!(
        kept.expired_snapshots.is_empty(),
        "the newest stays: {kept:?}"
    );
    // 05:00 UTC passed on that day (the clock started at midnight): the daily backup.
    plane
        .clock
        .sleep(std::time::Duration::from_secs(6 * 3600))
        .await;
    let daily = jobs().housekeeping().await.unwrap();
    assert_eq!(daily.backups.len(), 1, "{daily:?}");
    assert!(daily.backups[0].1.starts_with("daily-"));
    assert_eq!(
        daily.expired_snapshots.len(),
        1,
        "now the old one goes: {daily:?}"
    );
    assert!(
        jobs().housekeeping().await.unwrap().backups.is_empty(),
        "one a day"
    );
    let left = plane.simulator.snapshots(&env).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].name.contains("daily-"), "{left:?}");

    // Backups go with the environment.
    let op = plane.update("dev", resize("t3.2xlarge"), false).await;
    assert_eq!(plane.run("update", "dev", &op).await.status, "SUCCEEDED");
    assert_eq!(plane.simulator.snapshots(&env).await.unwrap().len(), 2);
    let op = plane.delete("dev").await;
    assert_eq!(plane.run("destroy", "dev", &op).await.status, "SUCCEEDED");
    assert!(plane.simulator.snapshots(&env).await.unwrap().is_empty());
}

#[test]
fn every_task_of_the_shipped_flows_has_a_timeout_retries_lambda_errors_and_compensation_is_caught()
{
    for flow in ["provision", "update", "destroy", "deploy"] {
        let path = format!(
            "{}/../../statemachines/{flow}.asl.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        fn tasks<'a>(
            states: &'a serde_json::Value,
            out: &mut Vec<(&'a str, &'a serde_json::Value)>,
        ) {
            for (name, state) in states.as_object().unwrap() {
                if state["Type"] == "Task" {
                    out.push((name, state));
                }
                for branch in state["Branches"].as_array().into_iter().flatten() {
                    tasks(&branch["States"], out);
                }
                if let Some(inner) = state.get("ItemProcessor") {
                    tasks(&inner["States"], out);
                }
            }
        }
        let mut all = Vec::new();
        tasks(&json["States"], &mut all);
        for (name, task) in all {
            assert!(
                task["TimeoutSeconds"].as_u64().is_some(),
                "{flow}/{name}: no timeout"
            );
            let retried: Vec<&str> = task["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
                .map(|e| e.as_str().unwrap())
                .collect();
            for error in [
                "Envplane.Throttled",
                "Envplane.Transient",
                "Lambda.ServiceException",
                "Lambda.AWSLambdaException",
                "Lambda.SdkClientException",
                "Lambda.TooManyRequestsException",
            ] {
                assert!(
                    retried.contains(&error),
                    "{flow}/{name} does not retry {error}"
                );
            }
            // A task that waits for a person times out as its approval expires: never retried,
            // caught as the expiry. Any other task's time-out is a hung call: retried.
            let waits = task["Resource"]
                .as_str()
                .is_some_and(|r| r.ends_with(".waitForTaskToken"));
            assert_eq!(
                retried.contains(&"States.Timeout"),
                !waits,
                "{flow}/{name}: States.Timeout retried {}",
                !waits
            );
            if waits {
                assert_eq!(task["Catch"][0]["ErrorEquals"][0], "States.Timeout");
                assert!(
                    task["Catch"][0]["Next"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("Expired")),
                    "{flow}/{name}: a wait's time-out is its expiry"
                );
                assert_eq!(task["TimeoutSeconds"], 7 * 24 * 3600);
            }
        }
        // A failure anywhere is caught: at top-level states, or by the Parallel or Map state a
        // nested task belongs to.
        for (name, state) in json["States"].as_object().unwrap() {
            let kind = state["Type"].as_str().unwrap();
            if matches!(kind, "Task" | "Parallel" | "Map") {
                assert!(
                    state.get("Catch").is_some(),
                    "{flow}/{name}: a failure here would be silent"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_retried_finish_or_compensation_after_its_write_is_done_not_a_conflict() {
    let plane = Plane::new(Faults::NONE);
    let op = plane.create("dev", Tier::Dev, 0).await;
    assert_eq!(plane.run("provision", "dev", &op).await.status, "SUCCEEDED");
    let worker = Worker::new(plane.store.clone(), plane.simulator.clone());
    let finish =
        serde_json::json!({"action": "operation.succeed", "environment": "dev", "operation": op});
    assert_eq!(
        worker.handle(finish).await.unwrap(),
        serde_json::json!({"phase": "ready"})
    );
    let failing = plane.create("qa", Tier::Qa, 1).await;
    let fail = serde_json::json!({
        "action": "operation.fail", "environment": "qa", "operation": failing,
        "error": {"Error": "Envplane.Invalid", "Cause": "boom"}
    });
    worker.handle(fail.clone()).await.unwrap();
    assert_eq!(
        worker.handle(fail).await.unwrap(),
        serde_json::json!({"phase": "failed", "error": "Envplane.Invalid"})
    );
}
