//! What `ops watch` and `--wait` print of an operation as it runs: each step when it starts
//! and ends, each retry with its error, each in-place change, and a wait loop's looks folded
//! into one line per look that found something new — what is pending and when it is typically
//! done — instead of its three states repeated on every turn.

use std::collections::HashMap;

use envplane_domain::operation::{Operation, OperationStatus, OperationStep};

use crate::output::word;

/// What has been shown of one operation so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// Each step as last shown, by position.
    seen: Vec<OperationStep>,
    /// In-place changes shown.
    changes_seen: usize,
    /// When this watch first saw each step, on its own clock (seconds since it began): a
    /// time-scaled local plane's timestamps run faster than the watcher's.
    first_seen: HashMap<usize, f64>,
}

impl Progress {
    /// The lines for what changed since the last call; `at` is seconds since watching began.
    pub fn lines(&mut self, op: &Operation, at: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (i, step) in op.steps.iter().enumerate() {
            let before = self.seen.get(i);
            if before == Some(step) {
                continue;
            }
            self.first_seen.entry(i).or_insert(at);
            let earlier: Vec<&OperationStep> = op.steps[..i]
                .iter()
                .filter(|s| s.name == step.name)
                .collect();
            let same_step = before.filter(|b| b.name == step.name);
            if step.retries > same_step.map_or(0, |b| b.retries) {
                out.push(format!(
                    "[{at:>6.1}s]   ↻ {}: retry {} after {}",
                    step.name,
                    step.retries,
                    step.last_error.as_deref().unwrap_or("an error")
                ));
            }
            let status_changed = same_step.is_none_or(|b| b.status != step.status);
            let ended = step.status != OperationStatus::Running;
            // A wait loop's later turns are shown by their looks alone (below), unless one
            // goes wrong.
            let again = !earlier.is_empty();
            let failed = matches!(
                step.status,
                OperationStatus::Failed | OperationStatus::Cancelled
            );
            if status_changed && (!again || failed) {
                let took = step
                    .ended_at
                    .map(|end| format!(" ({:.1} s)", (end - step.started_at).as_seconds_f64()))
                    .unwrap_or_default();
                out.push(format!(
                    "[{at:>6.1}s] {:<20} {}{took}",
                    step.name,
                    word(&step.status)
                ));
            }
            if status_changed && ended && !failed {
                let last_look = earlier
                    .last()
                    .map(|s| s.waiting_for.as_slice())
                    .unwrap_or(&[]);
                let number = earlier.len() + 1;
                if !step.waiting_for.is_empty() && step.waiting_for != last_look {
                    out.push(format!("[{at:>6.1}s]   ⧗ {}", look(step, number)));
                } else if step.waiting_for.is_empty() && !last_look.is_empty() {
                    out.push(format!(
                        "[{at:>6.1}s]   ✓ {}: ready after {number} looks",
                        step.name
                    ));
                }
            }
            if i < self.seen.len() {
                self.seen[i] = step.clone();
            } else {
                self.seen.push(step.clone());
            }
        }
        for change in op.changes.iter().skip(self.changes_seen) {
            out.push(format!(
                "[{at:>6.1}s]   ↳ {}: {}",
                change.resource, change.change
            ));
        }
        self.changes_seen = op.changes.len();
        out
    }

    /// After a quiet spell: what is still running and for how long, and what the wait loops
    /// still wait for by their last looks. `None` when nothing is running.
    pub fn quiet(&self, op: &Operation, at: f64) -> Option<String> {
        let running: Vec<String> = op
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == OperationStatus::Running)
            .map(|(i, s)| {
                let since = self.first_seen.get(&i).map_or(0.0, |t| at - t);
                format!("{} (for {since:.0} s)", s.name)
            })
            .collect();
        if running.is_empty() {
            return None;
        }
        let mut line = format!("[{at:>6.1}s] still running: {}", running.join(", "));
        // The latest look of each loop; those that found something pending are still waiting.
        let mut latest: Vec<(&OperationStep, usize)> = Vec::new();
        for step in &op.steps {
            match latest.iter_mut().find(|(s, _)| s.name == step.name) {
                Some(entry) => *entry = (step, entry.1 + 1),
                None => latest.push((step, 1)),
            }
        }
        for (step, number) in latest {
            if !step.waiting_for.is_empty() && step.status != OperationStatus::Running {
                line.push_str(&format!("\n           ⧗ {}", look(step, number)));
            }
        }
        Some(line)
    }
}

/// One look of a wait loop: what it found pending and when the slowest is typically done.
fn look(step: &OperationStep, number: usize) -> String {
    let due = match step.expected_in_seconds {
        Some(0) => ", overdue by its typical time".to_owned(),
        Some(s) => format!(", typically done in ~{}", duration(s)),
        None => String::new(),
    };
    format!(
        "{} (look {number}): waiting for {}{due}",
        step.name,
        step.waiting_for.join(", ")
    )
}

