//! The database port on AWS: the PostgreSQL of each environment's database host. Its backups
//! are the data volume's EBS snapshots and its WAL in the stack's repository (pgBackRest,
//! configured at first boot); a restore makes a volume from a snapshot and a new host of the
//! same spec beside the environment's, attaches it, and replays the WAL to the target through
//! SSM Run Command; a switch points the environment's private DNS record (Route 53) at the new
//! host and stops the old one, kept for a rollback window. Every restored volume and host
//! carries the environment's and the stack's tags (so a teardown takes them) and
//! `envplane:restore`; a retried step finds what the first made.

mod dns;
mod scripts;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, Instance, InstanceStateName, InstanceType, ResourceType, Snapshot, Volume, VolumeState,
    VolumeType,
};
use aws_sdk_ssm::types::{CommandInvocationStatus, CommandStatus};
use base64::Engine;
use envplane_cloud::{CloudError, Databases, Health, RecoveryTarget, RestoreProgress};
use envplane_domain::resources::tags;
use envplane_domain::{EnvName, names};
use time::OffsetDateTime;

use crate::cloud::support::{
    Owner, all_pages, client_token, ec2_tags, required, sent, tag_spec, timestamp,
};
use crate::lazy::OnFirstUse;

/// The tag that names the restore a volume or a host was made for.
pub const RESTORE_TAG: &str = "envplane:restore";

/// The SDK clients the database port uses, each made when first used.
#[derive(Debug, Clone)]
pub struct DatabaseClients {
    /// EC2: snapshots, volumes, hosts.
    pub ec2: OnFirstUse<aws_sdk_ec2::Client>,
    /// SSM Run Command: what runs on the hosts.
    pub ssm: OnFirstUse<aws_sdk_ssm::Client>,
    /// Route 53: the environments' database records.
    pub route53: OnFirstUse<aws_sdk_route53::Client>,
}

impl DatabaseClients {
    /// Clients on one configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: OnFirstUse::client(config, aws_sdk_ec2::Client::new),
            ssm: OnFirstUse::client(config, aws_sdk_ssm::Client::new),
            route53: OnFirstUse::client(config, aws_sdk_route53::Client::new),
        }
    }
}

/// The database port on AWS.
pub struct AwsDatabases {
    clients: DatabaseClients,
    stack: String,
    region: String,
    instance_profile: Option<String>,
    backup_bucket: Option<String>,
}

/// Where a restore's host goes and what it is: the target's database subnet and security
/// group (its network exists before the restore starts), the source host's image and type.
struct Placement {
    subnet: String,
    zone: String,
    security_group: String,
    image: String,
    instance_type: InstanceType,
}

fn state_of(i: &Instance) -> Option<&InstanceStateName> {
    i.state().and_then(|s| s.name())
}

impl AwsDatabases {
    /// The port for the stack `stack` in `region`; restored hosts get `instance_profile` (the
    /// role SSM and the WAL repository need), where one is given, and fetch the source's WAL
    /// from `backup_bucket`.
    pub fn new(
        clients: DatabaseClients,
        stack: String,
        region: String,
        instance_profile: Option<String>,
        backup_bucket: Option<String>,
    ) -> Self {
        Self {
            clients,
            stack,
            region,
            instance_profile,
            backup_bucket,
        }
    }

    fn filters(&self, env: &EnvName, extra: Option<(&str, &str)>) -> Vec<Filter> {
        let mut filters = Owner {
            env,
            stack: &self.stack,
        }
        .filters();
        if let Some((key, value)) = extra {
            filters.push(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            );
        }
        filters
    }

