//! The notifier Lambda's handler: each SNS record carries one envplane event as its message;
//! each is posted to Slack. A record that is not an event is skipped with a log line (retrying
//! cannot fix it); a delivery failure fails the invocation so Lambda retries it.
#![forbid(unsafe_code)]

use envplane_domain::events::Event;
use envplane_notify::{NotifyError, Publisher};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::{Value, json};

/// The part of an SNS Lambda event the notifier reads.
#[derive(Debug, Deserialize)]
pub struct SnsEvent {
    /// The records.
    #[serde(rename = "Records")]
    pub records: Vec<SnsRecord>,
}

/// One record.
#[derive(Debug, Deserialize)]
pub struct SnsRecord {
    /// The notification.
    #[serde(rename = "Sns")]
    pub sns: SnsMessage,
}

/// The notification.
#[derive(Debug, Deserialize)]
pub struct SnsMessage {
    /// SNS's id of the message.
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// The published message: an envplane event as JSON.
    #[serde(rename = "Message")]
    pub message: String,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The invocation is not an SNS event.
    #[error("not an SNS event: {0}")]
    NotSns(String),
    /// Slack did not take a message.
    #[error(transparent)]
    Delivery(#[from] NotifyError),
}

impl From<NotifierError> for Diagnostic {
    fn from(error: NotifierError) -> Self {
        let error_type = match &error {
            NotifierError::NotSns(_) => "Envplane.Invalid",
            NotifierError::Delivery(_) => "Envplane.Transient",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// Handles one invocation.
pub async fn handle(
    slack: &dyn Publisher,
    event: LambdaEvent<Value>,
) -> Result<Value, NotifierError> {
    deliver(slack, event.payload).await
}

/// Posts every event of an SNS Lambda event.
pub async fn deliver(slack: &dyn Publisher, payload: Value) -> Result<Value, NotifierError> {
    let event: SnsEvent =
        serde_json::from_value(payload).map_err(|e| NotifierError::NotSns(e.to_string()))?;
    let (mut posted, mut skipped) = (0, 0);
    for record in event.records {
        match serde_json::from_str::<Event>(&record.sns.message) {
            Ok(event) => {
                slack.publish(&event).await?;
                posted += 1;
            }
            Err(error) => {
                tracing::warn!(message_id = %record.sns.message_id, %error, "not an envplane event; skipped");
                skipped += 1;
            }
        }
    }
    Ok(json!({ "posted": posted, "skipped": skipped }))
}
