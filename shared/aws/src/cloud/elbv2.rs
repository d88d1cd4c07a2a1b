//! ELBv2 target groups, found by their deterministic names (at most 32 characters).

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, Tag, TargetTypeEnum};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::names;
use envplane_domain::resources::{Observed, desired, observed, tags};

use crate::cloud::Creating;
use crate::cloud::support::{Owner, required, resource, sent, unless_gone};

/// The environment's target groups: one call for both (ELBv2 fails the whole call when one
/// name is unknown, and only then are they asked for one by one), and one for their tags: a
/// group with envplane's name but not its tags is someone else's.
pub(crate) async fn discover(elb: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let env = owner.env;
    let wanted: Vec<(String, String)> = names::Service::ALL
        .into_iter()
        .map(|s| {
            let name = names::target_group(env, s);
            (names::target_group_aws_name(&name), name)
        })
        .collect();
    let both = unless_gone(
        "DescribeTargetGroups",
        elb.describe_target_groups()
            .set_names(Some(wanted.iter().map(|(aws, _)| aws.clone()).collect()))
            .send()
            .await,
    )?;
    let groups = match both {
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
    let arns: Vec<String> = groups
        .iter()
        .filter_map(|g| g.target_group_arn().map(str::to_owned))
        .collect();
    let mut tags_by_arn: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if !arns.is_empty() {
        let described = sent(
            "DescribeTags",
            elb.describe_tags()
                .set_resource_arns(Some(arns))
                .send()
                .await,
        )?;
        for d in described.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                .collect();
            tags_by_arn.insert(required(d.resource_arn(), "a tagged ARN")?.to_owned(), tags);
        }
    }
    let mut out = Vec::new();
    for g in groups {
        let Some((aws, name)) = wanted
            .iter()
            .find(|(aws, _)| Some(aws.as_str()) == g.target_group_name())
        else {
            continue;
        };
        let arn = required(g.target_group_arn(), "a target group ARN")?;
        let mut tags = tags_by_arn.remove(arn).unwrap_or_default();
        if !owner.owns(&tags) {
            continue;
        }
        tags.insert(tags::NAME.to_owned(), name.clone());
        out.push(resource(
            arn,
            tags,
            ResourceState::Active,
            Observed::TargetGroup(observed::TargetGroup {
                name: aws.clone(),
                port: g.port().and_then(|p| u16::try_from(p).ok()),
            }),
        ));
    }
    Ok(out)
}

/// Creates a target group of IP targets in the VPC.
pub(crate) async fn create(
    elb: &Client,
    cx: &Creating<'_>,
    spec: &desired::TargetGroup,
) -> Result<(), CloudError> {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    sent(
        "CreateTargetGroup",
        elb.create_target_group()
            .name(names::target_group_aws_name(cx.name))
            .protocol(ProtocolEnum::Http)
            .port(i32::from(spec.port))
            .vpc_id(cx.vpc_id()?)
            .target_type(TargetTypeEnum::Ip)
            .health_check_path(&spec.health_path)
            .tags(tag(tags::ENVIRONMENT, cx.owner.env.as_str()))
            .tags(tag(tags::STACK, cx.owner.stack))
            .tags(tag(tags::OPERATION, cx.operation))
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
