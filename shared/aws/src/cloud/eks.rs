//! EKS: the cluster and its node groups, found by their deterministic names (EKS has no tag
//! filter on describes), upgraded one minor version at a time and scaled in place.

use aws_sdk_eks::Client;
use aws_sdk_eks::types::{
    AuthenticationMode, ClusterStatus, CreateAccessConfigRequest, NodegroupScalingConfig,
    NodegroupStatus, VpcConfigRequest,
};
use envplane_cloud::{CloudError, Modification, Resource, ResourceState};
use envplane_domain::names;
use envplane_domain::resources::{Observed, desired, observed, tags};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, client_token, count, eks_tags, int, resource, sent, timestamp, unless_done, unless_gone,
};

/// The environment's cluster, if it exists.
pub(crate) async fn discover_cluster(
    eks: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Resource>, CloudError> {
    let name = names::cluster(owner.env);
    let Some(o) = unless_gone(
        "DescribeCluster",
        eks.describe_cluster().name(&name).send().await,
    )?
    else {
        return Ok(Vec::new());
    };
    let Some(c) = o.cluster() else {
        return Ok(Vec::new());
    };
    let state = match c.status() {
        Some(ClusterStatus::Active | ClusterStatus::Updating) => ResourceState::Active,
        Some(ClusterStatus::Deleting) => ResourceState::Deleting,
        Some(ClusterStatus::Failed) => ResourceState::Failed,
        _ => ResourceState::Creating,
    };
    let mut r = resource(
        &name,
        eks_tags(c.tags()),
        state,
        Observed::Cluster(observed::Cluster {
            version: c.version().map(str::to_owned),
        }),
    );
    r.name = name.clone();
    r.updating = c.status() == Some(&ClusterStatus::Updating);
    r.created_at = timestamp(c.created_at());
    Ok(vec![r])
}

/// The environment's node groups: one `DescribeNodegroup` each by name (EKS has no batch
/// describe), no `ListNodegroups`. A missing cluster or group is `ResourceNotFoundException`.
pub(crate) async fn discover_node_groups(
    eks: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Resource>, CloudError> {
    let env = owner.env;
    let cluster = names::cluster(env);
    let mut out = Vec::new();
    for service in names::Service::ALL {
        let name = names::node_group(env, service);
        let found = unless_gone(
            "DescribeNodegroup",
            eks.describe_nodegroup()
                .cluster_name(&cluster)
                .nodegroup_name(&name)
                .send()
                .await,
        )?;
        let Some(g) = found.as_ref().and_then(|o| o.nodegroup()) else {
            continue;
        };
        let state = match g.status() {
            Some(
                NodegroupStatus::Active | NodegroupStatus::Updating | NodegroupStatus::Degraded,
            ) => ResourceState::Active,
            Some(NodegroupStatus::Deleting) => ResourceState::Deleting,
            Some(NodegroupStatus::CreateFailed | NodegroupStatus::DeleteFailed) => {
                ResourceState::Failed
            }
            _ => ResourceState::Creating,
        };
        let scaling = g.scaling_config();
        let mut r = resource(
            &name,
            eks_tags(g.tags()),
            state,
            Observed::NodeGroup(observed::NodeGroup {
                cluster: cluster.clone(),
                instance_type: g.instance_types().first().cloned(),
                min: count(scaling.and_then(|s| s.min_size())),
                desired: count(scaling.and_then(|s| s.desired_size())),
                max: count(scaling.and_then(|s| s.max_size())),
                version: g.version().map(str::to_owned),
            }),
        );
        r.name = name.clone();
        r.updating = g.status() == Some(&NodegroupStatus::Updating);
        r.created_at = timestamp(g.created_at());
        out.push(r);
    }
    Ok(out)
}

/// Creates the cluster in the private subnets.
pub(crate) async fn create_cluster(
    eks: &Client,
    cx: &Creating<'_>,
    spec: &desired::Cluster,
    role_arn: &str,
) -> Result<(), CloudError> {
    let subnets = spec
        .subnets
        .iter()
        .map(|s| cx.id_of(s).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    sent(
        "CreateCluster",
        eks.create_cluster()
            .name(cx.name)
            .version(&spec.version)
            .role_arn(role_arn)
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets))
                    .security_group_ids(cx.id_of(&spec.security_group)?)
                    .build(),
            )
            // Access entries, with the creator (envplane's worker role) as the cluster's
            // admin: the entry its deployments authenticate with (presigned STS tokens).
            .access_config(
                CreateAccessConfigRequest::builder()
                    .authentication_mode(AuthenticationMode::ApiAndConfigMap)
                    .bootstrap_cluster_creator_admin_permissions(true)
                    .build(),
            )
            .tags(tags::ENVIRONMENT, cx.owner.env.as_str())
            .tags(tags::STACK, cx.owner.stack)
            .tags(tags::OPERATION, cx.operation)
            .client_request_token(client_token(cx.operation, cx.name))
            .send()
            .await,
    )
    .map(drop)
}

