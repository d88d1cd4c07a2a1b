//! Route tables: a default route to the internet gateway (public) or a NAT gateway (private),
//! and the subnets they serve, which discovery reports by envplane name.

use std::collections::HashMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::ResourceType;
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{Observed, ResourceKind, desired, observed};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, ec2_tags, required, resource, sent, tag_spec, unless_gone,
};

/// The environment's route tables; `subnets` is filled in by [`name_served_subnets`].
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_route_tables()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for t in all_pages("DescribeRouteTables", pages)
        .await?
        .iter()
        .flat_map(|o| o.route_tables())
    {
        let associations = t
            .associations()
            .iter()
            .filter(|a| a.main() != Some(true))
            .filter_map(|a| a.route_table_association_id())
            .map(str::to_owned)
            .collect();
        let subnet_ids = t
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .map(str::to_owned)
            .collect();
        let routed = t
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
        // Routed is usable; a missing association is drift the update flow repairs, not a
        // table still being made.
        let state = if routed {
            ResourceState::Active
        } else {
            ResourceState::Creating
        };
        out.push(resource(
            required(t.route_table_id(), "a route table id")?,
            ec2_tags(t.tags()),
            state,
            Observed::RouteTable(observed::RouteTable {
                associations,
                subnet_ids,
                subnets: Vec::new(),
            }),
        ));
    }
    Ok(out)
}

/// Route tables name the subnets they serve as the plan does; associations with subnets that
/// are not the environment's (gone, or someone else's) are left out.
pub(crate) fn name_served_subnets(found: &mut [Resource]) {
    let names: HashMap<String, String> = found
        .iter()
        .filter(|r| r.kind() == ResourceKind::Subnet)
        .map(|r| (r.id.clone(), r.name.clone()))
        .collect();
    for r in found.iter_mut() {
        if let Observed::RouteTable(t) = &mut r.observed {
            t.subnets = t
                .subnet_ids
                .iter()
                .filter_map(|id| names.get(id).cloned())
                .collect();
        }
    }
}

/// Creates a route table with its default route and associations.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::RouteTable,
) -> Result<(), CloudError> {
    let target = cx
        .known
        .get(&spec.default_route)
        .ok_or_else(|| CloudError::Transient("route target not visible yet".into()))?;
    let o = sent(
        "CreateRouteTable",
        ec2.create_route_table()
            .vpc_id(cx.vpc_id()?)
            .tag_specifications(tag_spec(
                ResourceType::RouteTable,
                &cx.owner,
                cx.operation,
                cx.name,
                &[],
            ))
            .send()
            .await,
    )?;
    let table = required(
        o.route_table().and_then(|t| t.route_table_id()),
        "the new route table's id",
    )?;
    let route = ec2
        .create_route()
        .route_table_id(table)
        .destination_cidr_block("0.0.0.0/0");
    let route = if target.kind() == ResourceKind::NatGateway {
        route.nat_gateway_id(&target.id)
    } else {
        route.gateway_id(&target.id)
    };
    sent("CreateRoute", route.send().await)?;
    for subnet in &spec.subnets {
        associate(ec2, table, cx.id_of(subnet)?).await?;
    }
    Ok(())
}

/// Associates a subnet with a table; an association already made counts as made.
pub(crate) async fn associate(ec2: &Client, table: &str, subnet: &str) -> Result<(), CloudError> {
    crate::cloud::support::unless_done(
        "AssociateRouteTable",
        ec2.associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet)
            .send()
            .await,
    )
}

/// Ends the table's associations and deletes it.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    if let Observed::RouteTable(t) = &r.observed {
        for association in &t.associations {
            unless_gone(
                "DisassociateRouteTable",
                ec2.disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await,
            )?;
        }
    }
    unless_gone(
        "DeleteRouteTable",
        ec2.delete_route_table().route_table_id(&r.id).send().await,
    )
    .map(drop)
}
