//! Tier blueprints: the defaults and policies each kind of environment starts from.
//!
//! The figures come from the environments envplane was built to manage: dev on 10.0/16 with
//! t3.medium frontends and t3.large backends, prod on 10.2/16 across three AZs with a NAT
//! gateway in each, EKS 1.31, PostgreSQL 13 with pg_graphql and uuid-ossp on a gp3 volume.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cidr::VpcCidr;
use crate::spec::{
    ClusterSpec, DatabaseSpec, EnvironmentSpec, NatMode, NetworkSpec, NodeGroupSpec, VolumeSpec,
};

/// The kind of an environment; decides defaults, approvals and retention.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Developers' shared environment.
    Dev,
    /// Test environment.
    Qa,
    /// Pre-production, shaped like prod at smaller scale.
    Staging,
    /// Production.
    Prod,
    /// Short-lived environment for one change, destroyed when its TTL passes.
    Preview,
}

impl Tier {
    /// Every tier, in promotion order.
    pub const ALL: [Tier; 5] = [
        Tier::Dev,
        Tier::Qa,
        Tier::Staging,
        Tier::Prod,
        Tier::Preview,
    ];

    /// The tier's name as used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Dev => "dev",
            Tier::Qa => "qa",
            Tier::Staging => "staging",
            Tier::Prod => "prod",
            Tier::Preview => "preview",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier {s:?}; tiers: dev, qa, staging, prod, preview"))
    }
}

/// How releases reach an environment of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
// Named apart from `spec::DeployPolicy` (an environment's own policy) in the OpenAPI document.
#[schema(as = TierDeployMode)]
pub enum DeployPolicy {
    /// Deployed as soon as built.
    Automatic,
    /// Someone other than the requester approves each deployment.
    ManualApproval,
    /// Approval, then a canary (5 % → 25 % → 100 %) with automatic rollback.
    ManualApprovalCanary,
}

/// Disaster-recovery objectives of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrTargets {
    /// Recovery time objective in minutes.
    pub rto_minutes: u32,
    /// Recovery point objective in minutes.
    pub rpo_minutes: u32,
}

/// Backup policy of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupPolicy {
    /// Days a daily snapshot is kept.
    pub snapshot_retention_days: u32,
    /// Whether one snapshot a year is archived beyond the retention.
    pub yearly_archive: bool,
    /// UTC hour of the daily snapshot.
    pub daily_at_utc_hour: u8,
    /// Whether a machine image is taken weekly too.
    pub weekly_ami: bool,
}

/// The defaults and policies of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Blueprint {
    /// The tier this blueprint is for.
    pub tier: Tier,
    /// One line on what the tier is for.
    pub description: String,
    /// The VPC block used when it is free; `null` means one is allocated from the pool.
    #[schema(value_type = Option<String>)]
    pub default_vpc_cidr: Option<VpcCidr>,
    /// Availability zones.
    pub az_count: u8,
    /// NAT gateway layout.
    pub nat_gateways: NatMode,
    /// Default cluster.
    pub cluster: ClusterSpec,
    /// Default database host.
    pub database: DatabaseSpec,
    /// Default TTL; previews only.
    pub ttl_hours: Option<u32>,
    /// Backups and retention.
    pub backups: BackupPolicy,
    /// How releases are deployed.
    pub deploys: DeployPolicy,
    /// Disaster-recovery objectives, where the tier has them.
    pub dr: Option<DrTargets>,
}

fn node_group(instance_type: &str, min: u32, max: u32) -> NodeGroupSpec {
    NodeGroupSpec {
        instance_type: instance_type.into(),
        min,
        desired: min,
        max,
    }
}

fn database(instance_type: &str, size_gb: u32) -> DatabaseSpec {
    DatabaseSpec {
        instance_type: instance_type.into(),
        engine_version: "13".into(),
        extensions: vec!["pg_graphql".into(), "uuid-ossp".into()],
        volume: VolumeSpec {
            size_gb,
            iops: 3000,
            throughput_mibps: 125,
        },
    }
}

fn backups(days: u32, yearly_archive: bool) -> BackupPolicy {
    BackupPolicy {
        snapshot_retention_days: days,
        yearly_archive,
        daily_at_utc_hour: 5,
        weekly_ami: true,
    }
}

