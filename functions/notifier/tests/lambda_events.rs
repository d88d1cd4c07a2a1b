//! SNS Lambda events, as JSON fixtures, through the notifier's handler to a local Slack; and
//! the SNS side on moto: envplane's publisher sets the message attributes subscribers filter on,
//! and what SNS delivers becomes a Block Kit message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use envplane_domain::events::{Event, EventKind};
use envplane_domain::{EnvName, Tier};
use envplane_fn_notifier::{NotifierError, deliver, handle};
use envplane_notify::{Publisher, SlackWebhook};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/sns/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A local HTTP receiver keeping every JSON body posted to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move |body: String| {
        let keep = keep.clone();
        async move {
            keep.lock()
                .unwrap()
                .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn an_sns_event_becomes_a_block_kit_message_and_strangers_are_skipped() {
    let (url, received) = receiver().await;
    let slack = SlackWebhook::new(
        format!("{url}/hook"),
        Some("https://envplane.example".into()),
    );
    let answer = handle(
        &slack,
        LambdaEvent::new(fixture("operation-failed.json"), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(answer, json!({ "posted": 1, "skipped": 1 }));
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let attachment = &messages[0]["attachments"][0];
    assert_eq!(attachment["color"], "#a30200");
    assert_eq!(
        attachment["blocks"][0]["text"]["text"],
        "Operation failed: prod"
    );
    assert!(
        attachment["blocks"][3]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("ResourceLimitExceeded")
    );
}

#[tokio::test]
async fn a_webhook_that_fails_fails_the_invocation_so_lambda_retries() {
    let slack = SlackWebhook::new("http://127.0.0.1:9/hook", None)
        .with_retries(2, std::time::Duration::from_millis(1));
    let error = deliver(&slack, fixture("operation-failed.json"))
        .await
        .unwrap_err();
    assert!(matches!(error, NotifierError::Delivery(_)), "{error:?}");
    let not_sns = deliver(&slack, json!({"detail-type": "Scheduled Event"}))
        .await
        .unwrap_err();
    assert!(matches!(not_sns, NotifierError::NotSns(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_on_moto_carries_the_attributes_subscribers_filter_on() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name(format!(
            "envplane-events-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    // Two HTTP subscribers: the on-call one takes only critical events of prod; another only
    // a different environment's. moto applies filter policies to message attributes.
    let (url, received) = receiver().await;
    for (path, policy) in [
        (
            "/oncall",
            json!({ "severity": ["critical"], "tier": ["prod"] }),
        ),
        ("/other", json!({ "environment": ["somewhere-else"] })),
    ] {
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(format!("{url}{path}"))
            .attributes("FilterPolicy", policy.to_string())
            .send()
            .await
            .unwrap();
    }
    let publisher = envplane_aws::SnsPublisher::new(sns.clone(), topic.clone());
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let failed = Event::new(
        EventKind::OperationFailed,
        EnvName::parse("prod").unwrap(),
        Tier::Prod,
        Some("01JD0000000000000000000001".into()),
        "Update of prod failed: Envplane.Conflict".into(),
        Some("UpdateNodegroupConfig: ResourceLimitExceeded".into()),
        at,
    );
    let started = Event::new(
        EventKind::OperationStarted,
        EnvName::parse("prod").unwrap(),
        Tier::Prod,
        Some("01JD0000000000000000000002".into()),
        "Update of prod started".into(),
        None,
        at,
    );
    publisher.publish(&failed).await.unwrap();
    publisher.publish(&started).await.unwrap();

    let notifications = received.lock().unwrap().clone();
    assert_eq!(
        notifications.len(),
        1,
        "only the critical one passes the filters: {notifications:?}"
    );
    let envelope = &notifications[0];
    assert_eq!(envelope["TopicArn"], topic.as_str());
    assert_eq!(envelope["Subject"], "envplane operation_failed: prod");
    let event: Event = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(event, failed);

    // What SNS delivered, handed to the notifier as Lambda would, reaches Slack as Block Kit.
    let (slack_url, slack_received) = receiver().await;
    let slack = SlackWebhook::new(format!("{slack_url}/hook"), None);
    let lambda_event = json!({ "Records": [{ "EventSource": "aws:sns", "Sns": {
        "MessageId": envelope["MessageId"], "Message": envelope["Message"],
    } }] });
    deliver(&slack, lambda_event).await.unwrap();
    let message = slack_received.lock().unwrap()[0].clone();
    assert_eq!(
        message["attachments"][0]["blocks"][0]["text"]["text"],
        "Operation failed: prod"
    );
}
