//! Lambda entry point of the scheduler: clients built once (EC2/EKS/ELBv2 counted, for the
//! drift cycle's call budget), then one job per scheduled invocation.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use envplane_aws::{
    AwsCloud, AwsSettings, CallCounter, SnsPublisher, StepFunctions, counted_clients,
};
use envplane_store::DynamoStore;
use envplane_worker::jobs::Jobs;
use envplane_workflow::Flow;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_telemetry::init_lambda_logging();
    // Adaptive retries back off under throttling before the cycle's breaker opens.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive().with_max_attempts(3))
        .load()
        .await;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME is not set")?;
    let settings = AwsSettings::from_env().map_err(anyhow::Error::msg)?;
    let destroy = std::env::var("DESTROY_STATE_MACHINE_ARN")
        .context("DESTROY_STATE_MACHINE_ARN is not set")?;
    let topic = std::env::var("EVENTS_TOPIC_ARN").context("EVENTS_TOPIC_ARN is not set")?;
    let counter = CallCounter::default();
    let (ec2, eks, elb) = counted_clients(&config, &counter);
    let cloud = AwsCloud::from_clients(ec2, eks, elb, settings);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    let workflows = StepFunctions::new(
        aws_sdk_sfn::Client::new(&config),
        BTreeMap::from([(Flow::Destroy, destroy)]),
    );
    let meter = counter.clone();
    let jobs = Jobs::new(
        Arc::new(store),
        Arc::new(cloud),
        Arc::new(move || meter.get()),
    )
    .with_workflows(Arc::new(workflows))
    .with_events(Arc::new(SnsPublisher::new(
        aws_sdk_sns::Client::new(&config),
        topic,
    )));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let jobs = jobs.clone();
        async move { envplane_fn_scheduler::handle(&jobs, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
