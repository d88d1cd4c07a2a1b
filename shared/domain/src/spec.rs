//! The desired state of an environment, how a create request becomes one, and what is valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blueprint::{Blueprint, Tier};
use crate::cidr::VpcCidr;
use crate::merge_patch;
use crate::validation::{FieldError, ValidationErrors};

/// EKS versions a new environment may run. Upgrades step one minor version at a time.
pub const SUPPORTED_EKS_VERSIONS: &[&str] = &["1.28", "1.29", "1.30", "1.31", "1.32", "1.33"];

/// Instance types envplane prices and allows, for node groups and the database host.
pub const ALLOWED_INSTANCE_TYPES: &[&str] = &[
    "t3.medium",
    "t3.large",
    "t3.xlarge",
    "t3.2xlarge",
    "m5.large",
    "m5.xlarge",
    "r5.large",
    "r5.xlarge",
];

/// PostgreSQL major versions the database host can install.
pub const SUPPORTED_POSTGRES_VERSIONS: &[&str] = &["13", "14", "15", "16"];

/// PostgreSQL extensions the database host can install.
pub const ALLOWED_EXTENSIONS: &[&str] =
    &["pg_graphql", "uuid-ossp", "pgcrypto", "pg_stat_statements"];

/// Largest node group envplane manages; larger fleets belong in more environments.
pub const MAX_NODES_PER_GROUP: u32 = 100;

/// gp3 bounds (AWS, 2025 onwards): size in GiB, IOPS, throughput in MiB/s and the ratios between them.
pub mod gp3 {
    /// Smallest volume in GiB.
    pub const MIN_SIZE_GB: u32 = 1;
    /// Largest volume in GiB (64 TiB).
    pub const MAX_SIZE_GB: u32 = 65_536;
    /// Baseline IOPS, included in the price.
    pub const MIN_IOPS: u32 = 3_000;
    /// Most IOPS a gp3 volume can be provisioned with.
    pub const MAX_IOPS: u32 = 80_000;
    /// Most IOPS per GiB of size.
    pub const MAX_IOPS_PER_GB: u32 = 500;
    /// Baseline throughput in MiB/s, included in the price.
    pub const MIN_THROUGHPUT: u32 = 125;
    /// Most throughput in MiB/s.
    pub const MAX_THROUGHPUT: u32 = 2_000;
    /// Throughput may be at most IOPS / 4 MiB/s.
    pub const IOPS_PER_MIBPS: u32 = 4;
}

/// The desired state of an environment: everything that can be changed after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// VPC layout.
    pub network: NetworkSpec,
    /// EKS cluster and its node groups.
    pub cluster: ClusterSpec,
    /// PostgreSQL host.
    pub database: DatabaseSpec,
    /// Hours until a preview environment is destroyed; previews only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_hours: Option<u32>,
    /// How deployments to this environment go, over its tier's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployPolicy>,
}

/// An environment's own deploy policy: what it changes of its tier's (strategy, canary steps
/// and thresholds, approvers). Production may ask for more approvers, never fewer than two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployPolicy {
    /// canary, blue_green or rolling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<crate::canary::Strategy>,
    /// Fields of the canary policy (steps, interval_seconds, thresholds, gates…) merged over
    /// the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub canary: Option<Value>,
    /// Distinct approvers a deployment or promotion needs (0 to 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u8>,
}

/// VPC layout of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The environment's /16 inside 10.0.0.0/8; allocated from the pool when omitted.
    #[schema(value_type = String, example = "10.0.0.0/16")]
    pub vpc_cidr: VpcCidr,
    /// Availability zones, 2 or 3; each gets one public and one private /24.
    pub az_count: u8,
    /// One NAT gateway for the VPC, or one per AZ.
    pub nat_gateways: NatMode,
    /// The ACM certificate of the environment's HTTPS listener (443); without one the load
    /// balancer listens on HTTP (80) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
}

/// How many NAT gateways a VPC gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NatMode {
    /// One NAT gateway shared by all private subnets (cheaper, one AZ of failure).
    Single,
    /// One NAT gateway in each AZ.
    PerAz,
}

/// EKS cluster with a frontend and a backend node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Kubernetes minor version, e.g. `1.31`.
    pub version: String,
    /// Node group running the frontend (port 3001).
    pub frontend: NodeGroupSpec,
    /// Node group running the backend (port 3000).
    pub backend: NodeGroupSpec,
}