impl Blueprint {
    /// The blueprint of a tier.
    pub fn for_tier(tier: Tier) -> Blueprint {
        let cluster = |front: &str, back: &str, min, max| ClusterSpec {
            version: "1.31".into(),
            frontend: node_group(front, min, max),
            backend: node_group(back, min, max),
        };
        let base = |description: &str, cidr: Option<u8>| Blueprint {
            tier,
            description: description.into(),
            default_vpc_cidr: cidr.map(VpcCidr::from_second_octet),
            az_count: 2,
            nat_gateways: NatMode::Single,
            cluster: cluster("t3.medium", "t3.large", 2, 4),
            database: database("t3.large", 50),
            ttl_hours: None,
            backups: backups(7, false),
            deploys: DeployPolicy::ManualApproval,
            dr: None,
        };
        match tier {
            Tier::Dev => Blueprint {
                deploys: DeployPolicy::Automatic,
                ..base(
                    "Shared development: small, two AZs, one NAT gateway.",
                    Some(0),
                )
            },
            Tier::Qa => base(
                "Test environment shaped like dev, deployed on approval.",
                Some(1),
            ),
            // A seed puts staging on 10.1/16 too, which would collide with qa: staging takes 10.3/16.
            Tier::Staging => Blueprint {
                cluster: cluster("t3.large", "t3.large", 2, 4),
                backups: backups(14, false),
                dr: Some(DrTargets {
                    rto_minutes: 240,
                    rpo_minutes: 15,
                }),
                ..base(
                    "Pre-production on prod's instance sizes at smaller scale.",
                    Some(3),
                )
            },
            Tier::Prod => Blueprint {
                az_count: 3,
                nat_gateways: NatMode::PerAz,
                cluster: cluster("t3.large", "t3.xlarge", 3, 6),
                database: database("t3.xlarge", 100),
                backups: backups(30, true),
                deploys: DeployPolicy::ManualApprovalCanary,
                dr: Some(DrTargets {
                    rto_minutes: 60,
                    rpo_minutes: 5,
                }),
                ..base(
                    "Production: three AZs, a NAT gateway per AZ, canary deploys, critical DR.",
                    Some(2),
                )
            },
            Tier::Preview => Blueprint {
                cluster: cluster("t3.medium", "t3.medium", 1, 2),
                database: database("t3.medium", 20),
                ttl_hours: Some(48),
                backups: backups(1, false),
                deploys: DeployPolicy::Automatic,
                ..base(
                    "Short-lived copy for one change; destroyed when its TTL passes.",
                    None,
                )
            },
        }
    }

    /// Every tier's blueprint.
    pub fn all() -> Vec<Blueprint> {
        Tier::ALL.into_iter().map(Blueprint::for_tier).collect()
    }

    /// The full default spec of this tier on the given VPC block.
    pub fn spec(&self, vpc_cidr: VpcCidr) -> EnvironmentSpec {
        EnvironmentSpec {
            network: NetworkSpec {
                vpc_cidr,
                az_count: self.az_count,
                nat_gateways: self.nat_gateways,
                certificate_arn: None,
            },
            cluster: self.cluster.clone(),
            database: self.database.clone(),
            ttl_hours: self.ttl_hours,
            deploy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_blueprint_is_valid_for_its_tier() {
        for bp in Blueprint::all() {
            let cidr = bp
                .default_vpc_cidr
                .unwrap_or(VpcCidr::from_second_octet(16));
            assert_eq!(bp.spec(cidr).validate(bp.tier), Ok(()), "{}", bp.tier);
        }
    }

    #[test]
    fn tier_defaults_do_not_share_a_block() {
        let cidrs: std::collections::BTreeSet<_> = Blueprint::all()
            .iter()
            .filter_map(|b| b.default_vpc_cidr)
            .collect();
        assert_eq!(cidrs.len(), 4);
    }

    #[test]
    fn prod_spans_three_zones_with_a_nat_each() {
        let prod = Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2));
        assert_eq!(prod.nat_gateway_count(), 3);
        assert_eq!(
            prod.subnets().1,
            vec!["10.2.4.0/24", "10.2.5.0/24", "10.2.6.0/24"]
        );
        assert_eq!(
            (
                prod.cluster.backend.instance_type.as_str(),
                prod.cluster.backend.desired
            ),
            ("t3.xlarge", 3)
        );
    }

    #[test]
    fn tiers_parse_from_their_names() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
        assert!("production".parse::<Tier>().is_err());
    }
}
