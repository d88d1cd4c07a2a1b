//! The cloud port on EC2, EKS and ELBv2. Every resource carries the tags `envplane:environment`,
//! `envplane:operation` and `Name`; ensure finds what exists by those tags (or by its
//! deterministic name, for EKS and ELBv2) before it creates anything, and passes client tokens
//! where the API takes one, so a retried step never creates twice. One module per service and
//! kind holds that kind's discover, create, delete and modify; this one dispatches.

mod clients;
mod ec2;
mod eks;
pub(crate) mod elbv2;
pub(crate) mod support;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use envplane_cloud::{
    Cloud, CloudError, Image, Modification, Resource, ResourceState, Snapshot, SnapshotState,
};
use envplane_domain::resources::{Desired, Planned, ResourceKind};
use envplane_domain::{EnvName, names};
use tokio::sync::OnceCell;

pub use clients::{ClientPool, Clients, Target};

/// What the adapter needs beyond the spec: the stack it acts for, IAM roles and the database
/// host's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The stack's id: every resource carries it as `envplane:stack`, and nothing without it
    /// is ever changed or deleted.
    pub stack: String,
    /// Role the EKS control plane assumes.
    pub cluster_role_arn: String,
    /// Role of the node groups' instances.
    pub node_role_arn: String,
    /// AMI of the database host (an Amazon Linux 2023 image).
    pub db_image_id: String,
    /// The stack's backup bucket, where the hosts archive their WAL (`ENVPLANE_BACKUP_BUCKET`);
    /// without it the hosts archive nothing beyond their snapshots.
    pub backup_bucket: Option<String>,
    /// The instance profile the database hosts run with (`DB_INSTANCE_PROFILE`): what SSM Run
    /// Command and the WAL repository need.
    pub db_instance_profile: Option<String>,
}

impl AwsSettings {
    /// Reads `ENVPLANE_STACK`, `ENVPLANE_CLUSTER_ROLE_ARN`, `ENVPLANE_NODE_ROLE_ARN` and
    /// `ENVPLANE_DB_IMAGE_ID`; `stack` stands in for an unset `ENVPLANE_STACK` where one is
    /// given (a local plane), and its absence is an error otherwise.
    pub fn from_env(stack: Option<&str>) -> Result<Self, String> {
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} is not set"))
        };
        Ok(Self {
            stack: get("ENVPLANE_STACK").or_else(|e| stack.map(str::to_owned).ok_or(e))?,
            cluster_role_arn: get("ENVPLANE_CLUSTER_ROLE_ARN")?,
            node_role_arn: get("ENVPLANE_NODE_ROLE_ARN")?,
            db_image_id: get("ENVPLANE_DB_IMAGE_ID")?,
            backup_bucket: get("ENVPLANE_BACKUP_BUCKET").ok(),
            db_instance_profile: get("DB_INSTANCE_PROFILE").ok(),
        })
    }
}

/// The cloud port on AWS.
pub struct AwsCloud {
    clients: ClientPool,
    settings: AwsSettings,
    zones: OnceCell<Vec<String>>,
}

/// What a create needs besides the resource's spec: the environment, the operation, the
/// resource's name and what exists so far by name (for the ids of what it refers to).
pub(crate) struct Creating<'a> {
    pub(crate) owner: support::Owner<'a>,
    pub(crate) operation: &'a str,
    pub(crate) name: &'a str,
    pub(crate) known: &'a HashMap<String, Resource>,
}

impl Creating<'_> {
    /// The id of a resource it refers to by name.
    pub(crate) fn id_of(&self, name: &str) -> Result<&str, CloudError> {
        self.known
            .get(name)
            .map(|r| r.id.as_str())
            .ok_or_else(|| CloudError::Transient(format!("{name} is not visible yet")))
    }

    /// The id of the environment's VPC.
    pub(crate) fn vpc_id(&self) -> Result<&str, CloudError> {
        self.id_of(&names::vpc(self.owner.env))
    }
}

impl AwsCloud {
    /// The adapter over the clients of the stack's home account and region.
    pub fn new(clients: Clients, settings: AwsSettings) -> Self {
        Self {
            clients: ClientPool::new(clients),
            settings,
            zones: OnceCell::new(),
        }
    }

