//! Security groups and their TCP ingress rules; rules naming a source group are written with
//! its id and read back with its envplane name.

use std::collections::HashMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup, UserIdGroupPair};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{IngressRule, Observed, RuleSource, desired, observed, tags};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, ec2_tags, required, resource, sent, tag_spec, unless_done, unless_gone,
};

/// The environment's security groups; a group with no rules yet is still being made.
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_security_groups()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let pages = all_pages("DescribeSecurityGroups", pages).await?;
    let groups: Vec<&SecurityGroup> = pages.iter().flat_map(|o| o.security_groups()).collect();
    // Rules name their source groups by envplane name, as the plan does.
    let names: HashMap<&str, String> = groups
        .iter()
        .filter_map(|g| Some((g.group_id()?, ec2_tags(g.tags()).get(tags::NAME).cloned()?)))
        .collect();
    let mut out = Vec::new();
    for g in &groups {
        let mut rules = Vec::new();
        for p in g.ip_permissions() {
            // A rule over all ports (protocol -1) has no port: envplane never writes one.
            let port = p
                .from_port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0);
            for range in p.ip_ranges() {
                rules.push(IngressRule::from_cidr(
                    port,
                    required(range.cidr_ip(), "a rule's CIDR")?,
                ));
            }
            for pair in p.user_id_group_pairs() {
                let id = required(pair.group_id(), "a rule's source group")?;
                let source = names.get(id).cloned().unwrap_or_else(|| id.to_owned());
                rules.push(IngressRule::from_group(port, source));
            }
        }
        let state = if rules.is_empty() {
            ResourceState::Creating
        } else {
            ResourceState::Active
        };
        out.push(resource(
            required(g.group_id(), "a security group id")?,
            ec2_tags(g.tags()),
            state,
            Observed::SecurityGroup(observed::SecurityGroup { ingress: rules }),
        ));
    }
    Ok(out)
}

/// Creates a security group with its rules.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::SecurityGroup,
) -> Result<(), CloudError> {
    let o = sent(
        "CreateSecurityGroup",
        ec2.create_security_group()
            .group_name(cx.name)
            .description(format!("envplane {}", cx.name))
            .vpc_id(cx.vpc_id()?)
            .tag_specifications(tag_spec(
                ResourceType::SecurityGroup,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )?;
    let group = required(o.group_id(), "the new security group's id")?;
    let ids: HashMap<&str, &str> = cx
        .known
        .iter()
        .map(|(n, r)| (n.as_str(), r.id.as_str()))
        .collect();
    sent(
        "AuthorizeSecurityGroupIngress",
        ec2.authorize_security_group_ingress()
            .group_id(group)
            .set_ip_permissions(Some(permissions(&spec.ingress, &ids)?))
            .send()
            .await,
    )
    .map(drop)
}

/// Adds (`authorize`) or removes rules; a rule already there (or already gone) counts as done.
/// `groups` maps the environment's security groups' names to their ids.
pub(crate) async fn change_rules(
    ec2: &Client,
    r: &Resource,
    rules: &[IngressRule],
    groups: &HashMap<&str, &str>,
    authorize: bool,
) -> Result<(), CloudError> {
    let permissions = Some(permissions(rules, groups)?);
    if authorize {
        unless_done(
            "AuthorizeSecurityGroupIngress",
            ec2.authorize_security_group_ingress()
                .group_id(&r.id)
                .set_ip_permissions(permissions)
                .send()
                .await,
        )
    } else {
        unless_done(
            "RevokeSecurityGroupIngress",
            ec2.revoke_security_group_ingress()
                .group_id(&r.id)
                .set_ip_permissions(permissions)
                .send()
                .await,
        )
    }
}

/// Deletes a security group.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteSecurityGroup",
        ec2.delete_security_group().group_id(&r.id).send().await,
    )
    .map(drop)
}

/// Rules as EC2 permissions, source groups found by name in `groups`: the one place both
/// creation and repair build them.
fn permissions(
    rules: &[IngressRule],
    groups: &HashMap<&str, &str>,
) -> Result<Vec<IpPermission>, CloudError> {
    rules
        .iter()
        .map(|rule| {
            let port = i32::from(rule.port);
            let permission = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port);
            let permission = match &rule.source {
                RuleSource::Cidr(cidr) => {
                    permission.ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                }
                RuleSource::Group(source) => {
                    let id = groups.get(source.as_str()).ok_or_else(|| {
                        CloudError::Transient(format!("security group {source} is not visible yet"))
                    })?;
                    permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(*id).build())
                }
            };
            Ok(permission.build())
        })
        .collect()
}