    /// The snapshot a restore of `source` at `target` starts from: this stack's, of that
    /// environment, completed.
    async fn snapshot_for(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
    ) -> Result<Snapshot, CloudError> {
        let pages = self
            .clients
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(self.filters(source, None)))
            .into_paginator()
            .send();
        let mut found: Vec<Snapshot> = all_pages("DescribeSnapshots", pages)
            .await?
            .iter()
            .flat_map(|o| o.snapshots().to_vec())
            .filter(|s| {
                s.state() == Some(&aws_sdk_ec2::types::SnapshotState::Completed)
                    && s.tags().iter().any(|t| t.key() == Some(tags::STACK))
            })
            .collect();
        found.sort_by_key(|s| s.start_time().map(|t| t.secs()));
        let started = |s: &Snapshot| timestamp(s.start_time());
        let chosen = match target {
            RecoveryTarget::Backup(id) => found
                .into_iter()
                .find(|s| s.snapshot_id() == Some(id.as_str())),
            RecoveryTarget::Time(at) => found
                .into_iter()
                .rev()
                .find(|s| started(s).is_some_and(|t| t <= *at)),
            RecoveryTarget::Latest => found.into_iter().next_back(),
        };
        chosen.ok_or_else(|| {
            CloudError::Invalid(format!(
                "{source} has no completed snapshot of this stack for {target:?}"
            ))
        })
    }

    /// Instances of `env` (not terminated), by an extra tag.
    async fn instances(
        &self,
        env: &EnvName,
        extra: Option<(&str, &str)>,
    ) -> Result<Vec<Instance>, CloudError> {
        let pages = self
            .clients
            .ec2
            .describe_instances()
            .set_filters(Some(self.filters(env, extra)))
            .into_paginator()
            .send();
        Ok(all_pages("DescribeInstances", pages)
            .await?
            .iter()
            .flat_map(|o| o.reservations())
            .flat_map(|r| r.instances())
            .filter(|i| state_of(i) != Some(&InstanceStateName::Terminated))
            .cloned()
            .collect())
    }

    /// The host that serves `env` now: the one its DNS record points at, else its first host.
    async fn serving(&self, env: &EnvName) -> Result<Instance, CloudError> {
        let hosts = self.instances(env, None).await?;
        let host_name = names::database_host(env);
        let pointed = match dns::zone(&self.clients.route53, env, &self.stack).await? {
            Some(zone) => dns::pointed(&self.clients.route53, &zone, env).await?,
            None => None,
        };
        let by_dns = pointed.and_then(|ip| {
            hosts
                .iter()
                .find(|i| i.private_ip_address() == Some(ip.as_str()))
                .cloned()
        });
        by_dns
            .or_else(|| {
                hosts
                    .into_iter()
                    .find(|i| ec2_tags(i.tags()).get(tags::NAME) == Some(&host_name))
            })
            .ok_or_else(|| CloudError::Conflict(format!("{env} has no database host {host_name}")))
    }

    async fn volume(&self, env: &EnvName, restore: &str) -> Result<Option<Volume>, CloudError> {
        let pages = self
            .clients
            .ec2
            .describe_volumes()
            .set_filters(Some(self.filters(env, Some((RESTORE_TAG, restore)))))
            .into_paginator()
            .send();
        Ok(all_pages("DescribeVolumes", pages)
            .await?
            .iter()
            .flat_map(|o| o.volumes())
            .find(|v| {
                !matches!(
                    v.state(),
                    Some(VolumeState::Deleting | VolumeState::Deleted)
                )
            })
            .cloned())
    }

    /// The newest command of `step` of `restore` sent to `host`, with its status.
    async fn command(
        &self,
        host: &str,
        step: &str,
        restore: &str,
    ) -> Result<Option<(String, CommandStatus)>, CloudError> {
        let listed = sent(
            "ListCommands",
            self.clients
                .ssm
                .list_commands()
                .instance_id(host)
                .send()
                .await,
        )?;
        let wanted = scripts::comment(step, restore);
        Ok(listed
            .commands()
            .iter()
            .filter(|c| c.comment() == Some(wanted.as_str()))
            .max_by_key(|c| c.requested_date_time().map(|t| t.secs()))
            .and_then(|c| Some((c.command_id()?.to_owned(), c.status()?.clone()))))
    }

    async fn send(
        &self,
        host: &str,
        step: &str,
        restore: &str,
        commands: Vec<String>,
    ) -> Result<String, CloudError> {
        let sent_command = sent(
            "SendCommand",
            self.clients
                .ssm
                .send_command()
                .instance_ids(host)
                .document_name("AWS-RunShellScript")
                .comment(scripts::comment(step, restore))
                .timeout_seconds(600)
                .parameters("commands", commands)
                .parameters("executionTimeout", vec!["3600".to_owned()])
                .send()
                .await,
        )?;
        sent_command
            .command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                CloudError::Transient("SendCommand answered without a command id".into())
            })
    }

    /// Where the restore of `source` into `into` places its host.
    async fn placement(&self, source: &EnvName, into: &EnvName) -> Result<Placement, CloudError> {
        let like = self.serving(source).await?;
        let subnet_name = names::subnet(into, false, 1);
        let subnets = sent(
            "DescribeSubnets",
            self.clients
                .ec2
                .describe_subnets()
                .set_filters(Some(
                    self.filters(into, Some((tags::NAME, subnet_name.as_str()))),
                ))
                .send()
                .await,
        )?;
        let subnet = subnets.subnets().first().ok_or_else(|| {
            CloudError::Conflict(format!("{into} has no subnet {subnet_name} yet"))
        })?;
        let group_name = names::security_group(into, names::GroupRole::Db);
        let groups = sent(
            "DescribeSecurityGroups",
            self.clients
                .ec2
                .describe_security_groups()
                .set_filters(Some(
                    self.filters(into, Some((tags::NAME, group_name.as_str()))),
                ))
                .send()
                .await,
        )?;
        let group = groups.security_groups().first().ok_or_else(|| {
            CloudError::Conflict(format!("{into} has no security group {group_name} yet"))
        })?;
        Ok(Placement {
            subnet: required(subnet.subnet_id(), "a subnet id")?.to_owned(),
            zone: required(subnet.availability_zone(), "a subnet's zone")?.to_owned(),
            security_group: required(group.group_id(), "a group id")?.to_owned(),
            image: required(like.image_id(), "the host's image")?.to_owned(),
            instance_type: like
                .instance_type()
                .cloned()
                .unwrap_or(InstanceType::M6iLarge),
        })
    }

    /// Makes the restore's volume from the snapshot, in the host's zone.
    async fn make_volume(
        &self,
        into: &EnvName,
        restore: &str,
        snapshot: &Snapshot,
        zone: &str,
    ) -> Result<(), CloudError> {
        let owner = Owner {
            env: into,
            stack: &self.stack,
        };
        let name = format!("{}-{restore}", names::data_volume(into));
        sent(
            "CreateVolume",
            self.clients
                .ec2
                .create_volume()
                .snapshot_id(required(snapshot.snapshot_id(), "a snapshot id")?)
                .availability_zone(zone)
                .volume_type(VolumeType::Gp3)
                .client_token(client_token(restore, "volume"))
                .tag_specifications(tag_spec(
                    ResourceType::Volume,
                    &owner,
                    restore,
                    &name,
                    &[(RESTORE_TAG, restore)],
                ))
                .send()
                .await,
        )
        .map(drop)
    }

    /// Starts the restore's host where `at` says, fetching `source`'s WAL.
    async fn make_host(
        &self,
        source: &EnvName,
        into: &EnvName,
        restore: &str,
        at: &Placement,
    ) -> Result<(), CloudError> {
        let owner = Owner {
            env: into,
            stack: &self.stack,
        };
        let name = format!("{}-{restore}", names::database_host(into));
        let wal = self.backup_bucket.as_ref().and_then(|bucket| {
            Some(envplane_domain::resources::WalArchive {
                bucket: bucket.clone(),
                region: self.clients.ec2.config().region()?.to_string(),
                environment: source.clone(),
                archive_timeout_seconds: 60,
            })
        });
        let user_data = envplane_domain::resources::restore_host_user_data(wal.as_ref());
        let mut run = self
            .clients
            .ec2
            .run_instances()
            .image_id(&at.image)
            .instance_type(at.instance_type.clone())
            .min_count(1)
            .max_count(1)
            .subnet_id(&at.subnet)
            .security_group_ids(&at.security_group)
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .client_token(client_token(restore, "host"))
            .tag_specifications(tag_spec(
                ResourceType::Instance,
                &owner,
                restore,
                &name,
                &[(RESTORE_TAG, restore)],
            ));
        if let Some(profile) = &self.instance_profile {
            run = run.iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .name(profile)
                    .build(),
            );
        }
        sent("RunInstances", run.send().await).map(drop)
    }

    /// The restore's host, running.
    async fn restored_host(&self, into: &EnvName, restore: &str) -> Result<Instance, CloudError> {
        self.instances(into, Some((RESTORE_TAG, restore)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::Conflict(format!("{into} has no restored host {restore}")))
    }
}

