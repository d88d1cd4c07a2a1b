//! How long simulated resources take, and which calls fail.

use std::time::Duration;

use envplane_domain::resources::ResourceKind;

use crate::{CloudError, Modification};

/// How long simulated resources take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyProfile {
    /// Everything is ready at once.
    Instant,
    /// AWS-like durations: EKS cluster ~10 min, node group ~4 min, NAT ~2 min, instance ~1 min.
    Realistic,
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

    /// Time from a create call to the resource being active.
    pub fn create(self, kind: ResourceKind) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(kind.typical_create_seconds()),
        }
    }

    /// Time an in-place change keeps a resource busy.
    pub fn modify(self, kind: ResourceKind, change: &Modification) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(change.typical_seconds(kind)),
        }
    }

    /// Time a snapshot of the database volume takes.
    pub fn snapshot(self) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(90),
        }
    }

    /// Time from a delete call to the resource being gone.
    pub fn delete(self, kind: ResourceKind) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(kind.typical_delete_seconds()),
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
