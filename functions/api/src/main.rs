//! Lambda entry point: builds the DynamoDB client once and serves API Gateway events.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use std::collections::BTreeMap;

use envplane_aws::StepFunctions;
use envplane_store::DynamoStore;
use envplane_workflow::Flow;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_telemetry::init_lambda_logging();

    // API Gateway gives up after 30 s: bound every call well inside that and retry briefly.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME is not set")?;
    let iam_roles = envplane_fn_api::iam_roles(
        std::env::var(envplane_fn_api::IAM_ROLES_VAR)
            .ok()
            .as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    let mut machines = BTreeMap::new();
    for (flow, variable) in [
        (Flow::Provision, "PROVISION_STATE_MACHINE_ARN"),
        (Flow::Destroy, "DESTROY_STATE_MACHINE_ARN"),
        (Flow::Update, "UPDATE_STATE_MACHINE_ARN"),
    ] {
        machines.insert(
            flow,
            std::env::var(variable).with_context(|| format!("{variable} is not set"))?,
        );
    }
    let workflows = StepFunctions::new(aws_sdk_sfn::Client::new(&config), machines);
    let app = envplane_fn_api::app(Arc::new(store), iam_roles, Some(Arc::new(workflows)));
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}
