//! `envplane flow run`: any definition on the local executor, Task resources resolved to the
//! worker's handlers over a scratch store and the simulated cloud.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use envplane_cloud::{Faults, LatencyProfile, Simulator};
use envplane_store::{EmbeddedStore, StateStore};
use envplane_worker::Worker;
use envplane_workflow::executor::Clock;
use envplane_workflow::{Executor, LOCAL_WORKER, StateMachine, VirtualClock, WORKER_SUBSTITUTION};
use serde_json::{Value, json};

/// `envplane flow …`
#[derive(Debug, clap::Subcommand)]
pub enum FlowCommand {
    /// Run a state machine definition and print its outcome like DescribeExecution.
    Run {
        /// The ASL definition (JSON).
        definition: PathBuf,
        /// Execution input (JSON).
        #[arg(long, default_value = "{}")]
        input: String,
        /// A DefinitionSubstitution (repeatable); ${WorkerFunctionArn} is the local worker by default.
        #[arg(long = "substitution", value_name = "NAME=VALUE")]
        substitutions: Vec<String>,
        /// Fault injection of the simulated cloud, e.g. throttle=0.1,seed=3.
        #[arg(long, value_parser = Faults::parse)]
        faults: Option<Faults>,
    },
}

pub async fn run(command: FlowCommand) -> anyhow::Result<()> {
    let FlowCommand::Run {
        definition,
        input,
        substitutions,
        faults,
    } = command;
    let text = std::fs::read_to_string(&definition)
        .with_context(|| format!("reading {}", definition.display()))?;
    let mut subs = BTreeMap::from([(WORKER_SUBSTITUTION.to_owned(), LOCAL_WORKER.to_owned())]);
    for pair in &substitutions {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--substitution {pair:?}: expected NAME=VALUE"))?;
        subs.insert(name.to_owned(), value.to_owned());
    }
    let machine = StateMachine::load(&text, &subs)
        .with_context(|| format!("{} cannot run here", definition.display()))?;
    let input: Value = serde_json::from_str(&input).context("--input is not JSON")?;
    let execution = input
        .get("operation")
        .and_then(Value::as_str)
        .map_or_else(|| ulid::Ulid::new().to_string(), str::to_owned);

    let scratch = tempfile::tempdir()?;
    let store: Arc<dyn StateStore> =
        Arc::new(EmbeddedStore::open(&scratch.path().join("state.redb"))?);
    let clock = Arc::new(VirtualClock::new(time::OffsetDateTime::now_utc()));
    let reader = clock.clone();
    let cloud = Simulator::new(
        LatencyProfile::Instant,
        faults.unwrap_or(Faults::NONE),
        Arc::new(move || reader.now()),
    );
    let executor = Executor::new(Arc::new(Worker::new(store, Arc::new(cloud))), clock);
    let outcome = executor.execute(&machine, input, &execution).await;
    println!(
        "{}",
        json!({ "status": outcome.status, "output": outcome.output, "error": outcome.error, "cause": outcome.cause })
    );
    if outcome.status != "SUCCEEDED" {
        bail!("the execution failed");
    }
    Ok(())
}
