//! What an execution did, and how it ended.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// One entry of an execution's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// When, on the executor's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The state, empty for execution-level events.
    pub state: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A state was entered (a state transition, as Step Functions bills them).
    StateEntered,
    /// A state completed.
    StateExited,
    /// A task answered (its result, before `ResultSelector` and `ResultPath`), as Step
    /// Functions' `TaskSucceeded` carries it.
    TaskSucceeded {
        /// What the task returned.
        result: Value,
    },
    /// A task attempt failed.
    TaskFailed {
        /// Error name.
        error: String,
        /// Cause.
        cause: String,
    },
    /// A retrier will try again after a delay.
    Retrying {
        /// Retry number.
        retry: u32,
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// A catcher took the error.
    Caught {
        /// Error name.
        error: String,
        /// State the catcher goes to.
        next: String,
    },
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `SUCCEEDED` or `FAILED`.
    pub status: &'static str,
    /// The output, when it succeeded.
    pub output: Option<Value>,
    /// Error name, when it failed.
    pub error: Option<String>,
    /// Cause, when it failed.
    pub cause: Option<String>,
    /// Everything that happened.
    #[serde(skip)]
    pub history: Vec<HistoryEvent>,
}

impl Outcome {
    /// States entered: what Step Functions counts as state transitions.
    pub fn transitions(&self) -> usize {
        self.history
            .iter()
            .filter(|e| e.kind == EventKind::StateEntered)
            .count()
    }
}
