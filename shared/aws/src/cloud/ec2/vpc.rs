//! The VPC: created with DNS hostnames and resolution on, as EKS needs.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{Observed, desired, observed};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, ec2_tags, required, resource, sent, tag_spec, unless_gone,
};

/// The environment's VPCs.
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_vpcs()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for v in all_pages("DescribeVpcs", pages)
        .await?
        .iter()
        .flat_map(|o| o.vpcs())
    {
        let state = if v.state().is_some_and(|s| s.as_str() == "available") {
            ResourceState::Active
        } else {
            ResourceState::Creating
        };
        out.push(resource(
            required(v.vpc_id(), "a VPC id")?,
            ec2_tags(v.tags()),
            state,
            Observed::Vpc(observed::Vpc {
                cidr: v.cidr_block().map(str::to_owned),
            }),
        ));
    }
    Ok(out)
}

/// Creates the VPC.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::Vpc,
) -> Result<(), CloudError> {
    let o = sent(
        "CreateVpc",
        ec2.create_vpc()
            .cidr_block(&spec.cidr)
            .tag_specifications(tag_spec(
                ResourceType::Vpc,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )?;
    let vpc_id = required(o.vpc().and_then(|v| v.vpc_id()), "the new VPC's id")?;
    // EKS needs DNS hostnames and resolution in the VPC; one attribute per call.
    let on = || AttributeBooleanValue::builder().value(true).build();
    sent(
        "ModifyVpcAttribute",
        ec2.modify_vpc_attribute()
            .vpc_id(vpc_id)
            .enable_dns_hostnames(on())
            .send()
            .await,
    )?;
    sent(
        "ModifyVpcAttribute",
        ec2.modify_vpc_attribute()
            .vpc_id(vpc_id)
            .enable_dns_support(on())
            .send()
            .await,
    )?;
    Ok(())
}

/// Deletes the VPC.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone("DeleteVpc", ec2.delete_vpc().vpc_id(&r.id).send().await).map(drop)
}