fn pending(wait_seconds: u64) -> Result<RestoreProgress, CloudError> {
    Ok(RestoreProgress::Pending { wait_seconds })
}

#[async_trait]
impl Databases for AwsDatabases {
    async fn ensure(&self, env: &EnvName) -> Result<String, CloudError> {
        let host = self.serving(env).await?;
        let (Some(vpc), Some(ip)) = (host.vpc_id(), host.private_ip_address()) else {
            return Err(CloudError::Transient(format!(
                "{env}'s host has no address yet"
            )));
        };
        let zone =
            dns::ensure_zone(&self.clients.route53, env, &self.stack, vpc, &self.region).await?;
        if dns::pointed(&self.clients.route53, &zone, env)
            .await?
            .is_none()
        {
            dns::point(&self.clients.route53, &zone, env, ip).await?;
        }
        Ok(endpoint(env))
    }

    async fn endpoint(&self, env: &EnvName) -> Result<Option<String>, CloudError> {
        Ok(dns::zone(&self.clients.route53, env, &self.stack)
            .await?
            .map(|_| endpoint(env)))
    }

    async fn back_up(&self, _env: &EnvName, _id: &str) -> Result<OffsetDateTime, CloudError> {
        // The snapshot is the base backup; the WAL goes to the repository continuously.
        Ok(OffsetDateTime::now_utc())
    }

