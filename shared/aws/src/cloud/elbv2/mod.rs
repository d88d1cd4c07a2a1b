//! ELBv2: the environment's target groups (two tracks per service), its application load
//! balancer and the load balancer's listeners. All are found by name (or `Name` tag) and
//! kept only when they carry the environment's and the stack's tags.

pub(crate) mod listener;
pub(crate) mod load_balancer;
pub(crate) mod target_group;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::Tag;
use envplane_cloud::{CloudError, Resource};
use envplane_domain::resources::{ResourceKind, tags};

use crate::cloud::Creating;
use crate::cloud::support::{Owner, required, sent};

/// The environment's ELBv2 resources of `kinds` that carry its and the stack's tags: one
/// describe per kind and one `DescribeTags` for all of them (ELBv2 describes carry no tags).
pub(crate) async fn discover(
    elb: &Client,
    owner: &Owner<'_>,
    kinds: &BTreeSet<ResourceKind>,
) -> Result<Vec<Resource>, CloudError> {
    let groups = if kinds.contains(&ResourceKind::TargetGroup) {
        target_group::describe(elb, owner).await?
    } else {
        Vec::new()
    };
    let wants_balancer = kinds.contains(&ResourceKind::LoadBalancer);
    let wants_listeners = kinds.contains(&ResourceKind::Listener);
    let balancer = if wants_balancer || wants_listeners {
        load_balancer::describe(elb, owner).await?
    } else {
        None
    };
    let listeners = match balancer.as_ref().and_then(|b| b.load_balancer_arn()) {
        Some(arn) if wants_listeners => listener::describe(elb, arn).await?,
        _ => Vec::new(),
    };
    let arns: Vec<String> = groups
        .iter()
        .filter_map(|(_, g)| g.target_group_arn())
        .chain(balancer.iter().filter_map(|b| b.load_balancer_arn()))
        .chain(listeners.iter().filter_map(|l| l.listener_arn()))
        .map(str::to_owned)
        .collect();
    let mut tags = if arns.is_empty() {
        BTreeMap::new()
    } else {
        tags_of(elb, arns).await?
    };
    // A resource with envplane's name but not its tags is someone else's.
    let mut take = |arn: Option<&str>| arn.and_then(|a| tags.remove(a)).filter(|t| owner.owns(t));
    let mut out = Vec::new();
    for (name, g) in &groups {
        if let Some(t) = take(g.target_group_arn()) {
            out.push(target_group::to_resource(name, g, t)?);
        }
    }
    if let Some(b) = balancer.as_ref().filter(|_| wants_balancer)
        && let Some(t) = take(b.load_balancer_arn())
    {
        out.push(load_balancer::to_resource(owner, b, t)?);
    }
    for l in &listeners {
        if let Some(t) = take(l.listener_arn()).filter(|t| t.contains_key(tags::NAME)) {
            out.push(listener::to_resource(l, t)?);
        }
    }
    Ok(out)
}

/// The tags of `arns` (at most 20 per call, as ELBv2 allows), by ARN.
pub(crate) async fn tags_of(
    elb: &Client,
    arns: Vec<String>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, CloudError> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(20) {
        let described = sent(
            "DescribeTags",
            elb.describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await,
        )?;
        for d in described.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                .collect();
            out.insert(required(d.resource_arn(), "a tagged ARN")?.to_owned(), tags);
        }
    }
    Ok(out)
}

/// The tags every ELBv2 resource envplane creates carries (`Name` too: listeners have no name
/// of their own).
pub(crate) fn creation_tags(cx: &Creating<'_>) -> Vec<Tag> {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    vec![
        tag(tags::ENVIRONMENT, cx.owner.env.as_str()),
        tag(tags::STACK, cx.owner.stack),
        tag(tags::OPERATION, cx.operation),
        tag(tags::NAME, cx.name),
    ]
}
