//! Provisioning benchmark: the shipped provision flow on the local executor against the
//! simulated cloud's realistic latencies, replayed `--time-scale` times faster, over several
//! seeds. Each seed draws every resource's duration from a log-normal spread around the
//! simulator's own table of AWS's medians — not the worker's estimates, which time its polls —
//! so the flow meets a cloud it does not know in advance. Each run is compared with the least
//! time any schedule could have taken on *that run's* durations: the critical path of the
//! resources' dependency graph, computed from what the simulator drew. Prints wall / critical
//! path per seed, then the median and the worst; the goal is ≤ 1.1×.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use envplane_cloud::{ChangeDrawn, Faults, LatencyProfile, Simulator};
use envplane_domain::resources;
use envplane_domain::{Blueprint, EnvName, Tier};
use envplane_store::testing::mutations;
use envplane_store::{EmbeddedStore, StateStore};
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, Outcome, ScaledClock};

#[path = "figures.rs"]
mod figures;
use figures::{critical_path, summary};

#[derive(Debug, Parser)]
#[command(about = "Benchmark provisioning on the realistic simulated cloud, over several seeds")]
struct Args {
    /// How many times faster than real time the flow runs.
    #[arg(long, default_value_t = 100.0)]
    time_scale: f64,
    /// Tiers to provision.
    #[arg(long, value_delimiter = ',', default_value = "dev,prod")]
    tiers: Vec<Tier>,
    /// Seeds per tier (1, 2, …): each draws its own durations.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Skip the upgrade runs (dev on EKS 1.29 upgraded to 1.31 by the update flow).
    #[arg(long)]
    no_upgrade: bool,
}

/// A plane for one run: an embedded store in a temporary directory, the realistic simulated
/// cloud drawing its durations from `seed`, and the local executor, on a clock `time_scale`
/// times faster than real time.
struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<dyn StateStore>,
    clock: Arc<ScaledClock>,
    cloud: Arc<Simulator>,
    executor: Executor,
}

impl Rig {
    fn new(time_scale: f64, seed: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn StateStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("state.redb"))?);
        let clock = Arc::new(ScaledClock::new(time_scale));
        let reader = clock.clone();
        let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
        let faults = Faults {
            seed,
            ..Faults::NONE
        };
        let cloud = Arc::new(Simulator::new(
            LatencyProfile::Realistic,
            faults,
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

/// The least an upgrade can take on the durations drawn: the control plane's version steps one
/// after another, then the slowest node group's; and never less than the busiest resource.
fn least_upgrade(changes: &[ChangeDrawn], cluster: &str) -> f64 {
    let mut per_resource: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for c in changes {
        let entry = per_resource.entry(&c.resource).or_default();
        entry.1 += c.took.as_secs_f64();
        if c.version {
            entry.0 += c.took.as_secs_f64();
        }
    }
    let control_plane = per_resource.get(cluster).map_or(0.0, |(v, _)| *v);
    let node_groups = per_resource
        .iter()
        .filter(|(name, _)| **name != cluster)
        .map(|(_, (v, _))| *v)
        .fold(0.0, f64::max);
    let busiest = per_resource
        .values()
        .map(|(_, all)| *all)
        .fold(0.0, f64::max);
    (control_plane + node_groups).max(busiest)
}

async fn provision(time_scale: f64, tier: Tier, seed: u64) -> anyhow::Result<f64> {
    let Rig {
        _dir,
        store,
        clock,
        cloud,
        executor,
    } = Rig::new(time_scale, seed)?;
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
    let took = cloud.creation_durations();
    let critical = critical_path(&plan, &took)?;
    let sequential: f64 = took.values().map(Duration::as_secs_f64).sum();
    println!(
        "{:<8} {:>4} {:>8.0}s {:>13.0}s {:>7.3}× {:>15.0}s {:>12} {:>10}   ({:.1} s real)",
        tier.as_str(),
        seed,
        wall,
        critical,
        wall / critical,
        sequential,
        outcome.transitions(),
        cloud.calls(),
        real.as_secs_f64()
    );
    Ok(wall / critical)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    println!(
        "provision flow on the realistic simulated cloud (durations drawn per seed), replayed {}× faster; times in simulated seconds",
        args.time_scale
    );
    println!(
        "{:<8} {:>4} {:>9} {:>14} {:>8} {:>16} {:>12} {:>10}",
        "tier",
        "seed",
        "wall",
        "critical path",
        "ratio",
        "sequential sum",
        "transitions",
        "cloud calls"
    );
    let mut lines = Vec::new();
    for tier in &args.tiers {
        let mut ratios = Vec::new();
        for seed in 1..=args.seeds {
            ratios.push(provision(args.time_scale, *tier, seed).await?);
        }
        let (median, worst) = summary(&mut ratios);
        lines.push(format!(
            "{tier}: wall / critical path over {} seeds: median {median:.3}×, worst {worst:.3}× (goal ≤ 1.1×)",
            args.seeds
        ));
    }
    if !args.no_upgrade {
        println!();
        let mut ratios = Vec::new();
        for seed in 1..=args.seeds {
            ratios.push(upgrade(args.time_scale, seed).await?);
        }
        let (median, worst) = summary(&mut ratios);
        lines.push(format!(
            "upgrade: wall / least over {} seeds: median {median:.3}×, worst {worst:.3}×",
            args.seeds
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Dev on EKS 1.29 upgraded to 1.31 (and its frontend scaled) by the update flow, against the
/// least it could take on the durations this seed drew.
async fn upgrade(time_scale: f64, seed: u64) -> anyhow::Result<f64> {
    let Rig {
        _dir,
        store,
        clock,
        cloud,
        executor,
    } = Rig::new(time_scale, seed)?;
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
    let changes = cloud.changes_drawn();
    let least = least_upgrade(&changes, &envplane_domain::names::cluster(&env));
    println!(
        "upgrade seed {seed}: dev EKS 1.29 → 1.31 and frontend 2 → 3: {wall:.0}s against at least {least:.0}s ({:.3}×), {} transitions, {} in-place changes, {} cloud calls ({:.1} s real)",
        wall / least,
        outcome.transitions(),
        changes.len(),
        cloud.calls() - calls_before,
        started.elapsed().as_secs_f64()
    );
    Ok(wall / least)
}
