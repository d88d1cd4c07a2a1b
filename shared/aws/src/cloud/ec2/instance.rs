//! The database host: an EC2 instance that installs PostgreSQL at first boot, and its resize
//! (stop, change type, start).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeValue, InstanceStateName, InstanceType, ResourceType};
use base64::Engine;
use envplane_cloud::{CloudError, Modification, Resource, ResourceState};
use envplane_domain::resources::{self, Observed, Power, desired, observed};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, client_token, ec2_tags, required, resource, sent, tag_spec, timestamp,
    unless_done, unless_gone,
};

fn power(state: &InstanceStateName) -> Option<Power> {
    Some(match state {
        InstanceStateName::Pending => Power::Pending,
        InstanceStateName::Running => Power::Running,
        InstanceStateName::Stopping => Power::Stopping,
        InstanceStateName::Stopped => Power::Stopped,
        InstanceStateName::ShuttingDown => Power::ShuttingDown,
        InstanceStateName::Terminated => Power::Terminated,
        _ => return None,
    })
}

/// The environment's instances (terminated ones left out).
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_instances()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for i in all_pages("DescribeInstances", pages)
        .await?
        .iter()
        .flat_map(|o| o.reservations())
        .flat_map(|r| r.instances())
    {
        let id = required(i.instance_id(), "an instance id")?;
        let power = i
            .state()
            .and_then(|s| s.name())
            .and_then(power)
            .ok_or_else(|| {
                CloudError::Transient(format!("AWS answered without the state of {id}"))
            })?;
        let state = match power {
            Power::Running => ResourceState::Active,
            Power::Terminated => continue,
            Power::ShuttingDown => ResourceState::Deleting,
            // Pending, or stopped (or stopping) for a resize: not usable now.
            _ => ResourceState::Creating,
        };
        let mut r = resource(
            id,
            ec2_tags(i.tags()),
            state,
            Observed::DbInstance(observed::DbInstance {
                instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
                az: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .map(str::to_owned),
                power,
            }),
        );
        r.created_at = timestamp(i.launch_time());
        out.push(r);
    }
    Ok(out)
}

/// Launches the database host.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::DbInstance,
    settings: &crate::cloud::AwsSettings,
) -> Result<(), CloudError> {
    let wal = wal_archive(ec2, settings, cx.owner.env);
    let user_data =
        resources::database_user_data(&spec.engine_version, &spec.extensions, wal.as_ref());
    let profile = settings.db_instance_profile.as_ref().map(|name| {
        aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
            .name(name)
            .build()
    });
    sent(
        "RunInstances",
        ec2.run_instances()
            .image_id(&settings.db_image_id)
            .set_iam_instance_profile(profile)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(cx.id_of(&spec.subnet)?)
            .security_group_ids(cx.id_of(&spec.security_group)?)
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .client_token(client_token(cx.operation, cx.name))
            .tag_specifications(tag_spec(
                ResourceType::Instance,
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

/// Where `env`'s host archives its WAL: the stack's bucket in the client's region, when the
/// stack has one. Every tier archives at production's `archive_timeout` (60 s).
pub(crate) fn wal_archive(
    ec2: &Client,
    settings: &crate::cloud::AwsSettings,
    env: &envplane_domain::EnvName,
) -> Option<resources::WalArchive> {
    Some(resources::WalArchive {
        bucket: settings.backup_bucket.clone()?,
        region: ec2.config().region()?.to_string(),
        environment: env.clone(),
        archive_timeout_seconds: 60,
    })
}

/// One stage of a resize.
pub(crate) async fn modify(
    ec2: &Client,
    r: &Resource,
    change: &Modification,
) -> Result<(), CloudError> {
    let id = r.id.as_str();
    match change {
        Modification::StopInstance => unless_done(
            "StopInstances",
            ec2.stop_instances().instance_ids(id).send().await,
        ),
        Modification::InstanceType { instance_type } => unless_done(
            "ModifyInstanceAttribute",
            ec2.modify_instance_attribute()
                .instance_id(id)
                .instance_type(AttributeValue::builder().value(instance_type).build())
                .send()
                .await,
        ),
        Modification::StartInstance => unless_done(
            "StartInstances",
            ec2.start_instances().instance_ids(id).send().await,
        ),
        other => Err(CloudError::Invalid(format!(
            "{other:?} does not apply to a db_instance"
        ))),
    }
}

/// Terminates the host.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "TerminateInstances",
        ec2.terminate_instances().instance_ids(&r.id).send().await,
    )
    .map(drop)
}
