//! Canary analysis and its decisions, pure: what one interval's metrics say (pass, fail or
//! inconclusive, with the figures and thresholds behind the verdict), and what a deployment
//! does next (bake, advance, wait at a gate, hold for a person, roll back).
//!
//! The rules that set it apart from Flagger and Argo Rollouts: **missing data never promotes**
//! and never counts as a failure either — an interval with too few requests, or none, is
//! *inconclusive*; after `inconclusive_limit` of them in a row the deployment holds for a
//! person (`awaiting_approval`, "insufficient data") instead of advancing or rolling back. A
//! failure rolls back after `failure_limit` failed intervals (1 by default: at the first), in
//! one weight change.

use serde::{Deserialize, Serialize};

use crate::blueprint::Tier;

/// How a new version reaches all traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replaced in place, pod by pod; no analysis.
    Rolling,
    /// The new version beside the old, traffic switched at once after one analysis.
    BlueGreen,
    /// Traffic shifted by steps, each analysed before the next.
    Canary,
}

/// The canary's steps, thresholds and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryPolicy {
    /// Traffic weights of the new version, percent, ascending, ending at 100.
    pub steps: Vec<u8>,
    /// Seconds between analyses (one bake interval).
    pub interval_seconds: u32,
    /// Fewer requests than this in an interval is not enough data to judge.
    pub min_requests: u64,
    /// Highest share of 5xx answers that passes (0 to 1).
    pub max_error_rate: f64,
    /// Highest p99 latency that passes, milliseconds.
    pub max_p99_ms: u32,
    /// Failed intervals (not necessarily in a row) that roll the deployment back.
    pub failure_limit: u8,
    /// Inconclusive intervals in a row after which the deployment holds for a person.
    pub inconclusive_limit: u8,
    /// Weights a person must approve before traffic moves to them.
    pub gates: Vec<u8>,
    /// How long after success the replaced version stays warm, taking no traffic, so that a
    /// rollback is one weight change (`POST /v1/deployments/{id}/rollback`); seconds.
    #[serde(default = "default_rollback_window")]
    pub rollback_window_seconds: u32,
}

/// Thirty minutes: long enough to see a release's first real traffic, short enough not to pay
/// for two versions all day.
fn default_rollback_window() -> u32 {
    1800
}

impl CanaryPolicy {
    /// The tier's default: production 5 → 25 → 100 with a gate before 100, other tiers
    /// 5 → 25 → 100 without one; a minute per step, at most 1 % errors and 500 ms at p99.
    pub fn for_tier(tier: Tier) -> Self {
        Self {
            steps: vec![5, 25, 100],
            interval_seconds: 60,
            min_requests: 50,
            max_error_rate: 0.01,
            max_p99_ms: 500,
            failure_limit: 1,
            inconclusive_limit: 2,
            gates: if tier == Tier::Prod {
                vec![100]
            } else {
                Vec::new()
            },
            rollback_window_seconds: default_rollback_window(),
        }
    }

