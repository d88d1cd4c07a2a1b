//! Lambda entry point of the worker: clients built once, then one action per invocation.
#![forbid(unsafe_code)]

use std::sync::Arc;

use envplane_aws::{
    AwsCloud, AwsDatabases, AwsSettings, CallCounter, Clients, DatabaseClients, OnFirstUse,
    SnsPublisher,
};
use envplane_lambda::{Role, required};
use envplane_store::DynamoStore;
use envplane_worker::Worker;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread: Lambda hands an instance one event at a time and its work waits on the network;
// the multi-threaded runtime's workers took about 1 ms of a 6 ms init (`coldstart-bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    envplane_lambda::init_logging();
    let config = envplane_lambda::sdk_config(Role::Worker).await;
    let settings = AwsSettings::from_env(None).map_err(anyhow::Error::msg)?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        required("TABLE_NAME")?,
    );
    // Made when an event is first published (see `OnFirstUse`); the store's client is made
    // now: every invocation uses it.
    let events = SnsPublisher::new(
        OnFirstUse::client(&config, aws_sdk_sns::Client::new),
        required("EVENTS_TOPIC_ARN")?,
    );
    let traffic = envplane_kube::aws_traffic(&config, settings.stack.clone())?;
    let region = config
        .region()
        .map(ToString::to_string)
        .ok_or_else(|| anyhow::anyhow!("no AWS region configured"))?;
    let databases = AwsDatabases::new(
        DatabaseClients::new(&config),
        settings.stack.clone(),
        region,
        settings.db_instance_profile.clone(),
        settings.backup_bucket.clone(),
    );
    // Counted: every request is an `AwsCalls` metric by service.
    let cloud = AwsCloud::new(Clients::counted(&config, &CallCounter::default()), settings);
    let worker = Worker::new(Arc::new(store), Arc::new(cloud))
        .with_events(Arc::new(events))
        .with_traffic(Arc::new(traffic))
        .with_databases(Arc::new(databases));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let worker = worker.clone();
        async move { envplane_fn_worker::handle(&worker, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
