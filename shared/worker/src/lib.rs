//! The worker: what each Task state of the flows does. Every action is idempotent (resources
//! are found by their envplane tags before anything is created, records change under version
//! conditions) and answers with small JSON; every error carries the `Envplane.*` name the state
//! machines retry or catch on.
#![forbid(unsafe_code)]

pub mod jobs;

use std::sync::Arc;

use async_trait::async_trait;
use envplane_cloud::{Cloud, CloudError, Modification, Resource, ResourceState, SnapshotState};
use envplane_domain::audit::{AuditEntry, AuditEvent};
use envplane_domain::drift::differences;
use envplane_domain::environment::{Condition, ObservedResource, Phase};
use envplane_domain::events::{Event, EventKind};
use envplane_domain::operation::{AppliedChange, OperationError, OperationKind, OperationStatus};
use envplane_domain::resources::{self, Group, Planned, ResourceKind};
use envplane_domain::spec::next_eks_version;
use envplane_domain::{EnvName, Environment, Operation, Role};
use envplane_notify::{Publisher, publish_or_log};
use envplane_store::{Change, CommitError, Expected, StateStore, StoreError};
use envplane_workflow::{Failure, TaskContext, TaskRunner};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Principal recorded for changes the flows make on their own.
pub const SYSTEM_PRINCIPAL: &str = "envplane";

/// Shortest poll interval, seconds: what a loop waits while dependencies are being created.
pub const MIN_WAIT: u64 = 2;
/// Longest interval between polls of a resource that is already overdue, seconds.
pub const MAX_OVERDUE_WAIT: u64 = 60;
/// Longest single wait, seconds: an EKS cluster's typical creation time and a margin.
pub const MAX_WAIT: u64 = 900;
/// Polls after which a wait loop gives up: far beyond any resource's creation or deletion time
/// at these intervals.
pub const MAX_POLLS: u64 = 100;

pub use envplane_workflow::execution_input;

/// When to look again: once the slowest pending resource is typically done (plus a second),
/// so a loop rarely polls more than twice; when resources are overdue, back off from the last
/// wait; when nothing pending exists yet (its dependencies are being made), soon.
fn next_wait(remaining_seconds: Option<i64>, previous: Option<u64>) -> u64 {
    match remaining_seconds {
        Some(r) if r > 0 => (r.unsigned_abs() + 1).clamp(MIN_WAIT, MAX_WAIT),
        Some(_) => previous.map_or(MIN_WAIT, |w| (w * 2).clamp(MIN_WAIT, MAX_OVERDUE_WAIT)),
        None => MIN_WAIT,
    }
}

fn poll_answer(pending: &[&str], wait: u64, polls: u64) -> Result<Value, WorkerError> {
    let polls = polls + 1;
    if !pending.is_empty() && polls > MAX_POLLS {
        return Err(WorkerError::Conflict(format!(
            "still waiting for {} after {MAX_POLLS} polls",
            pending.join(", ")
        )));
    }
    Ok(json!({ "ready": pending.is_empty(), "pending": pending, "wait": wait, "polls": polls }))
}

fn kind_word(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Create => "Provisioning",
        OperationKind::Update => "Update",
        OperationKind::Delete => "Destruction",
        OperationKind::Reconcile => "Reconcile",
    }
}

/// What a resource needs next.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Nothing: it matches the spec.
    InSync,
    /// It is moving (being created, updated, stopped); look again later.
    Wait,
    /// Make these changes, each with the words the operation records.
    Apply(Vec<(Modification, String)>),
}

