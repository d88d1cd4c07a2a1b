//! Slack: events rendered as Block Kit and posted to an incoming webhook, with retries.

use std::time::Duration;

use async_trait::async_trait;
use envplane_domain::events::{Event, EventKind, Severity};
use serde_json::{Value, json};

use crate::{NotifyError, Publisher};

/// Attachment colour per severity: Slack shows it as the bar beside the message.
pub fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#2eb886",
        Severity::Warning => "#daa038",
        Severity::Critical => "#a30200",
    }
}

fn title(event: &Event) -> String {
    let what = match event.kind {
        EventKind::OperationStarted => "Operation started",
        EventKind::OperationSucceeded => "Operation succeeded",
        EventKind::OperationFailed => "Operation failed",
        EventKind::AwaitingApproval => "Approval needed",
        EventKind::DriftFound => "Drift found",
        EventKind::PreviewExpired => "Preview expired",
        EventKind::DrillPassed => "DR drill passed",
        EventKind::DrillMissed => "DR drill missed its target",
    };
    format!("{what}: {}", event.environment)
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup: escape them in text from elsewhere.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for an event: a header, the environment, tier, severity and operation
/// (linked to the API when `api_base` is given), the summary and the cause; coloured by severity.
pub fn block_kit(event: &Event, api_base: Option<&str>) -> Value {
    let operation = match (&event.operation, api_base) {
        (Some(id), Some(base)) => {
            format!("<{}/v1/operations/{id}|{id}>", base.trim_end_matches('/'))
        }
        (Some(id), None) => format!("`{id}`"),
        (None, _) => "—".to_owned(),
    };
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": title(event) } }),
        json!({ "type": "section", "fields": [
            { "type": "mrkdwn", "text": format!("*Environment*\n{}", event.environment) },
            { "type": "mrkdwn", "text": format!("*Tier*\n{}", event.tier) },
            { "type": "mrkdwn", "text": format!("*Severity*\n{}", event.severity.as_str()) },
            { "type": "mrkdwn", "text": format!("*Operation*\n{operation}") },
        ] }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": escape(&event.summary) } }),
    ];
    if let (EventKind::AwaitingApproval, Some(id)) = (event.kind, &event.operation) {
        // Deciding needs an approver's identity, which a Slack button cannot carry: the
        // message says where and how, never approving by itself.
        let inbox = api_base.map_or_else(String::new, |base| {
            let base = base.trim_end_matches('/');
            format!(
                "\n<{base}/v1/approvals|Pending approvals> · POST {base}/v1/operations/{id}/approvals"
            )
        });
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!(
            "*Approve or reject*\n`envplane approve {id}` · `envplane reject {id} --comment \"…\"`{inbox}"
        ) } }));
    }
    if let Some(cause) = &event.cause {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*Cause*\n```{}```", escape(cause)) } }));
    }
    blocks.push(json!({ "type": "context", "elements": [
        { "type": "mrkdwn", "text": format!("envplane · {} · {}", event.kind.as_str(), event.at) },
    ] }));
    json!({
        "text": format!("{} — {}", title(event), event.summary),
        "attachments": [{ "color": colour(event.severity), "blocks": blocks }],
    })
}

/// An incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackWebhook {
    client: reqwest::Client,
    url: String,
    api_base: Option<String>,
    attempts: u32,
    first_backoff: Duration,
}

impl SlackWebhook {
    /// Posts to `url`; operation ids link to `api_base` when given.
    pub fn new(url: impl Into<String>, api_base: Option<String>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            url: url.into(),
            api_base,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
        }
    }

    /// The same webhook with another retry policy (tests shorten it).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }
}