/// Scaling and instance type of one EKS managed node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeGroupSpec {
    /// EC2 instance type of the nodes.
    pub instance_type: String,
    /// Fewest nodes.
    pub min: u32,
    /// Nodes wanted now.
    pub desired: u32,
    /// Most nodes.
    pub max: u32,
}

/// PostgreSQL host on EC2 with a gp3 data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// EC2 instance type of the host.
    pub instance_type: String,
    /// PostgreSQL major version.
    pub engine_version: String,
    /// Extensions installed at first boot.
    pub extensions: Vec<String>,
    /// The data volume.
    pub volume: VolumeSpec,
}

/// A gp3 EBS volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in GiB.
    pub size_gb: u32,
    /// Provisioned IOPS (3000 included).
    pub iops: u32,
    /// Provisioned throughput in MiB/s (125 included).
    pub throughput_mibps: u32,
}

/// Where the VPC block of a resolved spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrChoice {
    /// The caller named it: if it is taken, that is the caller's error.
    Requested,
    /// envplane chose it: if it is taken meanwhile, choose again.
    Allocated,
}

/// Fields of a create request other than the spec sections.
const CREATE_IDENTITY_FIELDS: &[&str] = &["name", "tier"];

/// Turns the spec part of a create request (`network`, `cluster`, `database`, `ttl_hours`, each
/// optional and partial) into a full spec on top of the tier's blueprint, then validates it.
///
/// `allocated` is the block to use when the request names none; `None` means the blueprint's
/// default (an error for tiers without one).
pub fn resolve_create(
    blueprint: &Blueprint,
    request: &Value,
    allocated: Option<VpcCidr>,
) -> Result<(EnvironmentSpec, CidrChoice), ValidationErrors> {
    let Value::Object(fields) = request else {
        return Err(FieldError::new("", "the body must be a JSON object").into());
    };
    let mut overrides = serde_json::Map::new();
    for (key, value) in fields {
        // A section given as null overrides nothing (in a merge patch it would delete the
        // blueprint's whole section).
        let no_section =
            value.is_null() && ["network", "cluster", "database"].contains(&key.as_str());
        if !CREATE_IDENTITY_FIELDS.contains(&key.as_str()) && !no_section {
            overrides.insert(key.clone(), value.clone());
        }
    }
    let requested = request
        .pointer("/network/vpc_cidr")
        .filter(|v| !v.is_null())
        .is_some();
    let choice = if requested {
        CidrChoice::Requested
    } else {
        CidrChoice::Allocated
    };
    let cidr = match allocated.or(blueprint.default_vpc_cidr) {
        Some(cidr) => cidr,
        None if requested => VpcCidr::from_second_octet(0), // replaced by the request's own value
        None => {
            return Err(FieldError::new(
                "network.vpc_cidr",
                "the address pool 10.0.0.0/8 has no free /16 left",
            )
            .into());
        }
    };
    let mut document = serde_json::to_value(blueprint.spec(cidr)).map_err(internal)?;
    merge_patch::apply(&mut document, &Value::Object(overrides));
    let spec = from_document(&document)?;
    spec.validate(blueprint.tier)?;
    Ok((spec, choice))
}

/// Parses an EKS version `major.minor`.
pub fn eks_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The next version an upgrade from `current` towards `target` passes through: EKS moves the
/// control plane and node groups one minor version at a time. `None` when there is nothing to do
/// or the target is older (downgrades are impossible).
pub fn next_eks_version(current: &str, target: &str) -> Option<String> {
    let (cur, tgt) = (eks_version(current)?, eks_version(target)?);
    (cur < tgt).then(|| format!("{}.{}", cur.0, cur.1 + 1))
}

