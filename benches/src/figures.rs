//! What the benchmarks compare against, computed from what each run drew: the critical path
//! of a plan, and the median and worst of some ratios.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use envplane_domain::resources::Planned;

/// Earliest finish of every resource when each starts as soon as its dependencies are active,
/// each taking what this run drew for it.
pub fn critical_path(plan: &[Planned], took: &BTreeMap<String, Duration>) -> anyhow::Result<f64> {
    let mut finish: BTreeMap<&str, f64> = BTreeMap::new();
    for p in plan {
        // The plan lists dependencies before their dependents.
        let start = p
            .depends_on
            .iter()
            .map(|d| finish.get(d.as_str()).copied().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let duration = took
            .get(&p.name)
            .with_context(|| format!("{} was never created", p.name))?;
        finish.insert(&p.name, start + duration.as_secs_f64());
    }
    Ok(finish.values().copied().fold(0.0, f64::max))
}

/// Median and worst of some ratios.
pub fn summary(ratios: &mut [f64]) -> (f64, f64) {
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    (median, ratios[n - 1])
}
