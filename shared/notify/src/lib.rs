//! The notification port of envplane: domain events go to a [`Publisher`] (SNS in AWS, a Slack
//! webhook in a local plane); Slack messages are rendered as Block Kit here.
#![forbid(unsafe_code)]

pub mod slack;

use std::sync::Arc;

use async_trait::async_trait;
use envplane_domain::events::Event;

pub use slack::SlackWebhook;

/// Why an event was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The receiver failed or could not be reached, after retries.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The receiver refused the message: retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Where events go.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Delivers one event.
    async fn publish(&self, event: &Event) -> Result<(), NotifyError>;
}

/// Drops every event: a plane configured without notifications.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

#[async_trait]
impl Publisher for Silent {
    async fn publish(&self, _event: &Event) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// Publishes without letting a failure stop the caller: a flow's step or a scheduled job must
/// not fail because a chat webhook is down. Failures are logged.
pub async fn publish_or_log(publisher: &Arc<dyn Publisher>, event: Event) {
    if let Err(error) = publisher.publish(&event).await {
        tracing::warn!(
            %error,
            kind = event.kind.as_str(),
            environment = %event.environment,
            "event not delivered"
        );
    }
}