/// Applies a JSON merge patch to a spec and validates the result. `name` and `tier` cannot be
/// patched; changes that would replace the network are refused; downgrades are refused;
/// changes that replace a node group (its instance type) need `allow_replacement`.
pub fn apply_patch(
    current: &EnvironmentSpec,
    tier: Tier,
    patch: &Value,
    allow_replacement: bool,
) -> Result<EnvironmentSpec, ValidationErrors> {
    let Value::Object(fields) = patch else {
        return Err(FieldError::new("", "a merge patch must be a JSON object").into());
    };
    let mut errors = ValidationErrors::default();
    for key in CREATE_IDENTITY_FIELDS {
        if fields.contains_key(*key) {
            errors.push(*key, "cannot be changed: create a new environment instead");
        }
    }
    errors.into_result()?;
    let mut document = serde_json::to_value(current).map_err(internal)?;
    merge_patch::apply(&mut document, patch);
    let next = from_document(&document)?;
    let mut errors = ValidationErrors::default();
    if next.network.vpc_cidr != current.network.vpc_cidr {
        errors.push(
            "network.vpc_cidr",
            "changing the VPC block replaces the whole network and is not allowed in place",
        );
    }
    if next.network.az_count < current.network.az_count {
        errors.push(
            "network.az_count",
            "removing availability zones replaces subnets and is not allowed in place",
        );
    }
    if let (Some(from), Some(to)) = (
        eks_version(&current.cluster.version),
        eks_version(&next.cluster.version),
    ) && to < from
    {
        errors.push(
            "cluster.version",
            format!(
                "EKS cannot be downgraded from {} to {}",
                current.cluster.version, next.cluster.version
            ),
        );
    }
    let major = |v: &str| v.parse::<u32>().unwrap_or(0);
    if major(&next.database.engine_version) < major(&current.database.engine_version) {
        errors.push(
            "database.engine_version",
            format!(
                "PostgreSQL cannot be downgraded from {} to {}",
                current.database.engine_version, next.database.engine_version
            ),
        );
    }
    if next.database.volume.size_gb < current.database.volume.size_gb {
        errors.push(
            "database.volume.size_gb",
            format!(
                "an EBS volume cannot shrink ({} GiB to {} GiB)",
                current.database.volume.size_gb, next.database.volume.size_gb
            ),
        );
    }
    for (role, from, to) in [
        (
            "frontend",
            &current.cluster.frontend,
            &next.cluster.frontend,
        ),
        ("backend", &current.cluster.backend, &next.cluster.backend),
    ] {
        if from.instance_type != to.instance_type && !allow_replacement {
            errors.push(
                format!("cluster.{role}.instance_type"),
                format!(
                    "changing {} to {} replaces the node group (its nodes are drained and recreated); allow the replacement to do it (the API's ?allow_replacement=true, the CLI's --allow-replacement)",
                    from.instance_type, to.instance_type
                ),
            );
        }
    }
    errors.into_result()?;
    next.validate(tier)?;
    Ok(next)
}

fn internal(error: serde_json::Error) -> ValidationErrors {
    FieldError::new("", format!("internal encoding error: {error}")).into()
}

/// Deserializes a spec document, naming the field that does not fit.
fn from_document(document: &Value) -> Result<EnvironmentSpec, ValidationErrors> {
    serde_path_to_error::deserialize(document).map_err(
        |error: serde_path_to_error::Error<serde_json::Error>| {
            let mut field = error.path().to_string();
            let detail = error.inner().to_string();
            if field == "." {
                field.clear();
            }
            // serde names a missing field in its message but points at the object that lacks it.
            if let Some(missing) = detail
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = if field.is_empty() {
                    missing.to_owned()
                } else {
                    format!("{field}.{missing}")
                };
            }
            FieldError::new(field, detail).into()
        },
    )
}