    async fn restore(
        &self,
        source: &EnvName,
        target: &RecoveryTarget,
        into: &EnvName,
        restore: &str,
    ) -> Result<RestoreProgress, CloudError> {
        let Some(volume) = self.volume(into, restore).await? else {
            let snapshot = self.snapshot_for(source, target).await?;
            let at = self.placement(source, into).await?;
            self.make_volume(into, restore, &snapshot, &at.zone).await?;
            return pending(15);
        };
        let Some(host) = self
            .instances(into, Some((RESTORE_TAG, restore)))
            .await?
            .into_iter()
            .next()
        else {
            let at = self.placement(source, into).await?;
            self.make_host(source, into, restore, &at).await?;
            return pending(30);
        };
        if state_of(&host) != Some(&InstanceStateName::Running)
            || volume.state() == Some(&VolumeState::Creating)
        {
            return pending(15);
        }
        let host_id = required(host.instance_id(), "an instance id")?;
        let attached = volume
            .attachments()
            .iter()
            .any(|a| a.instance_id() == Some(host_id));
        if !attached {
            sent(
                "AttachVolume",
                self.clients
                    .ec2
                    .attach_volume()
                    .volume_id(required(volume.volume_id(), "a volume id")?)
                    .instance_id(host_id)
                    .device("/dev/sdf")
                    .send()
                    .await,
            )?;
            return pending(10);
        }
        match self.command(host_id, "replay", restore).await? {
            None => {
                let commands = scripts::replay(target).map_err(CloudError::Invalid)?;
                self.send(host_id, "replay", restore, commands).await?;
                pending(30)
            }
            Some((_, CommandStatus::Success)) => Ok(RestoreProgress::Done),
            Some((_, CommandStatus::Pending | CommandStatus::InProgress)) => pending(30),
            Some((id, other)) => Err(CloudError::Conflict(format!(
                "the WAL replay of {restore} on {host_id} ended {other:?} (command {id})"
            ))),
        }
    }

