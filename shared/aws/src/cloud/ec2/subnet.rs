//! Subnets: one public and one private per availability zone; public ones map public IPs and
//! carry the tag the AWS Load Balancer Controller looks for.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{Observed, desired, observed};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, ec2_tags, required, resource, sent, tag_spec, unless_gone,
};

/// The environment's subnets.
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_subnets()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for s in all_pages("DescribeSubnets", pages)
        .await?
        .iter()
        .flat_map(|o| o.subnets())
    {
        let state = if s.state().is_some_and(|s| s.as_str() == "available") {
            ResourceState::Active
        } else {
            ResourceState::Creating
        };
        out.push(resource(
            required(s.subnet_id(), "a subnet id")?,
            ec2_tags(s.tags()),
            state,
            Observed::Subnet(observed::Subnet {
                cidr: s.cidr_block().map(str::to_owned),
                az: s.availability_zone().map(str::to_owned),
            }),
        ));
    }
    Ok(out)
}

/// Creates a subnet in the availability zone `zone`.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::Subnet,
    zone: String,
) -> Result<(), CloudError> {
    let role = if spec.public {
        "kubernetes.io/role/elb"
    } else {
        "kubernetes.io/role/internal-elb"
    };
    let o = sent(
        "CreateSubnet",
        ec2.create_subnet()
            .vpc_id(cx.vpc_id()?)
            .cidr_block(&spec.cidr)
            .availability_zone(zone)
            .tag_specifications(tag_spec(
                ResourceType::Subnet,
                &cx.owner,
                cx.operation,
                cx.name,
                &[(role, "1")],
            ))
            .send()
            .await,
    )?;
    if spec.public {
        let subnet = required(
            o.subnet().and_then(|s| s.subnet_id()),
            "the new subnet's id",
        )?;
        sent(
            "ModifySubnetAttribute",
            ec2.modify_subnet_attribute()
                .subnet_id(subnet)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await,
        )?;
    }
    Ok(())
}

/// Deletes a subnet.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteSubnet",
        ec2.delete_subnet().subnet_id(&r.id).send().await,
    )
    .map(drop)
}
