//! The database endpoint as a private DNS record per environment (Route 53): apps connect to
//! `db.<env>.envplane.internal`, and a restore switches the record, not their configuration.
//! The zone is the environment's own (associated with its VPC), tagged with the environment
//! and the stack; nothing without those tags is ever changed or deleted.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType,
    Tag, TagResourceType, Vpc, VpcRegion,
};
use envplane_cloud::CloudError;
use envplane_domain::EnvName;
use envplane_domain::resources::tags;

use crate::cloud::support::sent;

/// The private zone's name of an environment.
pub(crate) fn zone_name(env: &EnvName) -> String {
    format!("{env}.envplane.internal.")
}

/// The database's record in it.
pub(crate) fn record_name(env: &EnvName) -> String {
    format!("db.{env}.envplane.internal.")
}

/// The zone's id (`/hostedzone/…` stripped), if it exists and is this stack's.
pub(crate) async fn zone(
    r53: &Client,
    env: &EnvName,
    stack: &str,
) -> Result<Option<String>, CloudError> {
    let listed = sent(
        "ListHostedZonesByName",
        r53.list_hosted_zones_by_name()
            .dns_name(zone_name(env))
            .send()
            .await,
    )?;
    for zone in listed.hosted_zones() {
        if zone.name() != zone_name(env) {
            continue;
        }
        let id = zone.id().trim_start_matches("/hostedzone/").to_owned();
        if owned(r53, &id, env, stack).await? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

async fn owned(r53: &Client, id: &str, env: &EnvName, stack: &str) -> Result<bool, CloudError> {
    let listed = sent(
        "ListTagsForResource",
        r53.list_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(id)
            .send()
            .await,
    )?;
    let found = listed
        .resource_tag_set()
        .map(|s| s.tags())
        .unwrap_or_default();
    let has = |key: &str, value: &str| {
        found
            .iter()
            .any(|t| t.key() == Some(key) && t.value() == Some(value))
    };
    Ok(has(tags::ENVIRONMENT, env.as_str()) && has(tags::STACK, stack))
}

/// The zone of `env`, made (private, on `vpc`, tagged) when missing.
pub(crate) async fn ensure_zone(
    r53: &Client,
    env: &EnvName,
    stack: &str,
    vpc: &str,
    region: &str,
) -> Result<String, CloudError> {
    if let Some(id) = zone(r53, env, stack).await? {
        return Ok(id);
    }
    let created = sent(
        "CreateHostedZone",
        r53.create_hosted_zone()
            .name(zone_name(env))
            .caller_reference(format!(
                "envplane-{env}-{}",
                envplane_domain::names::fnv1a(stack.as_bytes())
            ))
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::from(region))
                    .build(),
            )
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .private_zone(true)
                    .comment(format!("envplane: the database endpoint of {env}"))
                    .build(),
            )
            .send()
            .await,
    )?;
    let id = created
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
        .ok_or_else(|| CloudError::Transient("CreateHostedZone answered without a zone".into()))?;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    sent(
        "ChangeTagsForResource",
        r53.change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(&id)
            .add_tags(tag(tags::ENVIRONMENT, env.as_str()))
            .add_tags(tag(tags::STACK, stack))
            .send()
            .await,
    )?;
    Ok(id)
}

/// Points the database's record at `address` (30 s TTL: a switch reaches clients quickly).
pub(crate) async fn point(
    r53: &Client,
    zone: &str,
    env: &EnvName,
    address: &str,
) -> Result<(), CloudError> {
    let record = ResourceRecordSet::builder()
        .name(record_name(env))
        .r#type(RrType::A)
        .ttl(30)
        .resource_records(
            ResourceRecord::builder()
                .value(address)
                .build()
                .map_err(|e| CloudError::Invalid(e.to_string()))?,
        )
        .build()
        .map_err(|e| CloudError::Invalid(e.to_string()))?;
    let batch = ChangeBatch::builder()
        .comment(format!("envplane: {env}'s database at {address}"))
        .changes(
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(record)
                .build()
                .map_err(|e| CloudError::Invalid(e.to_string()))?,
        )
        .build()
        .map_err(|e| CloudError::Invalid(e.to_string()))?;
    sent(
        "ChangeResourceRecordSets",
        r53.change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await,
    )
    .map(drop)
}

/// Where the database's record points, if it exists.
pub(crate) async fn pointed(
    r53: &Client,
    zone: &str,
    env: &EnvName,
) -> Result<Option<String>, CloudError> {
    let listed = sent(
        "ListResourceRecordSets",
        r53.list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(record_name(env))
            .start_record_type(RrType::A)
            .send()
            .await,
    )?;
    Ok(listed
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == record_name(env) && r.r#type() == &RrType::A)
        .and_then(|r| r.resource_records().first())
        .map(|r| r.value().to_owned()))
}

/// Deletes the zone of `env` (its records first), if it is this stack's.
pub(crate) async fn remove(r53: &Client, env: &EnvName, stack: &str) -> Result<(), CloudError> {
    let Some(zone) = zone(r53, env, stack).await? else {
        return Ok(());
    };
    let records = sent(
        "ListResourceRecordSets",
        r53.list_resource_record_sets()
            .hosted_zone_id(&zone)
            .send()
            .await,
    )?;
    for record in records.resource_record_sets() {
        if matches!(record.r#type(), RrType::Soa | RrType::Ns) {
            continue;
        }
        let change = Change::builder()
            .action(ChangeAction::Delete)
            .resource_record_set(record.clone())
            .build()
            .map_err(|e| CloudError::Invalid(e.to_string()))?;
        let batch = ChangeBatch::builder()
            .changes(change)
            .build()
            .map_err(|e| CloudError::Invalid(e.to_string()))?;
        sent(
            "ChangeResourceRecordSets",
            r53.change_resource_record_sets()
                .hosted_zone_id(&zone)
                .change_batch(batch)
                .send()
                .await,
        )?;
    }
    sent(
        "DeleteHostedZone",
        r53.delete_hosted_zone().id(&zone).send().await,
    )
    .map(drop)
}
