//! The cloud port on EC2, EKS and ELBv2. Every resource carries the tags `envplane:environment`,
//! `envplane:operation` and `Name`; ensure finds what exists by those tags (or by its
//! deterministic name, for EKS and ELBv2) before it creates anything, and passes client tokens
//! where the API takes one, so a retried step never creates twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, DomainType, Filter, InstanceStateName, InstanceType,
    IpPermission, IpRange, NatGatewayState, ResourceType, SnapshotState as Ec2SnapshotState, Tag,
    TagSpecification, UserIdGroupPair, VolumeState, VolumeType,
};
use aws_sdk_eks::types::{
    ClusterStatus, NodegroupScalingConfig, NodegroupStatus, VpcConfigRequest,
};
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
use base64::Engine;
use envplane_cloud::{Cloud, CloudError, Modification, Resource, ResourceState, SnapshotState};
use envplane_domain::EnvName;
use envplane_domain::resources::{self, Planned, ResourceKind, tags};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::errors::{NOT_FOUND, cloud_error, code};

/// What the adapter needs beyond the spec: IAM roles and the database host's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Role the EKS control plane assumes.
    pub cluster_role_arn: String,
    /// Role of the node groups' instances.
    pub node_role_arn: String,
    /// AMI of the database host (an Amazon Linux 2023 image).
    pub db_image_id: String,
}

impl AwsSettings {
    /// Reads `ENVPLANE_CLUSTER_ROLE_ARN`, `ENVPLANE_NODE_ROLE_ARN` and `ENVPLANE_DB_IMAGE_ID`.
    pub fn from_env() -> Result<Self, String> {
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} is not set"))
        };
        Ok(Self {
            cluster_role_arn: get("ENVPLANE_CLUSTER_ROLE_ARN")?,
            node_role_arn: get("ENVPLANE_NODE_ROLE_ARN")?,
            db_image_id: get("ENVPLANE_DB_IMAGE_ID")?,
        })
    }
}

/// The cloud port on AWS.
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    eks: aws_sdk_eks::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    settings: AwsSettings,
    zones: OnceCell<Vec<String>>,
}

/// ELBv2 target group names are at most 32 characters: longer ones keep a prefix and a hash.
pub fn target_group_name(planned: &str) -> String {
    if planned.len() <= 32 {
        return planned.to_owned();
    }
    let hash = planned.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}-{:08x}", &planned[..23], hash as u32)
}

fn env_filter(env: &EnvName) -> Filter {
    Filter::builder()
        .name(format!("tag:{}", tags::ENVIRONMENT))
        .values(env.as_str())
        .build()
}

fn tag_spec(
    kind: ResourceType,
    env: &EnvName,
    operation: &str,
    planned: &Planned,
) -> TagSpecification {
    let mut builder = TagSpecification::builder()
        .resource_type(kind)
        .tags(
            Tag::builder()
                .key(tags::ENVIRONMENT)
                .value(env.as_str())
                .build(),
        )
        .tags(Tag::builder().key(tags::OPERATION).value(operation).build())
        .tags(Tag::builder().key("Name").value(&planned.name).build());
    if planned.attributes.get("backup").and_then(Value::as_bool) == Some(true) {
        builder = builder.tags(Tag::builder().key(tags::BACKUP).value("true").build());
    }
    if planned.kind == ResourceKind::Subnet {
        let role = if planned.attributes["public"].as_bool() == Some(true) {
            "kubernetes.io/role/elb"
        } else {
            "kubernetes.io/role/internal-elb"
        };
        builder = builder.tags(Tag::builder().key(role).value("1").build());
    }
    builder.build()
}

