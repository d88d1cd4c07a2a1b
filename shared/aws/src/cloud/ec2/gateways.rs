//! The way in and out: the internet gateway, the Elastic IPs and the NAT gateways.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{DomainType, NatGatewayState, ResourceType};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{Observed, desired, observed};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, client_token, ec2_tags, required, resource, sent, tag_spec, timestamp,
    unless_gone,
};

/// The environment's internet gateways.
pub(crate) async fn discover_internet(
    ec2: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_internet_gateways()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for g in all_pages("DescribeInternetGateways", pages)
        .await?
        .iter()
        .flat_map(|o| o.internet_gateways())
    {
        let vpc = g.attachments().first().and_then(|a| a.vpc_id());
        let state = if vpc.is_some() {
            ResourceState::Active
        } else {
            ResourceState::Creating
        };
        out.push(resource(
            required(g.internet_gateway_id(), "an internet gateway id")?,
            ec2_tags(g.tags()),
            state,
            Observed::InternetGateway(observed::InternetGateway {
                vpc_id: vpc.map(str::to_owned),
            }),
        ));
    }
    Ok(out)
}

/// Creates the internet gateway and attaches it to the VPC.
pub(crate) async fn create_internet(ec2: &Client, cx: &Creating<'_>) -> Result<(), CloudError> {
    let o = sent(
        "CreateInternetGateway",
        ec2.create_internet_gateway()
            .tag_specifications(tag_spec(
                ResourceType::InternetGateway,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )?;
    let igw = required(
        o.internet_gateway().and_then(|g| g.internet_gateway_id()),
        "the new internet gateway's id",
    )?;
    sent(
        "AttachInternetGateway",
        ec2.attach_internet_gateway()
            .internet_gateway_id(igw)
            .vpc_id(cx.vpc_id()?)
            .send()
            .await,
    )?;
    Ok(())
}

/// Detaches the internet gateway from its VPC and deletes it.
pub(crate) async fn delete_internet(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    if let Observed::InternetGateway(observed::InternetGateway { vpc_id: Some(vpc) }) = &r.observed
    {
        unless_gone(
            "DetachInternetGateway",
            ec2.detach_internet_gateway()
                .internet_gateway_id(&r.id)
                .vpc_id(vpc)
                .send()
                .await,
        )?;
    }
    unless_gone(
        "DeleteInternetGateway",
        ec2.delete_internet_gateway()
            .internet_gateway_id(&r.id)
            .send()
            .await,
    )
    .map(drop)
}

/// The environment's Elastic IPs.
pub(crate) async fn discover_addresses(
    ec2: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Resource>, CloudError> {
    // DescribeAddresses has no pages.
    let o = sent(
        "DescribeAddresses",
        ec2.describe_addresses()
            .set_filters(Some(owner.filters()))
            .send()
            .await,
    )?;
    o.addresses()
        .iter()
        .map(|a| {
            Ok(resource(
                required(a.allocation_id(), "an allocation id")?,
                ec2_tags(a.tags()),
                ResourceState::Active,
                Observed::ElasticIp(observed::ElasticIp {
                    public_ip: a.public_ip().map(str::to_owned),
                }),
            ))
        })
        .collect()
}

/// Allocates an Elastic IP.
pub(crate) async fn create_address(ec2: &Client, cx: &Creating<'_>) -> Result<(), CloudError> {
    sent(
        "AllocateAddress",
        ec2.allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(
                ResourceType::ElasticIp,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )
    .map(drop)
}

/// Releases an Elastic IP.
pub(crate) async fn delete_address(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "ReleaseAddress",
        ec2.release_address().allocation_id(&r.id).send().await,
    )
    .map(drop)
}

/// The environment's NAT gateways (deleted ones left out).
pub(crate) async fn discover_nat(
    ec2: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_nat_gateways()
        .set_filter(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for g in all_pages("DescribeNatGateways", pages)
        .await?
        .iter()
        .flat_map(|o| o.nat_gateways())
    {
        let state = match g.state() {
            Some(NatGatewayState::Available) => ResourceState::Active,
            Some(NatGatewayState::Deleted) => continue,
            Some(NatGatewayState::Deleting) => ResourceState::Deleting,
            Some(NatGatewayState::Failed) => ResourceState::Failed,
            _ => ResourceState::Creating,
        };
        let mut r = resource(
            required(g.nat_gateway_id(), "a NAT gateway id")?,
            ec2_tags(g.tags()),
            state,
            Observed::NatGateway(observed::NatGateway {
                subnet_id: g.subnet_id().map(str::to_owned),
            }),
        );
        r.created_at = timestamp(g.create_time());
        out.push(r);
    }
    Ok(out)
}

/// Creates a NAT gateway in its public subnet with its Elastic IP.
pub(crate) async fn create_nat(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::NatGateway,
) -> Result<(), CloudError> {
    sent(
        "CreateNatGateway",
        ec2.create_nat_gateway()
            .subnet_id(cx.id_of(&spec.subnet)?)
            .allocation_id(cx.id_of(&spec.eip)?)
            .client_token(client_token(cx.operation, cx.name))
            .tag_specifications(tag_spec(
                ResourceType::Natgateway,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )
    .map(drop)
}

/// Deletes a NAT gateway.
pub(crate) async fn delete_nat(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteNatGateway",
        ec2.delete_nat_gateway().nat_gateway_id(&r.id).send().await,
    )
    .map(drop)
}
