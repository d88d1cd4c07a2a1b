//! How envplane names the resources of an environment: the only place that knows the
//! convention (`{env}-eks`, `{env}-frontend`, `{env}-rt-private-2`…) and how a name maps back
//! to its kind. Names are unique within an account and region because environment names are.

use serde::{Deserialize, Serialize};

use crate::name::EnvName;
use crate::resources::ResourceKind;

/// An application service of an environment: it has a node group, a target group and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// The web frontend, port 3001.
    Frontend,
    /// The API backend, port 3000.
    Backend,
}

impl Service {
    /// Every service, in the order resources are listed.
    pub const ALL: [Service; 2] = [Service::Frontend, Service::Backend];

    /// The service's name as it appears in resource names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Frontend => "frontend",
            Service::Backend => "backend",
        }
    }

    /// The port its containers listen on (the seeds' app ports).
    pub fn port(self) -> u16 {
        match self {
            Service::Frontend => 3001,
            Service::Backend => 3000,
        }
    }
}

/// One of a service's two fixed places to run a version: each has its own target group (and,
/// on the cluster, its own Deployment); a deployment runs the new version on the track that
/// does not serve, and the listener's weights choose between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// The first (its target group keeps the service's plain name).
    Blue,
    /// The second.
    Green,
}

impl Track {
    /// Both tracks.
    pub const ALL: [Track; 2] = [Track::Blue, Track::Green];

    /// `blue` or `green`, as named in Kubernetes objects and target groups.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Blue => "blue",
            Track::Green => "green",
        }
    }

    /// The other track.
    pub fn other(self) -> Track {
        match self {
            Track::Blue => Track::Green,
            Track::Green => Track::Blue,
        }
    }
}

/// The three security groups of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// The load balancer's: 80 and 443 from anywhere.
    Alb,
    /// The EKS cluster's.
    Cluster,
    /// The database host's: 5432 from the cluster only.
    Db,
}

impl GroupRole {
    fn as_str(self) -> &'static str {
        match self {
            GroupRole::Alb => "alb",
            GroupRole::Cluster => "cluster",
            GroupRole::Db => "db",
        }
    }
}

/// The VPC.
pub fn vpc(env: &EnvName) -> String {
    format!("{env}-vpc")
}

/// The `index`th (1-based) public or private subnet.
pub fn subnet(env: &EnvName, public: bool, index: u8) -> String {
    let side = if public { "public" } else { "private" };
    format!("{env}-{side}-{index}")
}

/// The internet gateway.
pub fn internet_gateway(env: &EnvName) -> String {
    format!("{env}-igw")
}

/// The Elastic IP of the `index`th (1-based) NAT gateway.
pub fn elastic_ip(env: &EnvName, index: u32) -> String {
    format!("{env}-eip-{index}")
}

/// The `index`th (1-based) NAT gateway.
pub fn nat_gateway(env: &EnvName, index: u32) -> String {
    format!("{env}-nat-{index}")
}

/// The route table of the public subnets.
pub fn public_route_table(env: &EnvName) -> String {
    format!("{env}-rt-public")
}

/// The route table of the `index`th (1-based) private subnet.
pub fn private_route_table(env: &EnvName, index: u8) -> String {
    format!("{env}-rt-private-{index}")
}

/// A security group.
pub fn security_group(env: &EnvName, role: GroupRole) -> String {
    format!("{env}-sg-{}", role.as_str())
}

/// The EKS cluster (also its AWS name).
pub fn cluster(env: &EnvName) -> String {
    format!("{env}-eks")
}

/// A service's EKS node group (also its AWS name).
pub fn node_group(env: &EnvName, service: Service) -> String {
    format!("{env}-{}", service.as_str())
}

/// The database host's gp3 data volume.
pub fn data_volume(env: &EnvName) -> String {
    format!("{env}-db-data")
}

/// The database host.
pub fn database_host(env: &EnvName) -> String {
    format!("{env}-db")
}

/// A service's (blue track's) target group, as envplane names it (see
/// [`target_group_aws_name`]).
pub fn target_group(env: &EnvName, service: Service) -> String {
    format!("{env}-tg-{}", service.as_str())
}

/// The target group of a service's track: the blue one keeps the plain name (environments
/// made before tracks existed have it), the green one is `{env}-tg-{service}-green`.
pub fn track_target_group(env: &EnvName, service: Service, track: Track) -> String {
    match track {
        Track::Blue => target_group(env, service),
        Track::Green => format!("{env}-tg-{}-green", service.as_str()),
    }
}

/// The environment's application load balancer (its ELBv2 name through
/// [`target_group_aws_name`], which fits any ELBv2 name to 32 characters).
pub fn load_balancer(env: &EnvName) -> String {
    format!("{env}-alb")
}