    /// The name of the region's `index`th availability zone, in name order.
    async fn zone(&self, index: u8) -> Result<String, CloudError> {
        let ec2 = &self.clients.home().ec2;
        let zones = self
            .zones
            .get_or_try_init(|| async {
                let output = support::sent(
                    "DescribeAvailabilityZones",
                    ec2.describe_availability_zones().send().await,
                )?;
                let mut names: Vec<String> = output
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.zone_name().map(str::to_owned))
                    .collect();
                names.sort();
                Ok::<_, CloudError>(names)
            })
            .await?;
        zones.get(usize::from(index)).cloned().ok_or_else(|| {
            CloudError::Invalid(format!(
                "the region has no availability zone #{}",
                index + 1
            ))
        })
    }

    /// Whose resources this adapter sees for `env`.
    fn owner<'a>(&'a self, env: &'a EnvName) -> support::Owner<'a> {
        support::Owner {
            env,
            stack: &self.settings.stack,
        }
    }

    /// Refuses to change or delete a resource that is not this stack's.
    fn check_owned(&self, r: &Resource) -> Result<(), CloudError> {
        envplane_cloud::check_owned(
            &r.tags,
            &self.settings.stack,
            &format!("{} ({})", r.name, r.id),
        )
    }

    /// Every resource of the given kinds carrying the environment's and the stack's tags: one
    /// describe per kind (following its pages when AWS splits the answer; an environment fits
    /// in one).
    async fn discover(
        &self,
        env: &EnvName,
        kinds: &BTreeSet<ResourceKind>,
    ) -> Result<Vec<Resource>, CloudError> {
        let c = self.clients.home();
        let owner = self.owner(env);
        let env = &owner;
        let mut out = Vec::new();
        for kind in kinds {
            out.extend(match kind {
                ResourceKind::Vpc => ec2::vpc::discover(&c.ec2, env).await?,
                ResourceKind::Subnet => ec2::subnet::discover(&c.ec2, env).await?,
                ResourceKind::InternetGateway => {
                    ec2::gateways::discover_internet(&c.ec2, env).await?
                }
                ResourceKind::ElasticIp => ec2::gateways::discover_addresses(&c.ec2, env).await?,
                ResourceKind::NatGateway => ec2::gateways::discover_nat(&c.ec2, env).await?,
                ResourceKind::RouteTable => ec2::route_table::discover(&c.ec2, env).await?,
                ResourceKind::SecurityGroup => ec2::security_group::discover(&c.ec2, env).await?,
                ResourceKind::Volume => ec2::volume::discover(&c.ec2, env).await?,
                ResourceKind::DbInstance => ec2::instance::discover(&c.ec2, env).await?,
                ResourceKind::Cluster => eks::discover_cluster(&c.eks, env).await?,
                ResourceKind::NodeGroup => eks::discover_node_groups(&c.eks, env).await?,
                // All three in one pass below.
                ResourceKind::TargetGroup | ResourceKind::LoadBalancer | ResourceKind::Listener => {
                    Vec::new()
                }
            });
        }
        let elbv2_kinds: BTreeSet<ResourceKind> = kinds
            .iter()
            .copied()
            .filter(|k| {
                matches!(
                    k,
                    ResourceKind::TargetGroup | ResourceKind::LoadBalancer | ResourceKind::Listener
                )
            })
            .collect();
        if !elbv2_kinds.is_empty() {
            out.extend(elbv2::discover(&c.elb, env, &elbv2_kinds).await?);
        }
        // AWS applies the tag filters; some emulators ignore them (moto, for NAT gateways), and
        // EKS and ELBv2 are asked by name: whatever lacks either tag is not ours.
        out.retain(|r| owner.owns(&r.tags));
        if kinds.contains(&ResourceKind::Subnet) {
            ec2::route_table::name_served_subnets(&mut out);
        }
        Ok(out)
    }

    /// Creates one planned resource whose dependencies exist (`known` maps names to them).
    async fn create(
        &self,
        env: &EnvName,
        operation: &str,
        p: &Planned,
        known: &HashMap<String, Resource>,
    ) -> Result<(), CloudError> {
        let c = self.clients.home();
        let cx = Creating {
            owner: self.owner(env),
            operation,
            name: &p.name,
            known,
        };
        match &p.desired {
            Desired::Vpc(spec) => ec2::vpc::create(&c.ec2, &cx, spec).await,
            Desired::Subnet(spec) => {
                let zone = self.zone(spec.az_index).await?;
                ec2::subnet::create(&c.ec2, &cx, spec, zone).await
            }
            Desired::InternetGateway {} => ec2::gateways::create_internet(&c.ec2, &cx).await,
            Desired::ElasticIp {} => ec2::gateways::create_address(&c.ec2, &cx).await,
            Desired::NatGateway(spec) => ec2::gateways::create_nat(&c.ec2, &cx, spec).await,
            Desired::RouteTable(spec) => ec2::route_table::create(&c.ec2, &cx, spec).await,
            Desired::SecurityGroup(spec) => ec2::security_group::create(&c.ec2, &cx, spec).await,
            Desired::Volume(spec) => {
                let zone = self.zone(spec.az_index).await?;
                ec2::volume::create(&c.ec2, &cx, spec, zone).await
            }
            Desired::DbInstance(spec) => {
                ec2::instance::create(&c.ec2, &cx, spec, &self.settings).await
            }
            Desired::Cluster(spec) => {
                eks::create_cluster(&c.eks, &cx, spec, &self.settings.cluster_role_arn).await
            }
            Desired::NodeGroup(spec) => {
                eks::create_node_group(&c.eks, &cx, spec, &self.settings.node_role_arn).await
            }
            Desired::TargetGroup(spec) => elbv2::target_group::create(&c.elb, &cx, spec).await,
            Desired::LoadBalancer(spec) => elbv2::load_balancer::create(&c.elb, &cx, spec).await,
            Desired::Listener(spec) => elbv2::listener::create(&c.elb, &cx, spec).await,
        }
    }

    /// The environment's security groups' ids by name.
    async fn group_ids(&self, env: &EnvName) -> Result<HashMap<String, String>, CloudError> {
        Ok(self
            .discover(env, &BTreeSet::from([ResourceKind::SecurityGroup]))
            .await?
            .into_iter()
            .map(|r| (r.name, r.id))
            .collect())
    }
}

