//! Monthly cost model: us-east-1 on-demand list prices, a month being 730 hours.
//!
//! Amounts are kept in micro-dollars so sums are exact; they are shown in dollars and cents.

use serde::Serialize;

use crate::blueprint::Tier;
use crate::spec::{EnvironmentSpec, gp3};

/// Hours in the month the prices are quoted for.
pub const HOURS_PER_MONTH: u64 = 730;

const MICROS_PER_DOLLAR: u64 = 1_000_000;

/// On-demand price of an instance type in micro-dollars per hour.
pub fn instance_hourly_micros(instance_type: &str) -> Option<u64> {
    Some(match instance_type {
        "t3.medium" => 41_600,
        "t3.large" => 83_200,
        "t3.xlarge" => 166_400,
        "t3.2xlarge" => 332_800,
        "m5.large" => 96_000,
        "m5.xlarge" => 192_000,
        "r5.large" => 126_000,
        "r5.xlarge" => 252_000,
        _ => return None,
    })
}

/// EKS control plane, per hour.
const EKS_CONTROL_PLANE_HOURLY: u64 = 100_000;
/// NAT gateway, per hour (data processing, $0.045/GB, depends on traffic and is not estimated).
const NAT_GATEWAY_HOURLY: u64 = 45_000;
/// Application load balancer, per hour (LCUs depend on traffic and are not estimated).
const ALB_HOURLY: u64 = 22_500;
/// gp3 storage per GiB-month.
const GP3_GB_MONTH: u64 = 80_000;
/// gp3 IOPS above the included 3000, per IOPS-month.
const GP3_IOPS_MONTH: u64 = 5_000;
/// gp3 throughput above the included 125 MiB/s, per MiB/s-month.
const GP3_MIBPS_MONTH: u64 = 40_000;
/// EBS snapshot storage per GiB-month.
const SNAPSHOT_GB_MONTH: u64 = 50_000;

/// An amount of money per month, exact to the micro-dollar, shown in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthlyCost(pub u64);

impl MonthlyCost {
    /// The amount in dollars, rounded to cents.
    pub fn usd(self) -> f64 {
        let cents = (self.0 + 5_000) / 10_000;
        cents as f64 / 100.0
    }

    fn hourly(micros_per_hour: u64, count: u64) -> Self {
        Self(micros_per_hour * HOURS_PER_MONTH * count)
    }
}

impl Serialize for MonthlyCost {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.usd())
    }
}

impl<'de> serde::Deserialize<'de> for MonthlyCost {
    /// Back from USD as shown (cents), for clients reading the API.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let usd = f64::deserialize(deserializer)?;
        if !usd.is_finite() || usd < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "{usd} is not an amount in USD"
            )));
        }
        // Cents are what the API shows: whole cents, as micro-dollars.
        let cents = (usd * 100.0).round() as u64;
        Ok(MonthlyCost(cents * 10_000))
    }
}

impl std::ops::Add for MonthlyCost {
    type Output = MonthlyCost;
    fn add(self, rhs: Self) -> Self {
        MonthlyCost(self.0 + rhs.0)
    }
}

/// One line of a cost estimate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CostLine {
    /// What is paid for, e.g. `frontend nodes (2 × t3.medium)`.
    pub item: String,
    /// Monthly amount in USD.
    #[schema(value_type = f64)]
    pub monthly_usd: MonthlyCost,
}

/// Monthly cost of an environment, line by line.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CostBreakdown {
    /// Total in USD per month (730 hours), usage-based charges excluded.
    #[schema(value_type = f64)]
    pub monthly_usd: MonthlyCost,
    /// The lines that make the total.
    pub lines: Vec<CostLine>,
    /// What the estimate leaves out.
    pub excludes: Vec<String>,
}