impl EnvironmentSpec {
    /// Checks every rule a spec must satisfy for its tier, collecting all violations.
    pub fn validate(&self, tier: Tier) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if !(2..=3).contains(&self.network.az_count) {
            errors.push(
                "network.az_count",
                format!("must be 2 or 3, got {}", self.network.az_count),
            );
        }
        if let Some(deploy) = &self.deploy {
            if let Err(bad) = crate::deployment::policy_of(tier, Some(deploy)) {
                for e in bad.0 {
                    errors.push(format!("deploy.{}", e.field), e.detail);
                }
            }
            match deploy.approvals {
                Some(n) if n > 6 => errors.push("deploy.approvals", "at most 6 approvers"),
                Some(n) if tier == Tier::Prod && n < 2 => errors.push(
                    "deploy.approvals",
                    "production deploys need at least 2 approvers: four eyes, no bypass",
                ),
                _ => {}
            }
        }
        if let Some(arn) = &self.network.certificate_arn {
            let parts: Vec<&str> = arn.split(':').collect();
            let acm = parts.len() == 6
                && parts[0] == "arn"
                && parts[1].starts_with("aws")
                && parts[2] == "acm"
                && parts[5].starts_with("certificate/");
            if !acm {
                errors.push(
                    "network.certificate_arn",
                    "must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
                );
            }
        }
        if !SUPPORTED_EKS_VERSIONS.contains(&self.cluster.version.as_str()) {
            errors.push(
                "cluster.version",
                format!(
                    "{:?} is not supported; supported: {}",
                    self.cluster.version,
                    SUPPORTED_EKS_VERSIONS.join(", ")
                ),
            );
        }
        self.cluster
            .frontend
            .validate("cluster.frontend", &mut errors);
        self.cluster
            .backend
            .validate("cluster.backend", &mut errors);
        check_instance_type(
            &self.database.instance_type,
            "database.instance_type",
            &mut errors,
        );
        if !SUPPORTED_POSTGRES_VERSIONS.contains(&self.database.engine_version.as_str()) {
            errors.push(
                "database.engine_version",
                format!(
                    "PostgreSQL {:?} is not supported; supported: {}",
                    self.database.engine_version,
                    SUPPORTED_POSTGRES_VERSIONS.join(", ")
                ),
            );
        }
        for (i, ext) in self.database.extensions.iter().enumerate() {
            if !ALLOWED_EXTENSIONS.contains(&ext.as_str()) {
                errors.push(
                    format!("database.extensions[{i}]"),
                    format!(
                        "{ext:?} is not available; available: {}",
                        ALLOWED_EXTENSIONS.join(", ")
                    ),
                );
            }
        }
        self.database
            .volume
            .validate("database.volume", &mut errors);
        match (tier, self.ttl_hours) {
            (Tier::Preview, None) => errors.push("ttl_hours", "previews must have a TTL"),
            (Tier::Preview, Some(h)) if !(1..=720).contains(&h) => errors.push(
                "ttl_hours",
                format!("must be between 1 and 720 hours, got {h}"),
            ),
            (Tier::Preview, Some(_)) | (_, None) => {}
            (other, Some(_)) => errors.push(
                "ttl_hours",
                format!("only previews expire; a {other} environment cannot have a TTL"),
            ),
        }
        errors.into_result()
    }

    /// Public and private subnet blocks, one of each per AZ: public x.1…x.n, private x.(n+1)…x.2n.
    pub fn subnets(&self) -> (Vec<String>, Vec<String>) {
        let n = self.network.az_count;
        let cidr = self.network.vpc_cidr;
        (
            (1..=n).map(|i| cidr.subnet(i)).collect(),
            (n + 1..=2 * n).map(|i| cidr.subnet(i)).collect(),
        )
    }

    /// NAT gateways this spec asks for.
    pub fn nat_gateway_count(&self) -> u32 {
        match self.network.nat_gateways {
            NatMode::Single => 1,
            NatMode::PerAz => u32::from(self.network.az_count),
        }
    }

    /// Top-level sections that differ between two specs, with their old and new values;
    /// what an audit event and an operation record as the change.
    pub fn diff(&self, next: &EnvironmentSpec) -> BTreeMap<String, (Value, Value)> {
        let mut changes = BTreeMap::new();
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(next)) else {
            return changes;
        };
        collect_diff("", &a, &b, &mut changes);
        changes
    }
}

fn collect_diff(prefix: &str, a: &Value, b: &Value, out: &mut BTreeMap<String, (Value, Value)>) {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                collect_diff(
                    &path,
                    ma.get(key).unwrap_or(&Value::Null),
                    mb.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => {
            out.insert(prefix.to_owned(), (a.clone(), b.clone()));
        }
        _ => {}
    }
}

fn check_instance_type(value: &str, field: &str, errors: &mut ValidationErrors) {
    if !ALLOWED_INSTANCE_TYPES.contains(&value) {
        errors.push(
            field,
            format!(
                "{value:?} is not allowed; allowed: {}",
                ALLOWED_INSTANCE_TYPES.join(", ")
            ),
        );
    }
}