    /// One bake interval.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.interval_seconds))
    }

    /// Checks the policy, naming each field at fault.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, why: String| errors.push((format!("canary.{field}"), why));
        if self.steps.is_empty() || self.steps.last() != Some(&100) {
            bad("steps", "must end at 100".into());
        }
        if self.steps.windows(2).any(|w| w[0] >= w[1]) || self.steps.first() == Some(&0) {
            bad("steps", "must rise strictly, from above 0".into());
        }
        if self.steps.iter().any(|s| *s > 100) {
            bad("steps", "weights are percentages, at most 100".into());
        }
        if !(10..=3600).contains(&self.interval_seconds) {
            bad("interval_seconds", "must be 10 to 3600".into());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) || self.max_error_rate.is_nan() {
            bad("max_error_rate", "must be 0 to 1".into());
        }
        if self.max_p99_ms == 0 {
            bad("max_p99_ms", "must be above 0".into());
        }
        if self.failure_limit == 0 {
            bad("failure_limit", "must be at least 1".into());
        }
        if self.inconclusive_limit == 0 {
            bad("inconclusive_limit", "must be at least 1".into());
        }
        if !(60..=86_400).contains(&self.rollback_window_seconds) {
            bad(
                "rollback_window_seconds",
                "must be 60 to 86400 (a day)".into(),
            );
        }
        if let Some(gate) = self.gates.iter().find(|g| !self.steps.contains(g)) {
            bad("gates", format!("{gate} is not one of the steps"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What the new version's traffic did in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metrics {
    /// Requests answered.
    pub requests: u64,
    /// Of those, 5xx answers.
    pub errors: u64,
    /// 99th-percentile latency, milliseconds; `None` when nothing was measured.
    pub p99_ms: Option<f64>,
}

impl Metrics {
    /// Share of 5xx answers; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// One analysis' verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within every threshold, on enough data.
    Pass,
    /// Past a threshold.
    Fail,
    /// Not enough data to judge: never promotes, never rolls back.
    Inconclusive,
}

/// One interval's analysis: the figures, the thresholds and the verdict, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Analysis {
    /// The new version's weight during the interval.
    pub weight: u8,
    /// What was measured.
    pub metrics: Metrics,
    /// The verdict.
    pub verdict: Verdict,
    /// Each check with its figure and threshold, e.g. `error rate 0.300 > 0.010`.
    pub reasons: Vec<String>,
}

/// Judges one interval's metrics against the policy. Too few requests is inconclusive, and so
/// is latency that was not measured; otherwise any threshold passed fails it.
pub fn analyse(weight: u8, metrics: Metrics, policy: &CanaryPolicy) -> Analysis {
    let mut reasons = Vec::new();
    let mut verdict = Verdict::Pass;
    if metrics.requests < policy.min_requests {
        reasons.push(format!(
            "insufficient data: {} requests < {} required",
            metrics.requests, policy.min_requests
        ));
        verdict = Verdict::Inconclusive;
    } else {
        let rate = metrics.error_rate().unwrap_or(0.0);
        let over = rate > policy.max_error_rate;
        reasons.push(format!(
            "error rate {rate:.3} {} {:.3}",
            if over { ">" } else { "≤" },
            policy.max_error_rate
        ));
        if over {
            verdict = Verdict::Fail;
        }
        match metrics.p99_ms {
            Some(p99) => {
                let slow = p99 > f64::from(policy.max_p99_ms);
                reasons.push(format!(
                    "p99 {p99:.0} ms {} {} ms",
                    if slow { ">" } else { "≤" },
                    policy.max_p99_ms
                ));
                if slow {
                    verdict = Verdict::Fail;
                }
            }
            None if verdict == Verdict::Pass => {
                reasons.push("insufficient data: no latency measured".into());
                verdict = Verdict::Inconclusive;
            }
            None => {}
        }
    }
    Analysis {
        weight,
        metrics,
        verdict,
        reasons,
    }
}

/// Where a canary stands between analyses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// The new version's weight now.
    pub weight: u8,
    /// Failed intervals so far.
    pub failures: u8,
    /// Inconclusive intervals in a row.
    pub inconclusive: u8,
}

/// What the deployment does after an analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Shift traffic to the next step.
    Advance {
        /// The new weight.
        to: u8,
    },
    /// Wait for a person before shifting to the next step (a gate).
    AwaitGate {
        /// The weight the gate opens.
        to: u8,
    },
    /// Not enough data too many times in a row: wait for a person to promote or abort.
    Hold {
        /// Why.
        reason: String,
    },
    /// Bake another interval at this weight.
    Bake,
    /// Every step passed at 100: the new version is stable.
    Complete,
    /// Back to the stable version in one weight change.
    RollBack {
        /// Why, with the figures.
        reason: String,
    },
}

