//! The mutations of an environment as pure functions: each yields the new record, the
//! operation it starts and its audit event, which a store then writes atomically.

use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::audit::{AuditEntry, AuditEvent, AuditHead};
use crate::auth::Caller;
use crate::blueprint::Tier;
use crate::environment::{Environment, EnvironmentStatus, Phase};
use crate::name::EnvName;
use crate::operation::{OnFailure, Operation, OperationKind, OperationStatus};
use crate::spec::EnvironmentSpec;

/// How long an operation holds its environment before housekeeping may declare it lost.
pub const OPERATION_LEASE: Duration = Duration::hours(2);

/// Who asks, when, and the id the new operation gets.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller.
    pub caller: &'a Caller,
    /// Now.
    pub at: OffsetDateTime,
    /// Id for the operation this request starts.
    pub operation_id: String,
}

/// What a mutation writes.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// The environment's new record.
    pub environment: Environment,
    /// The operation started.
    pub operation: Operation,
    /// The audit event.
    pub audit: AuditEvent,
}

/// Why a mutation cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Another operation holds the environment.
    #[error("operation {operation} is still running on this environment")]
    Busy {
        /// The active operation.
        operation: String,
    },
    /// The spec is unchanged.
    #[error("the patch changes nothing")]
    NoChange,
    /// A new environment needs a VPC block and none was given (the pool is exhausted).
    #[error("no free VPC block for the new environment")]
    NoBlock,
}

fn start(
    environment: &EnvName,
    kind: OperationKind,
    input: Value,
    request: &Request<'_>,
) -> Operation {
    Operation {
        id: request.operation_id.clone(),
        environment: environment.clone(),
        kind,
        status: OperationStatus::Pending,
        requested_by: request.caller.principal.clone(),
        requested_at: request.at,
        updated_at: request.at,
        input,
        execution_arn: None,
        steps: Vec::new(),
        changes: Vec::new(),
        error: None,
        version: 1,
        approval: None,
        deployment: None,
        promotion: None,
        restore: None,
    }
}

fn audit(
    environment: &Environment,
    head: &AuditHead,
    operation: &Operation,
    change: Value,
    request: &Request<'_>,
) -> AuditEvent {
    AuditEvent::link(
        &environment.name,
        head,
        request.at,
        AuditEntry {
            principal: request.caller.principal.clone(),
            role: request.caller.role,
            action: operation.kind.audit_action().to_owned(),
            operation: Some(operation.id.clone()),
            change,
        },
    )
}

/// Starts the operation of a mutation and links its audit event after `head`, updating the
/// new record's chain head: the common end of create, update and delete.
fn record(
    mut environment: Environment,
    head: &AuditHead,
    kind: OperationKind,
    change: Value,
    request: &Request<'_>,
) -> Mutation {
    let mut operation = start(&environment.name, kind, change.clone(), request);
    // The tier's policy decides whether it waits for approvers before changing anything.
    let required = crate::approval::required_for(&environment, kind);
    if required > 0 {
        let digest = crate::approval::plan_digest(kind, &change, &environment.spec);
        operation.approval = Some(crate::approval::Approval::new(required, digest, request.at));
    }
    let event = audit(&environment, head, &operation, change, request);
    environment.audit_head = event.head();
    Mutation {
        environment,
        operation,
        audit: event,
    }
}

/// Records a new environment, pending its provisioning operation. `previous` is the tombstone
/// of a destroyed environment of the same name, whose version and audit chain go on;
/// `on_failure` says what a failed provisioning leaves (recorded with the request).
pub fn create(
    name: EnvName,
    tier: Tier,
    spec: EnvironmentSpec,
    previous: Option<&Environment>,
    on_failure: OnFailure,
    request: &Request<'_>,
) -> Mutation {
    let change = json!({ "tier": tier, "spec": spec, "on_failure": on_failure });
    let environment = new_environment(name, tier, spec, previous, request);
    let head = environment.audit_head.clone();
    record(environment, &head, OperationKind::Create, change, request)
}

