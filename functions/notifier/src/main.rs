//! Lambda entry point of the notifier: the Slack webhook URL is read once from Secrets Manager
//! (it is a credential: whoever has it can post to the channel), then one SNS event per call.
#![forbid(unsafe_code)]

use anyhow::Context;
use aws_config::BehaviorVersion;
use envplane_notify::SlackWebhook;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_telemetry::init_lambda_logging();
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let secret =
        std::env::var("SLACK_WEBHOOK_SECRET_ARN").context("SLACK_WEBHOOK_SECRET_ARN is not set")?;
    let url = aws_sdk_secretsmanager::Client::new(&config)
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .context("reading the Slack webhook secret")?
        .secret_string()
        .map(str::trim)
        .filter(|s| s.starts_with("https://"))
        .context("the Slack webhook secret must hold the webhook's https:// URL")?
        .to_owned();
    let api_base = std::env::var("ENVPLANE_API_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let slack = SlackWebhook::new(url, api_base);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let slack = slack.clone();
        async move { envplane_fn_notifier::handle(&slack, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