fn int(v: &Value) -> u32 {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

/// The next in-place step for an active resource that is not being updated (the host has its
/// own sequence). Versions move one minor at a time, node groups only up to their control plane.
fn next_step(p: &Planned, r: &Resource, cluster_version: Option<&str>) -> Step {
    let diff = differences(p, &r.attributes);
    if diff.is_empty() {
        return Step::InSync;
    }
    let changed = |a: &str| diff.iter().any(|d| d.attribute == a);
    let mut out = Vec::new();
    let want = &p.attributes;
    match p.kind {
        ResourceKind::Cluster | ResourceKind::NodeGroup if changed("version") => {
            let actual = r.attributes["version"].as_str().unwrap_or_default();
            let target = want["version"].as_str().unwrap_or_default();
            match next_eks_version(actual, target) {
                Some(next)
                    if p.kind == ResourceKind::Cluster
                        || cluster_version.and_then(envplane_domain::spec::eks_version)
                            >= envplane_domain::spec::eks_version(&next) =>
                {
                    out.push((
                        Modification::Version {
                            version: next.clone(),
                        },
                        format!("version {actual} → {next}"),
                    ));
                }
                Some(_) => return Step::Wait,
                None => {}
            }
        }
        _ => {}
    }
    if p.kind == ResourceKind::NodeGroup
        && out.is_empty()
        && (changed("min") || changed("desired") || changed("max"))
    {
        let (min, desired, max) = (int(&want["min"]), int(&want["desired"]), int(&want["max"]));
        out.push((
            Modification::Scale { min, desired, max },
            format!(
                "scaling {}/{}/{} → {min}/{desired}/{max} (min/desired/max)",
                r.attributes["min"], r.attributes["desired"], r.attributes["max"]
            ),
        ));
    }
    if p.kind == ResourceKind::Volume {
        let (size_gb, iops, throughput_mibps) = (
            int(&want["size_gb"]),
            int(&want["iops"]),
            int(&want["throughput_mibps"]),
        );
        out.push((
            Modification::ModifyVolume {
                size_gb,
                iops,
                throughput_mibps,
            },
            format!("volume to {size_gb} GiB, {iops} IOPS, {throughput_mibps} MiB/s"),
        ));
    }
    if p.kind == ResourceKind::SecurityGroup && changed("ingress") {
        let wanted: Vec<Value> = want["ingress"].as_array().cloned().unwrap_or_default();
        let actual: Vec<Value> = r.attributes["ingress"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let missing: Vec<Value> = wanted
            .iter()
            .filter(|w| !actual.contains(w))
            .cloned()
            .collect();
        let extra: Vec<Value> = actual
            .iter()
            .filter(|a| !wanted.contains(a))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let change = Modification::AuthorizeIngress { rules: missing };
            let description = change.to_string();
            out.push((change, description));
        }
        if !extra.is_empty() {
            let change = Modification::RevokeIngress { rules: extra };
            let description = change.to_string();
            out.push((change, description));
        }
    }
    if p.kind == ResourceKind::RouteTable && changed("subnets") {
        let served: Vec<&Value> = r.attributes["subnets"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let missing: Vec<String> = want["subnets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| !served.contains(s))
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        if !missing.is_empty() {
            let change = Modification::AssociateSubnets { subnets: missing };
            let description = change.to_string();
            out.push((change, description));
        }
    }
    if out.is_empty() {
        // Differences no in-place call can fix (a subnet's block): drift, not an update step.
        return Step::InSync;
    }
    Step::Apply(out)
}

/// A failed action, named for the flows' Retry and Catch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The cloud or the store throttled: retry with backoff and jitter.
    #[error("{0}")]
    Throttled(String),
    /// A passing failure: retry.
    #[error("{0}")]
    Transient(String),
    /// The request can never succeed: compensate and fail.
    #[error("{0}")]
    Invalid(String),
    /// The state of the world forbids it (the operation no longer holds the environment, a
    /// dependency, a quota): compensate and fail.
    #[error("{0}")]
    Conflict(String),
}

impl WorkerError {
    /// The error name Step Functions sees.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerError::Throttled(_) => "Envplane.Throttled",
            WorkerError::Transient(_) => "Envplane.Transient",
            WorkerError::Invalid(_) => "Envplane.Invalid",
            WorkerError::Conflict(_) => "Envplane.Conflict",
        }
    }
}

impl From<CloudError> for WorkerError {
    fn from(e: CloudError) -> Self {
        match e {
            CloudError::Throttled(m) => WorkerError::Throttled(m),
            CloudError::Transient(m) => WorkerError::Transient(m),
            CloudError::Invalid(m) => WorkerError::Invalid(m),
            CloudError::Conflict(m) => WorkerError::Conflict(m),
        }
    }
}

impl From<StoreError> for WorkerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Throttled(m) => WorkerError::Throttled(m),
            other => WorkerError::Transient(other.to_string()),
        }
    }
}

impl From<CommitError> for WorkerError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(e) => e.into(),
            // Someone else changed the record between read and write: read again.
            CommitError::VersionConflict | CommitError::Contended => {
                WorkerError::Transient(e.to_string())
            }
            other => WorkerError::Conflict(other.to_string()),
        }
    }
}

