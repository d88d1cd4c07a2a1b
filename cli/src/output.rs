//! How client commands print: aligned tables and key/value blocks for people, the API's JSON
//! for scripts.

use envplane_api::views::EnvironmentView;
use envplane_domain::spec::NodeGroupSpec;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A value as the API writes it, pretty-printed.
pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot print the answer as JSON: {e}"),
    }
}

/// A value's JSON form on one line (for streams of steps and changes).
pub fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// An enum's word as the API writes it (`ready`, `node_group`, `per_az`).
pub fn word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("({e})"),
    }
}

/// A time as the API writes it (RFC 3339).
pub fn time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// A node group in one cell: `t3.medium ×2 (2–4)`.
pub fn group(g: &NodeGroupSpec) -> String {
    format!("{} ×{} ({}–{})", g.instance_type, g.desired, g.min, g.max)
}

/// Rows under headers, columns aligned.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

/// One environment as a key/value block.
pub fn print_environment(view: &EnvironmentView) {
    let env = &view.environment;
    let spec = &env.spec;
    let volume = &spec.database.volume;
    let rows = [
        ("name", env.name.to_string()),
        ("tier", env.tier.to_string()),
        ("phase", env.status.phase.as_str().to_owned()),
        ("version", env.version.to_string()),
        (
            "operation",
            env.active_operation.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "vpc",
            format!(
                "{} across {} AZs, NAT {}",
                spec.network.vpc_cidr,
                spec.network.az_count,
                word(&spec.network.nat_gateways)
            ),
        ),
        ("eks", spec.cluster.version.clone()),
        ("frontend", group(&spec.cluster.frontend)),
        ("backend", group(&spec.cluster.backend)),
        (
            "database",
            format!(
                "{} PostgreSQL {}, gp3 {} GiB {} IOPS {} MiB/s",
                spec.database.instance_type,
                spec.database.engine_version,
                volume.size_gb,
                volume.iops,
                volume.throughput_mibps
            ),
        ),
        ("cost", format!("${:.2}/month", view.cost.monthly_usd.usd())),
        (
            "created",
            format!("{} by {}", time(env.created_at), env.created_by),
        ),
    ];
    for (key, value) in rows {
        println!("{key:<10} {value}");
    }
    for (service, release) in &env.releases {
        let at = view
            .load_balancers
            .get(service)
            .map_or(String::new(), |url| format!(" at {url}"));
        let warm = env.warm.get(service).map_or(String::new(), |w| {
            format!(" ({} warm until {})", w.release.version, time(w.until))
        });
        println!(
            "{:<10} {} {}{at}{warm}",
            "release",
            service.as_str(),
            release.version
        );
    }
    if !env.resources.is_empty() {
        let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for r in &env.resources {
            *kinds.entry(r.kind.as_str()).or_default() += 1;
        }
        let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{:<10} {} ({})",
            "resources",
            env.resources.len(),
            summary.join(", ")
        );
    }
    if let Some(drift) = &env.drift {
        println!(
            "{:<10} {} (checked {}; details: envplane env drift {})",
            "drift",
            word(&drift.status),
            time(drift.checked_at),
            env.name
        );
    }
}
