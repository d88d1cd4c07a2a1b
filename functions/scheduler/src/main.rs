//! Lambda entry point of the scheduler: clients built once (EC2/EKS/ELBv2 counted, for the
//! drift cycle's call budget), then one job per scheduled invocation.
#![forbid(unsafe_code)]

use std::sync::Arc;

use envplane_aws::{
    AwsCloud, AwsSettings, CallCounter, Clients, OnFirstUse, SnsPublisher, StepFunctions,
};
use envplane_lambda::{Role, required};
use envplane_store::DynamoStore;
use envplane_worker::jobs::Jobs;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread: Lambda hands an instance one event at a time and its work waits on the network;
// the multi-threaded runtime's workers took about 1 ms of a 6 ms init (`coldstart-bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    envplane_lambda::init_logging();
    let config = envplane_lambda::sdk_config(Role::Scheduler).await;
    let settings = AwsSettings::from_env(None).map_err(anyhow::Error::msg)?;
    let counter = CallCounter::default();
    // Stops versions kept warm past their rollback window.
    let traffic = envplane_kube::aws_traffic(&config, settings.stack.clone())?;
    let cloud = AwsCloud::new(Clients::counted(&config, &counter), settings);
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        required("TABLE_NAME")?,
    );
    // Destroys expired previews, rolls back lost provisionings, starts unstarted ones.
    let machines = envplane_aws::state_machines_from_env().map_err(anyhow::Error::msg)?;
    let workflows = StepFunctions::new(
        OnFirstUse::client(&config, aws_sdk_sfn::Client::new),
        machines,
    );
    // Made when an event is first published (see `OnFirstUse`).
    let events = SnsPublisher::new(
        OnFirstUse::client(&config, aws_sdk_sns::Client::new),
        required("EVENTS_TOPIC_ARN")?,
    );
    let jobs = Jobs::new(
        Arc::new(store),
        Arc::new(cloud),
        Arc::new(move || counter.get()),
    )
    .with_workflows(Arc::new(workflows))
    .with_events(Arc::new(events))
    .with_traffic(Arc::new(traffic));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let jobs = jobs.clone();
        async move { envplane_fn_scheduler::handle(&jobs, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
