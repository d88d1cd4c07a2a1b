//! Lambda entry point of the worker: clients built once, then one action per invocation.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use envplane_aws::{AwsCloud, AwsSettings, SnsPublisher};
use envplane_store::DynamoStore;
use envplane_worker::Worker;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_telemetry::init_lambda_logging();
    // Step Functions retries with backoff and jitter (Envplane.Throttled / Envplane.Transient):
    // the SDK tries once more at most, so a throttled step gives the flow's policy the say.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(45))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME is not set")?;
    let settings = AwsSettings::from_env().map_err(anyhow::Error::msg)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    let topic = std::env::var("EVENTS_TOPIC_ARN").context("EVENTS_TOPIC_ARN is not set")?;
    let worker =
        Worker::new(Arc::new(store), Arc::new(AwsCloud::new(&config, settings))).with_events(
            Arc::new(SnsPublisher::new(aws_sdk_sns::Client::new(&config), topic)),
        );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let worker = worker.clone();
        async move { envplane_fn_worker::handle(&worker, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
