//! An execution's steps as `envplane ops watch` shows them, folded from its history: the same
//! fold for the local executor's events and for Step Functions' execution history, so that a
//! flow looks the same on both.

use envplane_domain::operation::{OperationStatus, OperationStep};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Outcome;
use crate::executor::{EventKind, HistoryEvent};

/// The steps of one execution, in the order they were entered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steps {
    steps: Vec<OperationStep>,
}

impl Steps {
    /// The steps recorded so far (a resumed execution's).
    pub fn from_recorded(steps: Vec<OperationStep>) -> Self {
        Self { steps }
    }

    /// The steps of a finished local execution.
    pub fn of_outcome(outcome: &Outcome) -> Self {
        let mut steps = Self::default();
        for event in &outcome.history {
            steps.apply(event);
        }
        let status = if outcome.status == "SUCCEEDED" {
            OperationStatus::Succeeded
        } else {
            OperationStatus::Failed
        };
        steps.ended(status, outcome.history.last().map(|e| e.at));
        steps
    }

    /// One event of the local executor: a state entered or left, or an error its Catch took.
    pub fn apply(&mut self, event: &HistoryEvent) {
        match &event.kind {
            EventKind::StateEntered => {
                self.entered(&event.state, event.at);
            }
            EventKind::StateExited => self.left_named(&event.state, false, event.at),
            EventKind::Caught { .. } => self.left_named(&event.state, true, event.at),
            EventKind::TaskSucceeded { result } => self.answered(&event.state, result),
            EventKind::TaskFailed { error, .. } => {
                if let Some(step) = self.running_named(&event.state) {
                    step.last_error = Some(error.clone());
                }
            }
            EventKind::Retrying { .. } => {
                if let Some(step) = self.running_named(&event.state) {
                    step.retries += 1;
                }
            }
        }
    }

    /// The task of the latest running step named `name` answered `result`: when it is a wait
    /// loop's look (`{"ready": false, "pending": [...], "expected_in": n}`, as envplane's
    /// worker answers polls), the step records what is still pending and when it is due.
    pub fn answered(&mut self, name: &str, result: &Value) {
        if let Some(step) = self.running_named(name) {
            let (waiting_for, expected_in) = look(result);
            step.waiting_for = waiting_for;
            step.expected_in_seconds = expected_in;
        }
    }

    /// The latest running step named `name`.
    fn running_named(&mut self, name: &str) -> Option<&mut OperationStep> {
        self.steps
            .iter_mut()
            .rev()
            .find(|s| s.name == name && s.status == OperationStatus::Running)
    }

    /// A state was entered; returns the step's position.
    pub fn entered(&mut self, name: &str, at: OffsetDateTime) -> usize {
        self.steps.push(OperationStep {
            name: name.to_owned(),
            status: OperationStatus::Running,
            started_at: at,
            ended_at: None,
            retries: 0,
            last_error: None,
            waiting_for: Vec::new(),
            expected_in_seconds: None,
        });
        self.steps.len() - 1
    }

    /// The step at `position` was left, `failed` when its error was caught.
    pub fn left(&mut self, position: usize, failed: bool, at: OffsetDateTime) {
        if let Some(step) = self.steps.get_mut(position)
            && step.status == OperationStatus::Running
        {
            step.status = if failed {
                OperationStatus::Failed
            } else {
                OperationStatus::Succeeded
            };
            step.ended_at = Some(at);
        }
    }

    /// The latest running step named `name` was left (parallel branches never share a state
    /// name with a running step of their own branch).
    pub fn left_named(&mut self, name: &str, failed: bool, at: OffsetDateTime) {
        if let Some(position) = self
            .steps
            .iter()
            .rposition(|s| s.name == name && s.status == OperationStatus::Running)
        {
            self.left(position, failed, at);
        }
    }

    /// The execution ended with `status` at `at` (or, without a time, when each step began): a
    /// Fail or Succeed state is entered and never left, so no step is still running after it.
    pub fn ended(&mut self, status: OperationStatus, at: Option<OffsetDateTime>) {
        for step in self.steps.iter_mut().filter(|s| s.ended_at.is_none()) {
            step.status = status;
            step.ended_at = at.or(Some(step.started_at));
        }
    }

    /// The steps.
    pub fn into_vec(self) -> Vec<OperationStep> {
        self.steps
    }
}

/// What a wait loop's look found: the names still pending (none when the result is not a
/// look, or everything is ready) and when the slowest of them is typically done.
fn look(result: &Value) -> (Vec<String>, Option<u64>) {
    if result.get("ready").and_then(Value::as_bool) != Some(false) {
        return (Vec::new(), None);
    }
    let pending = result
        .get("pending")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (pending, result.get("expected_in").and_then(Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_left_by_position_or_name_and_closed_when_the_execution_ends() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut steps = Steps::default();
        let a = steps.entered("A", at);
        steps.entered("B", at);
        steps.entered("B", at);
        steps.entered("Done", at);
        steps.left(a, false, at);
        steps.left_named("B", true, at);
        steps.ended(OperationStatus::Succeeded, None);
        let seen: Vec<(String, OperationStatus)> = steps
            .into_vec()
            .into_iter()
            .map(|s| (s.name, s.status))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("A".into(), OperationStatus::Succeeded),
                ("B".into(), OperationStatus::Succeeded),
                ("B".into(), OperationStatus::Failed),
                ("Done".into(), OperationStatus::Succeeded),
            ]
        );
    }

    #[test]
    fn a_wait_loops_look_records_what_is_pending_and_when_it_is_due() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut steps = Steps::default();
        steps.entered("Network", at);
        steps.answered(
            "Network",
            &serde_json::json!({"ready": false, "pending": ["dev-nat-a", "dev-nat-b"], "wait": 30, "expected_in": 95}),
        );
        steps.entered("Cluster", at);
        steps.answered(
            "Cluster",
            &serde_json::json!({"ready": true, "pending": []}),
        );
        steps.entered("Record", at);
        steps.answered("Record", &serde_json::json!({"pending": ["not a look"]}));
        let steps = steps.into_vec();
        assert_eq!(steps[0].waiting_for, ["dev-nat-a", "dev-nat-b"]);
        assert_eq!(steps[0].expected_in_seconds, Some(95));
        assert!(steps[1].waiting_for.is_empty());
        assert!(steps[2].waiting_for.is_empty() && steps[2].expected_in_seconds.is_none());
    }
}
