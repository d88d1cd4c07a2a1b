//! How long simulated resources take, and which calls fail.

use std::time::Duration;

use envplane_domain::resources::ResourceKind;

use crate::{CloudError, Modification};

/// How long simulated resources take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyProfile {
    /// Everything is ready at once.
    Instant,
    /// AWS-like durations, each drawn from a log-normal spread (about ±25 % for one standard
    /// deviation) around the simulator's own table of AWS's medians, seeded by the run's seed:
    /// an EKS cluster takes 8 to 16 minutes, a node group 3 to 6, a NAT gateway 1 to 2½.
    Realistic,
}

/// Standard deviation of the natural log of a duration: e^0.25 ≈ 1.28.
const SPREAD_SIGMA: f64 = 0.25;

/// What AWS takes to create a kind, median seconds: the simulator's own table, kept apart from
/// the worker's estimates (`ResourceKind::typical_create_seconds`), so the flows are timed
/// against a cloud they do not know in advance.
fn aws_create_median(kind: ResourceKind) -> f64 {
    match kind {
        ResourceKind::Cluster => 660.0,
        ResourceKind::NodeGroup => 270.0,
        ResourceKind::NatGateway => 100.0,
        ResourceKind::DbInstance => 45.0,
        ResourceKind::LoadBalancer => 150.0,
        ResourceKind::Volume => 8.0,
        ResourceKind::Listener
        | ResourceKind::TargetGroup
        | ResourceKind::Vpc
        | ResourceKind::InternetGateway
        | ResourceKind::SecurityGroup => 2.0,
        ResourceKind::Subnet | ResourceKind::RouteTable | ResourceKind::ElasticIp => 1.0,
    }
}

/// The steps of a database restore on AWS and their medians, seconds: a volume from the
/// snapshot (`CreateVolume` to `available`; its blocks load lazily afterwards), a new host of
/// the same spec (`RunInstances` to its status checks), the volume attached and mounted, the
/// WAL since the snapshot replayed (a day of a production database's WAL at the 05:00 daily
/// snapshot's worst case), PostgreSQL promoted and answering.
pub const RESTORE_STEPS: [(&str, f64); 5] = [
    ("volume from snapshot", 120.0),
    ("new host", 90.0),
    ("attach and mount", 15.0),
    ("WAL replay", 300.0),
    ("promote", 20.0),
];

/// What AWS takes to delete a kind, median seconds.
fn aws_delete_median(kind: ResourceKind) -> f64 {
    match kind {
        ResourceKind::Cluster => 330.0,
        ResourceKind::NodeGroup => 200.0,
        ResourceKind::NatGateway => 70.0,
        ResourceKind::DbInstance => 40.0,
        ResourceKind::LoadBalancer => 20.0,
        ResourceKind::Volume => 5.0,
        _ => 1.0,
    }
}

/// A duration around `median` seconds, the same for the same `seed` and `key` whatever the
/// order of calls: FNV-1a of the key, mixed with the seed (splitmix64), to a standard normal
/// (Box–Muller), cut at ±2.5 standard deviations.
fn spread(median: f64, seed: u64, key: &str) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut state = h ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut uniform = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // In (0, 1]: never 0, whose logarithm Box–Muller cannot take.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    let (u1, u2) = (uniform(), uniform());
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    Duration::from_secs_f64(median * (SPREAD_SIGMA * normal.clamp(-2.5, 2.5)).exp())
}

