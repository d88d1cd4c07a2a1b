//! Canary benchmark: deployments on the local plane with real traffic (the demo app behind the
//! weighted proxy, a load generator sending requests through it), the shipped deploy flow on a
//! clock `--time-scale` times faster. For versions failing a share of their requests it
//! prints how many analysis intervals passed from the first failed interval to weight 0 (goal
//! ≤ 2); for a good version, the time to 100 % against the least possible (one interval per
//! step).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use envplane_cloud::{Faults, LatencyProfile, Simulator, Traffic};
use envplane_domain::canary::Verdict;
use envplane_domain::names::Service;
use envplane_domain::{EnvName, Tier};
use envplane_store::testing::mutations;
use envplane_store::{EmbeddedStore, StateStore};
use envplane_traffic::LocalTraffic;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, Flow, ScaledClock};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Benchmark canary rollbacks and promotions with real local traffic")]
struct Args {
    /// How many times faster than real time the flow runs (10 s intervals last 10 s / this).
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// Error rates of the bad versions tried, one deployment each.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1,0.3,0.5,1.0")]
    error_rates: Vec<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb"))?);
    let clock = Arc::new(ScaledClock::new(args.time_scale));
    let reader = clock.clone();
    let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
    let cloud = Arc::new(Simulator::new(
        LatencyProfile::Instant,
        Faults::NONE,
        now.clone(),
    ));
    let traffic: Arc<dyn Traffic> = Arc::new(LocalTraffic::new());
    let worker = Worker::new(store.clone(), cloud)
        .with_clock(now)
        .with_traffic(traffic.clone());
    let executor = Executor::new(Arc::new(worker), clock);
    let env = EnvName::parse("bench").map_err(anyhow::Error::msg)?;
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    run(&executor, Flow::Provision, &env, &op).await?;
    let deploy = |version: &str, error_rate: f64| {
        json!({
            "service": "frontend", "version": version, "strategy": "canary",
            "env": {"DEMO_ERROR_RATE": error_rate.to_string()},
            "canary": {"interval_seconds": 10, "min_requests": 20},
        })
    };
    let op = mutations::deploy(store.as_ref(), &env, &deploy("v1", 0.0)).await;
    run(&executor, Flow::Deploy, &env, &op).await?;
    let url = traffic
        .url(&env, Service::Frontend)
        .await
        .context("no load balancer")?;
    let running = Arc::new(AtomicBool::new(true));
    let generators: Vec<_> = (0..4)
        .map(|_| {
            let (url, running) = (url.clone(), running.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build()?;
                let mut sent = 0u64;
                while running.load(Ordering::Relaxed) {
                    if client.get(&url).send().await.is_ok() {
                        sent += 1;
                    }
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    println!(
        "canary 5 → 25 → 100 %, 10 s intervals at {}× time, real requests through the local load balancer",
        args.time_scale
    );
    let mut worst = 0;
    for (i, rate) in args.error_rates.iter().enumerate() {
        let version = format!("bad-{i}");
        let op = mutations::deploy(store.as_ref(), &env, &deploy(&version, *rate)).await;
        let started = Instant::now();
        executor
            .execute(
                &Flow::Deploy.local_definition()?,
                execution_input(&env, &op),
                &op,
            )
            .await;
        let d = store
            .operation_of(&env, &op)
            .await?
            .and_then(|o| o.deployment)
            .context("the deployment")?;
        let first_bad = d
            .analyses
            .iter()
            .position(|a| a.verdict == Verdict::Fail)
            .context("no failed interval")?;
        let intervals = d.analyses.len() - first_bad;
        worst = worst.max(intervals);
        println!(
            "error rate {rate:>4}: first failed interval at {:>3} % ({}), weight {} after {intervals} interval(s), {:.1} s real",
            d.analyses[first_bad].weight,
            d.analyses[first_bad].reasons.join("; "),
            d.progress.weight,
            started.elapsed().as_secs_f64()
        );
    }
    let op = mutations::deploy(store.as_ref(), &env, &deploy("good", 0.0)).await;
    let started = Instant::now();
    run(&executor, Flow::Deploy, &env, &op).await?;
    let real = started.elapsed().as_secs_f64();
    let least = 3.0 * 10.0 / args.time_scale;
    println!(
        "good version: 5 → 25 → 100 % in {real:.2} s real against {least:.2} s least (3 intervals): {:.3}×",
        real / least
    );
    running.store(false, Ordering::Relaxed);
    let mut sent = 0;
    for generator in generators {
        sent += generator.await??;
    }
    println!("{sent} requests sent; worst time to weight 0: {worst} interval(s) (goal ≤ 2)");
    Ok(())
}

async fn run(executor: &Executor, flow: Flow, env: &EnvName, op: &str) -> anyhow::Result<()> {
    let outcome = executor
        .execute(&flow.local_definition()?, execution_input(env, op), op)
        .await;
    anyhow::ensure!(
        outcome.status == "SUCCEEDED",
        "{flow:?} failed: {:?} {:?}",
        outcome.error,
        outcome.cause
    );
    Ok(())
}