/// Creates a node group across the environment's private subnets.
pub(crate) async fn create_node_group(
    eks: &Client,
    cx: &Creating<'_>,
    spec: &desired::NodeGroup,
    node_role_arn: &str,
) -> Result<(), CloudError> {
    let subnets: Vec<String> = cx
        .known
        .values()
        .filter(|r| names::is_private_subnet(cx.owner.env, &r.name))
        .map(|r| r.id.clone())
        .collect();
    sent(
        "CreateNodegroup",
        eks.create_nodegroup()
            .cluster_name(&spec.cluster)
            .nodegroup_name(cx.name)
            .scaling_config(scaling(spec.min, spec.desired, spec.max))
            .instance_types(&spec.instance_type)
            .version(&spec.version)
            .set_subnets(Some(subnets))
            .node_role(node_role_arn)
            .labels("envplane/role", spec.role.as_str())
            .tags(tags::ENVIRONMENT, cx.owner.env.as_str())
            .tags(tags::STACK, cx.owner.stack)
            .tags(tags::OPERATION, cx.operation)
            .client_request_token(client_token(cx.operation, cx.name))
            .send()
            .await,
    )
    .map(drop)
}

fn scaling(min: u32, desired: u32, max: u32) -> NodegroupScalingConfig {
    NodegroupScalingConfig::builder()
        .min_size(int(min))
        .desired_size(int(desired))
        .max_size(int(max))
        .build()
}

/// The cluster a node group belongs to, as discovery saw it.
fn cluster_of(r: &Resource) -> Result<&str, CloudError> {
    match &r.observed {
        Observed::NodeGroup(g) => Ok(&g.cluster),
        _ => Err(CloudError::Invalid(format!(
            "{} is not a node group",
            r.name
        ))),
    }
}

/// Scales or upgrades the cluster or a node group. An update already under way
/// (`ResourceInUseException`) counts as made.
pub(crate) async fn modify(
    eks: &Client,
    r: &Resource,
    change: &Modification,
) -> Result<(), CloudError> {
    let id = r.id.as_str();
    match (&r.observed, change) {
        (Observed::NodeGroup(g), Modification::Scale { min, desired, max }) => unless_done(
            "UpdateNodegroupConfig",
            eks.update_nodegroup_config()
                .cluster_name(&g.cluster)
                .nodegroup_name(id)
                .scaling_config(scaling(*min, *desired, *max))
                .send()
                .await,
        ),
        (Observed::Cluster(_), Modification::Version { version }) => unless_done(
            "UpdateClusterVersion",
            eks.update_cluster_version()
                .name(id)
                .version(version)
                .send()
                .await,
        ),
        (Observed::NodeGroup(g), Modification::Version { version }) => unless_done(
            "UpdateNodegroupVersion",
            eks.update_nodegroup_version()
                .cluster_name(&g.cluster)
                .nodegroup_name(id)
                .version(version)
                .send()
                .await,
        ),
        (_, change) => Err(CloudError::Invalid(format!(
            "{change:?} does not apply to a {}",
            r.kind().as_str()
        ))),
    }
}

/// Deletes a node group.
pub(crate) async fn delete_node_group(eks: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteNodegroup",
        eks.delete_nodegroup()
            .cluster_name(cluster_of(r)?)
            .nodegroup_name(&r.id)
            .send()
            .await,
    )
    .map(drop)
}

/// Deletes the cluster.
pub(crate) async fn delete_cluster(eks: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteCluster",
        eks.delete_cluster().name(&r.id).send().await,
    )
    .map(drop)
}