/// Seconds as a person reads them: `45 s`, `7 min`, `7 min 30 s`.
fn duration(seconds: u64) -> String {
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn step(name: &str, status: &str, waiting_for: &[&str], expected: Option<u64>) -> Value {
        json!({
            "name": name, "status": status,
            "started_at": "2026-12-02T00:00:00Z",
            "ended_at": if status == "running" { Value::Null } else { json!("2026-12-02T00:00:01Z") },
            "waiting_for": waiting_for, "expected_in_seconds": expected,
        })
    }
    fn operation(steps: Vec<Value>) -> Operation {
        serde_json::from_value(json!({
            "id": "01J", "environment": "dev", "kind": "create", "status": "running",
            "requested_by": "ana", "requested_at": "2026-12-02T00:00:00Z",
            "updated_at": "2026-12-02T00:00:00Z", "input": {}, "steps": steps, "version": 1,
        }))
        .unwrap()
    }

    #[test]
    fn a_wait_loop_is_shown_by_its_looks_not_its_states_on_every_turn() {
        let mut progress = Progress::default();
        let turn = |look: Value| {
            vec![
                look,
                step("NetworkReady?", "succeeded", &[], None),
                step("NetworkWait", "succeeded", &[], None),
            ]
        };
        let nat = ["dev-nat-a", "dev-nat-b"];
        let mut steps = turn(step("Network", "succeeded", &nat, Some(95)));
        let first = progress.lines(&operation(steps.clone()), 1.0);
        assert_eq!(first.len(), 4, "{first:#?}");
        assert!(first[1].contains("⧗ Network (look 1): waiting for dev-nat-a, dev-nat-b, typically done in ~1 min 35 s"), "{first:#?}");
        // Two more turns finding the same, then one with less pending, then ready.
        steps.extend(turn(step("Network", "succeeded", &nat, Some(40))));
        steps.extend(turn(step("Network", "succeeded", &nat, Some(0))));
        assert!(progress.lines(&operation(steps.clone()), 2.0).is_empty());
        steps.extend(turn(step("Network", "succeeded", &["dev-nat-b"], Some(0))));
        let less = progress.lines(&operation(steps.clone()), 3.0);
        assert_eq!(less.len(), 1, "{less:#?}");
        assert!(
            less[0].contains("(look 4): waiting for dev-nat-b, overdue"),
            "{less:#?}"
        );
        steps.push(step("Network", "succeeded", &[], None));
        steps.push(step("Cluster", "running", &[], None));
        let ready = progress.lines(&operation(steps.clone()), 4.0);
        assert!(
            ready[0].contains("✓ Network: ready after 5 looks"),
            "{ready:#?}"
        );
        assert!(
            ready[1].contains("Cluster") && ready[1].contains("running"),
            "{ready:#?}"
        );
    }

    #[test]
    fn a_quiet_spell_says_what_runs_and_what_the_loops_still_wait_for() {
        let mut progress = Progress::default();
        let op = operation(vec![
            step("Cluster", "succeeded", &["dev-eks"], Some(600)),
            step("ClusterReady?", "succeeded", &[], None),
            step("ClusterWait", "running", &[], None),
        ]);
        progress.lines(&op, 10.0);
        let line = progress.quiet(&op, 55.0).unwrap();
        assert!(
            line.contains("still running: ClusterWait (for 45 s)"),
            "{line}"
        );
        assert!(
            line.contains("⧗ Cluster (look 1): waiting for dev-eks, typically done in ~10 min"),
            "{line}"
        );
        let done = operation(vec![step("Cluster", "succeeded", &[], None)]);
        assert!(progress.quiet(&done, 60.0).is_none());
    }

    #[test]
    fn retries_and_failures_of_a_later_turn_are_still_shown() {
        let mut progress = Progress::default();
        let mut steps = vec![step("Network", "succeeded", &["dev-nat-a"], None)];
        progress.lines(&operation(steps.clone()), 1.0);
        let mut retried = step("Network", "running", &[], None);
        retried["retries"] = json!(1);
        retried["last_error"] = json!("Envplane.Throttled");
        steps.push(retried.clone());
        let lines = progress.lines(&operation(steps.clone()), 2.0);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("↻ Network: retry 1 after Envplane.Throttled"),
            "{lines:#?}"
        );
        retried["status"] = json!("failed");
        retried["ended_at"] = json!("2026-12-02T00:00:05Z");
        *steps.last_mut().unwrap() = retried;
        let failed = progress.lines(&operation(steps), 3.0);
        assert!(
            failed
                .iter()
                .any(|l| l.contains("Network") && l.contains("failed")),
            "{failed:#?}"
        );
    }
}