impl LatencyProfile {
    /// Parses `instant` or `realistic`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "instant" => Ok(Self::Instant),
            "realistic" => Ok(Self::Realistic),
            other => Err(format!(
                "unknown latency profile {other:?}; use instant or realistic"
            )),
        }
    }

    /// Time from a create call to the resource named `key` being active.
    pub fn create(self, kind: ResourceKind, seed: u64, key: &str) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => spread(aws_create_median(kind), seed, &format!("create {key}")),
        }
    }

    /// Time an in-place change keeps a resource busy: around what the change typically takes
    /// (`key` tells apart the changes of one run).
    pub fn modify(
        self,
        kind: ResourceKind,
        change: &Modification,
        seed: u64,
        key: &str,
    ) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => spread(
                change.typical_seconds(kind) as f64,
                seed,
                &format!("modify {key}"),
            ),
        }
    }

    /// Time a snapshot of the database volume takes.
    pub fn snapshot(self, seed: u64, key: &str) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => spread(90.0, seed, &format!("snapshot {key}")),
        }
    }

    /// Time a step of a database restore on AWS takes (`step` is one of
    /// [`RESTORE_STEPS`]'s names), for the restore named `key`.
    pub fn restore_step(self, median_seconds: f64, seed: u64, key: &str) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => spread(median_seconds, seed, &format!("restore {key}")),
        }
    }

    /// Time from a delete call to the resource named `key` being gone.
    pub fn delete(self, kind: ResourceKind, seed: u64, key: &str) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => spread(aws_delete_median(kind), seed, &format!("delete {key}")),
        }
    }
}

/// Failure injection: each call is throttled with probability `throttle`, else fails with a
/// transient error with probability `error` (half of those after making the change).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability of `Throttled`.
    pub throttle: f64,
    /// Probability of `Transient`.
    pub error: f64,
    /// Seed of the random sequence, so a failing run can be replayed.
    pub seed: u64,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        throttle: 0.0,
        error: 0.0,
        seed: 1,
    };

    /// Parses `throttle=0.1,error=0.05,seed=7` (each part optional).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut faults = Faults::NONE;
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let probability = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("{key}: {value:?} is not a probability"))
            };
            match key {
                "throttle" => faults.throttle = probability()?,
                "error" => faults.error = probability()?,
                "seed" => {
                    faults.seed = value
                        .parse()
                        .map_err(|_| format!("seed: {value:?} is not a number"))?
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; faults: throttle, error, seed"
                    ));
                }
            }
        }
        Ok(faults)
    }
}

/// What the fault draw decided for one call.
pub(crate) enum Fault {
    /// The call goes through.
    None,
    /// It fails before changing anything.
    Before(CloudError),
    /// It fails after making its change, as a timed-out AWS call can.
    After(CloudError),
}

impl Faults {
    /// Draws the fate of one call from the seeded sequence `rng` (xorshift64*: small, seedable,
    /// good enough to spread faults).
    pub(crate) fn draw(&self, rng: &mut u64, what: &str) -> Fault {
        let mut next = || {
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (a, b) = (next(), next());
        if a < self.throttle {
            Fault::Before(CloudError::Throttled(format!(
                "{what}: Rate exceeded (simulated)"
            )))
        } else if a < self.throttle + self.error {
            let error = CloudError::Transient(format!("{what}: InternalError (simulated)"));
            if b < 0.5 {
                Fault::Before(error)
            } else {
                Fault::After(error)
            }
        } else {
            Fault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_durations_spread_around_the_median_and_repeat_per_seed_and_key() {
        let draw = |seed, key: &str| {
            LatencyProfile::Realistic
                .create(ResourceKind::Cluster, seed, key)
                .as_secs_f64()
        };
        assert_eq!(draw(1, "dev-eks"), draw(1, "dev-eks"));
        assert_ne!(draw(1, "dev-eks"), draw(2, "dev-eks"));
        let mut drawn: Vec<f64> = (0..2000).map(|seed| draw(seed, "dev-eks")).collect();
        drawn.sort_by(f64::total_cmp);
        let median = drawn[1000];
        // Around AWS's median (660 s), about a quarter either way for one deviation, cut at
        // two and a half.
        assert!((620.0..700.0).contains(&median), "median {median}");
        let (low, high) = (drawn[160], drawn[1840]);
        assert!((450.0..560.0).contains(&low), "16th percentile {low}");
        assert!((780.0..960.0).contains(&high), "84th percentile {high}");
        assert!(drawn[0] >= 660.0 * (-0.625f64).exp() - 0.01);
        assert!(drawn[1999] <= 660.0 * 0.625f64.exp() + 0.01);
        assert_eq!(
            LatencyProfile::Instant.create(ResourceKind::Cluster, 1, "dev-eks"),
            Duration::ZERO
        );
    }
}
