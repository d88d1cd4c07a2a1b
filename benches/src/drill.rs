//! Modelled DR drill: a production environment provisioned on the realistic simulated cloud,
//! then a drill through the shipped restore flow — a whole drill environment provisioned in
//! its own block, the database restored on a modelled AWS host (a volume from the snapshot, a
//! new host, WAL replay; each step drawn around its median, `RESTORE_STEPS`), checked,
//! switched and torn down — replayed `--time-scale` times faster over several seeds. Prints
//! each drill's RTO (start → checks green) and RPO against the seed runbook's one hour and the
//! goal of 15 minutes, the step timeline, and RTO / the least any schedule could take on the
//! durations that run drew (the drill environment's critical path, and beside it its network
//! then the restore's steps one after another: the flow restores while it provisions).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use envplane_cloud::{Faults, LatencyProfile, SimulatedDatabases, Simulator};
use envplane_domain::resources;
use envplane_domain::restore::{self, RestoreInto, RestorePoint};
use envplane_domain::{EnvName, Tier};
use envplane_store::testing::mutations;
use envplane_store::{EmbeddedStore, StateStore};
use envplane_worker::{Worker, execution_input, restore_id};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, ScaledClock};

#[path = "figures.rs"]
mod figures;
use figures::{critical_path, summary};

/// The seed runbook's whole-environment RTO for production, seconds.
const RUNBOOK_RTO: i64 = 3600;
/// The goal this benchmark holds a drill to, seconds.
const GOAL_RTO: i64 = 900;

#[derive(Debug, Parser)]
#[command(about = "A production DR drill on the realistic simulated cloud, over several seeds")]
struct Args {
    /// How many times faster than real time the flows run.
    #[arg(long, default_value_t = 200.0)]
    time_scale: f64,
    /// Seeds (1, 2, …): each draws its own durations.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
}

async fn run(executor: &Executor, flow: Flow, env: &EnvName, op: &str) -> anyhow::Result<()> {
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
    Ok(())
}

/// One drill; answers (RTO, RTO / least).
async fn drill(time_scale: f64, seed: u64) -> anyhow::Result<(i64, f64)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(&dir.path().join("state.redb"))?);
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
    let databases = Arc::new(SimulatedDatabases::new(
        LatencyProfile::Realistic,
        seed,
        now.clone(),
        Duration::from_secs(60),
    ));
    let worker = Worker::new(store.clone(), cloud.clone())
        .with_clock(now)
        .with_databases(databases.clone());
    let executor = Executor::new(Arc::new(worker), clock.clone());

    let source = EnvName::parse("shop").map_err(anyhow::Error::msg)?;
    let op = mutations::create(store.as_ref(), &source, Tier::Prod, 2, |_| {}).await;
    run(&executor, Flow::Provision, &source, &op).await?;

    let probe = format!("01JBENCHDRILL{seed:013}");
    let name = restore::drill_name(&source, &probe).map_err(anyhow::Error::msg)?;
    let op = mutations::restore(
        store.as_ref(),
        &source,
        RestorePoint::Latest,
        RestoreInto::Drill { name: name.clone() },
        40,
    )
    .await;
    // Its environment's name comes from the request here, not from the operation id.
    let started = std::time::Instant::now();
    run(&executor, Flow::Restore, &name, &op).await?;
    let real = started.elapsed();
    let done = store
        .operation(&op)
        .await?
        .context("the drill's operation")?;
    let evidence = done
        .restore
        .and_then(|r| r.evidence)
        .context("the drill recorded no evidence")?;
    let rto = evidence.rto_seconds.context("no RTO")?;
    let rpo = evidence.rpo_seconds.context("no RPO")?;

    // The least any schedule could take on what this run drew: the drill environment's
    // critical path, and beside it the network then the restore's steps one after another.
    let spec = store
        .environment(&source)
        .await?
        .context("the source")?
        .spec;
    let mut drill_spec = spec;
    drill_spec.network.vpc_cidr = envplane_domain::VpcCidr::from_second_octet(40);
    let plan = resources::plan(&name, &drill_spec);
    let took = cloud.creation_durations();
    let provisioning = critical_path(&plan, &took)?;
    let steps = databases.steps_drawn(&name, &restore_id(&op));
    let restoring: f64 = steps.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let network: Vec<_> = plan
        .iter()
        .filter(|p| p.group == resources::Group::Network)
        .cloned()
        .collect();
    let least = provisioning.max(critical_path(&network, &took)? + restoring);

    println!(
        "seed {seed}: RTO {rto} s ({:.1} min) — runbook {} min: {}, goal {} min: {} — RPO {rpo} s (target {} min) — {:.3}× the least ({least:.0} s) — left {} — {:.1} s real",
        rto as f64 / 60.0,
        RUNBOOK_RTO / 60,
        if rto <= RUNBOOK_RTO { "met" } else { "MISSED" },
        GOAL_RTO / 60,
        if rto <= GOAL_RTO { "met" } else { "MISSED" },
        evidence.targets.map_or(0, |t| t.rpo_minutes),
        rto as f64 / least,
        evidence.left.len(),
        real.as_secs_f64()
    );
    for step in &evidence.timeline {
        println!(
            "    {:>6} s  +{:>5} s  {}",
            step.at_seconds + step.seconds,
            step.seconds,
            step.name
        );
    }
    let detail: Vec<String> = steps
        .iter()
        .map(|(step, d)| format!("{step} {:.0} s", d.as_secs_f64()))
        .collect();
    println!("    database restore (modelled): {}", detail.join(", "));
    Ok((rto, rto as f64 / least))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    println!(
        "production DR drill through restore.asl.json on the realistic simulated cloud and modelled database hosts, replayed {}× faster; times in simulated seconds",
        args.time_scale
    );
    let mut rtos = Vec::new();
    let mut ratios = Vec::new();
    for seed in 1..=args.seeds {
        let (rto, ratio) = drill(args.time_scale, seed).await?;
        rtos.push(rto as f64);
        ratios.push(ratio);
    }
    let (median_rto, worst_rto) = summary(&mut rtos);
    let (median, worst) = summary(&mut ratios);
    println!();
    println!(
        "RTO over {} seeds: median {:.0} s ({:.1} min), worst {:.0} s — seed runbook 60 min, goal 15 min",
        args.seeds,
        median_rto,
        median_rto / 60.0,
        worst_rto
    );
    println!("RTO / least: median {median:.3}×, worst {worst:.3}×");
    Ok(())
}
