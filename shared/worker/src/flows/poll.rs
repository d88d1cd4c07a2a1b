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

/// How long the slowest pending resource (or change) has left, by its typical duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// Seconds until it is typically done (negative: overdue).
    pub remaining: i64,
    /// How long it typically takes in all, seconds.
    pub typical: u64,
}

impl Estimate {
    /// An estimate of `typical` seconds of which `elapsed` have passed.
    pub(crate) fn of(typical: u64, elapsed: i64) -> Self {
        Self {
            remaining: seconds(typical) - elapsed,
            typical,
        }
    }

    /// The later-finishing of two estimates.
    pub(crate) fn slower(a: Option<Self>, b: Self) -> Option<Self> {
        Some(match a {
            Some(a) if a.remaining >= b.remaining => a,
            _ => b,
        })
    }
}

/// Share of a typical duration by which AWS often finishes early: the first look is then.
const EARLY_PERCENT: u64 = 30;
/// Share of a typical duration between looks once the early point has passed.
const STEP_PERCENT: u64 = 5;

/// When to look again. AWS's durations spread around their typical values (an EKS cluster
/// takes 8 to 15 minutes), so the first look comes when the slowest pending resource may
/// first be done (30 % before its typical time), then every 5 % of its typical time: a flow
/// follows what the cloud actually took to within a small share, at a few dozen polls at
/// most. With nothing pending that exists yet (its dependencies are being made): soon.
pub(crate) fn next_wait(slowest: Option<Estimate>) -> u64 {
    let Some(e) = slowest else {
        return MIN_WAIT;
    };
    let early = e.remaining - seconds(e.typical * EARLY_PERCENT / 100);
    if early > 0 {
        return (early.unsigned_abs() + 1).clamp(MIN_WAIT, MAX_WAIT);
    }
    (e.typical * STEP_PERCENT / 100).clamp(MIN_WAIT, MAX_OVERDUE_WAIT)
}

/// After a look that did not get through (throttled): back off from the last wait.
pub(crate) fn backoff(previous: Option<u64>) -> u64 {
    previous.map_or(MIN_WAIT, |w| (w * 2).clamp(MIN_WAIT, MAX_OVERDUE_WAIT))
}

/// The answer of one poll: whether the group is ready, what is pending, the next wait and,
/// when the slowest pending resource can be timed, when it is typically done
/// (`expected_in`, seconds, 0 once overdue) for `envplane ops watch`.
pub(crate) fn answer(
    pending: &[&str],
    wait: u64,
    polls: u64,
    slowest: Option<Estimate>,
) -> Result<Value, WorkerError> {
    let polls = polls + 1;
    if !pending.is_empty() && polls > MAX_POLLS {
        return Err(WorkerError::Conflict(format!(
            "still waiting for {} after {MAX_POLLS} polls",
            pending.join(", ")
        )));
    }
    let mut look =
        json!({ "ready": pending.is_empty(), "pending": pending, "wait": wait, "polls": polls });
    if let Some(e) = slowest.filter(|_| !pending.is_empty()) {
        look["expected_in"] = json!(e.remaining.max(0));
    }
    Ok(look)
}

/// Seconds as a signed count, for remaining-time arithmetic.
pub(crate) fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_comes_when_it_may_be_done_then_every_twentieth() {
        // A new EKS cluster (typically 600 s): first at 420 s, then every 30 s, overdue too.
        assert_eq!(next_wait(Some(Estimate::of(600, 0))), 421);
        assert_eq!(next_wait(Some(Estimate::of(600, 420))), 30);
        assert_eq!(next_wait(Some(Estimate::of(600, 700))), 30);
        assert_eq!(next_wait(Some(Estimate::of(10_000, 0))), MAX_WAIT);
        assert_eq!(next_wait(Some(Estimate::of(4000, 3990))), MAX_OVERDUE_WAIT);
        assert_eq!(next_wait(Some(Estimate::of(10, 9))), MIN_WAIT);
        assert_eq!(next_wait(None), MIN_WAIT);
        assert_eq!(
            Estimate::slower(Some(Estimate::of(600, 500)), Estimate::of(240, 0)),
            Some(Estimate::of(240, 0))
        );
        assert_eq!(backoff(Some(10)), 20);
        assert_eq!(backoff(Some(50)), MAX_OVERDUE_WAIT);
        assert_eq!(backoff(None), MIN_WAIT);
        assert!(answer(&["dev-eks"], 2, MAX_POLLS, None).is_err());
        assert_eq!(
            answer(&[], 2, MAX_POLLS, None).expect("ready")["ready"],
            true
        );
        let look = answer(&["dev-eks"], 421, 0, Some(Estimate::of(600, 100))).expect("look");
        assert_eq!(look["expected_in"], 500);
        let overdue = answer(&["dev-eks"], 30, 3, Some(Estimate::of(600, 700))).expect("look");
        assert_eq!(overdue["expected_in"], 0);
        assert!(
            answer(&[], 0, 3, Some(Estimate::of(600, 0)))
                .expect("ready")
                .get("expected_in")
                .is_none()
        );
    }
}