/// The next move after `analysis`, from `progress` under `policy`.
pub fn next(
    progress: Progress,
    analysis: &Analysis,
    policy: &CanaryPolicy,
) -> (Progress, Decision) {
    let mut now = progress;
    match analysis.verdict {
        Verdict::Fail => {
            now.failures = now.failures.saturating_add(1);
            now.inconclusive = 0;
            if now.failures >= policy.failure_limit {
                let reason = format!(
                    "{} failed interval(s) at {} %: {}",
                    now.failures,
                    progress.weight,
                    analysis.reasons.join("; ")
                );
                return (now, Decision::RollBack { reason });
            }
            (now, Decision::Bake)
        }
        Verdict::Inconclusive => {
            now.inconclusive = now.inconclusive.saturating_add(1);
            if now.inconclusive >= policy.inconclusive_limit {
                let reason = format!(
                    "insufficient data: {} inconclusive interval(s) in a row at {} %",
                    now.inconclusive, progress.weight
                );
                return (now, Decision::Hold { reason });
            }
            (now, Decision::Bake)
        }
        Verdict::Pass => {
            now.inconclusive = 0;
            match policy.steps.iter().find(|s| **s > progress.weight) {
                None => (now, Decision::Complete),
                Some(&to) if policy.gates.contains(&to) => (now, Decision::AwaitGate { to }),
                Some(&to) => {
                    now.weight = to;
                    (now, Decision::Advance { to })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(requests: u64, errors: u64, p99: Option<f64>) -> Metrics {
        Metrics {
            requests,
            errors,
            p99_ms: p99,
        }
    }

    #[test]
    fn verdicts_name_their_figures_and_missing_data_is_inconclusive() {
        let policy = CanaryPolicy::for_tier(Tier::Prod);
        let pass = analyse(5, m(200, 1, Some(120.0)), &policy);
        assert_eq!(pass.verdict, Verdict::Pass);
        assert_eq!(
            pass.reasons,
            vec!["error rate 0.005 ≤ 0.010", "p99 120 ms ≤ 500 ms"]
        );
        let fail = analyse(5, m(200, 60, Some(120.0)), &policy);
        assert_eq!(fail.verdict, Verdict::Fail);
        assert_eq!(fail.reasons[0], "error rate 0.300 > 0.010");
        assert_eq!(
            analyse(5, m(200, 0, Some(900.0)), &policy).verdict,
            Verdict::Fail
        );
        let quiet = analyse(5, m(3, 3, Some(10.0)), &policy);
        assert_eq!(
            quiet.verdict,
            Verdict::Inconclusive,
            "few requests, even failing ones"
        );
        assert_eq!(
            analyse(5, m(0, 0, None), &policy).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            analyse(5, m(200, 0, None), &policy).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(analyse(5, m(200, 50, None), &policy).verdict, Verdict::Fail);
    }

    #[test]
    fn a_good_version_walks_the_steps_and_stops_at_the_gate() {
        let policy = CanaryPolicy::for_tier(Tier::Prod);
        let good = |w| analyse(w, m(500, 0, Some(50.0)), &policy);
        let start = Progress {
            weight: 5,
            ..Progress::default()
        };
        let (p, d) = next(start, &good(5), &policy);
        assert_eq!(d, Decision::Advance { to: 25 });
        let (p, d) = next(p, &good(25), &policy);
        assert_eq!(d, Decision::AwaitGate { to: 100 });
        assert_eq!(p.weight, 25, "a gate moves nothing by itself");
        let staging = CanaryPolicy::for_tier(Tier::Staging);
        let (p, d) = next(p, &good(25), &staging);
        assert_eq!(d, Decision::Advance { to: 100 });
        assert_eq!(next(p, &good(100), &staging).1, Decision::Complete);
    }

    #[test]
    fn a_bad_version_rolls_back_at_its_first_failure_and_quiet_canaries_hold() {
        let policy = CanaryPolicy::for_tier(Tier::Prod);
        let start = Progress {
            weight: 5,
            ..Progress::default()
        };
        let bad = analyse(5, m(400, 120, Some(80.0)), &policy);
        let (_, d) = next(start, &bad, &policy);
        assert!(
            matches!(&d, Decision::RollBack { reason } if reason.contains("error rate 0.300 > 0.010")),
            "{d:?}"
        );
        let lenient = CanaryPolicy {
            failure_limit: 2,
            ..policy.clone()
        };
        let (p, d) = next(start, &bad, &lenient);
        assert_eq!(d, Decision::Bake);
        assert!(matches!(
            next(p, &bad, &lenient).1,
            Decision::RollBack { .. }
        ));

        let quiet = analyse(5, m(0, 0, None), &policy);
        let (p, d) = next(start, &quiet, &policy);
        assert_eq!(d, Decision::Bake);
        let (p, d) = next(p, &quiet, &policy);
        assert!(matches!(d, Decision::Hold { reason } if reason.contains("insufficient data")));
        assert_eq!(p.weight, 5, "never advances on missing data");
    }

    #[test]
    fn policies_are_checked_field_by_field() {
        assert!(CanaryPolicy::for_tier(Tier::Dev).validate().is_ok());
        let bad = CanaryPolicy {
            steps: vec![25, 5],
            interval_seconds: 1,
            max_error_rate: 2.0,
            failure_limit: 0,
            gates: vec![50],
            ..CanaryPolicy::for_tier(Tier::Prod)
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.0)
            .collect();
        for field in [
            "canary.steps",
            "canary.interval_seconds",
            "canary.max_error_rate",
            "canary.failure_limit",
            "canary.gates",
        ] {
            assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
        }
    }
}