impl From<WorkerError> for Failure {
    fn from(e: WorkerError) -> Self {
        Failure::new(e.name(), e.to_string())
    }
}

/// The payload every Task state sends.
#[derive(Debug, Deserialize)]
struct Request {
    action: String,
    environment: String,
    operation: String,
    /// Poll interval used last time, for wait loops.
    #[serde(default)]
    wait: Option<u64>,
    /// Polls made so far by this wait loop.
    #[serde(default)]
    polls: u64,
    /// Resource group, for `ensure`.
    #[serde(default)]
    group: Option<Group>,
    /// Resource kinds, for `teardown`.
    #[serde(default)]
    kinds: Vec<ResourceKind>,
    /// The error a Catch recorded, for `operation.fail`.
    #[serde(default)]
    error: Option<Value>,
}

/// Runs the flows' actions against a store and a cloud.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn StateStore>,
    cloud: Arc<dyn Cloud>,
    now: envplane_cloud::simulator::Now,
    events: Arc<dyn Publisher>,
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    at: OffsetDateTime,
) -> Condition {
    Condition {
        kind: kind.into(),
        status,
        reason: reason.into(),
        message,
        since: at,
    }
}

impl Worker {
    /// A worker over a store and a cloud.
    pub fn new(store: Arc<dyn StateStore>, cloud: Arc<dyn Cloud>) -> Self {
        Self {
            store,
            cloud,
            now: Arc::new(OffsetDateTime::now_utc),
            events: Arc::new(envplane_notify::Silent),
        }
    }

    /// The same worker announcing operations starting, succeeding and failing there.
    pub fn with_events(mut self, events: Arc<dyn Publisher>) -> Self {
        self.events = events;
        self
    }

    async fn announce(
        &self,
        kind: EventKind,
        record: &Environment,
        op: &Operation,
        summary: String,
        cause: Option<String>,
    ) {
        let event = Event::new(
            kind,
            record.name.clone(),
            record.tier,
            Some(op.id.clone()),
            summary,
            cause,
            OffsetDateTime::now_utc(),
        );
        publish_or_log(&self.events, event).await;
    }

    /// The same worker reading time from `now` (the clock of a time-scaled local plane).
    pub fn with_clock(mut self, now: envplane_cloud::simulator::Now) -> Self {
        self.now = now;
        self
    }

    /// Runs one action.
    pub async fn handle(&self, payload: Value) -> Result<Value, WorkerError> {
        let request: Request = serde_json::from_value(payload)
            .map_err(|e| WorkerError::Invalid(format!("bad task payload: {e}")))?;
        let env = EnvName::parse(&request.environment)
            .map_err(|e| WorkerError::Invalid(format!("environment: {e}")))?;
        let span = tracing::info_span!("step", action = %request.action, environment = %env, operation = %request.operation);
        let _entered = span.enter();
        match request.action.as_str() {
            "operation.start" => self.start(&env, &request.operation).await,
            "ensure" => {
                let group = request
                    .group
                    .ok_or_else(|| WorkerError::Invalid("ensure needs a group".into()))?;
                self.ensure(&env, &request.operation, group, request.wait, request.polls)
                    .await
            }
            "converge" => {
                let group = request
                    .group
                    .ok_or_else(|| WorkerError::Invalid("converge needs a group".into()))?;
                self.converge(&env, &request.operation, group, request.wait, request.polls)
                    .await
            }
            "teardown" => {
                self.teardown(
                    &env,
                    &request.operation,
                    &request.kinds,
                    request.wait,
                    request.polls,
                )
                .await
            }
            "operation.succeed" => self.succeed(&env, &request.operation).await,
            "operation.fail" => {
                self.fail(
                    &env,
                    &request.operation,
                    request.error.unwrap_or(Value::Null),
                )
                .await
            }
            other => Err(WorkerError::Invalid(format!("unknown action {other:?}"))),
        }
    }

    /// The environment and its operation, provided the operation still holds the environment.
    async fn held(
        &self,
        env: &EnvName,
        operation: &str,
    ) -> Result<(Environment, Operation), WorkerError> {
        let record =
            self.store.environment(env).await?.ok_or_else(|| {
                WorkerError::Conflict(format!("environment {env} does not exist"))
            })?;
        if record.active_operation.as_deref() != Some(operation) {
            return Err(WorkerError::Conflict(format!(
                "operation {operation} no longer holds {env} (held by {})",
                record.active_operation.as_deref().unwrap_or("nothing")
            )));
        }
        let op = self.store.operation(operation).await?.ok_or_else(|| {
            WorkerError::Transient(format!("operation {operation} is not visible yet"))
        })?;
        Ok((record, op))
    }

