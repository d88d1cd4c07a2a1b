//! What the plan wants of each kind of resource. References to other resources are by
//! envplane name (see [`crate::names`]); the adapters look their ids up when they create.
//! Serialised (for plan diffs and drift figures) in the attribute shapes the API has always
//! shown: `{"cidr": …}`, `{"min": 2, "desired": 2, "max": 4, …}`.

use serde::{Deserialize, Serialize};

use crate::names::{Service, Track};
use crate::resources::ResourceKind;

/// Where an ingress rule lets traffic in from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuleSource {
    /// A CIDR block.
    #[serde(rename = "from")]
    Cidr(String),
    /// Another security group of the environment, by envplane name (or its id when it is not
    /// one of the environment's).
    #[serde(rename = "from_group")]
    Group(String),
}

/// One TCP ingress rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressRule {
    /// The port (0 stands for a rule over all ports, which envplane never writes).
    pub port: u16,
    /// Where from.
    #[serde(flatten)]
    pub source: RuleSource,
}

impl IngressRule {
    /// Traffic to `port` from a CIDR block.
    pub fn from_cidr(port: u16, cidr: impl Into<String>) -> Self {
        Self {
            port,
            source: RuleSource::Cidr(cidr.into()),
        }
    }

    /// Traffic to `port` from a security group.
    pub fn from_group(port: u16, group: impl Into<String>) -> Self {
        Self {
            port,
            source: RuleSource::Group(group.into()),
        }
    }
}

/// The VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// Its /16 block.
    pub cidr: String,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Its /24 block.
    pub cidr: String,
    /// Which availability zone of the region, in name order.
    pub az_index: u8,
    /// Public (instances get public addresses) or private.
    pub public: bool,
}

/// A NAT gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    /// The public subnet it sits in.
    pub subnet: String,
    /// Its Elastic IP.
    pub eip: String,
}

/// A route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// Where `0.0.0.0/0` goes: the internet gateway or a NAT gateway.
    pub default_route: String,
    /// The subnets it serves.
    pub subnets: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Its ingress rules.
    pub ingress: Vec<IngressRule>,
}

/// The EKS cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Kubernetes version, `1.31`.
    pub version: String,
    /// The private subnets its control plane uses.
    pub subnets: Vec<String>,
    /// Its security group.
    pub security_group: String,
}

/// An EKS managed node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroup {
    /// Its cluster.
    pub cluster: String,
    /// The service its nodes run.
    pub role: Service,
    /// EC2 instance type.
    pub instance_type: String,
    /// Fewest nodes.
    pub min: u32,
    /// Nodes wanted.
    pub desired: u32,
    /// Most nodes.
    pub max: u32,
    /// Kubernetes version.
    pub version: String,
}

/// The database host's gp3 data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// GiB.
    pub size_gb: u32,
    /// IOPS.
    pub iops: u32,
    /// MiB/s.
    pub throughput_mibps: u32,
    /// Its availability zone, as a subnet's.
    pub az_index: u8,
    /// Whether the daily backup takes it (`Backup=true`).
    pub backup: bool,
}

/// The database host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstance {
    /// EC2 instance type.
    pub instance_type: String,
    /// PostgreSQL major version.
    pub engine_version: String,
    /// Extensions created at first boot.
    pub extensions: Vec<String>,
    /// Its subnet.
    pub subnet: String,
    /// Its security group.
    pub security_group: String,
    /// Its data volume.
    pub volume: String,
}

/// A target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// The service's port.
    pub port: u16,
    /// Health check path.
    pub health_path: String,
    /// The service.
    pub role: Service,
    /// Its track.
    pub track: Track,
}

/// The application load balancer, internet-facing in the public subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// Its subnets (one per AZ).
    pub subnets: Vec<String>,
    /// Its security group.
    pub security_group: String,
}

/// A service's two target groups, by track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackPair {
    /// The blue track's target group.
    pub blue: String,
    /// The green track's target group.
    pub green: String,
}

/// Where a listener's requests go: the frontend by default, the backend for
/// [`Listener::BACKEND_PATH`]; each a weighted forward between the service's two tracks, all on
/// blue when created (a deployment changes the weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The load balancer.
    pub load_balancer: String,
    /// 80 (HTTP) or 443 (HTTPS).
    pub port: u16,
    /// The HTTPS listener's ACM certificate.
    pub certificate_arn: Option<String>,
    /// The frontend's target groups (the default action).
    pub frontend: TrackPair,
    /// The backend's target groups (a rule on [`Listener::BACKEND_PATH`]).
    pub backend: TrackPair,
}

impl Listener {
    /// Requests for the backend.
    pub const BACKEND_PATH: &str = "/api/*";

    /// `HTTPS` with a certificate, else `HTTP`.
    pub fn protocol(&self) -> &'static str {
        if self.certificate_arn.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        }
    }
}

/// What the plan wants of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Desired {
    /// A VPC.
    Vpc(Vpc),
    /// A subnet.
    Subnet(Subnet),
    /// An internet gateway (nothing to choose).
    InternetGateway {},
    /// An Elastic IP (nothing to choose).
    ElasticIp {},
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

impl Desired {
    /// The kind of resource this describes.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Desired::Vpc(_) => ResourceKind::Vpc,
            Desired::Subnet(_) => ResourceKind::Subnet,
            Desired::InternetGateway {} => ResourceKind::InternetGateway,
            Desired::ElasticIp {} => ResourceKind::ElasticIp,
            Desired::NatGateway(_) => ResourceKind::NatGateway,
            Desired::RouteTable(_) => ResourceKind::RouteTable,
            Desired::SecurityGroup(_) => ResourceKind::SecurityGroup,
            Desired::Cluster(_) => ResourceKind::Cluster,
            Desired::NodeGroup(_) => ResourceKind::NodeGroup,
            Desired::Volume(_) => ResourceKind::Volume,
            Desired::DbInstance(_) => ResourceKind::DbInstance,
            Desired::TargetGroup(_) => ResourceKind::TargetGroup,
            Desired::LoadBalancer(_) => ResourceKind::LoadBalancer,
            Desired::Listener(_) => ResourceKind::Listener,
        }
    }

    /// The attributes as JSON, for plan diffs and the API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
