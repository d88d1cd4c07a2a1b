//! Provisioning benchmark: the shipped provision flow on the local executor against the
//! simulated cloud's realistic latencies (EKS ~10 min, node groups ~4 min, NAT ~2 min…),
//! replayed `--time-scale` times faster. Prints the flow's wall time beside the sum of every
//! resource's creation time (done one after another) and the critical path of the resources'
//! dependency graph (the least any schedule can take), and the state transitions it spent.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_domain::resources::{self, Planned};
use envplane_domain::{Blueprint, EnvName, Tier};
use envplane_store::testing::mutations;
use envplane_store::{EmbeddedStore, StateStore};
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, Outcome, ScaledClock};

#[derive(Debug, Parser)]
#[command(about = "Benchmark provisioning on the realistic simulated cloud")]
struct Args {
    /// How many times faster than real time the flow runs.
    #[arg(long, default_value_t = 100.0)]
    time_scale: f64,
    /// Tiers to provision, one after another.
    #[arg(long, value_delimiter = ',', default_value = "dev,prod")]
    tiers: Vec<Tier>,
    /// Skip the upgrade run (dev on EKS 1.29 upgraded to 1.31 by the update flow).
    #[arg(long)]
    no_upgrade: bool,
}

/// A plane for one run: an embedded store in a temporary directory, the realistic simulated
/// cloud and the local executor, on a clock `time_scale` times faster than real time.
struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<dyn StateStore>,
    clock: Arc<ScaledClock>,
    cloud: Arc<Simulator>,
    executor: Executor,
}

impl Rig {
    fn new(time_scale: f64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn StateStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("state.redb"))?);
        let clock = Arc::new(ScaledClock::new(time_scale));
        let reader = clock.clone();
        let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
        let cloud = Arc::new(Simulator::new(
            LatencyProfile::Realistic,
            Faults::NONE,
            now.clone(),
        ));
        let worker = Worker::new(store.clone(), cloud.clone()).with_clock(now);
        let executor = Executor::new(Arc::new(worker), clock.clone());
        Ok(Self {
            _dir: dir,
            store,
            clock,
            cloud,
            executor,
        })
    }
}

/// Runs a shipped flow for an operation to its end; a failed flow ends the benchmark.
async fn run_flow(
    executor: &Executor,
    flow: Flow,
    env: &EnvName,
    op: &str,
) -> anyhow::Result<Outcome> {
    let outcome = executor
        .execute(&flow.local_definition()?, execution_input(env, op), op)
        .await;
    if outcome.status != "SUCCEEDED" {
        bail!(
            "{flow:?} of {env} failed: {:?} {:?}",
            outcome.error,
            outcome.cause
        );
    }
    Ok(outcome)
}

/// Earliest finish of every resource when each starts as soon as its dependencies are active.
fn critical_path(plan: &[Planned]) -> u64 {
    let mut finish: BTreeMap<&str, u64> = BTreeMap::new();
    for p in plan {
        // The plan lists dependencies before their dependents.
        let start = p
            .depends_on
            .iter()
            .map(|d| finish.get(d.as_str()).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        finish.insert(&p.name, start + p.kind().typical_create_seconds());
    }
    finish.values().copied().max().unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "provision flow on the realistic simulated cloud, replayed {}× faster; times in simulated seconds",
        args.time_scale
    );
    println!(
        "{:<8} {:>9} {:>14} {:>8} {:>16} {:>12} {:>10}",
        "tier", "wall", "critical path", "ratio", "sequential sum", "transitions", "cloud calls"
    );
    for tier in args.tiers {
        let Rig {
            _dir,
            store,
            clock,
            cloud,
            executor,
        } = Rig::new(args.time_scale)?;

        let default_block = Blueprint::for_tier(tier).default_vpc_cidr;
        let env = EnvName::parse(&format!("bench-{tier}")).map_err(anyhow::Error::msg)?;
        let op = mutations::create(store.as_ref(), &env, tier, 16, |spec| {
            if let Some(block) = default_block {
                spec.network.vpc_cidr = block;
            }
        })
        .await;
        let spec = store
            .environment(&env)
            .await?
            .context("the environment just recorded")?
            .spec;
        let plan = resources::plan(&env, &spec);

        let started_virtual = clock.now();
        let started = Instant::now();
        let outcome = run_flow(&executor, Flow::Provision, &env, &op).await?;
        let real = started.elapsed();
        let wall = (clock.now() - started_virtual).as_seconds_f64();
        let critical = critical_path(&plan) as f64;
        let sequential: u64 = plan.iter().map(|p| p.kind().typical_create_seconds()).sum();
        println!(
            "{:<8} {:>8.0}s {:>13.0}s {:>7.3}× {:>15}s {:>12} {:>10}   ({:.1} s real)",
            tier.as_str(),
            wall,
            critical,
            wall / critical,
            sequential,
            outcome.transitions(),
            cloud.calls(),
            real.as_secs_f64()
        );
    }
    if !args.no_upgrade {
        upgrade(args.time_scale).await?;
    }
    Ok(())
}

/// Dev on EKS 1.29 upgraded to 1.31 (and its frontend scaled) by the update flow: the least it
/// can take is two control-plane upgrades, then two node group rollouts (both groups at once).
async fn upgrade(time_scale: f64) -> anyhow::Result<()> {
    let Rig {
        _dir,
        store,
        clock,
        cloud,
        executor,
    } = Rig::new(time_scale)?;
    let env = EnvName::parse("bench-upgrade").map_err(anyhow::Error::msg)?;
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |s| {
        s.cluster.version = "1.29".into();
    })
    .await;
    run_flow(&executor, Flow::Provision, &env, &op).await?;
    let op = mutations::update(
        store.as_ref(),
        &env,
        &serde_json::json!({"cluster": {"version": "1.31", "frontend": {"desired": 3}}}),
        false,
    )
    .await;
    let calls_before = cloud.calls();
    let started_virtual = clock.now();
    let started = Instant::now();
    let outcome = run_flow(&executor, Flow::Update, &env, &op).await?;
    let wall = (clock.now() - started_virtual).as_seconds_f64();
    let changes = store
        .operation(&op)
        .await?
        .map(|o| o.changes.len())
        .unwrap_or(0);
    let least = 2.0 * 1200.0 + 2.0 * 600.0;
    println!();
    println!(
        "update flow, dev EKS 1.29 → 1.31 and frontend 2 → 3: {wall:.0}s against at least {least:.0}s ({:.3}×), {} transitions, {changes} in-place changes, {} cloud calls ({:.1} s real)",
        wall / least,
        outcome.transitions(),
        cloud.calls() - calls_before,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
