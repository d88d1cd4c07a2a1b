//! Domain events: what envplane tells people about, with the attributes subscribers filter on.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::blueprint::Tier;
use crate::name::EnvName;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An operation's flow began.
    OperationStarted,
    /// An operation finished.
    OperationSucceeded,
    /// An operation stopped on an error, or lost its lease.
    OperationFailed,
    /// An operation waits for an approver.
    AwaitingApproval,
    /// A drift check found the cloud differing from the spec.
    DriftFound,
    /// A preview's TTL passed and its destruction began.
    PreviewExpired,
    /// A DR drill met every target of its tier.
    DrillPassed,
    /// A DR drill missed a target of its tier, or failed.
    DrillMissed,
}

impl EventKind {
    /// The name subscribers filter on.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OperationStarted => "operation_started",
            EventKind::OperationSucceeded => "operation_succeeded",
            EventKind::OperationFailed => "operation_failed",
            EventKind::AwaitingApproval => "awaiting_approval",
            EventKind::DriftFound => "drift_found",
            EventKind::PreviewExpired => "preview_expired",
            EventKind::DrillPassed => "drill_passed",
            EventKind::DrillMissed => "drill_missed",
        }
    }
}

/// How loudly to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look.
    Warning,
    /// Someone must act now.
    Critical,
}

impl Severity {
    /// The name subscribers filter on.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The environment.
    pub environment: EnvName,
    /// Its tier.
    pub tier: Tier,
    /// How loudly to tell.
    pub severity: Severity,
    /// The operation concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// One line on what happened.
    pub summary: String,
    /// The root cause, for failures and drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Event {
    /// An event with the severity its kind and tier call for: failures are critical in prod,
    /// drift is a warning everywhere but critical in prod.
    pub fn new(
        kind: EventKind,
        environment: EnvName,
        tier: Tier,
        operation: Option<String>,
        summary: String,
        cause: Option<String>,
        at: OffsetDateTime,
    ) -> Self {
        let severity = match kind {
            EventKind::OperationFailed | EventKind::DriftFound | EventKind::DrillMissed
                if tier == Tier::Prod =>
            {
                Severity::Critical
            }
            EventKind::OperationFailed
            | EventKind::DriftFound
            | EventKind::AwaitingApproval
            | EventKind::DrillMissed => Severity::Warning,
            EventKind::OperationStarted
            | EventKind::OperationSucceeded
            | EventKind::PreviewExpired
            | EventKind::DrillPassed => Severity::Info,
        };
        Self {
            kind,
            environment,
            tier,
            severity,
            operation,
            summary,
            cause,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_follows_kind_and_tier() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let env = EnvName::parse("x").expect("valid");
        let event = |kind, tier| Event::new(kind, env.clone(), tier, None, String::new(), None, at);
        assert_eq!(
            event(EventKind::OperationFailed, Tier::Prod).severity,
            Severity::Critical
        );
        assert_eq!(
            event(EventKind::OperationFailed, Tier::Dev).severity,
            Severity::Warning
        );
        assert_eq!(
            event(EventKind::OperationSucceeded, Tier::Prod).severity,
            Severity::Info
        );
    }
}
