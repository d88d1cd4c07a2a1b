//! The database host's weekly machine image: made without a reboot, the image and its
//! snapshots tagged with the environment and the stack (its snapshots also with
//! `envplane:image`, so they are never taken for the data volume's recovery points), found by
//! its label on a retry, and deregistered with its snapshots when it expires.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, ResourceType};
use envplane_cloud::{CloudError, Image, Resource};
use envplane_domain::resources::tags;

use crate::cloud::support::{Owner, all_pages, ec2_tags, required, sent, tag_spec};

/// The tag an image's snapshots carry: the label of their image.
pub(crate) const IMAGE_TAG: &str = "envplane:image";

/// Starts the image of `host` labelled `label`, unless it exists.
pub(crate) async fn create(
    ec2: &Client,
    owner: &Owner<'_>,
    label: &str,
    host: &Resource,
) -> Result<(), CloudError> {
    let found = sent(
        "DescribeImages",
        ec2.describe_images()
            .owners("self")
            .set_filters(Some(owner.filters()))
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::OPERATION))
                    .values(label)
                    .build(),
            )
            .send()
            .await,
    )?;
    if !found.images().is_empty() {
        return Ok(());
    }
    let name = format!("{}-{label}", host.name);
    sent(
        "CreateImage",
        ec2.create_image()
            .instance_id(&host.id)
            .name(&name)
            .description(format!("envplane: weekly image of {}", host.name))
            .no_reboot(true)
            .tag_specifications(tag_spec(ResourceType::Image, owner, label, &name, &[]))
            .tag_specifications(tag_spec(
                ResourceType::Snapshot,
                owner,
                label,
                &name,
                &[(IMAGE_TAG, label)],
            ))
            .send()
            .await,
    )
    .map(drop)
}

/// The environment's images this stack made.
pub(crate) async fn list(ec2: &Client, owner: &Owner<'_>) -> Result<Vec<Image>, CloudError> {
    let pages = ec2
        .describe_images()
        .owners("self")
        .set_filters(Some(owner.filters()))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    for i in all_pages("DescribeImages", pages)
        .await?
        .iter()
        .flat_map(|o| o.images())
    {
        let id = required(i.image_id(), "an image id")?;
        let tags = ec2_tags(i.tags());
        if !owner.owns(&tags) {
            continue;
        }
        let created = required(i.creation_date(), "an image's creation date")?;
        let created_at =
            time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
                .map_err(|e| CloudError::Transient(format!("{id} was made at {created:?}: {e}")))?;
        out.push(Image {
            id: id.to_owned(),
            name: tags
                .get(tags::NAME)
                .cloned()
                .unwrap_or_else(|| id.to_owned()),
            created_at,
            snapshots: i
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
                .collect(),
            tags,
        });
    }
    Ok(out)
}

/// Deregisters an image, then deletes its snapshots; one that is gone counts as deleted.
pub(crate) async fn delete(ec2: &Client, image: &Image) -> Result<(), CloudError> {
    match ec2.deregister_image().image_id(&image.id).send().await {
        Ok(_) => {}
        Err(e) if crate::errors::code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => {}
        Err(e) => return Err(crate::errors::cloud_error("DeregisterImage", e)),
    }
    for snapshot in &image.snapshots {
        match ec2.delete_snapshot().snapshot_id(snapshot).send().await {
            Ok(_) => {}
            Err(e) if crate::errors::code(&e) == Some("InvalidSnapshot.NotFound") => {}
            Err(e) => return Err(crate::errors::cloud_error("DeleteSnapshot", e)),
        }
    }
    Ok(())
}