fn ec2_tags(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

fn resource(
    kind: ResourceKind,
    id: &str,
    tags: BTreeMap<String, String>,
    state: ResourceState,
    attributes: Value,
) -> Resource {
    let name = tags.get("Name").cloned().unwrap_or_else(|| id.to_owned());
    Resource {
        kind,
        id: id.to_owned(),
        name,
        state,
        attributes,
        tags,
        created_at: None,
    }
}

/// An SDK timestamp as the ports' time.
fn timestamp(t: Option<&aws_smithy_types::DateTime>) -> Option<time::OffsetDateTime> {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
}

/// A client token for a create call: the same for every retry of one step of one operation.
fn client_token(operation: &str, name: &str) -> String {
    let token = format!("{operation}-{name}");
    token.chars().take(64).collect()
}

impl AwsCloud {
    /// The adapter over SDK clients built from `config` (once, at start).
    pub fn new(config: &aws_config::SdkConfig, settings: AwsSettings) -> Self {
        Self::from_clients(
            aws_sdk_ec2::Client::new(config),
            aws_sdk_eks::Client::new(config),
            aws_sdk_elasticloadbalancingv2::Client::new(config),
            settings,
        )
    }

    /// The adapter over clients configured by the caller (interceptors, retry policy).
    pub fn from_clients(
        ec2: aws_sdk_ec2::Client,
        eks: aws_sdk_eks::Client,
        elb: aws_sdk_elasticloadbalancingv2::Client,
        settings: AwsSettings,
    ) -> Self {
        Self {
            ec2,
            eks,
            elb,
            settings,
            zones: OnceCell::new(),
        }
    }

    async fn zone(&self, index: u64) -> Result<String, CloudError> {
        let zones = self
            .zones
            .get_or_try_init(|| async {
                let output = self
                    .ec2
                    .describe_availability_zones()
                    .send()
                    .await
                    .map_err(|e| cloud_error("DescribeAvailabilityZones", e))?;
                let mut names: Vec<String> = output
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.zone_name().map(str::to_owned))
                    .collect();
                names.sort();
                Ok::<_, CloudError>(names)
            })
            .await?;
        zones
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .cloned()
            .ok_or_else(|| {
                CloudError::Invalid(format!(
                    "the region has no availability zone #{}",
                    index + 1
                ))
            })
    }

    /// Every resource of the given kinds carrying the environment's tag: one describe per kind
    /// (following its pages when AWS splits the answer; an environment fits in one).
    async fn discover(
        &self,
        env: &EnvName,
        kinds: &BTreeSet<ResourceKind>,
    ) -> Result<Vec<Resource>, CloudError> {
        let mut out = Vec::new();
        for kind in kinds {
            match kind {
                ResourceKind::Vpc => {
                    let pages = self
                        .ec2
                        .describe_vpcs()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeVpcs", e))?;
                    for v in pages.iter().flat_map(|o| o.vpcs()) {
                        let state = if v.state().is_some_and(|s| s.as_str() == "available") {
                            ResourceState::Active
                        } else {
                            ResourceState::Creating
                        };
                        out.push(resource(
                            *kind,
                            v.vpc_id().unwrap_or(""),
                            ec2_tags(v.tags()),
                            state,
                            json!({ "cidr": v.cidr_block() }),
                        ));
                    }
                }
                ResourceKind::Subnet => {
                    let pages = self
                        .ec2
                        .describe_subnets()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeSubnets", e))?;
                    for s in pages.iter().flat_map(|o| o.subnets()) {
                        let state = if s.state().is_some_and(|s| s.as_str() == "available") {
                            ResourceState::Active
                        } else {
                            ResourceState::Creating
                        };
                        out.push(resource(
                            *kind,
                            s.subnet_id().unwrap_or(""),
                            ec2_tags(s.tags()),
                            state,
                            json!({ "cidr": s.cidr_block(), "az": s.availability_zone() }),
                        ));
                    }
                }
                ResourceKind::InternetGateway => {
                    let pages = self
                        .ec2
                        .describe_internet_gateways()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeInternetGateways", e))?;
                    for g in pages.iter().flat_map(|o| o.internet_gateways()) {
                        let vpc = g.attachments().first().and_then(|a| a.vpc_id());
                        let state = if vpc.is_some() {
                            ResourceState::Active
                        } else {
                            ResourceState::Creating
                        };
                        out.push(resource(
                            *kind,
                            g.internet_gateway_id().unwrap_or(""),
                            ec2_tags(g.tags()),
                            state,
                            json!({ "vpc_id": vpc }),
                        ));
                    }
                }
                ResourceKind::ElasticIp => {
                    let o = self
                        .ec2
                        .describe_addresses()
                        .filters(env_filter(env))
                        .send()
                        .await
                        .map_err(|e| cloud_error("DescribeAddresses", e))?;
                    for a in o.addresses() {
                        out.push(resource(
                            *kind,
                            a.allocation_id().unwrap_or(""),
                            ec2_tags(a.tags()),
                            ResourceState::Active,
                            json!({ "public_ip": a.public_ip() }),
                        ));
                    }
                }
                ResourceKind::NatGateway => {
                    let pages = self
                        .ec2
                        .describe_nat_gateways()
                        .filter(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeNatGateways", e))?;
                    for g in pages.iter().flat_map(|o| o.nat_gateways()) {
                        let state = match g.state() {
                            Some(NatGatewayState::Available) => ResourceState::Active,
                            Some(NatGatewayState::Deleted) => continue,
                            Some(NatGatewayState::Deleting) => ResourceState::Deleting,
                            Some(NatGatewayState::Failed) => ResourceState::Failed,
                            _ => ResourceState::Creating,
                        };
                        let mut r = resource(
                            *kind,
                            g.nat_gateway_id().unwrap_or(""),
                            ec2_tags(g.tags()),
                            state,
                            json!({ "subnet_id": g.subnet_id() }),
                        );
                        r.created_at = timestamp(g.create_time());
                        out.push(r);
                    }
                }
                ResourceKind::RouteTable => {
                    let pages = self
                        .ec2
                        .describe_route_tables()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeRouteTables", e))?;
                    for t in pages.iter().flat_map(|o| o.route_tables()) {
                        let associations: Vec<&str> = t
                            .associations()
                            .iter()
                            .filter(|a| a.main() != Some(true))
                            .filter_map(|a| a.route_table_association_id())
                            .collect();
                        let subnets: Vec<&str> = t
                            .associations()
                            .iter()
                            .filter_map(|a| a.subnet_id())
                            .collect();
                        let routed = t
                            .routes()
                            .iter()
                            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
                        // Routed is usable; a missing association is drift the update flow
                        // repairs, not a table still being made.
                        let state = if routed {
                            ResourceState::Active
                        } else {
                            ResourceState::Creating
                        };
                        out.push(resource(
                            *kind,
                            t.route_table_id().unwrap_or(""),
                            ec2_tags(t.tags()),
                            state,
                            json!({ "associations": associations, "subnet_ids": subnets, "subnets": subnets }),
                        ));
                    }
                }
                ResourceKind::SecurityGroup => {
                    let pages = self
                        .ec2
                        .describe_security_groups()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeSecurityGroups", e))?;
                    let groups: Vec<&aws_sdk_ec2::types::SecurityGroup> =
                        pages.iter().flat_map(|o| o.security_groups()).collect();
                    // Rules name their source groups by envplane name, as the plan does.
                    let names: HashMap<&str, String> = groups
                        .iter()
                        .filter_map(|g| {
                            let name = ec2_tags(g.tags()).get("Name").cloned()?;
                            Some((g.group_id()?, name))
                        })
                        .collect();
                    for g in &groups {
                        let mut rules: Vec<Value> = Vec::new();
                        for p in g.ip_permissions() {
                            for range in p.ip_ranges() {
                                rules.push(
                                    json!({ "port": p.from_port(), "from": range.cidr_ip() }),
                                );
                            }
                            for pair in p.user_id_group_pairs() {
                                let id = pair.group_id().unwrap_or_default();
                                let source =
                                    names.get(id).cloned().unwrap_or_else(|| id.to_owned());
                                rules.push(json!({ "port": p.from_port(), "from_group": source }));
                            }
                        }
                        let state = if rules.is_empty() {
                            ResourceState::Creating
                        } else {
                            ResourceState::Active
                        };
                        out.push(resource(
                            *kind,
                            g.group_id().unwrap_or(""),
                            ec2_tags(g.tags()),
                            state,
                            json!({ "ingress": rules }),
                        ));
                    }
                }
                ResourceKind::Volume => {
                    let pages = self
                        .ec2
                        .describe_volumes()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeVolumes", e))?;
                    for v in pages.iter().flat_map(|o| o.volumes()) {
                        let state = match v.state() {
                            Some(VolumeState::Available | VolumeState::InUse) => {
                                ResourceState::Active
                            }
                            Some(VolumeState::Deleting) => ResourceState::Deleting,
                            Some(VolumeState::Deleted) => continue,
                            Some(VolumeState::Error) => ResourceState::Failed,
                            _ => ResourceState::Creating,
                        };
                        let attached = v.attachments().first().and_then(|a| a.instance_id());
                        let mut r = resource(
                            *kind,
                            v.volume_id().unwrap_or(""),
                            ec2_tags(v.tags()),
                            state,
                            json!({
                                "size_gb": v.size(), "iops": v.iops(), "throughput_mibps": v.throughput(), "az": v.availability_zone(), "attached_to": attached,
                            }),
                        );
                        r.created_at = timestamp(v.create_time());
                        out.push(r);
                    }
                }
                ResourceKind::DbInstance => {
                    let pages = self
                        .ec2
                        .describe_instances()
                        .filters(env_filter(env))
                        .into_paginator()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| cloud_error("DescribeInstances", e))?;
                    for i in pages
                        .iter()
                        .flat_map(|o| o.reservations())
                        .flat_map(|r| r.instances())
                    {
                        let power = i.state().and_then(|s| s.name());
                        let state = match power {
                            Some(InstanceStateName::Running) => ResourceState::Active,
                            Some(InstanceStateName::Terminated) => continue,
                            Some(InstanceStateName::ShuttingDown) => ResourceState::Deleting,
                            // Pending, or stopped (or stopping) for a resize: not usable now.
                            _ => ResourceState::Creating,
                        };
                        let mut r = resource(
                            *kind,
                            i.instance_id().unwrap_or(""),
                            ec2_tags(i.tags()),
                            state,
                            json!({
                                "instance_type": i.instance_type().map(|t| t.as_str()), "az": i.placement().and_then(|p| p.availability_zone()),
                                "power": power.map(|p| p.as_str()),
                            }),
                        );
                        r.created_at = timestamp(i.launch_time());
                        out.push(r);
                    }
                }
                ResourceKind::Cluster => {
                    let name = format!("{env}-eks");
                    match self.eks.describe_cluster().name(&name).send().await {
                        Ok(o) => {
                            if let Some(c) = o.cluster() {
                                let state = match c.status() {
                                    Some(ClusterStatus::Active | ClusterStatus::Updating) => {
                                        ResourceState::Active
                                    }
                                    Some(ClusterStatus::Deleting) => ResourceState::Deleting,
                                    Some(ClusterStatus::Failed) => ResourceState::Failed,
                                    _ => ResourceState::Creating,
                                };
                                let tags: BTreeMap<String, String> = c
                                    .tags()
                                    .map(|t| {
                                        t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                                    })
                                    .unwrap_or_default();
                                let updating = c.status() == Some(&ClusterStatus::Updating);
                                let mut r = resource(
                                    *kind,
                                    &name,
                                    tags,
                                    state,
                                    json!({ "version": c.version(), "updating": updating }),
                                );
                                r.name = name.clone();
                                r.created_at = timestamp(c.created_at());
                                out.push(r);
                            }
                        }
                        Err(e) if code(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => {}
                        Err(e) => return Err(cloud_error("DescribeCluster", e)),
                    }
                }
                ResourceKind::NodeGroup => {
                    let cluster = format!("{env}-eks");
                    // Node groups have deterministic names: one DescribeNodegroup each (EKS has
                    // no batch describe), no ListNodegroups. A missing cluster or group is
                    // ResourceNotFoundException.
                    for role in ["frontend", "backend"] {
                        let name = format!("{env}-{role}");
                        let o = match self
                            .eks
                            .describe_nodegroup()
                            .cluster_name(&cluster)
                            .nodegroup_name(&name)
                            .send()
                            .await
                        {
                            Ok(o) => o,
                            Err(e) if code(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => continue,
                            Err(e) => return Err(cloud_error("DescribeNodegroup", e)),
                        };
                        let Some(g) = o.nodegroup() else { continue };
                        let state = match g.status() {
                            Some(
                                NodegroupStatus::Active
                                | NodegroupStatus::Updating
                                | NodegroupStatus::Degraded,
                            ) => ResourceState::Active,
                            Some(NodegroupStatus::Deleting) => ResourceState::Deleting,
                            Some(NodegroupStatus::CreateFailed | NodegroupStatus::DeleteFailed) => {
                                ResourceState::Failed
                            }
                            _ => ResourceState::Creating,
                        };
                        let scaling = g.scaling_config();
                        let tags: BTreeMap<String, String> = g
                            .tags()
                            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                            .unwrap_or_default();
                        let mut r = resource(
                            *kind,
                            &name,
                            tags,
                            state,
                            json!({
                                "cluster": cluster, "instance_type": g.instance_types().first(),
                                "min": scaling.and_then(|s| s.min_size()), "desired": scaling.and_then(|s| s.desired_size()), "max": scaling.and_then(|s| s.max_size()),
                                "version": g.version(), "updating": g.status() == Some(&NodegroupStatus::Updating),
                            }),
                        );
                        r.name = name.clone();
                        r.created_at = timestamp(g.created_at());
                        out.push(r);
                    }
                }
                ResourceKind::TargetGroup => {
                    let names: Vec<(String, &str)> = ["frontend", "backend"]
                        .into_iter()
                        .map(|role| (target_group_name(&format!("{env}-tg-{role}")), role))
                        .collect();
                    // One call for both; ELBv2 fails the whole call when one name is unknown,
                    // and only then are they asked for one by one.
                    let both = self
                        .elb
                        .describe_target_groups()
                        .set_names(Some(names.iter().map(|(n, _)| n.clone()).collect()))
                        .send()
                        .await;
                    let groups = match both {
                        Ok(o) => o.target_groups().to_vec(),
                        Err(e) if code(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => {
                            let mut found = Vec::new();
                            for (name, _) in &names {
                                match self.elb.describe_target_groups().names(name).send().await {
                                    Ok(o) => found.extend(o.target_groups().iter().cloned()),
                                    Err(e) if code(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => {}
                                    Err(e) => return Err(cloud_error("DescribeTargetGroups", e)),
                                }
                            }
                            found
                        }
                        Err(e) => return Err(cloud_error("DescribeTargetGroups", e)),
                    };
                    for g in groups {
                        let Some((name, role)) = names
                            .iter()
                            .find(|(n, _)| Some(n.as_str()) == g.target_group_name())
                        else {
                            continue;
                        };
                        let tags = BTreeMap::from([
                            (tags::ENVIRONMENT.to_owned(), env.to_string()),
                            ("Name".to_owned(), format!("{env}-tg-{role}")),
                        ]);
                        out.push(resource(
                            *kind,
                            g.target_group_arn().unwrap_or(""),
                            tags,
                            ResourceState::Active,
                            json!({ "name": name, "port": g.port() }),
                        ));
                    }
                }
            }
        }
        // AWS applies the tag filters; some emulators ignore them (moto, for NAT gateways).
        out.retain(|r| r.tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str()));
        // Route tables name the subnets they serve as the plan does; associations with subnets
        // that are not the environment's (gone, or someone else's) are left out.
        if kinds.contains(&ResourceKind::Subnet) {
            let names: HashMap<String, String> = out
                .iter()
                .filter(|r| r.kind == ResourceKind::Subnet)
                .map(|r| (r.id.clone(), r.name.clone()))
                .collect();
            for table in out
                .iter_mut()
                .filter(|r| r.kind == ResourceKind::RouteTable)
            {
                let served: Vec<Value> = table.attributes["subnet_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| names.get(id.as_str()?).cloned().map(Value::String))
                    .collect();
                table.attributes["subnets"] = Value::Array(served);
            }
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
        let id = |name: &Value| -> Result<String, CloudError> {
            let name = name.as_str().unwrap_or("");
            known
                .get(name)
                .map(|r| r.id.clone())
                .ok_or_else(|| CloudError::Transient(format!("{name} is not visible yet")))
        };
        let vpc = || id(&json!(format!("{env}-vpc")));
        let a = &p.attributes;
        match p.kind {
            ResourceKind::Vpc => {
                let o = self
                    .ec2
                    .create_vpc()
                    .cidr_block(a["cidr"].as_str().unwrap_or(""))
                    .tag_specifications(tag_spec(ResourceType::Vpc, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateVpc", e))?;
                let vpc_id = o.vpc().and_then(|v| v.vpc_id()).unwrap_or("").to_owned();
                // EKS needs DNS hostnames and resolution in the VPC.
                for hostnames in [true, false] {
                    let mut request = self.ec2.modify_vpc_attribute().vpc_id(&vpc_id);
                    let on = AttributeBooleanValue::builder().value(true).build();
                    request = if hostnames {
                        request.enable_dns_hostnames(on)
                    } else {
                        request.enable_dns_support(on)
                    };
                    request
                        .send()
                        .await
                        .map_err(|e| cloud_error("ModifyVpcAttribute", e))?;
                }
            }
            ResourceKind::Subnet => {
                let zone = self.zone(a["az_index"].as_u64().unwrap_or(0)).await?;
                let o = self
                    .ec2
                    .create_subnet()
                    .vpc_id(vpc()?)
                    .cidr_block(a["cidr"].as_str().unwrap_or(""))
                    .availability_zone(zone)
                    .tag_specifications(tag_spec(ResourceType::Subnet, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateSubnet", e))?;
                if a["public"].as_bool() == Some(true) {
                    let subnet = o.subnet().and_then(|s| s.subnet_id()).unwrap_or("");
                    self.ec2
                        .modify_subnet_attribute()
                        .subnet_id(subnet)
                        .map_public_ip_on_launch(
                            AttributeBooleanValue::builder().value(true).build(),
                        )
                        .send()
                        .await
                        .map_err(|e| cloud_error("ModifySubnetAttribute", e))?;
                }
            }
            ResourceKind::InternetGateway => {
                let o = self
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateInternetGateway", e))?;
                let igw = o
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or("");
                self.ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(igw)
                    .vpc_id(vpc()?)
                    .send()
                    .await
                    .map_err(|e| cloud_error("AttachInternetGateway", e))?;
            }
            ResourceKind::ElasticIp => {
                self.ec2
                    .allocate_address()
                    .domain(DomainType::Vpc)
                    .tag_specifications(tag_spec(ResourceType::ElasticIp, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("AllocateAddress", e))?;
            }
            ResourceKind::NatGateway => {
                self.ec2
                    .create_nat_gateway()
                    .subnet_id(id(&a["subnet"])?)
                    .allocation_id(id(&a["eip"])?)
                    .client_token(client_token(operation, &p.name))
                    .tag_specifications(tag_spec(ResourceType::Natgateway, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateNatGateway", e))?;
            }
            ResourceKind::RouteTable => {
                let o = self
                    .ec2
                    .create_route_table()
                    .vpc_id(vpc()?)
                    .tag_specifications(tag_spec(ResourceType::RouteTable, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateRouteTable", e))?;
                let table = o
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .unwrap_or("")
                    .to_owned();
                let target = known
                    .get(a["default_route"].as_str().unwrap_or(""))
                    .ok_or_else(|| CloudError::Transient("route target not visible yet".into()))?;
                let route = self
                    .ec2
                    .create_route()
                    .route_table_id(&table)
                    .destination_cidr_block("0.0.0.0/0");
                let route = if target.kind == ResourceKind::NatGateway {
                    route.nat_gateway_id(&target.id)
                } else {
                    route.gateway_id(&target.id)
                };
                route
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateRoute", e))?;
                for subnet in a["subnets"].as_array().into_iter().flatten() {
                    self.ec2
                        .associate_route_table()
                        .route_table_id(&table)
                        .subnet_id(id(subnet)?)
                        .send()
                        .await
                        .map_err(|e| cloud_error("AssociateRouteTable", e))?;
                }
            }
            ResourceKind::SecurityGroup => {
                let o = self
                    .ec2
                    .create_security_group()
                    .group_name(&p.name)
                    .description(format!("envplane {}", p.name))
                    .vpc_id(vpc()?)
                    .tag_specifications(tag_spec(ResourceType::SecurityGroup, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateSecurityGroup", e))?;
                let group = o.group_id().unwrap_or("").to_owned();
                let rules = a["ingress"].as_array().cloned().unwrap_or_default();
                self.ec2
                    .authorize_security_group_ingress()
                    .group_id(&group)
                    .set_ip_permissions(Some(permissions(&rules, known)?))
                    .send()
                    .await
                    .map_err(|e| cloud_error("AuthorizeSecurityGroupIngress", e))?;
            }
            ResourceKind::Volume => {
                let zone = self.zone(a["az_index"].as_u64().unwrap_or(0)).await?;
                let int = |v: &Value| i32::try_from(v.as_i64().unwrap_or(0)).unwrap_or(0);
                self.ec2
                    .create_volume()
                    .availability_zone(zone)
                    .volume_type(VolumeType::Gp3)
                    .size(int(&a["size_gb"]))
                    .iops(int(&a["iops"]))
                    .throughput(int(&a["throughput_mibps"]))
                    .encrypted(true)
                    .client_token(client_token(operation, &p.name))
                    .tag_specifications(tag_spec(ResourceType::Volume, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateVolume", e))?;
            }
            ResourceKind::DbInstance => {
                let extensions: Vec<String> = a["extensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect();
                let user_data = resources::database_user_data(
                    a["engine_version"].as_str().unwrap_or("13"),
                    &extensions,
                );
                self.ec2
                    .run_instances()
                    .image_id(&self.settings.db_image_id)
                    .instance_type(InstanceType::from(
                        a["instance_type"].as_str().unwrap_or(""),
                    ))
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(id(&a["subnet"])?)
                    .security_group_ids(id(&a["security_group"])?)
                    .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
                    .client_token(client_token(operation, &p.name))
                    .tag_specifications(tag_spec(ResourceType::Instance, env, operation, p))
                    .send()
                    .await
                    .map_err(|e| cloud_error("RunInstances", e))?;
            }
            ResourceKind::Cluster => {
                let subnets = a["subnets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(id)
                    .collect::<Result<Vec<_>, _>>()?;
                self.eks
                    .create_cluster()
                    .name(&p.name)
                    .version(a["version"].as_str().unwrap_or(""))
                    .role_arn(&self.settings.cluster_role_arn)
                    .resources_vpc_config(
                        VpcConfigRequest::builder()
                            .set_subnet_ids(Some(subnets))
                            .security_group_ids(id(&a["security_group"])?)
                            .build(),
                    )
                    .tags(tags::ENVIRONMENT, env.as_str())
                    .tags(tags::OPERATION, operation)
                    .client_request_token(client_token(operation, &p.name))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateCluster", e))?;
            }
            ResourceKind::NodeGroup => {
                let int = |v: &Value| i32::try_from(v.as_i64().unwrap_or(0)).unwrap_or(0);
                let subnets: Vec<String> = known
                    .values()
                    .filter(|r| r.kind == ResourceKind::Subnet && r.name.contains("-private-"))
                    .map(|r| r.id.clone())
                    .collect();
                self.eks
                    .create_nodegroup()
                    .cluster_name(a["cluster"].as_str().unwrap_or(""))
                    .nodegroup_name(&p.name)
                    .scaling_config(
                        NodegroupScalingConfig::builder()
                            .min_size(int(&a["min"]))
                            .desired_size(int(&a["desired"]))
                            .max_size(int(&a["max"]))
                            .build(),
                    )
                    .instance_types(a["instance_type"].as_str().unwrap_or(""))
                    .version(a["version"].as_str().unwrap_or(""))
                    .set_subnets(Some(subnets))
                    .node_role(&self.settings.node_role_arn)
                    .labels("envplane/role", a["role"].as_str().unwrap_or(""))
                    .tags(tags::ENVIRONMENT, env.as_str())
                    .tags(tags::OPERATION, operation)
                    .client_request_token(client_token(operation, &p.name))
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateNodegroup", e))?;
            }
            ResourceKind::TargetGroup => {
                self.elb
                    .create_target_group()
                    .name(target_group_name(&p.name))
                    .protocol(ProtocolEnum::Http)
                    .port(i32::try_from(a["port"].as_i64().unwrap_or(80)).unwrap_or(80))
                    .vpc_id(vpc()?)
                    .target_type(TargetTypeEnum::Ip)
                    .health_check_path(a["health_path"].as_str().unwrap_or("/health"))
                    .tags(
                        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                            .key(tags::ENVIRONMENT)
                            .value(env.as_str())
                            .build(),
                    )
                    .tags(
                        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                            .key(tags::OPERATION)
                            .value(operation)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| cloud_error("CreateTargetGroup", e))?;
            }
        }
        Ok(())
    }

    /// Attaches the data volume to the database host once both are up.
    async fn attach_data_volume(
        &self,
        env: &EnvName,
        known: &HashMap<String, Resource>,
    ) -> Result<bool, CloudError> {
        let (Some(instance), Some(volume)) = (
            known.get(&format!("{env}-db")),
            known.get(&format!("{env}-db-data")),
        ) else {
            return Ok(false);
        };
        if volume.attributes["attached_to"].as_str() == Some(instance.id.as_str()) {
            return Ok(true);
        }
        if instance.state != ResourceState::Active || volume.state != ResourceState::Active {
            return Ok(false);
        }
        self.ec2
            .attach_volume()
            .volume_id(&volume.id)
            .instance_id(&instance.id)
            .device("/dev/sdf")
            .send()
            .await
            .map_err(|e| cloud_error("AttachVolume", e))?;
        // Attached: the volume shows in-use within seconds; the host mounts it at boot.
        Ok(true)
    }
}

fn dependency_kinds(planned: &[Planned], env: &EnvName) -> BTreeSet<ResourceKind> {
    // Dependencies are named; their kinds follow from the plan of the same environment.
    let mut kinds: BTreeSet<ResourceKind> = planned.iter().map(|p| p.kind).collect();
    let names: BTreeSet<&str> = planned
        .iter()
        .flat_map(|p| p.depends_on.iter().map(String::as_str))
        .collect();
    for name in names {
        let suffix = name.strip_prefix(&format!("{env}-")).unwrap_or(name);
        let kind = match suffix {
            "vpc" => ResourceKind::Vpc,
            "igw" => ResourceKind::InternetGateway,
            "eks" => ResourceKind::Cluster,
            "db-data" => ResourceKind::Volume,
            s if s.starts_with("public-") || s.starts_with("private-") => ResourceKind::Subnet,
            s if s.starts_with("eip-") => ResourceKind::ElasticIp,
            s if s.starts_with("nat-") => ResourceKind::NatGateway,
            s if s.starts_with("sg-") => ResourceKind::SecurityGroup,
            s if s.starts_with("rt-") => ResourceKind::RouteTable,
            _ => continue,
        };
        kinds.insert(kind);
    }
    // Most creates need the VPC's id, and route tables the ids of the subnets they serve.
    kinds.insert(ResourceKind::Vpc);
    if kinds.contains(&ResourceKind::RouteTable) {
        kinds.insert(ResourceKind::Subnet);
    }
    if kinds.contains(&ResourceKind::NodeGroup) {
        kinds.insert(ResourceKind::Subnet);
    }
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
        let attached = self.attach_data_volume(env, &known).await?;
        Ok(planned
            .iter()
            .filter_map(|p| known.get(&p.name).cloned())
            .map(|mut r| {
                // The database host is ready only with its data volume attached.
                if r.kind == ResourceKind::DbInstance
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
        let id = r.id.as_str();
        let gone = |c: Option<&str>| c.is_some_and(|c| NOT_FOUND.contains(&c));
        macro_rules! call {
            ($what:literal, $request:expr) => {
                match $request.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if gone(code(&e)) => Ok(()),
                    Err(e) => Err(cloud_error($what, e)),
                }
            };
        }
        match r.kind {
            ResourceKind::TargetGroup => call!(
                "DeleteTargetGroup",
                self.elb.delete_target_group().target_group_arn(id)
            ),
            ResourceKind::NodeGroup => {
                let cluster = r.attributes["cluster"].as_str().unwrap_or("");
                call!(
                    "DeleteNodegroup",
                    self.eks
                        .delete_nodegroup()
                        .cluster_name(cluster)
                        .nodegroup_name(id)
                )
            }
            ResourceKind::Cluster => call!("DeleteCluster", self.eks.delete_cluster().name(id)),
            ResourceKind::DbInstance => call!(
                "TerminateInstances",
                self.ec2.terminate_instances().instance_ids(id)
            ),
            ResourceKind::Volume => call!("DeleteVolume", self.ec2.delete_volume().volume_id(id)),
            ResourceKind::NatGateway => call!(
                "DeleteNatGateway",
                self.ec2.delete_nat_gateway().nat_gateway_id(id)
            ),
            ResourceKind::ElasticIp => call!(
                "ReleaseAddress",
                self.ec2.release_address().allocation_id(id)
            ),
            ResourceKind::RouteTable => {
                for association in r.attributes["associations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    call!(
                        "DisassociateRouteTable",
                        self.ec2
                            .disassociate_route_table()
                            .association_id(association)
                    )?;
                }
                call!(
                    "DeleteRouteTable",
                    self.ec2.delete_route_table().route_table_id(id)
                )
            }
            ResourceKind::InternetGateway => {
                if let Some(vpc) = r.attributes["vpc_id"].as_str() {
                    call!(
                        "DetachInternetGateway",
                        self.ec2
                            .detach_internet_gateway()
                            .internet_gateway_id(id)
                            .vpc_id(vpc)
                    )?;
                }
                call!(
                    "DeleteInternetGateway",
                    self.ec2.delete_internet_gateway().internet_gateway_id(id)
                )
            }
            ResourceKind::Subnet => call!("DeleteSubnet", self.ec2.delete_subnet().subnet_id(id)),
            ResourceKind::SecurityGroup => call!(
                "DeleteSecurityGroup",
                self.ec2.delete_security_group().group_id(id)
            ),
            ResourceKind::Vpc => call!("DeleteVpc", self.ec2.delete_vpc().vpc_id(id)),
        }
    }

    async fn modify(
        &self,
        env: &EnvName,
        r: &Resource,
        change: &Modification,
    ) -> Result<(), CloudError> {
        let id = r.id.as_str();
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        // A change of the same kind already under way (or already made) counts as made.
        let done = |c: Option<&str>| {
            c.is_some_and(|c| {
                matches!(
                    c,
                    "ResourceInUseException"
                        | "InvalidPermission.Duplicate"
                        | "InvalidPermission.NotFound"
                        | "Resource.AlreadyAssociated"
                )
            })
        };
        macro_rules! call {
            ($what:literal, $request:expr) => {
                match $request.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if done(code(&e)) => Ok(()),
                    Err(e) => Err(cloud_error($what, e)),
                }
            };
        }
        let cluster = r.attributes["cluster"].as_str().unwrap_or_default();
        match (r.kind, change) {
            (ResourceKind::NodeGroup, Modification::Scale { min, desired, max }) => call!(
                "UpdateNodegroupConfig",
                self.eks
                    .update_nodegroup_config()
                    .cluster_name(cluster)
                    .nodegroup_name(id)
                    .scaling_config(
                        NodegroupScalingConfig::builder()
                            .min_size(int(*min))
                            .desired_size(int(*desired))
                            .max_size(int(*max))
                            .build(),
                    )
            ),
            (ResourceKind::Cluster, Modification::Version { version }) => call!(
                "UpdateClusterVersion",
                self.eks.update_cluster_version().name(id).version(version)
            ),
            (ResourceKind::NodeGroup, Modification::Version { version }) => call!(
                "UpdateNodegroupVersion",
                self.eks
                    .update_nodegroup_version()
                    .cluster_name(cluster)
                    .nodegroup_name(id)
                    .version(version)
            ),
            (
                ResourceKind::Volume,
                Modification::ModifyVolume {
                    size_gb,
                    iops,
                    throughput_mibps,
                },
            ) => call!(
                "ModifyVolume",
                self.ec2
                    .modify_volume()
                    .volume_id(id)
                    .size(int(*size_gb))
                    .iops(int(*iops))
                    .throughput(int(*throughput_mibps))
            ),
            (ResourceKind::DbInstance, Modification::StopInstance) => {
                call!("StopInstances", self.ec2.stop_instances().instance_ids(id))
            }
            (ResourceKind::DbInstance, Modification::InstanceType { instance_type }) => call!(
                "ModifyInstanceAttribute",
                self.ec2
                    .modify_instance_attribute()
                    .instance_id(id)
                    .instance_type(AttributeValue::builder().value(instance_type).build())
            ),
            (ResourceKind::DbInstance, Modification::StartInstance) => {
                call!(
                    "StartInstances",
                    self.ec2.start_instances().instance_ids(id)
                )
            }
            (ResourceKind::SecurityGroup, Modification::AuthorizeIngress { rules }) => {
                let permissions = permissions(rules, &self.groups_for(env, rules).await?)?;
                call!(
                    "AuthorizeSecurityGroupIngress",
                    self.ec2
                        .authorize_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(permissions))
                )
            }
            (ResourceKind::SecurityGroup, Modification::RevokeIngress { rules }) => {
                let permissions = permissions(rules, &self.groups_for(env, rules).await?)?;
                call!(
                    "RevokeSecurityGroupIngress",
                    self.ec2
                        .revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(permissions))
                )
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
                    call!(
                        "AssociateRouteTable",
                        self.ec2
                            .associate_route_table()
                            .route_table_id(id)
                            .subnet_id(subnet)
                    )?;
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
        let found = self
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::OPERATION))
                    .values(operation)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("volume-id")
                    .values(&volume.id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| cloud_error("DescribeSnapshots", e))?;
        if let Some(snapshot) = found.snapshots().first() {
            return match snapshot.state() {
                Some(Ec2SnapshotState::Completed) => Ok(SnapshotState::Completed),
                Some(Ec2SnapshotState::Error) => Err(CloudError::Conflict(format!(
                    "snapshot {} of {} failed: {}",
                    snapshot.snapshot_id().unwrap_or_default(),
                    volume.name,
                    snapshot.state_message().unwrap_or("no message")
                ))),
                _ => Ok(SnapshotState::Pending),
            };
        }
        self.ec2
            .create_snapshot()
            .volume_id(&volume.id)
            .description(format!(
                "envplane: {} before operation {operation}",
                volume.name
            ))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .tags(
                        Tag::builder()
                            .key(tags::ENVIRONMENT)
                            .value(env.as_str())
                            .build(),
                    )
                    .tags(Tag::builder().key(tags::OPERATION).value(operation).build())
                    .tags(
                        Tag::builder()
                            .key("Name")
                            .value(format!("{}-pre-{operation}", volume.name))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| cloud_error("CreateSnapshot", e))?;
        Ok(SnapshotState::Pending)
    }
}

impl AwsCloud {
    /// The environment's security groups by name, when `rules` name a source group.
    async fn groups_for(
        &self,
        env: &EnvName,
        rules: &[Value],
    ) -> Result<HashMap<String, Resource>, CloudError> {
        if !rules.iter().any(|r| r.get("from_group").is_some()) {
            return Ok(HashMap::new());
        }
        Ok(self
            .discover(env, &BTreeSet::from([ResourceKind::SecurityGroup]))
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect())
    }
}

/// Ingress rules in the plan's shape as EC2 permissions, source groups found by name in `known`.
fn permissions(
    rules: &[Value],
    known: &HashMap<String, Resource>,
) -> Result<Vec<IpPermission>, CloudError> {
    rules
        .iter()
        .map(|rule| {
            let port = i32::try_from(rule["port"].as_i64().unwrap_or(0)).unwrap_or(0);
            let mut permission = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port);
            if let Some(cidr) = rule["from"].as_str() {
                permission = permission.ip_ranges(IpRange::builder().cidr_ip(cidr).build());
            }
            if let Some(source) = rule["from_group"].as_str() {
                let group = known.get(source).ok_or_else(|| {
                    CloudError::Transient(format!("security group {source} is not visible yet"))
                })?;
                permission = permission
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&group.id).build());
            }
            Ok(permission.build())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_names_fit_elbv2() {
        assert_eq!(target_group_name("dev-tg-frontend"), "dev-tg-frontend");
        let long = target_group_name(&format!("{}-tg-frontend", "a".repeat(40)));
        assert_eq!(long.len(), 32);
        assert_ne!(
            long,
            target_group_name(&format!("{}-tg-backend", "a".repeat(40)))
        );
    }

    /// One request as the fake EKS endpoint received it.
    #[derive(Debug, Clone)]
    struct Received {
        method: String,
        path: String,
        body: serde_json::Value,
    }

    /// A fake EKS endpoint for the calls moto lacks (`UpdateClusterVersion`,
    /// `UpdateNodegroupVersion`): answers each request with the next canned (status, body).
    async fn fake_eks(
        answers: Vec<(u16, &'static str, serde_json::Value)>,
    ) -> (String, tokio::task::JoinHandle<Vec<Received>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let mut received = Vec::new();
            for (status, error_type, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap();
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        buffer.drain(..end + 4);
                        break (head, length);
                    }
                };
                while buffer.len() < length {
                    let n = socket.read(&mut chunk).await.unwrap();
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let mut request_line = head.lines().next().unwrap().split(' ');
                received.push(Received {
                    method: request_line.next().unwrap().to_owned(),
                    path: request_line.next().unwrap().to_owned(),
                    body: serde_json::from_slice(&buffer).unwrap_or(serde_json::Value::Null),
                });
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-amzn-errortype: {error_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            received
        });
        (endpoint, handle)
    }

    fn cloud_on(endpoint: &str) -> AwsCloud {
        let config = aws_sdk_eks::Config::builder()
            .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_eks::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_eks::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build();
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                .build(),
        );
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::Config::builder()
                .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
                .region(aws_sdk_elasticloadbalancingv2::config::Region::new(
                    "us-east-1",
                ))
                .build(),
        );
        AwsCloud::from_clients(
            ec2,
            aws_sdk_eks::Client::from_conf(config),
            elb,
            AwsSettings {
                cluster_role_arn: String::new(),
                node_role_arn: String::new(),
                db_image_id: String::new(),
            },
        )
    }

    fn eks_resource(kind: ResourceKind, id: &str) -> Resource {
        Resource {
            kind,
            id: id.into(),
            name: id.into(),
            state: ResourceState::Active,
            attributes: json!({ "cluster": "dev-eks", "version": "1.29" }),
            tags: BTreeMap::new(),
            created_at: None,
        }
    }

    #[tokio::test]
    async fn upgrades_call_update_cluster_version_then_update_nodegroup_version() {
        let update =
            |kind: &str| json!({ "update": { "id": "u-1", "status": "InProgress", "type": kind } });
        let (endpoint, server) = fake_eks(vec![
            (200, "", update("VersionUpdate")),
            (200, "", update("VersionUpdate")),
            // Already upgrading: EKS refuses a second update, which counts as made.
            (
                409,
                "ResourceInUseException",
                json!({ "message": "Cluster has an update in progress" }),
            ),
            (
                400,
                "InvalidParameterException",
                json!({ "message": "Unsupported Kubernetes minor version update from 1.29 to 1.31" }),
            ),
        ])
        .await;
        let cloud = cloud_on(&endpoint);
        let env = EnvName::parse("dev").unwrap();
        let to = |v: &str| Modification::Version { version: v.into() };
        let cluster = eks_resource(ResourceKind::Cluster, "dev-eks");
        let nodegroup = eks_resource(ResourceKind::NodeGroup, "dev-frontend");
        cloud.modify(&env, &cluster, &to("1.30")).await.unwrap();
        cloud.modify(&env, &nodegroup, &to("1.30")).await.unwrap();
        cloud.modify(&env, &cluster, &to("1.30")).await.unwrap();
        let refused = cloud.modify(&env, &cluster, &to("1.31")).await.unwrap_err();
        assert!(
            matches!(&refused, CloudError::Invalid(m) if m.contains("UpdateClusterVersion") && m.contains("minor version")),
            "{refused:?}"
        );
        let received = server.await.unwrap();
        let calls: Vec<(&str, &str, &serde_json::Value)> = received
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), &r.body["version"]))
            .collect();
        assert_eq!(
            calls,
            vec![
                ("POST", "/clusters/dev-eks/updates", &json!("1.30")),
                (
                    "POST",
                    "/clusters/dev-eks/node-groups/dev-frontend/update-version",
                    &json!("1.30")
                ),
                ("POST", "/clusters/dev-eks/updates", &json!("1.30")),
                ("POST", "/clusters/dev-eks/updates", &json!("1.31")),
            ]
        );
    }

    #[test]
    fn client_tokens_are_stable_and_bounded() {
        assert_eq!(client_token("op1", "dev-nat-1"), "op1-dev-nat-1");
        assert_eq!(client_token(&"x".repeat(60), "dev-nat-1").len(), 64);
    }
}
