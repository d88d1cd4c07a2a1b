//! The environment's application load balancer: internet-facing, in the public subnets,
//! behind the ALB security group. Found by its name; `provisioning` until AWS says `active`.

use aws_sdk_elasticloadbalancingv2::Client;
use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancer, LoadBalancerSchemeEnum, LoadBalancerStateEnum,
    LoadBalancerTypeEnum,
};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::names;
use envplane_domain::resources::{Observed, desired, observed, tags};

use crate::cloud::Creating;
use crate::cloud::elbv2::creation_tags;
use crate::cloud::support::{Owner, required, resource, sent, unless_gone};

fn state(code: Option<&LoadBalancerStateEnum>) -> ResourceState {
    match code {
        Some(LoadBalancerStateEnum::Active) => ResourceState::Active,
        Some(LoadBalancerStateEnum::Failed) => ResourceState::Failed,
        _ => ResourceState::Creating,
    }
}

/// The environment's load balancer, when one has its name.
pub(crate) async fn describe(
    elb: &Client,
    owner: &Owner<'_>,
) -> Result<Option<LoadBalancer>, CloudError> {
    let aws_name = names::target_group_aws_name(&names::load_balancer(owner.env));
    Ok(unless_gone(
        "DescribeLoadBalancers",
        elb.describe_load_balancers().names(&aws_name).send().await,
    )?
    .and_then(|found| found.load_balancers().first().cloned()))
}

/// The load balancer as a resource, with its tags (`Name` added).
pub(crate) fn to_resource(
    owner: &Owner<'_>,
    b: &LoadBalancer,
    mut tags: BTreeMap<String, String>,
) -> Result<Resource, CloudError> {
    let arn = required(b.load_balancer_arn(), "a load balancer ARN")?;
    tags.insert(tags::NAME.to_owned(), names::load_balancer(owner.env));
    Ok(resource(
        arn,
        tags,
        state(b.state().and_then(|s| s.code())),
        Observed::LoadBalancer(observed::LoadBalancer {
            name: b.load_balancer_name().unwrap_or_default().to_owned(),
            dns_name: b.dns_name().map(str::to_owned),
        }),
    ))
}

/// Creates the load balancer in the public subnets.
pub(crate) async fn create(
    elb: &Client,
    cx: &Creating<'_>,
    spec: &desired::LoadBalancer,
) -> Result<(), CloudError> {
    let subnets = spec
        .subnets
        .iter()
        .map(|s| cx.id_of(s).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    sent(
        "CreateLoadBalancer",
        elb.create_load_balancer()
            .name(names::target_group_aws_name(cx.name))
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(subnets))
            .security_groups(cx.id_of(&spec.security_group)?)
            .set_tags(Some(creation_tags(cx)))
            .send()
            .await,
    )
    .map(drop)
}

/// Deletes the load balancer (its listeners went first).
pub(crate) async fn delete(elb: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteLoadBalancer",
        elb.delete_load_balancer()
            .load_balancer_arn(&r.id)
            .send()
            .await,
    )
    .map(drop)
}