/// The kinds one `ensure` of `planned` must look at: the planned ones and those of their
/// dependencies (by name), plus the VPC whose id most creates need.
fn dependency_kinds(planned: &[Planned], env: &EnvName) -> BTreeSet<ResourceKind> {
    let mut kinds: BTreeSet<ResourceKind> = planned.iter().map(Planned::kind).collect();
    kinds.extend(
        planned
            .iter()
            .flat_map(|p| p.depends_on.iter())
            .filter_map(|name| names::kind_of(env, name)),
    );
    kinds.insert(ResourceKind::Vpc);
    // Route tables need the ids of the subnets they serve, node groups the private subnets.
    if kinds.contains(&ResourceKind::RouteTable) || kinds.contains(&ResourceKind::NodeGroup) {
        kinds.insert(ResourceKind::Subnet);
    }
    // The host is ready only with its volume attached: both are looked at together.
    if kinds.contains(&ResourceKind::DbInstance) || kinds.contains(&ResourceKind::Volume) {
        kinds.extend([ResourceKind::DbInstance, ResourceKind::Volume]);
    }
    kinds
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        planned: &[Planned],
    ) -> Result<Vec<Resource>, CloudError> {
        let kinds = dependency_kinds(planned, env);
        // A few passes: what depends on a resource created in this call (a subnet on its VPC)
        // can often be created in the same call, since many EC2 resources are usable at once.
        let mut known: HashMap<String, Resource> = HashMap::new();
        for _ in 0..6 {
            known = self
                .discover(env, &kinds)
                .await?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect();
            let mut created = false;
            for p in planned {
                if known.contains_key(&p.name) {
                    continue;
                }
                let ready = p.depends_on.iter().all(|d| {
                    known
                        .get(d)
                        .is_some_and(|r| r.state == ResourceState::Active)
                });
                if ready {
                    self.create(env, operation, p, &known).await?;
                    created = true;
                }
            }
            if !created {
                break;
            }
        }
        let attached = ec2::volume::attach_to_host(&self.clients.home().ec2, env, &known).await?;
        Ok(planned
            .iter()
            .filter_map(|p| known.get(&p.name).cloned())
            .map(|mut r| {
                // The database host is ready only with its data volume attached.
                if r.kind() == ResourceKind::DbInstance
                    && r.state == ResourceState::Active
                    && !attached
                {
                    r.state = ResourceState::Creating;
                }
                r
            })
            .collect())
    }

    async fn list(&self, env: &EnvName) -> Result<Vec<Resource>, CloudError> {
        self.discover(env, &ResourceKind::TEARDOWN.into_iter().collect())
            .await
    }

    async fn delete(&self, r: &Resource) -> Result<(), CloudError> {
        self.check_owned(r)?;
        let c = self.clients.home();
        match r.kind() {
            ResourceKind::TargetGroup => elbv2::target_group::delete(&c.elb, r).await,
            ResourceKind::LoadBalancer => elbv2::load_balancer::delete(&c.elb, r).await,
            ResourceKind::Listener => elbv2::listener::delete(&c.elb, r).await,
            ResourceKind::NodeGroup => eks::delete_node_group(&c.eks, r).await,
            ResourceKind::Cluster => eks::delete_cluster(&c.eks, r).await,
            ResourceKind::DbInstance => ec2::instance::delete(&c.ec2, r).await,
            ResourceKind::Volume => ec2::volume::delete(&c.ec2, r).await,
            ResourceKind::NatGateway => ec2::gateways::delete_nat(&c.ec2, r).await,
            ResourceKind::ElasticIp => ec2::gateways::delete_address(&c.ec2, r).await,
            ResourceKind::RouteTable => ec2::route_table::delete(&c.ec2, r).await,
            ResourceKind::InternetGateway => ec2::gateways::delete_internet(&c.ec2, r).await,
            ResourceKind::Subnet => ec2::subnet::delete(&c.ec2, r).await,
            ResourceKind::SecurityGroup => ec2::security_group::delete(&c.ec2, r).await,
            ResourceKind::Vpc => ec2::vpc::delete(&c.ec2, r).await,
        }
    }

    async fn modify(
        &self,
        env: &EnvName,
        r: &Resource,
        change: &Modification,
    ) -> Result<(), CloudError> {
        self.check_owned(r)?;
        let c = self.clients.home();
        match (r.kind(), change) {
            (ResourceKind::Cluster | ResourceKind::NodeGroup, _) => {
                eks::modify(&c.eks, r, change).await
            }
            (ResourceKind::Volume, _) => ec2::volume::modify(&c.ec2, r, change).await,
            (ResourceKind::DbInstance, _) => ec2::instance::modify(&c.ec2, r, change).await,
            (
                ResourceKind::SecurityGroup,
                Modification::AuthorizeIngress { rules } | Modification::RevokeIngress { rules },
            ) => {
                let by_name = if rules
                    .iter()
                    .any(|r| matches!(r.source, envplane_domain::resources::RuleSource::Group(_)))
                {
                    self.group_ids(env).await?
                } else {
                    HashMap::new()
                };
                let ids = by_name
                    .iter()
                    .map(|(n, id)| (n.as_str(), id.as_str()))
                    .collect();
                let authorize = matches!(change, Modification::AuthorizeIngress { .. });
                ec2::security_group::change_rules(&c.ec2, r, rules, &ids, authorize).await
            }
            (ResourceKind::RouteTable, Modification::AssociateSubnets { subnets }) => {
                let ids: HashMap<String, String> = self
                    .discover(env, &BTreeSet::from([ResourceKind::Subnet]))
                    .await?
                    .into_iter()
                    .map(|s| (s.name, s.id))
                    .collect();
                for name in subnets {
                    let subnet = ids.get(name).ok_or_else(|| {
                        CloudError::Conflict(format!("subnet {name} does not exist yet"))
                    })?;
                    ec2::route_table::associate(&c.ec2, &r.id, subnet).await?;
                }
                Ok(())
            }
            (kind, change) => Err(CloudError::Invalid(format!(
                "{change:?} does not apply to a {}",
                kind.as_str()
            ))),
        }
    }

    async fn snapshot(
        &self,
        env: &EnvName,
        operation: &str,
        volume: &Resource,
    ) -> Result<SnapshotState, CloudError> {
        self.check_owned(volume)?;
        ec2::volume::snapshot(
            &self.clients.home().ec2,
            &self.owner(env),
            operation,
            volume,
        )
        .await
    }

    async fn snapshots(&self, env: &EnvName) -> Result<Vec<Snapshot>, CloudError> {
        ec2::volume::snapshots(&self.clients.home().ec2, &self.owner(env)).await
    }

    async fn delete_snapshot(&self, snapshot: &Snapshot) -> Result<(), CloudError> {
        envplane_cloud::check_owned(&snapshot.tags, &self.settings.stack, &snapshot.id)?;
        ec2::volume::delete_snapshot(&self.clients.home().ec2, snapshot).await
    }

    async fn image(&self, env: &EnvName, label: &str, host: &Resource) -> Result<(), CloudError> {
        self.check_owned(host)?;
        ec2::image::create(&self.clients.home().ec2, &self.owner(env), label, host).await
    }

    async fn images(&self, env: &EnvName) -> Result<Vec<Image>, CloudError> {
        ec2::image::list(&self.clients.home().ec2, &self.owner(env)).await
    }

    async fn delete_image(&self, image: &Image) -> Result<(), CloudError> {
        envplane_cloud::check_owned(&image.tags, &self.settings.stack, &image.id)?;
        ec2::image::delete(&self.clients.home().ec2, image).await
    }
}