    async fn write(
        &self,
        before: &Environment,
        environment: Environment,
        operation: Operation,
        audit: Option<AuditEvent>,
        release: bool,
    ) -> Result<(), WorkerError> {
        let release_cidr = release.then_some(before.spec.network.vpc_cidr);
        let change = Change {
            environment,
            expected: Expected::Version(before.version),
            operation: Some(operation),
            audit,
            idempotency: None,
            claim_cidr: None,
            release_cidr,
        };
        self.store.commit(change).await.map_err(Into::into)
    }

    async fn start(&self, env: &EnvName, operation: &str) -> Result<Value, WorkerError> {
        let (record, mut op) = self.held(env, operation).await?;
        if op.status == OperationStatus::Running {
            return Ok(json!({ "started": false }));
        }
        let now = OffsetDateTime::now_utc();
        op.status = OperationStatus::Running;
        op.updated_at = now;
        let mut next = record.clone();
        next.version += 1;
        next.status.phase = match op.kind {
            OperationKind::Create => Phase::Provisioning,
            OperationKind::Update | OperationKind::Reconcile => Phase::Updating,
            OperationKind::Delete => Phase::Deleting,
        };
        next.updated_at = now;
        self.write(&record, next, op.clone(), None, false).await?;
        let summary = format!("{} of {} started", kind_word(op.kind), record.name);
        self.announce(EventKind::OperationStarted, &record, &op, summary, None)
            .await;
        Ok(json!({ "started": true }))
    }

