//! The AWS resources an environment's spec calls for, named and grouped by the step of the
//! provisioning flow that creates them. Pure: the worker and the simulator both build on it,
//! and plan/what-if can diff two of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::name::EnvName;
use crate::spec::EnvironmentSpec;

/// Kinds of resources envplane manages, in the order a teardown deletes them.
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
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// ELBv2 target group.
    TargetGroup,
    /// EKS managed node group.
    NodeGroup,
    /// EKS cluster.
    Cluster,
    /// EC2 instance of the database host.
    DbInstance,
    /// gp3 data volume of the database host.
    Volume,
    /// NAT gateway.
    NatGateway,
    /// Elastic IP of a NAT gateway.
    ElasticIp,
    /// Route table.
    RouteTable,
    /// Internet gateway.
    InternetGateway,
    /// Subnet.
    Subnet,
    /// Security group.
    SecurityGroup,
    /// The VPC.
    Vpc,
}

impl ResourceKind {
    /// Every kind, in teardown order.
    pub const TEARDOWN: [ResourceKind; 12] = [
        ResourceKind::TargetGroup,
        ResourceKind::NodeGroup,
        ResourceKind::Cluster,
        ResourceKind::DbInstance,
        ResourceKind::Volume,
        ResourceKind::NatGateway,
        ResourceKind::ElasticIp,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::Subnet,
        ResourceKind::SecurityGroup,
        ResourceKind::Vpc,
    ];

    /// Typical seconds from a create call until AWS reports the resource usable: what the
    /// realistic simulator takes, and what the flows expect before they look again.
    pub fn typical_create_seconds(self) -> u64 {
        match self {
            ResourceKind::Cluster => 600,
            ResourceKind::NodeGroup => 240,
            ResourceKind::NatGateway => 120,
            ResourceKind::DbInstance => 60,
            ResourceKind::Volume => 10,
            ResourceKind::TargetGroup
            | ResourceKind::Vpc
            | ResourceKind::InternetGateway
            | ResourceKind::SecurityGroup => 2,
            ResourceKind::Subnet | ResourceKind::RouteTable | ResourceKind::ElasticIp => 1,
        }
    }

    /// Typical seconds from a delete call until the resource is gone.
    pub fn typical_delete_seconds(self) -> u64 {
        match self {
            ResourceKind::Cluster => 300,
            ResourceKind::NodeGroup => 180,
            ResourceKind::NatGateway => 60,
            ResourceKind::DbInstance => 45,
            ResourceKind::Volume => 5,
            _ => 1,
        }
    }

    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::TargetGroup => "target_group",
            ResourceKind::NodeGroup => "node_group",
            ResourceKind::Cluster => "cluster",
            ResourceKind::DbInstance => "db_instance",
            ResourceKind::Volume => "volume",
            ResourceKind::NatGateway => "nat_gateway",
            ResourceKind::ElasticIp => "elastic_ip",
            ResourceKind::RouteTable => "route_table",
            ResourceKind::InternetGateway => "internet_gateway",
            ResourceKind::Subnet => "subnet",
            ResourceKind::SecurityGroup => "security_group",
            ResourceKind::Vpc => "vpc",
        }
    }
}

/// The step of the provisioning flow that creates a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// VPC, subnets, internet gateway, security groups.
    Network,
    /// Elastic IPs, NAT gateways and route tables: the way out of the private subnets.
    Egress,
    /// The EKS control plane.
    Cluster,
    /// The node groups (after the cluster is active).
    NodeGroups,
    /// The database host and its volume.
    Database,
    /// The target groups.
    Targets,
}

impl Group {
    /// Every group, in creation order.
    pub const ALL: [Group; 6] = [
        Group::Network,
        Group::Egress,
        Group::Cluster,
        Group::NodeGroups,
        Group::Database,
        Group::Targets,
    ];
}

/// One resource the spec calls for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// Its kind.
    pub kind: ResourceKind,
    /// Unique name within the account and region (the `Name` tag, or the resource's own name).
    pub name: String,
    /// The step that creates it.
    pub group: Group,
    /// Names of resources it needs to exist first.
    pub depends_on: Vec<String>,
    /// What it is made with: CIDR, instance type, scaling, rules…
    pub attributes: Value,
}

/// Tag keys envplane puts on everything it creates, to find it again without its id.
pub mod tags {
    /// The environment a resource belongs to.
    pub const ENVIRONMENT: &str = "envplane:environment";
    /// The operation that created it.
    pub const OPERATION: &str = "envplane:operation";
    /// Marks volumes for the daily snapshot.
    pub const BACKUP: &str = "Backup";
}

