//! Domain events on SNS: the event as the JSON message, and the attributes subscribers filter
//! on (environment, tier, severity, kind) as message attributes.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use envplane_domain::events::Event;
use envplane_notify::{NotifyError, Publisher};

use crate::OnFirstUse;
use crate::errors::cloud_error;

/// Publishes events to one topic.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: OnFirstUse<aws_sdk_sns::Client>,
    topic_arn: String,
}

impl SnsPublisher {
    /// A publisher to `topic_arn`.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_sns::Client>>,
        topic_arn: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            topic_arn: topic_arn.into(),
        }
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, NotifyError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| NotifyError::Rejected(e.to_string()))
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn publish(&self, event: &Event) -> Result<(), NotifyError> {
        let message =
            serde_json::to_string(event).map_err(|e| NotifyError::Rejected(e.to_string()))?;
        // SNS subjects are at most 100 characters.
        let subject: String = format!("envplane {}: {}", event.kind.as_str(), event.environment)
            .chars()
            .take(100)
            .collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .message_attributes("environment", attribute(event.environment.as_str())?)
            .message_attributes("tier", attribute(&event.tier.to_string())?)
            .message_attributes("severity", attribute(event.severity.as_str())?)
            .message_attributes("kind", attribute(event.kind.as_str())?)
            .send()
            .await
            .map_err(|e| NotifyError::Delivery(cloud_error("Publish", e).to_string()))?;
        Ok(())
    }
}