fn new_environment(
    name: EnvName,
    tier: Tier,
    spec: EnvironmentSpec,
    previous: Option<&Environment>,
    request: &Request<'_>,
) -> Environment {
    let expires_at = spec
        .ttl_hours
        .map(|h| request.at + Duration::hours(i64::from(h)));
    Environment {
        name,
        tier,
        spec,
        status: EnvironmentStatus {
            phase: Phase::Pending,
            conditions: Vec::new(),
        },
        version: previous.map_or(1, |p| p.version + 1),
        active_operation: Some(request.operation_id.clone()),
        lease_expires_at: Some(request.at + OPERATION_LEASE),
        audit_head: previous.map(|p| p.audit_head.clone()).unwrap_or_default(),
        created_at: request.at,
        created_by: request.caller.principal.clone(),
        updated_at: request.at,
        updated_by: request.caller.principal.clone(),
        resources: Vec::new(),
        expires_at,
        drift: None,
        releases: std::collections::BTreeMap::new(),
        warm: std::collections::BTreeMap::new(),
        evidence: std::collections::BTreeMap::new(),
        recovery_points: Vec::new(),
    }
}

/// How long a drill environment may live at most: housekeeping destroys one its flow lost.
pub const DRILL_TTL: Duration = Duration::hours(6);

/// Restores `source`'s database. In place, the source is held by a restore operation that
/// waits for its approvers (one, two on production) before anything changes; into a new
/// environment or a drill environment, that environment is created (`previous` is a
/// tombstone of its name) with the source's tier and spec in the VPC block `cidr`, and held
/// by the restore (or drill) operation that provisions it and restores into it.
pub fn restore(
    source: &Environment,
    point: crate::restore::RestorePoint,
    into: crate::restore::RestoreInto,
    previous: Option<&Environment>,
    cidr: Option<crate::VpcCidr>,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    use crate::restore::{Restore, RestoreInto};
    let restore = Restore {
        source: source.name.clone(),
        point,
        into,
        started_at: None,
        started_wall: None,
        healthy_at: None,
        newest_heartbeat: None,
        marks: Vec::new(),
        evidence: None,
    };
    let change = json!({ "source": restore.source, "point": restore.point, "into": restore.into });
    let (kind, mut mutation) = match (&restore.into, cidr) {
        (RestoreInto::InPlace, _) => {
            take_lock(source)?;
            let environment = next_version(source, Phase::Updating, request);
            let mut mutation = record(
                environment,
                &source.audit_head,
                OperationKind::Restore,
                change.clone(),
                request,
            );
            let required = crate::restore::approvers_in_place(source.tier);
            let digest =
                crate::approval::plan_digest(OperationKind::Restore, &change, &source.spec);
            mutation.operation.approval =
                Some(crate::approval::Approval::new(required, digest, request.at));
            (OperationKind::Restore, mutation)
        }
        (RestoreInto::NewEnvironment { name } | RestoreInto::Drill { name }, Some(cidr)) => {
            let kind = if restore.is_drill() {
                OperationKind::Drill
            } else {
                OperationKind::Restore
            };
            let mut spec = source.spec.clone();
            spec.network.vpc_cidr = cidr;
            let mut environment =
                new_environment(name.clone(), source.tier, spec, previous, request);
            if kind == OperationKind::Drill {
                environment.expires_at = Some(request.at + DRILL_TTL);
            }
            let head = environment.audit_head.clone();
            (kind, record(environment, &head, kind, change, request))
        }
        (_, None) => {
            return Err(CommandError::NoBlock);
        }
    };
    debug_assert_eq!(mutation.operation.kind, kind);
    mutation.operation.restore = Some(restore);
    Ok(mutation)
}

fn take_lock(current: &Environment) -> Result<(), CommandError> {
    match &current.active_operation {
        Some(operation) => Err(CommandError::Busy {
            operation: operation.clone(),
        }),
        None => Ok(()),
    }
}

