//! ELBv2 target groups (two tracks per service), found by their deterministic names (at most
//! 32 characters).

use aws_sdk_elasticloadbalancingv2::Client;
use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetGroup, TargetTypeEnum};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::names;
use envplane_domain::resources::{Observed, desired, observed, tags};

use crate::cloud::Creating;
use crate::cloud::elbv2::creation_tags;
use crate::cloud::support::{Owner, required, resource, sent, unless_gone};

/// The environment's target groups by envplane name: one call for all (ELBv2 fails the whole
/// call when one name is unknown, and only then are they asked for one by one).
pub(crate) async fn describe(
    elb: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<(String, TargetGroup)>, CloudError> {
    let env = owner.env;
    let wanted: Vec<(String, String)> = names::Service::ALL
        .into_iter()
        .flat_map(|s| names::Track::ALL.map(|t| names::track_target_group(env, s, t)))
        .map(|name| (names::target_group_aws_name(&name), name))
        .collect();
    let all = unless_gone(
        "DescribeTargetGroups",
        elb.describe_target_groups()
            .set_names(Some(wanted.iter().map(|(aws, _)| aws.clone()).collect()))
            .send()
            .await,
    )?;
    let groups = match all {
        Some(o) => o.target_groups().to_vec(),
        None => {
            let mut found = Vec::new();
            for (aws, _) in &wanted {
                if let Some(o) = unless_gone(
                    "DescribeTargetGroups",
                    elb.describe_target_groups().names(aws).send().await,
                )? {
                    found.extend(o.target_groups().iter().cloned());
                }
            }
            found
        }
    };
    Ok(groups
        .into_iter()
        .filter_map(|g| {
            let (_, name) = wanted
                .iter()
                .find(|(aws, _)| Some(aws.as_str()) == g.target_group_name())?;
            Some((name.clone(), g))
        })
        .collect())
}

/// A target group as a resource, with its tags (`Name` added: ELBv2 names are shortened).
pub(crate) fn to_resource(
    name: &str,
    g: &TargetGroup,
    mut tags: BTreeMap<String, String>,
) -> Result<Resource, CloudError> {
    let arn = required(g.target_group_arn(), "a target group ARN")?;
    tags.insert(tags::NAME.to_owned(), name.to_owned());
    Ok(resource(
        arn,
        tags,
        ResourceState::Active,
        Observed::TargetGroup(observed::TargetGroup {
            name: g.target_group_name().unwrap_or_default().to_owned(),
            port: g.port().and_then(|p| u16::try_from(p).ok()),
        }),
    ))
}

/// Creates a target group of IP targets in the VPC.
pub(crate) async fn create(
    elb: &Client,
    cx: &Creating<'_>,
    spec: &desired::TargetGroup,
) -> Result<(), CloudError> {
    sent(
        "CreateTargetGroup",
        elb.create_target_group()
            .name(names::target_group_aws_name(cx.name))
            .protocol(ProtocolEnum::Http)
            .port(i32::from(spec.port))
            .vpc_id(cx.vpc_id()?)
            .target_type(TargetTypeEnum::Ip)
            .health_check_path(&spec.health_path)
            .set_tags(Some(creation_tags(cx)))
            .send()
            .await,
    )
    .map(drop)
}

/// Deletes a target group.
pub(crate) async fn delete(elb: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteTargetGroup",
        elb.delete_target_group()
            .target_group_arn(&r.id)
            .send()
            .await,
    )
    .map(drop)
}