    async fn verify(&self, into: &EnvName, restore: &str) -> Result<Health, CloudError> {
        let host = self.restored_host(into, restore).await?;
        let host_id = required(host.instance_id(), "an instance id")?;
        let command = self
            .send(host_id, "check", restore, scripts::check())
            .await?;
        // A check takes seconds: waited for here, within the step.
        for _ in 0..30 {
            let answer = self
                .clients
                .ssm
                .get_command_invocation()
                .command_id(&command)
                .instance_id(host_id)
                .send()
                .await;
            match answer {
                Ok(out) => match out.status() {
                    Some(CommandInvocationStatus::Success) => {
                        let newest = scripts::heartbeat_of(
                            out.standard_output_content().unwrap_or_default(),
                        )
                        .map_err(CloudError::Conflict)?;
                        return Ok(Health {
                            newest_heartbeat: newest,
                        });
                    }
                    Some(
                        CommandInvocationStatus::Pending
                        | CommandInvocationStatus::InProgress
                        | CommandInvocationStatus::Delayed,
                    ) => {}
                    other => {
                        return Err(CloudError::Conflict(format!(
                            "the checks of {restore} ended {other:?}: {}",
                            out.standard_error_content().unwrap_or_default()
                        )));
                    }
                },
                // Not registered yet right after SendCommand.
                Err(e) if crate::errors::code(&e) == Some("InvocationDoesNotExist") => {}
                Err(e) => return Err(crate::errors::cloud_error("GetCommandInvocation", e)),
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        Err(CloudError::Transient(format!(
            "the checks of {restore} did not finish"
        )))
    }

    async fn switch(&self, into: &EnvName, restore: &str) -> Result<(), CloudError> {
        let host = self.restored_host(into, restore).await?;
        let (Some(vpc), Some(ip), Some(new_id)) =
            (host.vpc_id(), host.private_ip_address(), host.instance_id())
        else {
            return Err(CloudError::Transient(format!(
                "{restore}'s host has no address yet"
            )));
        };
        let old = self.serving(into).await.ok();
        let zone =
            dns::ensure_zone(&self.clients.route53, into, &self.stack, vpc, &self.region).await?;
        dns::point(&self.clients.route53, &zone, into, ip).await?;
        // The host it replaces is stopped, kept for the rollback window.
        if let Some(old) = old
            && let Some(old_id) = old.instance_id()
            && old_id != new_id
        {
            envplane_cloud::check_owned(&ec2_tags(old.tags()), &self.stack, old_id)?;
            sent(
                "StopInstances",
                self.clients
                    .ec2
                    .stop_instances()
                    .instance_ids(old_id)
                    .send()
                    .await,
            )?;
        }
        Ok(())
    }

    async fn discard(&self, into: &EnvName, restore: &str) -> Result<(), CloudError> {
        for host in self.instances(into, Some((RESTORE_TAG, restore))).await? {
            if let Some(id) = host.instance_id() {
                envplane_cloud::check_owned(&ec2_tags(host.tags()), &self.stack, id)?;
                sent(
                    "TerminateInstances",
                    self.clients
                        .ec2
                        .terminate_instances()
                        .instance_ids(id)
                        .send()
                        .await,
                )?;
            }
        }
        // A volume still attached goes once its host is gone (a teardown takes it, or the
        // next discard).
        if let Some(volume) = self.volume(into, restore).await?
            && volume.state() == Some(&VolumeState::Available)
            && let Some(id) = volume.volume_id()
        {
            envplane_cloud::check_owned(&ec2_tags(volume.tags()), &self.stack, id)?;
            sent(
                "DeleteVolume",
                self.clients.ec2.delete_volume().volume_id(id).send().await,
            )?;
        }
        Ok(())
    }

    async fn archived_until(&self, _env: &EnvName) -> Result<Option<OffsetDateTime>, CloudError> {
        // The WAL repository in the stack's bucket is not read yet: the window ends at the
        // newest snapshot.
        Ok(None)
    }

    async fn remove(&self, env: &EnvName) -> Result<(), CloudError> {
        dns::remove(&self.clients.route53, env, &self.stack).await
    }

    async fn present(&self) -> Result<Vec<EnvName>, CloudError> {
        // What a restore leaves is tagged with its environment: the cloud's listing shows it.
        Ok(Vec::new())
    }
}

/// How apps connect: the environment's private record, whatever host serves it.
fn endpoint(env: &EnvName) -> String {
    format!(
        "host={} port=5432 user=postgres dbname=postgres",
        dns::record_name(env).trim_end_matches('.')
    )
}
