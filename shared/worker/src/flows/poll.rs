//! Wait loops: when a flow looks again, and when it gives up.

use serde_json::{Value, json};

use crate::WorkerError;

/// Shortest poll interval, seconds: what a loop waits while dependencies are being created.
pub const MIN_WAIT: u64 = 2;
/// Longest interval between polls of a resource that is already overdue, seconds.
pub const MAX_OVERDUE_WAIT: u64 = 60;
/// Longest single wait, seconds: an EKS cluster's typical creation time and a margin.
pub const MAX_WAIT: u64 = 900;
/// Polls after which a wait loop gives up: far beyond any resource's creation or deletion time
/// at these intervals.
pub const MAX_POLLS: u64 = 100;

/// When to look again: once the slowest pending resource is typically done (plus a second),
/// so a loop rarely polls more than twice; when resources are overdue, back off from the last
/// wait; when nothing pending exists yet (its dependencies are being made), soon.
pub(crate) fn next_wait(remaining_seconds: Option<i64>, previous: Option<u64>) -> u64 {
    match remaining_seconds {
        Some(r) if r > 0 => (r.unsigned_abs() + 1).clamp(MIN_WAIT, MAX_WAIT),
        Some(_) => previous.map_or(MIN_WAIT, |w| (w * 2).clamp(MIN_WAIT, MAX_OVERDUE_WAIT)),
        None => MIN_WAIT,
    }
}

/// The answer of one poll: whether the group is ready, what is pending, the next wait.
pub(crate) fn answer(pending: &[&str], wait: u64, polls: u64) -> Result<Value, WorkerError> {
    let polls = polls + 1;
    if !pending.is_empty() && polls > MAX_POLLS {
        return Err(WorkerError::Conflict(format!(
            "still waiting for {} after {MAX_POLLS} polls",
            pending.join(", ")
        )));
    }
    Ok(json!({ "ready": pending.is_empty(), "pending": pending, "wait": wait, "polls": polls }))
}

/// Seconds as a signed count, for remaining-time arithmetic.
pub(crate) fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_slowest_pending_resource_then_back_off() {
        assert_eq!(next_wait(Some(600), None), 601);
        assert_eq!(next_wait(Some(5000), None), MAX_WAIT);
        assert_eq!(next_wait(Some(0), Some(10)), 20);
        assert_eq!(next_wait(Some(-5), Some(50)), MAX_OVERDUE_WAIT);
        assert_eq!(next_wait(None, Some(50)), MIN_WAIT);
        assert!(answer(&["dev-eks"], 2, MAX_POLLS).is_err());
        assert_eq!(answer(&[], 2, MAX_POLLS).expect("ready")["ready"], true);
    }
}
