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

/// The steps of an execution from its history events, oldest first.
pub(super) fn steps(events: &[HistoryEvent]) -> Vec<OperationStep> {
    let by_id: HashMap<i64, &HistoryEvent> = events.iter().map(|e| (e.id(), e)).collect();
    let mut out = Steps::default();
    for event in events {
        if let Some(details) = event.state_entered_event_details() {
            out.entered(details.name(), at(event));
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