#[async_trait]
impl Publisher for SlackWebhook {
    async fn publish(&self, event: &Event) -> Result<(), NotifyError> {
        let body = block_kit(event, self.api_base.as_deref());
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.client.post(&self.url).json(&body).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    // Slack asks for a pause on 429; honour it, within reason.
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let text = response.text().await.unwrap_or_default();
                    last = format!("{status}: {text}");
                    if status.is_client_error() && status.as_u16() != 429 {
                        return Err(NotifyError::Rejected(last));
                    }
                    if let Some(pause) = retry_after {
                        backoff = pause;
                    }
                }
                // The URL is the credential: reqwest would print it in its error.
                Err(error) => last = error.without_url().to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        Err(NotifyError::Delivery(format!(
            "after {} attempts: {last}",
            self.attempts
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use envplane_domain::{EnvName, Tier};
    use std::sync::{Arc, Mutex};
    use time::OffsetDateTime;

    fn failed() -> Event {
        Event::new(
            EventKind::OperationFailed,
            EnvName::parse("prod").unwrap(),
            Tier::Prod,
            Some("01J0000000000000000000000A".into()),
            "update failed".into(),
            Some("UpdateNodegroupConfig: <quota> exceeded".into()),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_failure_is_red_links_its_operation_and_escapes_its_cause() {
        let message = block_kit(&failed(), Some("https://envplane.example/"));
        assert_eq!(message["attachments"][0]["color"], "#a30200");
        let blocks = message["attachments"][0]["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"], "Operation failed: prod");
        assert_eq!(
            blocks[1]["fields"][3]["text"],
            "*Operation*\n<https://envplane.example/v1/operations/01J0000000000000000000000A|01J0000000000000000000000A>"
        );
        assert!(
            blocks[3]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("&lt;quota&gt;")
        );
    }

    #[test]
    fn an_approval_request_says_how_to_approve_or_reject() {
        let mut event = failed();
        event.kind = EventKind::AwaitingApproval;
        event.cause = None;
        let message = block_kit(&event, Some("https://envplane.example"));
        let blocks = message["attachments"][0]["blocks"].as_array().unwrap();
        let how = blocks[3]["text"]["text"].as_str().unwrap();
        assert!(
            how.contains("envplane approve 01J0000000000000000000000A")
                && how.contains("envplane reject 01J0000000000000000000000A")
                && how.contains("https://envplane.example/v1/approvals")
                && how.contains("/v1/operations/01J0000000000000000000000A/approvals"),
            "{how}"
        );
    }

    #[tokio::test]
    async fn delivery_retries_server_errors_and_gives_up_on_a_rejection() {
        let hits = Arc::new(Mutex::new(Vec::<u16>::new()));
        let answers = Arc::new(Mutex::new(vec![500u16, 429, 200, 404]));
        let app = {
            let hits = hits.clone();
            axum::Router::new().route(
                "/hook",
                axum::routing::post(move || {
                    let hits = hits.clone();
                    let answers = answers.clone();
                    async move {
                        let status = answers.lock().unwrap().remove(0);
                        hits.lock().unwrap().push(status);
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let hook = SlackWebhook::new(url, None).with_retries(5, Duration::from_millis(1));
        hook.publish(&failed()).await.unwrap();
        assert_eq!(*hits.lock().unwrap(), vec![500, 429, 200]);
        let refused = hook.publish(&failed()).await.unwrap_err();
        assert!(matches!(refused, NotifyError::Rejected(_)), "{refused:?}");
    }

    #[tokio::test]
    async fn the_webhook_url_never_reaches_an_error() {
        // Nothing listens there; the path stands for the secret part of a Slack URL.
        let secret = "T000/B000/XXXXXXXXsecretXXXXXXXX";
        let url = format!("http://127.0.0.1:9/services/{secret}");
        let hook = SlackWebhook::new(url, None).with_retries(2, Duration::from_millis(1));
        let error = hook.publish(&failed()).await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(matches!(error, NotifyError::Delivery(_)), "{shown}");
        assert!(!shown.contains(secret), "the webhook URL leaked: {shown}");
        assert!(
            !shown.contains("/services/"),
            "the webhook URL leaked: {shown}"
        );
    }
}