impl CostBreakdown {
    /// Estimates the monthly cost of running `spec`. Instance types without a price are
    /// rejected by validation, so they cannot reach here; they would count as zero.
    pub fn of(spec: &EnvironmentSpec, tier: Tier) -> CostBreakdown {
        let mut lines = Vec::new();
        let mut add = |item: String, cost: MonthlyCost| {
            lines.push(CostLine {
                item,
                monthly_usd: cost,
            })
        };
        add(
            "EKS control plane".into(),
            MonthlyCost::hourly(EKS_CONTROL_PLANE_HOURLY, 1),
        );
        for (role, group) in [
            ("frontend", &spec.cluster.frontend),
            ("backend", &spec.cluster.backend),
        ] {
            let price = instance_hourly_micros(&group.instance_type).unwrap_or(0);
            add(
                format!("{role} nodes ({} × {})", group.desired, group.instance_type),
                MonthlyCost::hourly(price, u64::from(group.desired)),
            );
        }
        let db = &spec.database;
        add(
            format!("database host (1 × {})", db.instance_type),
            MonthlyCost::hourly(instance_hourly_micros(&db.instance_type).unwrap_or(0), 1),
        );
        let volume = &db.volume;
        let extra_iops = u64::from(volume.iops.saturating_sub(gp3::MIN_IOPS));
        let extra_mibps = u64::from(volume.throughput_mibps.saturating_sub(gp3::MIN_THROUGHPUT));
        add(
            format!(
                "gp3 data volume ({} GiB, {} IOPS, {} MiB/s)",
                volume.size_gb, volume.iops, volume.throughput_mibps
            ),
            MonthlyCost(
                u64::from(volume.size_gb) * GP3_GB_MONTH
                    + extra_iops * GP3_IOPS_MONTH
                    + extra_mibps * GP3_MIBPS_MONTH,
            ),
        );
        add(
            format!("snapshots (≈ one full copy of {} GiB)", volume.size_gb),
            MonthlyCost(u64::from(volume.size_gb) * SNAPSHOT_GB_MONTH),
        );
        let nats = spec.nat_gateway_count();
        add(
            format!("NAT gateways ({nats})"),
            MonthlyCost::hourly(NAT_GATEWAY_HOURLY, u64::from(nats)),
        );
        add(
            "application load balancer".into(),
            MonthlyCost::hourly(ALB_HOURLY, 1),
        );
        let total = lines
            .iter()
            .fold(MonthlyCost::default(), |sum, line| sum + line.monthly_usd);
        let mut excludes = vec![
            "NAT data processing ($0.045/GB)".to_owned(),
            "load balancer capacity units".to_owned(),
            "data transfer".to_owned(),
        ];
        if tier == Tier::Preview {
            excludes.push("previews are billed only until their TTL".to_owned());
        }
        CostBreakdown {
            monthly_usd: total,
            lines,
            excludes,
        }
    }
}

/// Dollars to micro-dollars, for tests and fixtures.
pub const fn dollars(usd: u64) -> MonthlyCost {
    MonthlyCost(usd * MICROS_PER_DOLLAR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::Blueprint;
    use crate::cidr::VpcCidr;

    fn cost(tier: Tier) -> CostBreakdown {
        let bp = Blueprint::for_tier(tier);
        CostBreakdown::of(
            &bp.spec(
                bp.default_vpc_cidr
                    .unwrap_or(VpcCidr::from_second_octet(16)),
            ),
            tier,
        )
    }

    #[test]
    fn dev_adds_up_from_the_price_facts() {
        // EKS 73.00 + 2×t3.medium 60.736 + 2×t3.large 121.472 + t3.large 60.736
        // + gp3 50 GiB 4.00 + snapshots 2.50 + 1 NAT 32.85 + ALB 16.425 = 371.719
        assert_eq!(cost(Tier::Dev).monthly_usd, MonthlyCost(371_719_000));
        assert_eq!(cost(Tier::Dev).monthly_usd.usd(), 371.72);
    }

    #[test]
    fn prod_pays_for_three_nats_and_bigger_nodes() {
        // EKS 73 + 3×t3.large 182.208 + 3×t3.xlarge 364.416 + t3.xlarge 121.472
        // + gp3 100 GiB 8 + snapshots 5 + 3 NAT 98.55 + ALB 16.425 = 869.071
        assert_eq!(cost(Tier::Prod).monthly_usd, MonthlyCost(869_071_000));
    }

    #[test]
    fn provisioned_iops_and_throughput_cost_extra() {
        let bp = Blueprint::for_tier(Tier::Dev);
        let mut spec = bp.spec(VpcCidr::from_second_octet(0));
        spec.database.volume.iops = 4000;
        spec.database.volume.throughput_mibps = 250;
        let delta =
            CostBreakdown::of(&spec, Tier::Dev).monthly_usd.0 - cost(Tier::Dev).monthly_usd.0;
        assert_eq!(delta, 1000 * 5_000 + 125 * 40_000);
        assert!(dollars(10).0 == delta);
    }
}