fn next_version(current: &Environment, phase: Phase, request: &Request<'_>) -> Environment {
    let mut next = current.clone();
    next.version = current.version + 1;
    next.status.phase = phase;
    next.active_operation = Some(request.operation_id.clone());
    next.lease_expires_at = Some(request.at + OPERATION_LEASE);
    next.updated_at = request.at;
    next.updated_by = request.caller.principal.clone();
    next
}

/// Changes the desired spec, starting an update operation.
pub fn update(
    current: &Environment,
    spec: EnvironmentSpec,
    allow_replacement: bool,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    take_lock(current)?;
    let diff = current.spec.diff(&spec);
    if diff.is_empty() {
        return Err(CommandError::NoChange);
    }
    let changes: serde_json::Map<String, Value> = diff
        .into_iter()
        .map(|(field, (from, to))| (field, json!({ "from": from, "to": to })))
        .collect();
    let change = json!({ "changes": changes, "allow_replacement": allow_replacement });
    let mut environment = next_version(current, Phase::Updating, request);
    environment.spec = spec;
    Ok(record(
        environment,
        &current.audit_head,
        OperationKind::Update,
        change,
        request,
    ))
}

/// Changes the desired spec of an environment whose update still waits for its approvals:
/// the waiting operation applies the new spec instead. Its plan digest changes, so the
/// approvals given so far no longer count, and whoever changed it may not approve it either.
/// Any other operation holding the environment makes it [`CommandError::Busy`].
pub fn amend(
    current: &Environment,
    waiting: &Operation,
    spec: EnvironmentSpec,
    allow_replacement: bool,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    let holds = current.active_operation.as_deref() == Some(waiting.id.as_str());
    if !holds
        || waiting.kind != OperationKind::Update
        || waiting.status != OperationStatus::AwaitingApproval
    {
        return Err(CommandError::Busy {
            operation: current
                .active_operation
                .clone()
                .unwrap_or_else(|| waiting.id.clone()),
        });
    }
    let diff = current.spec.diff(&spec);
    if diff.is_empty() {
        return Err(CommandError::NoChange);
    }
    // The operation's changes stay relative to what was applied: an earlier `from` is kept.
    let mut changes = waiting.input["changes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (field, (from, to)) in diff {
        let from = changes.get(&field).map_or(from, |c| c["from"].clone());
        if from == to {
            changes.remove(&field);
        } else {
            changes.insert(field, json!({ "from": from, "to": to }));
        }
    }
    let input = json!({ "changes": changes, "allow_replacement": allow_replacement });
    let mut environment = current.clone();
    environment.version = current.version + 1;
    environment.spec = spec;
    environment.updated_at = request.at;
    environment.updated_by = request.caller.principal.clone();
    let mut operation = waiting.clone();
    operation.version += 1;
    operation.updated_at = request.at;
    operation.input = input.clone();
    if let Some(approval) = operation.approval.as_mut() {
        approval.plan_digest =
            crate::approval::plan_digest(OperationKind::Update, &input, &environment.spec);
        if !approval.amended_by.contains(&request.caller.principal) {
            approval.amended_by.push(request.caller.principal.clone());
        }
    }
    let change = json!({ "amends": waiting.id, "changes": changes });
    let event = audit(
        &environment,
        &current.audit_head,
        &operation,
        change,
        request,
    );
    environment.audit_head = event.head();
    Ok(Mutation {
        environment,
        operation,
        audit: event,
    })
}

/// Deploys a service's new version, starting a deploy operation that carries the deployment
/// (what replaces what, the strategy and the canary's policy).
pub fn deploy(
    current: &Environment,
    deployment: crate::deployment::Deployment,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    let kind = if deployment.rollback_of.is_some() {
        OperationKind::Rollback
    } else {
        OperationKind::Deploy
    };
    deploying(current, kind, deployment, None, request)
}

/// Starts a promotion: the first of `promotion`'s deployments runs now, the others after it,
/// all in one operation of the target `current`.
pub fn promote(
    current: &Environment,
    first: crate::deployment::Deployment,
    promotion: crate::promotion::Promotion,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    deploying(
        current,
        OperationKind::Promote,
        first,
        Some(promotion),
        request,
    )
}