/// The load balancer's listener on `port` (80, or 443 with a certificate): its `Name` tag.
pub fn listener(env: &EnvName, port: u16) -> String {
    format!("{env}-listener-{port}")
}

/// The snapshot an operation takes of a volume before it changes the host.
pub fn pre_change_snapshot(volume: &str, operation: &str) -> String {
    format!("{volume}-pre-{operation}")
}

/// FNV-1a, 64 bits: a short, stable digest for names and tags (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// ELBv2 target group names are at most 32 characters: longer ones keep a prefix and a hash
/// (FNV-1a), so the name stays deterministic and distinct per service.
pub fn target_group_aws_name(name: &str) -> String {
    if name.len() <= 32 {
        return name.to_owned();
    }
    let hash = fnv1a(name.as_bytes());
    // `name` is ASCII (environment names and suffixes are), so byte 23 is a char boundary.
    let prefix: String = name.chars().take(23).collect();
    format!("{prefix}-{:08x}", hash as u32)
}

/// The kind of the resource `name` names in `env`, if it follows the convention.
pub fn kind_of(env: &EnvName, name: &str) -> Option<ResourceKind> {
    let suffix = name.strip_prefix(env.as_str())?.strip_prefix('-')?;
    let numbered = |prefix: &str| {
        suffix
            .strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    Some(match suffix {
        "vpc" => ResourceKind::Vpc,
        "igw" => ResourceKind::InternetGateway,
        "eks" => ResourceKind::Cluster,
        "db" => ResourceKind::DbInstance,
        "db-data" => ResourceKind::Volume,
        "rt-public" => ResourceKind::RouteTable,
        "sg-alb" | "sg-cluster" | "sg-db" => ResourceKind::SecurityGroup,
        "frontend" | "backend" => ResourceKind::NodeGroup,
        "tg-frontend" | "tg-backend" | "tg-frontend-green" | "tg-backend-green" => {
            ResourceKind::TargetGroup
        }
        "alb" => ResourceKind::LoadBalancer,
        _ if numbered("listener-") => ResourceKind::Listener,
        _ if numbered("public-") || numbered("private-") => ResourceKind::Subnet,
        _ if numbered("eip-") => ResourceKind::ElasticIp,
        _ if numbered("nat-") => ResourceKind::NatGateway,
        _ if numbered("rt-private-") => ResourceKind::RouteTable,
        _ => return None,
    })
}

/// Whether `name` is one of `env`'s private subnets.
pub fn is_private_subnet(env: &EnvName, name: &str) -> bool {
    name.strip_prefix(env.as_str())
        .and_then(|s| s.strip_prefix("-private-"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> EnvName {
        EnvName::parse("dev").expect("valid")
    }

    #[test]
    fn every_name_maps_back_to_its_kind() {
        let env = dev();
        let cases = [
            (vpc(&env), ResourceKind::Vpc),
            (subnet(&env, true, 1), ResourceKind::Subnet),
            (subnet(&env, false, 3), ResourceKind::Subnet),
            (internet_gateway(&env), ResourceKind::InternetGateway),
            (elastic_ip(&env, 2), ResourceKind::ElasticIp),
            (nat_gateway(&env, 1), ResourceKind::NatGateway),
            (public_route_table(&env), ResourceKind::RouteTable),
            (private_route_table(&env, 2), ResourceKind::RouteTable),
            (
                security_group(&env, GroupRole::Db),
                ResourceKind::SecurityGroup,
            ),
            (cluster(&env), ResourceKind::Cluster),
            (node_group(&env, Service::Backend), ResourceKind::NodeGroup),
            (data_volume(&env), ResourceKind::Volume),
            (database_host(&env), ResourceKind::DbInstance),
            (
                target_group(&env, Service::Frontend),
                ResourceKind::TargetGroup,
            ),
        ];
        for (name, kind) in cases {
            assert_eq!(kind_of(&env, &name), Some(kind), "{name}");
        }
        assert_eq!(kind_of(&env, "dev-public-"), None);
        assert_eq!(kind_of(&env, "qa-vpc"), None);
        assert_eq!(kind_of(&env, "devx-vpc"), None);
        assert!(is_private_subnet(&env, "dev-private-2"));
        assert!(!is_private_subnet(&env, "dev-public-2"));
    }

    #[test]
    fn target_group_names_fit_elbv2() {
        assert_eq!(target_group_aws_name("dev-tg-frontend"), "dev-tg-frontend");
        let long = target_group_aws_name(&format!("{}-tg-frontend", "a".repeat(40)));
        assert_eq!(long.len(), 32);
        assert_ne!(
            long,
            target_group_aws_name(&format!("{}-tg-backend", "a".repeat(40)))
        );
    }
}