/// Ports of the application tiers.
pub const FRONTEND_PORT: u16 = 3001;
/// Ports of the application tiers.
pub const BACKEND_PORT: u16 = 3000;

/// Every resource `spec` calls for, in creation order.
pub fn plan(env: &EnvName, spec: &EnvironmentSpec) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut add = |kind, name: String, group, depends_on: Vec<String>, attributes: Value| {
        out.push(Planned {
            kind,
            name,
            group,
            depends_on,
            attributes,
        });
    };
    let n = |suffix: &str| format!("{env}-{suffix}");
    let azs = spec.network.az_count;
    let (public, private) = spec.subnets();
    add(
        ResourceKind::Vpc,
        n("vpc"),
        Group::Network,
        vec![],
        json!({ "cidr": spec.network.vpc_cidr.to_string() }),
    );
    for (i, cidr) in public.iter().enumerate() {
        add(
            ResourceKind::Subnet,
            n(&format!("public-{}", i + 1)),
            Group::Network,
            vec![n("vpc")],
            json!({ "cidr": cidr, "az_index": i, "public": true }),
        );
    }
    for (i, cidr) in private.iter().enumerate() {
        add(
            ResourceKind::Subnet,
            n(&format!("private-{}", i + 1)),
            Group::Network,
            vec![n("vpc")],
            json!({ "cidr": cidr, "az_index": i, "public": false }),
        );
    }
    add(
        ResourceKind::InternetGateway,
        n("igw"),
        Group::Network,
        vec![n("vpc")],
        json!({}),
    );
    let nats = spec.nat_gateway_count();
    for i in 1..=nats {
        add(
            ResourceKind::ElasticIp,
            n(&format!("eip-{i}")),
            Group::Egress,
            vec![],
            json!({}),
        );
        add(
            ResourceKind::NatGateway,
            n(&format!("nat-{i}")),
            Group::Egress,
            vec![n(&format!("public-{i}")), n(&format!("eip-{i}")), n("igw")],
            json!({ "subnet": n(&format!("public-{i}")), "eip": n(&format!("eip-{i}")) }),
        );
    }
    add(
        ResourceKind::RouteTable,
        n("rt-public"),
        Group::Egress,
        vec![n("igw")],
        json!({ "default_route": n("igw"), "subnets": (1..=azs).map(|i| n(&format!("public-{i}"))).collect::<Vec<_>>() }),
    );
    for i in 1..=azs {
        let nat = n(&format!("nat-{}", if nats == 1 { 1 } else { u32::from(i) }));
        add(
            ResourceKind::RouteTable,
            n(&format!("rt-private-{i}")),
            Group::Egress,
            vec![nat.clone()],
            json!({ "default_route": nat, "subnets": [n(&format!("private-{i}"))] }),
        );
    }
    add(
        ResourceKind::SecurityGroup,
        n("sg-alb"),
        Group::Network,
        vec![n("vpc")],
        json!({ "ingress": [{"port": 80, "from": "0.0.0.0/0"}, {"port": 443, "from": "0.0.0.0/0"}] }),
    );
    add(
        ResourceKind::SecurityGroup,
        n("sg-cluster"),
        Group::Network,
        vec![n("vpc"), n("sg-alb")],
        json!({ "ingress": [
            {"port": 443, "from": spec.network.vpc_cidr.to_string()},
            {"port": 10250, "from": spec.network.vpc_cidr.to_string()},
            {"port": FRONTEND_PORT, "from_group": n("sg-alb")},
            {"port": BACKEND_PORT, "from_group": n("sg-alb")},
        ] }),
    );
    add(
        ResourceKind::SecurityGroup,
        n("sg-db"),
        Group::Network,
        vec![n("vpc"), n("sg-cluster")],
        json!({ "ingress": [{"port": 5432, "from_group": n("sg-cluster")}] }),
    );

    let private_names: Vec<String> = (1..=azs).map(|i| n(&format!("private-{i}"))).collect();
    add(
        ResourceKind::Cluster,
        n("eks"),
        Group::Cluster,
        private_names
            .iter()
            .cloned()
            .chain([n("sg-cluster")])
            .collect(),
        json!({ "version": spec.cluster.version, "subnets": private_names, "security_group": n("sg-cluster") }),
    );
    for (role, group) in [
        ("frontend", &spec.cluster.frontend),
        ("backend", &spec.cluster.backend),
    ] {
        add(
            ResourceKind::NodeGroup,
            n(role),
            Group::NodeGroups,
            // Nodes in the private subnets reach the registries through the NAT gateways.
            std::iter::once(n("eks"))
                .chain((1..=azs).map(|i| n(&format!("rt-private-{i}"))))
                .collect(),
            json!({ "cluster": n("eks"), "role": role, "instance_type": group.instance_type, "min": group.min, "desired": group.desired, "max": group.max, "version": spec.cluster.version }),
        );
    }
    let volume = &spec.database.volume;
    add(
        ResourceKind::Volume,
        n("db-data"),
        Group::Database,
        vec![],
        json!({ "size_gb": volume.size_gb, "iops": volume.iops, "throughput_mibps": volume.throughput_mibps, "az_index": 0, "backup": true }),
    );
    add(
        ResourceKind::DbInstance,
        n("db"),
        Group::Database,
        // The host installs PostgreSQL at first boot, through the NAT gateway.
        vec![n("private-1"), n("sg-db"), n("db-data"), n("rt-private-1")],
        json!({ "instance_type": spec.database.instance_type, "engine_version": spec.database.engine_version, "extensions": spec.database.extensions, "subnet": n("private-1"), "security_group": n("sg-db"), "volume": n("db-data") }),
    );
    for (role, port) in [("frontend", FRONTEND_PORT), ("backend", BACKEND_PORT)] {
        add(
            ResourceKind::TargetGroup,
            n(&format!("tg-{role}")),
            Group::Targets,
            vec![n("vpc")],
            json!({ "port": port, "health_path": "/health", "role": role }),
        );
    }
    out
}

