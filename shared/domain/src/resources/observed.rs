//! What a look at the cloud saw of each kind of resource. A field the cloud may leave out (some
//! APIs and emulators do) is an `Option`: unknown, which drift never counts as a difference.

use serde::{Deserialize, Serialize};

use crate::resources::ResourceKind;
use crate::resources::desired::{Desired, IngressRule};

/// The VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// Its block.
    pub cidr: Option<String>,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Its block.
    pub cidr: Option<String>,
    /// Its availability zone's name.
    pub az: Option<String>,
}

/// An internet gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    /// The VPC it is attached to, once attached.
    pub vpc_id: Option<String>,
}

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticIp {
    /// Its address.
    pub public_ip: Option<String>,
}

/// A NAT gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    /// The subnet it sits in, by id.
    pub subnet_id: Option<String>,
}

/// A route table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RouteTable {
    /// Ids of its subnet associations (not the main one): what a delete ends first.
    pub associations: Vec<String>,
    /// Ids of the subnets it serves.
    pub subnet_ids: Vec<String>,
    /// The environment's subnets it serves, by envplane name.
    pub subnets: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Its ingress rules, source groups by envplane name where they are the environment's.
    pub ingress: Vec<IngressRule>,
}

/// The EKS cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Kubernetes version.
    pub version: Option<String>,
}

/// An EKS node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroup {
    /// Its cluster's name.
    pub cluster: String,
    /// EC2 instance type.
    pub instance_type: Option<String>,
    /// Fewest nodes.
    pub min: Option<u32>,
    /// Nodes wanted.
    pub desired: Option<u32>,
    /// Most nodes.
    pub max: Option<u32>,
    /// Kubernetes version.
    pub version: Option<String>,
}

/// The data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// GiB.
    pub size_gb: Option<u32>,
    /// IOPS.
    pub iops: Option<u32>,
    /// MiB/s.
    pub throughput_mibps: Option<u32>,
    /// Its availability zone's name.
    pub az: Option<String>,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
}

/// Where an instance is in its power cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    /// Booting.
    Pending,
    /// Up.
    Running,
    /// Going down for a stop.
    Stopping,
    /// Stopped: its type can change.
    Stopped,
    /// Being terminated.
    ShuttingDown,
    /// Gone.
    Terminated,
}

/// The database host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstance {
    /// EC2 instance type.
    pub instance_type: Option<String>,
    /// Its availability zone's name.
    pub az: Option<String>,
    /// Its power state.
    pub power: Power,
}

/// A target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// Its name in ELBv2 (at most 32 characters).
    pub name: String,
    /// Its port.
    pub port: Option<u16>,
}

/// The load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// Its name in ELBv2 (at most 32 characters).
    pub name: String,
    /// Its public DNS name.
    pub dns_name: Option<String>,
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Its port.
    pub port: Option<u16>,
    /// `HTTP` or `HTTPS`.
    pub protocol: Option<String>,
    /// Its default certificate.
    pub certificate_arn: Option<String>,
}

/// What a look at the cloud saw of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// A VPC.
    Vpc(Vpc),
    /// A subnet.
    Subnet(Subnet),
    /// An internet gateway.
    InternetGateway(InternetGateway),
    /// An Elastic IP.
    ElasticIp(ElasticIp),
    /// A NAT gateway.
    NatGateway(NatGateway),
    /// A route table.
    RouteTable(RouteTable),
    /// A security group.
    SecurityGroup(SecurityGroup),
    /// The EKS cluster.
    Cluster(Cluster),
    /// A node group.
    NodeGroup(NodeGroup),
    /// The data volume.
    Volume(Volume),
    /// The database host.
    DbInstance(DbInstance),
    /// A target group.
    TargetGroup(TargetGroup),
    /// The load balancer.
    LoadBalancer(LoadBalancer),
    /// A listener.
    Listener(Listener),
}

