//! `envplane blueprints`: the tiers with their defaults and monthly cost.

use crate::output::{group, print_json, print_table};
use crate::{ClientArgs, Output};

/// Lists the blueprints.
pub async fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let blueprints = super::client(args)?.blueprints().await?;
    if args.output == Output::Json {
        print_json(&blueprints);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = blueprints
        .iter()
        .map(|view| {
            let b = &view.blueprint;
            vec![
                b.tier.to_string(),
                b.default_vpc_cidr
                    .map_or_else(|| "from pool".to_owned(), |c| c.to_string()),
                b.az_count.to_string(),
                group(&b.cluster.frontend),
                group(&b.cluster.backend),
                format!(
                    "{} gp3 {} GiB",
                    b.database.instance_type, b.database.volume.size_gb
                ),
                b.cluster.version.clone(),
                format!("${:.2}", view.cost.monthly_usd.usd()),
            ]
        })
        .collect();
    print_table(
        &[
            "TIER",
            "VPC",
            "AZS",
            "FRONTEND",
            "BACKEND",
            "DATABASE",
            "EKS",
            "COST/MONTH",
        ],
        &rows,
    );
    Ok(())
}
