//! The database host's gp3 data volume: creation, attachment to the host, in-place growth, and
//! the snapshot taken before a resize.

use std::collections::HashMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, ResourceType, SnapshotState as Ec2SnapshotState, VolumeState, VolumeType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use envplane_cloud::{CloudError, Modification, Resource, ResourceState, Snapshot, SnapshotState};
use envplane_domain::resources::{Observed, desired, observed, tags};
use envplane_domain::{EnvName, names};

use crate::cloud::Creating;
use crate::cloud::support::{
    Owner, all_pages, client_token, count, ec2_tags, int, required, resource, sent, tag_spec,
    timestamp, unless_done, unless_gone,
};

/// The environment's volumes (deleted ones left out).
pub(crate) async fn discover(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Resource>, CloudError> {
    let pages = ec2
        .describe_volumes()
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for v in all_pages("DescribeVolumes", pages)
        .await?
        .iter()
        .flat_map(|o| o.volumes())
    {
        let state = match v.state() {
            Some(VolumeState::Available | VolumeState::InUse) => ResourceState::Active,
            Some(VolumeState::Deleting) => ResourceState::Deleting,
            Some(VolumeState::Deleted) => continue,
            Some(VolumeState::Error) => ResourceState::Failed,
            _ => ResourceState::Creating,
        };
        let mut r = resource(
            required(v.volume_id(), "a volume id")?,
            ec2_tags(v.tags()),
            state,
            Observed::Volume(observed::Volume {
                size_gb: count(v.size()),
                iops: count(v.iops()),
                throughput_mibps: count(v.throughput()),
                az: v.availability_zone().map(str::to_owned),
                attached_to: v
                    .attachments()
                    .first()
                    .and_then(|a| a.instance_id())
                    .map(str::to_owned),
            }),
        );
        r.created_at = timestamp(v.create_time());
        out.push(r);
    }
    Ok(out)
}

/// Creates the encrypted gp3 volume in the availability zone `zone`.
pub(crate) async fn create(
    ec2: &Client,
    cx: &Creating<'_>,
    spec: &desired::Volume,
    zone: String,
) -> Result<(), CloudError> {
    let backup: &[(&str, &str)] = if spec.backup {
        &[(tags::BACKUP, "true")]
    } else {
        &[]
    };
    sent(
        "CreateVolume",
        ec2.create_volume()
            .availability_zone(zone)
            .volume_type(VolumeType::Gp3)
            .size(int(spec.size_gb))
            .iops(int(spec.iops))
            .throughput(int(spec.throughput_mibps))
            .encrypted(true)
            .client_token(client_token(cx.operation, cx.name))
            .tag_specifications(tag_spec(
                ResourceType::Volume,
                &cx.owner,
                cx.operation,
                cx.name,
                backup,
            ))
            .send()
            .await,
    )
    .map(drop)
}

/// Attaches the data volume to the database host once both are up; whether it is attached.
pub(crate) async fn attach_to_host(
    ec2: &Client,
    env: &EnvName,
    known: &HashMap<String, Resource>,
) -> Result<bool, CloudError> {
    let (Some(instance), Some(volume)) = (
        known.get(&names::database_host(env)),
        known.get(&names::data_volume(env)),
    ) else {
        return Ok(false);
    };
    if let Observed::Volume(v) = &volume.observed
        && v.attached_to.as_deref() == Some(instance.id.as_str())
    {
        return Ok(true);
    }
    if instance.state != ResourceState::Active || volume.state != ResourceState::Active {
        return Ok(false);
    }
    sent(
        "AttachVolume",
        ec2.attach_volume()
            .volume_id(&volume.id)
            .instance_id(&instance.id)
            .device("/dev/sdf")
            .send()
            .await,
    )?;
    // Attached: the volume shows in-use within seconds; the host mounts it at boot.
    Ok(true)
}

/// Grows the volume or changes its performance.
pub(crate) async fn modify(
    ec2: &Client,
    r: &Resource,
    change: &Modification,
) -> Result<(), CloudError> {
    let Modification::ModifyVolume {
        size_gb,
        iops,
        throughput_mibps,
    } = change
    else {
        return Err(CloudError::Invalid(format!(
            "{change:?} does not apply to a volume"
        )));
    };
    unless_done(
        "ModifyVolume",
        ec2.modify_volume()
            .volume_id(&r.id)
            .size(int(*size_gb))
            .iops(int(*iops))
            .throughput(int(*throughput_mibps))
            .send()
            .await,
    )
}

/// Deletes the volume.
pub(crate) async fn delete(ec2: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteVolume",
        ec2.delete_volume().volume_id(&r.id).send().await,
    )
    .map(drop)
}

/// The snapshot `operation` takes of the volume: found by the operation's tag, or started.
pub(crate) async fn snapshot(
    ec2: &Client,
    owner: &Owner<'_>,
    operation: &str,
    volume: &Resource,
) -> Result<SnapshotState, CloudError> {
    let found = sent(
        "DescribeSnapshots",
        ec2.describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::OPERATION))
                    .values(operation)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("volume-id")
                    .values(&volume.id)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::STACK))
                    .values(owner.stack)
                    .build(),
            )
            .send()
            .await,
    )?;
    if let Some(snapshot) = found.snapshots().first() {
        return match snapshot.state() {
            Some(Ec2SnapshotState::Completed) => Ok(SnapshotState::Completed),
            Some(Ec2SnapshotState::Error) => Err(CloudError::Conflict(format!(
                "snapshot {} of {} failed: {}",
                snapshot.snapshot_id().unwrap_or("(no id)"),
                volume.name,
                snapshot.state_message().unwrap_or("no message")
            ))),
            _ => Ok(SnapshotState::Pending),
        };
    }
    let name = names::pre_change_snapshot(&volume.name, operation);
    sent(
        "CreateSnapshot",
        ec2.create_snapshot()
            .volume_id(&volume.id)
            .description(format!(
                "envplane: {} before operation {operation}",
                volume.name
            ))
            .tag_specifications(tag_spec(
                ResourceType::Snapshot,
                owner,
                operation,
                &name,
                &[],
            ))
            .send()
            .await,
    )?;
    Ok(SnapshotState::Pending)
}

/// The environment's snapshots this stack took.
pub(crate) async fn snapshots(
    ec2: &Client,
    owner: &Owner<'_>,
) -> Result<Vec<Snapshot>, CloudError> {
    let pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for s in all_pages("DescribeSnapshots", pages)
        .await?
        .iter()
        .flat_map(|o| o.snapshots())
    {
        let id = required(s.snapshot_id(), "a snapshot id")?;
        let tags = ec2_tags(s.tags());
        // An image's snapshots are the image's, not recovery points of the data volume.
        if !owner.owns(&tags) || tags.contains_key(crate::cloud::ec2::image::IMAGE_TAG) {
            continue;
        }
        let started_at = timestamp(s.start_time()).ok_or_else(|| {
            CloudError::Transient(format!("AWS answered without the start of {id}"))
        })?;
        out.push(Snapshot {
            id: id.to_owned(),
            name: tags
                .get(tags::NAME)
                .cloned()
                .unwrap_or_else(|| id.to_owned()),
            started_at,
            tags,
        });
    }
    Ok(out)
}

/// Deletes a snapshot; one that is gone counts as deleted.
pub(crate) async fn delete_snapshot(ec2: &Client, snapshot: &Snapshot) -> Result<(), CloudError> {
    match ec2.delete_snapshot().snapshot_id(&snapshot.id).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => Ok(()),
        Err(e) => Err(crate::errors::cloud_error("DeleteSnapshot", e)),
    }
}