impl Observed {
    /// The kind of resource seen.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Observed::Vpc(_) => ResourceKind::Vpc,
            Observed::Subnet(_) => ResourceKind::Subnet,
            Observed::InternetGateway(_) => ResourceKind::InternetGateway,
            Observed::ElasticIp(_) => ResourceKind::ElasticIp,
            Observed::NatGateway(_) => ResourceKind::NatGateway,
            Observed::RouteTable(_) => ResourceKind::RouteTable,
            Observed::SecurityGroup(_) => ResourceKind::SecurityGroup,
            Observed::Cluster(_) => ResourceKind::Cluster,
            Observed::NodeGroup(_) => ResourceKind::NodeGroup,
            Observed::Volume(_) => ResourceKind::Volume,
            Observed::DbInstance(_) => ResourceKind::DbInstance,
            Observed::TargetGroup(_) => ResourceKind::TargetGroup,
            Observed::LoadBalancer(_) => ResourceKind::LoadBalancer,
            Observed::Listener(_) => ResourceKind::Listener,
        }
    }

    /// The attributes as JSON (the kind under `kind`), for display and tests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// What a faithful cloud reports of a resource just made as `desired` asks (the
    /// simulator's view of a create): the chosen attributes as given, references as named.
    pub fn as_created(desired: &Desired, elbv2_name: impl FnOnce() -> String) -> Self {
        match desired {
            Desired::Vpc(v) => Observed::Vpc(Vpc {
                cidr: Some(v.cidr.clone()),
            }),
            Desired::Subnet(s) => Observed::Subnet(Subnet {
                cidr: Some(s.cidr.clone()),
                az: Some(format!("az-{}", s.az_index + 1)),
            }),
            Desired::InternetGateway {} => {
                Observed::InternetGateway(InternetGateway { vpc_id: None })
            }
            Desired::ElasticIp {} => Observed::ElasticIp(ElasticIp { public_ip: None }),
            Desired::NatGateway(n) => Observed::NatGateway(NatGateway {
                subnet_id: Some(n.subnet.clone()),
            }),
            Desired::RouteTable(t) => Observed::RouteTable(RouteTable {
                associations: Vec::new(),
                subnet_ids: Vec::new(),
                subnets: t.subnets.clone(),
            }),
            Desired::SecurityGroup(g) => Observed::SecurityGroup(SecurityGroup {
                ingress: g.ingress.clone(),
            }),
            Desired::Cluster(c) => Observed::Cluster(Cluster {
                version: Some(c.version.clone()),
            }),
            Desired::NodeGroup(g) => Observed::NodeGroup(NodeGroup {
                cluster: g.cluster.clone(),
                instance_type: Some(g.instance_type.clone()),
                min: Some(g.min),
                desired: Some(g.desired),
                max: Some(g.max),
                version: Some(g.version.clone()),
            }),
            Desired::Volume(v) => Observed::Volume(Volume {
                size_gb: Some(v.size_gb),
                iops: Some(v.iops),
                throughput_mibps: Some(v.throughput_mibps),
                az: Some(format!("az-{}", v.az_index + 1)),
                attached_to: None,
            }),
            Desired::DbInstance(d) => Observed::DbInstance(DbInstance {
                instance_type: Some(d.instance_type.clone()),
                az: None,
                power: Power::Running,
            }),
            Desired::TargetGroup(t) => Observed::TargetGroup(TargetGroup {
                name: elbv2_name(),
                port: Some(t.port),
            }),
            Desired::LoadBalancer(_) => {
                let name = elbv2_name();
                Observed::LoadBalancer(LoadBalancer {
                    dns_name: Some(format!("{name}.elb.localhost")),
                    name,
                })
            }
            Desired::Listener(l) => Observed::Listener(Listener {
                port: Some(l.port),
                protocol: Some(l.protocol().to_owned()),
                certificate_arn: l.certificate_arn.clone(),
            }),
        }
    }
}
