//! Step Functions' execution history folded into steps, the way the local executor records
//! them (`envplane_workflow::Steps`): a state entered is a running step; left, it succeeded,
//! unless the last outcome inside it was a failure (its Catch took the error); the execution's
//! end closes the steps still open (Fail and Succeed states are never left).

use std::collections::HashMap;

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType as T};
use envplane_domain::operation::{OperationStatus, OperationStep};
use envplane_workflow::Steps;
use time::OffsetDateTime;

fn at(event: &HistoryEvent) -> OffsetDateTime {
    let t = event.timestamp();
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.secs()) * 1_000_000_000 + i128::from(t.subsec_nanos()),
    )
    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What an event says of the step it belongs to.
enum Outcome {
    Failed,
    Succeeded,
}

fn outcome(kind: &T) -> Option<Outcome> {
    match kind {
        T::TaskFailed
        | T::TaskTimedOut
        | T::TaskStartFailed
        | T::TaskSubmitFailed
        | T::LambdaFunctionFailed
        | T::LambdaFunctionTimedOut
        | T::LambdaFunctionStartFailed
        | T::LambdaFunctionScheduleFailed
        | T::ParallelStateFailed
        | T::MapStateFailed
        | T::MapRunFailed => Some(Outcome::Failed),
        T::TaskSucceeded
        | T::LambdaFunctionSucceeded
        | T::ParallelStateSucceeded
        | T::MapStateSucceeded
        | T::MapRunSucceeded => Some(Outcome::Succeeded),
        _ => None,
    }
}

/// The output of a task that answered, as Step Functions records it (a Lambda invoked by ARN
/// or through the optimized integration).
fn task_output(event: &HistoryEvent) -> Option<&str> {
    event
        .task_succeeded_event_details()
        .and_then(|d| d.output())
        .or_else(|| {
            event
                .lambda_function_succeeded_event_details()
                .and_then(|d| d.output())
        })
}

/// The state whose task `event` belongs to: the nearest state entered on its chain of
/// previous events.
fn entered_state<'a>(
    by_id: &HashMap<i64, &'a HistoryEvent>,
    event: &HistoryEvent,
) -> Option<&'a str> {
    let mut id = event.previous_event_id();
    // A task's chain back to its state is a handful of events (scheduled, started, retries).
    for _ in 0..64 {
        let before = by_id.get(&id)?;
        if let Some(details) = before.state_entered_event_details() {
            return Some(details.name());
        }
        id = before.previous_event_id();
    }
    None
}

/// The steps of an execution from its history events, oldest first.
pub(super) fn steps(events: &[HistoryEvent]) -> Vec<OperationStep> {
    let by_id: HashMap<i64, &HistoryEvent> = events.iter().map(|e| (e.id(), e)).collect();
    let mut out = Steps::default();
    for event in events {
        if let Some(details) = event.state_entered_event_details() {
            out.entered(details.name(), at(event));
        } else if let Some(output) = task_output(event) {
            // A task's answer: the state it belongs to is the one entered before it was
            // scheduled (Parallel branches interleave, so walk back by event id).
            if let Some(state) = entered_state(&by_id, event)
                && let Ok(result) = serde_json::from_str::<serde_json::Value>(output)
            {
                out.answered(state, &result);
            }
        } else if let Some(details) = event.state_exited_event_details() {
            // A state whose Catch took an error is left right after its failure: a Task after
            // TaskFailed (or its time-out), a Parallel or Map after its branches failed.
            let caught = by_id
                .get(&event.previous_event_id())
                .and_then(|before| outcome(before.r#type()))
                .is_some_and(|o| matches!(o, Outcome::Failed));
            out.left_named(details.name(), caught, at(event));
        } else {
            let status = match event.r#type() {
                T::ExecutionSucceeded => Some(OperationStatus::Succeeded),
                T::ExecutionFailed | T::ExecutionTimedOut => Some(OperationStatus::Failed),
                T::ExecutionAborted => Some(OperationStatus::Cancelled),
                _ => None,
            };
            if let Some(status) = status {
                out.ended(status, Some(at(event)));
            }
        }
    }
    out.into_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aws_sdk_sfn::types::{
        ExecutionSucceededEventDetails, StateEnteredEventDetails, StateExitedEventDetails,
        TaskSucceededEventDetails,
    };
    use aws_smithy_types::DateTime;

    use super::*;

    fn event(id: i64, previous: i64, kind: T) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
        HistoryEvent::builder()
            .id(id)
            .previous_event_id(previous)
            .r#type(kind)
            .timestamp(DateTime::from_secs(id))
    }

    #[test]
    fn a_looks_answer_in_a_parallel_branch_is_recorded_on_its_own_step() {
        let entered = |id, previous, name: &str| {
            event(id, previous, T::TaskStateEntered)
                .state_entered_event_details(
                    StateEnteredEventDetails::builder()
                        .name(name)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let answered = |id, previous, output: &str| {
            event(id, previous, T::TaskSucceeded)
                .task_succeeded_event_details(
                    TaskSucceededEventDetails::builder()
                        .resource_type("lambda")
                        .resource("invoke")
                        .output(output)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let exited = |id, previous, name: &str| {
            event(id, previous, T::TaskStateExited)
                .state_exited_event_details(
                    StateExitedEventDetails::builder()
                        .name(name)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        // Two branches interleaved: Cluster's task answers after NodeGroups was entered.
        let events = vec![
            entered(1, 0, "Cluster"),
            event(2, 1, T::TaskScheduled).build().unwrap(),
            entered(3, 0, "Database"),
            event(4, 2, T::TaskStarted).build().unwrap(),
            answered(
                5,
                4,
                r#"{"ready":false,"pending":["dev-eks"],"wait":421,"expected_in":600}"#,
            ),
            exited(6, 5, "Cluster"),
            answered(7, 3, r#"{"ready":true,"pending":[]}"#),
            exited(8, 7, "Database"),
            event(9, 8, T::ExecutionSucceeded)
                .execution_succeeded_event_details(
                    ExecutionSucceededEventDetails::builder().build(),
                )
                .build()
                .unwrap(),
        ];
        let steps = steps(&events);
        assert_eq!(steps[0].name, "Cluster");
        assert_eq!(steps[0].waiting_for, ["dev-eks"]);
        assert_eq!(steps[0].expected_in_seconds, Some(600));
        assert_eq!(steps[1].name, "Database");
        assert!(steps[1].waiting_for.is_empty());
    }
}