/// How many resources of each kind a plan holds, for summaries and tests.
pub fn count_by_kind(plan: &[Planned]) -> BTreeMap<ResourceKind, usize> {
    let mut counts = BTreeMap::new();
    for p in plan {
        *counts.entry(p.kind).or_insert(0) += 1;
    }
    counts
}

/// Cloud-init user data of the database host: PostgreSQL of the spec's major version with its
/// extensions, its data directory on the gp3 volume attached as `/dev/sdf`.
pub fn database_user_data(engine_version: &str, extensions: &[String]) -> String {
    let create_extensions: String = extensions
        .iter()
        .map(|e| format!("sudo -u postgres psql -c 'CREATE EXTENSION IF NOT EXISTS \"{e}\";'\n"))
        .collect();
    format!(
        r#"#!/bin/bash
# envplane database host: PostgreSQL {engine_version} on the gp3 data volume.
set -euo pipefail
device=/dev/sdf
[ -e /dev/nvme1n1 ] && device=/dev/nvme1n1
until [ -e "$device" ]; do sleep 2; done
blkid "$device" || mkfs -t xfs "$device"
mkdir -p /var/lib/pgsql
grep -q /var/lib/pgsql /etc/fstab || echo "$device /var/lib/pgsql xfs defaults,nofail 0 2" >> /etc/fstab
mount -a
dnf install -y postgresql{engine_version}-server postgresql{engine_version}-contrib
postgresql-setup --initdb || true
systemctl enable --now postgresql
{create_extensions}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Blueprint, Tier};
    use crate::cidr::VpcCidr;

    #[test]
    fn prod_calls_for_three_zones_of_everything() {
        let spec = Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2));
        let plan = plan(&EnvName::parse("prod").expect("valid"), &spec);
        let counts = count_by_kind(&plan);
        assert_eq!(counts[&ResourceKind::Subnet], 6);
        assert_eq!(counts[&ResourceKind::NatGateway], 3);
        assert_eq!(counts[&ResourceKind::RouteTable], 4);
        assert_eq!(counts[&ResourceKind::SecurityGroup], 3);
        assert_eq!(counts[&ResourceKind::NodeGroup], 2);
        let names: std::collections::BTreeSet<&str> =
            plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), plan.len(), "names are unique");
        for p in &plan {
            for dep in &p.depends_on {
                assert!(
                    names.contains(dep.as_str()),
                    "{} depends on unknown {dep}",
                    p.name
                );
            }
        }
        let db_sg = plan.iter().find(|p| p.name == "prod-sg-db").expect("db sg");
        assert_eq!(
            db_sg.attributes["ingress"],
            json!([{"port": 5432, "from_group": "prod-sg-cluster"}])
        );
    }

    #[test]
    fn dev_shares_one_nat_gateway() {
        let spec = Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0));
        let plan = plan(&EnvName::parse("dev").expect("valid"), &spec);
        assert_eq!(count_by_kind(&plan)[&ResourceKind::NatGateway], 1);
        let rt = plan
            .iter()
            .find(|p| p.name == "dev-rt-private-2")
            .expect("route table");
        assert_eq!(rt.attributes["default_route"], "dev-nat-1");
    }
}