impl NodeGroupSpec {
    fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        check_instance_type(
            &self.instance_type,
            &format!("{field}.instance_type"),
            errors,
        );
        if self.max < 1 {
            errors.push(format!("{field}.max"), "must be at least 1");
        } else if self.max > MAX_NODES_PER_GROUP {
            errors.push(
                format!("{field}.max"),
                format!("must be at most {MAX_NODES_PER_GROUP}, got {}", self.max),
            );
        }
        if self.min > self.max {
            errors.push(
                format!("{field}.min"),
                format!("min {} is greater than max {}", self.min, self.max),
            );
        } else if !(self.min..=self.max).contains(&self.desired) {
            errors.push(
                format!("{field}.desired"),
                format!(
                    "must be between min {} and max {}, got {}",
                    self.min, self.max, self.desired
                ),
            );
        }
    }
}

impl VolumeSpec {
    fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        use gp3::*;
        if !(MIN_SIZE_GB..=MAX_SIZE_GB).contains(&self.size_gb) {
            errors.push(
                format!("{field}.size_gb"),
                format!(
                    "gp3 size must be {MIN_SIZE_GB}–{MAX_SIZE_GB} GiB, got {}",
                    self.size_gb
                ),
            );
        }
        let iops_cap = MAX_IOPS
            .min(self.size_gb.saturating_mul(MAX_IOPS_PER_GB))
            .max(MIN_IOPS);
        if !(MIN_IOPS..=iops_cap).contains(&self.iops) {
            errors.push(
                format!("{field}.iops"),
                format!("gp3 IOPS must be {MIN_IOPS}–{iops_cap} for {} GiB (at most {MAX_IOPS_PER_GB} per GiB), got {}", self.size_gb, self.iops),
            );
        }
        let throughput_cap = MAX_THROUGHPUT
            .min(self.iops / IOPS_PER_MIBPS)
            .max(MIN_THROUGHPUT);
        if !(MIN_THROUGHPUT..=throughput_cap).contains(&self.throughput_mibps) {
            errors.push(
                format!("{field}.throughput_mibps"),
                format!("gp3 throughput must be {MIN_THROUGHPUT}–{throughput_cap} MiB/s at {} IOPS, got {}", self.iops, self.throughput_mibps),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dev() -> Blueprint {
        Blueprint::for_tier(Tier::Dev)
    }

    fn fields(result: Result<impl std::fmt::Debug, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("should be invalid")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_bare_request_gets_the_blueprint() {
        let (spec, choice) =
            resolve_create(&dev(), &json!({"name": "dev", "tier": "dev"}), None).expect("valid");
        assert_eq!(choice, CidrChoice::Allocated);
        assert_eq!(spec, dev().spec(VpcCidr::from_second_octet(0)));
        assert_eq!(
            spec.subnets(),
            (
                vec!["10.0.1.0/24".into(), "10.0.2.0/24".into()],
                vec!["10.0.3.0/24".into(), "10.0.4.0/24".into()]
            )
        );
    }

    #[test]
    fn overrides_merge_into_the_blueprint() {
        let request = json!({"name": "x", "tier": "dev", "network": {"vpc_cidr": "10.9.0.0/16"}, "cluster": {"frontend": {"desired": 3}}});
        let (spec, choice) = resolve_create(&dev(), &request, None).expect("valid");
        assert_eq!(choice, CidrChoice::Requested);
        assert_eq!(spec.network.vpc_cidr.to_string(), "10.9.0.0/16");
        assert_eq!(spec.cluster.frontend.desired, 3);
        assert_eq!(spec.cluster.frontend.instance_type, "t3.medium");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"cluster": {"frontend": {"min": 5}}}),
                "cluster.frontend.min",
            ),
            (
                json!({"cluster": {"backend": {"desired": 9}}}),
                "cluster.backend.desired",
            ),
            (
                json!({"cluster": {"frontend": {"max": 0, "min": 0, "desired": 0}}}),
                "cluster.frontend.max",
            ),
            (
                json!({"cluster": {"frontend": {"instance_type": "p5.48xlarge"}}}),
                "cluster.frontend.instance_type",
            ),
            (json!({"cluster": {"version": "1.19"}}), "cluster.version"),
            (json!({"cluster": {"colour": "blue"}}), "cluster.colour"),
            (
                json!({"network": {"vpc_cidr": "192.168.0.0/16"}}),
                "network.vpc_cidr",
            ),
            (json!({"network": {"az_count": 4}}), "network.az_count"),
            (json!({"network": {"az_count": "two"}}), "network.az_count"),
            (
                json!({"database": {"volume": {"size_gb": 0}}}),
                "database.volume.size_gb",
            ),
            (
                json!({"database": {"volume": {"iops": 90000}}}),
                "database.volume.iops",
            ),
            (
                json!({"database": {"volume": {"throughput_mibps": 1000}}}),
                "database.volume.throughput_mibps",
            ),
            (
                json!({"database": {"extensions": ["timescaledb"]}}),
                "database.extensions[0]",
            ),
            (json!({"ttl_hours": 4}), "ttl_hours"),
            (json!({"replicas": 4}), "replicas"),
        ];
        for (request, field) in cases {
            assert_eq!(
                fields(resolve_create(&dev(), &request, None)),
                vec![field.to_owned()],
                "{request}"
            );
        }
    }

    #[test]
    fn previews_need_a_ttl_within_bounds() {
        let preview = Blueprint::for_tier(Tier::Preview);
        let cidr = Some(VpcCidr::from_second_octet(16));
        assert_eq!(
            resolve_create(&preview, &json!({}), cidr).map(|(s, _)| s.ttl_hours),
            Ok(Some(48))
        );
        assert_eq!(
            fields(resolve_create(&preview, &json!({"ttl_hours": 0}), cidr)),
            vec!["ttl_hours"]
        );
        assert_eq!(
            fields(resolve_create(&preview, &json!({"ttl_hours": null}), cidr)),
            vec!["ttl_hours"]
        );
        assert_eq!(
            fields(resolve_create(&preview, &json!({}), None)),
            vec!["network.vpc_cidr"]
        );
    }

    #[test]
    fn patches_change_what_may_change() {
        let spec = dev().spec(VpcCidr::from_second_octet(0));
        let next = apply_patch(
            &spec,
            Tier::Dev,
            &json!({"cluster": {"frontend": {"desired": 3}}}),
            false,
        )
        .expect("valid");
        assert_eq!(next.cluster.frontend.desired, 3);
        assert_eq!(
            spec.diff(&next).keys().collect::<Vec<_>>(),
            vec!["cluster.frontend.desired"]
        );
        assert_eq!(
            fields(apply_patch(&spec, Tier::Dev, &json!({"name": "y"}), false)),
            vec!["name"]
        );
        assert_eq!(
            fields(apply_patch(
                &spec,
                Tier::Dev,
                &json!({"network": {"vpc_cidr": "10.7.0.0/16"}}),
                true
            )),
            vec!["network.vpc_cidr"]
        );
        assert_eq!(
            fields(apply_patch(
                &spec,
                Tier::Dev,
                &json!({"network": null}),
                false
            )),
            vec!["network"]
        );
        assert_eq!(
            fields(apply_patch(&spec, Tier::Dev, &json!([1]), false)),
            vec![""]
        );
    }

    #[test]
    fn downgrades_and_unasked_replacements_are_refused() {
        let spec = dev().spec(VpcCidr::from_second_octet(0));
        let patch = |p: Value, allow| fields(apply_patch(&spec, Tier::Dev, &p, allow));
        assert_eq!(
            patch(json!({"cluster": {"version": "1.30"}}), true),
            vec!["cluster.version"]
        );
        assert_eq!(
            patch(json!({"database": {"volume": {"size_gb": 20}}}), true),
            vec!["database.volume.size_gb"]
        );
        let mut newer = spec.clone();
        newer.database.engine_version = "15".into();
        assert_eq!(
            fields(apply_patch(
                &newer,
                Tier::Dev,
                &json!({"database": {"engine_version": "14"}}),
                true
            )),
            vec!["database.engine_version"]
        );
        let bigger = json!({"cluster": {"backend": {"instance_type": "t3.xlarge"}}});
        assert_eq!(
            patch(bigger.clone(), false),
            vec!["cluster.backend.instance_type"]
        );
        assert!(apply_patch(&spec, Tier::Dev, &bigger, true).is_ok());
    }

    #[test]
    fn upgrades_step_one_minor_version_at_a_time() {
        assert_eq!(next_eks_version("1.29", "1.31").as_deref(), Some("1.30"));
        assert_eq!(next_eks_version("1.30", "1.31").as_deref(), Some("1.31"));
        assert_eq!(next_eks_version("1.31", "1.31"), None);
        assert_eq!(next_eks_version("1.31", "1.29"), None);
        assert_eq!(next_eks_version("x", "1.29"), None);
    }
}
