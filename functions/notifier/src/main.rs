//! Lambda entry point of the notifier: the Slack webhook URL is read once from Secrets Manager
//! (it is a credential: whoever has it can post to the channel), then one SNS event per call.
#![forbid(unsafe_code)]

use anyhow::Context;
use envplane_lambda::{Role, optional, required};
use envplane_notify::SlackWebhook;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread: Lambda hands an instance one event at a time and its work waits on the network;
// the multi-threaded runtime's workers took about 1 ms of a 6 ms init (`coldstart-bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    envplane_lambda::init_logging();
    let config = envplane_lambda::sdk_config(Role::Notifier).await;
    let url = aws_sdk_secretsmanager::Client::new(&config)
        .get_secret_value()
        .secret_id(required("SLACK_WEBHOOK_SECRET_ARN")?)
        .send()
        .await
        .context("reading the Slack webhook secret")?
        .secret_string()
        .map(str::trim)
        .filter(|s| s.starts_with("https://"))
        .context("the Slack webhook secret must hold the webhook's https:// URL")?
        .to_owned();
    let slack = SlackWebhook::new(url, optional("ENVPLANE_API_URL"));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let slack = slack.clone();
        async move { envplane_fn_notifier::handle(&slack, event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