fn deploying(
    current: &Environment,
    kind: OperationKind,
    mut deployment: crate::deployment::Deployment,
    promotion: Option<crate::promotion::Promotion>,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    take_lock(current)?;
    deployment.previous = current.releases.get(&deployment.service).cloned();
    let mut change = json!({
        "service": deployment.service,
        "release": deployment.release,
        "previous": deployment.previous,
        "strategy": deployment.strategy,
        "canary": deployment.canary,
    });
    if let Some(of) = &deployment.rollback_of {
        change["rollback_of"] = json!(of);
    }
    if let Some(p) = &promotion {
        change["promotion"] = json!({
            "from": p.from,
            "versions": std::iter::once(&deployment).chain(&p.pending)
                .map(|d| json!({"service": d.service, "version": d.release.version}))
                .collect::<Vec<_>>(),
            "evidence": p.evidence,
        });
    }
    let environment = next_version(current, Phase::Updating, request);
    let mut mutation = record(environment, &current.audit_head, kind, change, request);
    mutation.operation.deployment = Some(deployment);
    mutation.operation.promotion = promotion;
    Ok(mutation)
}

/// Starts putting the cloud back to the environment's unchanged spec (after drift); `reason`
/// is what the caller saw, recorded in the audit event.
pub fn reconcile(
    current: &Environment,
    reason: Value,
    request: &Request<'_>,
) -> Result<Mutation, CommandError> {
    take_lock(current)?;
    let environment = next_version(current, Phase::Updating, request);
    Ok(record(
        environment,
        &current.audit_head,
        OperationKind::Reconcile,
        json!({ "drift": reason }),
        request,
    ))
}

/// Marks the environment for destruction, starting a delete operation.
pub fn delete(current: &Environment, request: &Request<'_>) -> Result<Mutation, CommandError> {
    take_lock(current)?;
    let change = json!({ "phase": { "from": current.status.phase, "to": Phase::Deleting } });
    let environment = next_version(current, Phase::Deleting, request);
    Ok(record(
        environment,
        &current.audit_head,
        OperationKind::Delete,
        change,
        request,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify_chain;
    use crate::auth::Role;
    use crate::blueprint::Blueprint;
    use crate::cidr::VpcCidr;

    fn request<'a>(caller: &'a Caller, id: &str) -> Request<'a> {
        Request {
            caller,
            at: OffsetDateTime::UNIX_EPOCH,
            operation_id: id.into(),
        }
    }

    #[test]
    fn create_update_delete_chain_their_audit_events() {
        let alice = Caller {
            principal: "alice".into(),
            role: Role::Operator,
        };
        let spec = Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0));
        let created = create(
            EnvName::parse("dev").expect("valid"),
            Tier::Dev,
            spec.clone(),
            None,
            OnFailure::Rollback,
            &request(&alice, "op1"),
        );
        assert_eq!(
            (
                created.environment.version,
                created.environment.status.phase
            ),
            (1, Phase::Pending)
        );

        let mut env = created.environment.clone();
        assert_eq!(
            update(&env, spec.clone(), false, &request(&alice, "op2")).err(),
            Some(CommandError::Busy {
                operation: "op1".into()
            })
        );
        env.active_operation = None;
        assert_eq!(
            update(&env, spec.clone(), false, &request(&alice, "op2")).err(),
            Some(CommandError::NoChange)
        );

        let mut bigger = spec;
        bigger.cluster.frontend.desired = 3;
        let updated = update(&env, bigger, false, &request(&alice, "op2")).expect("allowed");
        assert_eq!(updated.environment.version, 2);
        assert_eq!(
            updated.operation.input["changes"]["cluster.frontend.desired"],
            json!({"from": 2, "to": 3})
        );

        let mut env = updated.environment.clone();
        env.active_operation = None;
        let deleted = delete(&env, &request(&alice, "op3")).expect("allowed");
        assert_eq!(deleted.environment.status.phase, Phase::Deleting);

        let events = [created.audit, updated.audit, deleted.audit];
        assert!(verify_chain(&events, &deleted.environment.audit_head).valid);
    }
}