    async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        group: Group,
        wait: Option<u64>,
        polls: u64,
    ) -> Result<Value, WorkerError> {
        let (record, _) = self.held(env, operation).await?;
        let planned: Vec<_> = resources::plan(env, &record.spec)
            .into_iter()
            .filter(|p| p.group == group)
            .collect();
        let existing = self.cloud.ensure(env, operation, &planned).await?;
        if let Some(failed) = existing.iter().find(|r| r.state == ResourceState::Failed) {
            return Err(WorkerError::Conflict(format!(
                "{} {} ({}) failed to create",
                failed.kind.as_str(),
                failed.name,
                failed.id
            )));
        }
        let pending: Vec<&str> = planned
            .iter()
            .filter(|p| {
                !existing
                    .iter()
                    .any(|r| r.name == p.name && r.state == ResourceState::Active)
            })
            .map(|p| p.name.as_str())
            .collect();
        let now = (self.now)();
        // Seconds until the slowest pending resource that exists is typically ready.
        let remaining = existing
            .iter()
            .filter(|r| pending.contains(&r.name.as_str()))
            .map(|r| {
                let age = r.created_at.map_or(0, |t| (now - t).whole_seconds());
                i64::try_from(r.kind.typical_create_seconds()).unwrap_or(i64::MAX) - age
            })
            .max();
        poll_answer(&pending, next_wait(remaining, wait), polls)
    }

    /// Brings a group's resources to the spec: creates what is missing (as `ensure` does), then
    /// makes one in-place step per resource that differs (a scaling call, one minor version, a
    /// volume change, the next stage of a host resize) and answers which are still moving.
    async fn converge(
        &self,
        env: &EnvName,
        operation: &str,
        group: Group,
        wait: Option<u64>,
        polls: u64,
    ) -> Result<Value, WorkerError> {
        let (record, op) = self.held(env, operation).await?;
        let allow_replacement = op.input["allow_replacement"].as_bool() == Some(true);
        let planned: Vec<Planned> = resources::plan(env, &record.spec)
            .into_iter()
            .filter(|p| p.group == group)
            .collect();
        let mut pending: Vec<String> = Vec::new();
        let mut applied: Vec<AppliedChange> = Vec::new();
        let mut remaining: Option<i64> = None;
        let now = (self.now)();

        // Replacements first: a node group on the wrong instance type goes, and `ensure`
        // recreates it once it is gone. Only node groups need the rest of the environment (their
        // control plane's version), so only their step pays for a full look.
        let current = if group == Group::NodeGroups {
            self.cloud.list(env).await?
        } else {
            Vec::new()
        };
        for p in planned.iter().filter(|p| p.kind == ResourceKind::NodeGroup) {
            let Some(r) = current.iter().find(|r| r.name == p.name) else {
                continue;
            };
            let replace = differences(p, &r.attributes)
                .iter()
                .any(|d| d.attribute == "instance_type");
            if !replace {
                continue;
            }
            if !allow_replacement {
                return Err(WorkerError::Invalid(format!(
                    "{} runs {} but the spec asks for {}: that replaces the node group, which this operation was not allowed to do",
                    p.name, r.attributes["instance_type"], p.attributes["instance_type"]
                )));
            }
            if r.state != ResourceState::Deleting {
                self.cloud.delete(r).await?;
                applied.push(AppliedChange {
                    at: now,
                    resource: p.name.clone(),
                    change: format!(
                        "replacing: instance type {} → {}",
                        r.attributes["instance_type"], p.attributes["instance_type"]
                    ),
                    expected_seconds: ResourceKind::NodeGroup.typical_delete_seconds(),
                });
            }
            pending.push(p.name.clone());
            remaining = remaining.max(Some(
                i64::try_from(ResourceKind::NodeGroup.typical_delete_seconds()).unwrap_or(0),
            ));
        }

        let existing = self.cloud.ensure(env, operation, &planned).await?;
        let cluster_version = current
            .iter()
            .find(|r| r.kind == ResourceKind::Cluster)
            .and_then(|r| r.attributes["version"].as_str().map(str::to_owned));
        for p in &planned {
            if pending.contains(&p.name) {
                continue;
            }
            let Some(r) = existing.iter().find(|r| r.name == p.name) else {
                pending.push(p.name.clone());
                continue;
            };
            if r.state == ResourceState::Failed {
                return Err(WorkerError::Conflict(format!(
                    "{} {} ({}) failed",
                    r.kind.as_str(),
                    r.name,
                    r.id
                )));
            }
            let step = if p.kind == ResourceKind::DbInstance {
                self.host_step(env, operation, p, r, &existing).await?
            } else if (r.state != ResourceState::Active
                // A group whose rules were all removed still exists: converge restores them.
                && !(r.kind == ResourceKind::SecurityGroup && r.state == ResourceState::Creating))
                || r.attributes["updating"].as_bool() == Some(true)
            {
                Step::Wait
            } else {
                next_step(p, r, cluster_version.as_deref())
            };
            match step {
                Step::InSync => continue,
                Step::Wait => {
                    pending.push(p.name.clone());
                    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
                    let last_change = op
                        .changes
                        .iter()
                        .chain(applied.iter())
                        .rev()
                        .find(|c| c.resource == p.name);
                    let created_since = |c: &AppliedChange| r.created_at.is_some_and(|t| t > c.at);
                    let estimate = match last_change {
                        Some(c) if !(r.state == ResourceState::Creating && created_since(c)) => {
                            seconds(c.expected_seconds) - (now - c.at).whole_seconds()
                        }
                        _ if r.state == ResourceState::Creating => {
                            let age = r.created_at.map_or(0, |t| (now - t).whole_seconds());
                            seconds(r.kind.typical_create_seconds()) - age
                        }
                        _ => 0,
                    };
                    remaining = remaining.max(Some(estimate));
                }
                Step::Apply(changes) => {
                    for (change, description) in changes {
                        // EBS allows one modification of a volume per six hours: never twice;
                        // until AWS reports the new size, wait as for any change under way.
                        let made = matches!(change, Modification::ModifyVolume { .. })
                            .then(|| {
                                op.changes
                                    .iter()
                                    .rfind(|c| c.resource == p.name && c.change == description)
                            })
                            .flatten();
                        if let Some(c) = made {
                            let elapsed = (now - c.at).whole_seconds();
                            let expected = i64::try_from(c.expected_seconds).unwrap_or(i64::MAX);
                            remaining = remaining.max(Some(expected - elapsed));
                            continue;
                        }
                        self.cloud.modify(env, r, &change).await?;
                        applied.push(AppliedChange {
                            at: now,
                            resource: p.name.clone(),
                            change: description,
                            expected_seconds: change.typical_seconds(r.kind),
                        });
                        // Look again soon: a change that finishes at once costs no long wait;
                        // one still under way is then waited for as long as it typically lasts.
                        remaining = remaining.max(Some(1));
                    }
                    pending.push(p.name.clone());
                }
            }
        }
        if !applied.is_empty() {
            self.record_changes(env, operation, applied).await?;
        }
        let pending: Vec<&str> = pending.iter().map(String::as_str).collect();
        poll_answer(&pending, next_wait(remaining, wait), polls)
    }

    /// The next stage of resizing the database host: snapshot its volume, stop it, change its
    /// type, start it, and check it runs the new type.
    async fn host_step(
        &self,
        env: &EnvName,
        operation: &str,
        p: &Planned,
        host: &Resource,
        existing: &[Resource],
    ) -> Result<Step, WorkerError> {
        let power = host.attributes["power"].as_str().unwrap_or("running");
        let wanted = p.attributes["instance_type"].as_str().unwrap_or_default();
        let actual = host.attributes["instance_type"]
            .as_str()
            .unwrap_or_default();
        if actual == wanted || actual.is_empty() {
            return Ok(match power {
                "running" if host.state == ResourceState::Active => Step::InSync,
                // Resumed after the type changed but before the host was started.
                "stopped" => Step::Apply(vec![(Modification::StartInstance, "start".to_owned())]),
                _ => Step::Wait,
            });
        }
        let volume = existing
            .iter()
            .find(|r| r.kind == ResourceKind::Volume)
            .ok_or_else(|| {
                WorkerError::Conflict(format!("{}: the data volume is missing", p.name))
            })?;
        if self.cloud.snapshot(env, operation, volume).await? == SnapshotState::Pending {
            return Ok(Step::Wait);
        }
        Ok(match power {
            "running" => Step::Apply(vec![(
                Modification::StopInstance,
                format!("snapshot of {} taken; stop to change type", volume.name),
            )]),
            "stopped" => Step::Apply(vec![
                (
                    Modification::InstanceType {
                        instance_type: wanted.to_owned(),
                    },
                    format!("instance type {actual} → {wanted}"),
                ),
                (Modification::StartInstance, "start".to_owned()),
            ]),
            _ => Step::Wait,
        })
    }

    /// Appends in-place changes to the operation's record.
    async fn record_changes(
        &self,
        env: &EnvName,
        operation: &str,
        applied: Vec<AppliedChange>,
    ) -> Result<(), WorkerError> {
        // The flow's parallel branches record at the same time; the calls are made, so the
        // record is appended to again rather than the step retried.
        let mut attempt = 0;
        loop {
            let (record, mut op) = self.held(env, operation).await?;
            op.changes.extend(applied.iter().cloned());
            op.updated_at = OffsetDateTime::now_utc();
            let mut next = record.clone();
            next.version += 1;
            match self.write(&record, next, op, None, false).await {
                Err(WorkerError::Transient(_)) if attempt < 5 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn teardown(
        &self,
        env: &EnvName,
        operation: &str,
        kinds: &[ResourceKind],
        wait: Option<u64>,
        polls: u64,
    ) -> Result<Value, WorkerError> {
        let (record, _) = self.held(env, operation).await?;
        let mut remaining: Vec<Resource> = self
            .cloud
            .list(env)
            .await?
            .into_iter()
            .filter(|r| kinds.contains(&r.kind))
            .collect();
        // Dependents first (reverse plan order), so a step that holds a chain, such as the
        // security groups that reference each other, mostly clears in one pass.
        let order: Vec<String> = resources::plan(env, &record.spec)
            .into_iter()
            .map(|p| p.name)
            .collect();
        remaining.sort_by_key(|r| std::cmp::Reverse(order.iter().position(|n| *n == r.name)));
        for resource in remaining
            .iter()
            .filter(|r| r.state != ResourceState::Deleting)
        {
            match self.cloud.delete(resource).await {
                // AWS refuses while a dependent is still being deleted: the next poll tries again.
                Ok(()) | Err(CloudError::Conflict(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        // What is left after this pass: deletions that finish at once do not cost a wait.
        let left: Vec<Resource> = if remaining.is_empty() {
            Vec::new()
        } else {
            self.cloud
                .list(env)
                .await?
                .into_iter()
                .filter(|r| kinds.contains(&r.kind))
                .collect()
        };
        let names: Vec<&str> = left.iter().map(|r| r.name.as_str()).collect();
        // Deletions report no start time: the first look waits for the slowest kind's typical
        // deletion, later ones back off.
        let remaining = match polls {
            0 => left
                .iter()
                .map(|r| i64::try_from(r.kind.typical_delete_seconds()).unwrap_or(i64::MAX))
                .max(),
            _ => left.first().map(|_| 0),
        };
        poll_answer(&names, next_wait(remaining, wait), polls)
    }

    async fn succeed(&self, env: &EnvName, operation: &str) -> Result<Value, WorkerError> {
        let (record, mut op) = self.held(env, operation).await?;
        let now = OffsetDateTime::now_utc();
        let mut next = record.clone();
        next.version += 1;
        next.active_operation = None;
        next.lease_expires_at = None;
        next.updated_at = now;
        let deleted = op.kind == OperationKind::Delete;
        if deleted {
            next.status.phase = Phase::Deleted;
            next.status.conditions = vec![condition(
                "Ready",
                false,
                "Deleted",
                format!("destroyed by operation {operation}"),
                now,
            )];
            next.resources = Vec::new();
        } else {
            next.resources = self
                .cloud
                .list(env)
                .await?
                .into_iter()
                .map(|r| ObservedResource {
                    kind: r.kind,
                    id: r.id,
                    name: r.name,
                    state: serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                })
                .collect();
            next.status.phase = Phase::Ready;
            // The cloud was just brought to the spec: an earlier drift report no longer holds.
            next.drift = None;
            next.status.conditions = ["NetworkReady", "ClusterReady", "DatabaseReady", "Ready"]
                .into_iter()
                .map(|kind| {
                    condition(
                        kind,
                        true,
                        "Provisioned",
                        format!("applied by operation {operation}"),
                        now,
                    )
                })
                .collect();
        }
        op.status = OperationStatus::Succeeded;
        op.updated_at = now;
        let audit = deleted.then(|| {
            let entry = AuditEntry {
                principal: SYSTEM_PRINCIPAL.into(),
                role: Role::Admin,
                action: "environment.deleted".into(),
                operation: Some(operation.to_owned()),
                change: json!({ "released_vpc_cidr": record.spec.network.vpc_cidr }),
            };
            AuditEvent::link(env, &record.audit_head, now, entry)
        });
        if let Some(event) = &audit {
            next.audit_head = event.head();
        }
        self.write(&record, next, op.clone(), audit, deleted)
            .await?;
        let summary = format!(
            "{} of {} succeeded{}",
            kind_word(op.kind),
            record.name,
            match op.changes.len() {
                0 => String::new(),
                n => format!(" ({n} in-place changes)"),
            }
        );
        self.announce(EventKind::OperationSucceeded, &record, &op, summary, None)
            .await;
        Ok(json!({ "phase": if deleted { "deleted" } else { "ready" } }))
    }

    async fn fail(
        &self,
        env: &EnvName,
        operation: &str,
        error: Value,
    ) -> Result<Value, WorkerError> {
        let (record, mut op) = self.held(env, operation).await?;
        let now = OffsetDateTime::now_utc();
        let name = error
            .get("Error")
            .and_then(Value::as_str)
            .unwrap_or("Envplane.Failed")
            .to_owned();
        let cause = error
            .get("Cause")
            .and_then(Value::as_str)
            .unwrap_or("no cause recorded")
            .to_owned();
        let mut next = record.clone();
        next.version += 1;
        next.active_operation = None;
        next.lease_expires_at = None;
        next.updated_at = now;
        next.status.phase = Phase::Failed;
        next.status.conditions = vec![condition("Ready", false, &name, cause.clone(), now)];
        op.status = OperationStatus::Failed;
        op.error = Some(OperationError {
            error: name.clone(),
            cause,
        });
        op.updated_at = now;
        self.write(&record, next, op.clone(), None, false).await?;
        let summary = format!("{} of {} failed: {name}", kind_word(op.kind), record.name);
        let cause = op.error.as_ref().map(|e| e.cause.clone());
        self.announce(EventKind::OperationFailed, &record, &op, summary, cause)
            .await;
        Ok(json!({ "phase": "failed", "error": name }))
    }
}

#[async_trait]
impl TaskRunner for Worker {
    async fn run(
        &self,
        _resource: &str,
        payload: Value,
        _context: &TaskContext,
    ) -> Result<Value, Failure> {
        self.handle(payload).await.map_err(Into::into)
    }
}
