//! An execution's steps as `envplane ops watch` shows them, folded from its history: the same
//! fold for the local executor's events and for Step Functions' execution history, so that a
//! flow looks the same on both.

use envplane_domain::operation::{OperationStatus, OperationStep};
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
}
