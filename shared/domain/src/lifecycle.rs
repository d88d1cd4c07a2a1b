//! What happens to an environment and its operation as a flow starts, records in-place
//! changes, succeeds or fails, and when housekeeping finds an operation past its lease: pure
//! functions yielding the records a store then writes under the environment's version, as
//! [`crate::commands`] does for the API's mutations.

use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditEvent};
use crate::auth::Role;
use crate::environment::{Condition, Environment, ObservedResource, Phase};
use crate::operation::{Operation, OperationError, OperationKind, OperationStatus};

/// Principal recorded for changes the flows make on their own.
pub const SYSTEM_PRINCIPAL: &str = "envplane";

/// The error name of an operation whose lease ran out.
pub const LEASE_EXPIRED: &str = "Envplane.LeaseExpired";

/// What one transition writes.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The environment's next record (its version one up).
    pub environment: Environment,
    /// The operation's next record.
    pub operation: Operation,
    /// The audit event, when the transition is one people must be able to trace.
    pub audit: Option<AuditEvent>,
    /// Whether the environment's VPC block goes back to the pool.
    pub release_cidr: bool,
}

pub(crate) fn condition(
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

pub(crate) fn next(environment: &Environment, at: OffsetDateTime) -> Environment {
    let mut next = environment.clone();
    next.version += 1;
    next.updated_at = at;
    next
}

/// The operation's next record: a write of it is conditioned on the version it was read at,
/// so that two writers of one operation cannot both succeed from the same read.
pub(crate) fn next_operation(operation: &Operation, at: OffsetDateTime) -> Operation {
    let mut next = operation.clone();
    next.version += 1;
    next.updated_at = at;
    next
}

/// The same record, no longer held by an operation.
fn released(environment: &Environment, at: OffsetDateTime) -> Environment {
    let mut next = next(environment, at);
    next.active_operation = None;
    next.lease_expires_at = None;
    next
}

/// The operation's flow has begun: the operation runs and the environment shows what it does.
/// `None` when it already runs (a retried first step).
pub fn start(
    environment: &Environment,
    operation: &Operation,
    at: OffsetDateTime,
) -> Option<Transition> {
    if operation.status == OperationStatus::Running {
        return None;
    }
    let mut op = next_operation(operation, at);
    op.status = OperationStatus::Running;
    let mut env = next(environment, at);
    env.status.phase = match op.kind {
        OperationKind::Create | OperationKind::Drill => Phase::Provisioning,
        OperationKind::Restore if op.creates() => Phase::Provisioning,
        OperationKind::Restore
        | OperationKind::Update
        | OperationKind::Reconcile
        | OperationKind::Deploy
        | OperationKind::Rollback
        | OperationKind::Promote => Phase::Updating,
        OperationKind::Delete => Phase::Deleting,
    };
    Some(Transition {
        environment: env,
        operation: op,
        audit: None,
        release_cidr: false,
    })
}

/// The operation is alive (a step is running): its lease runs again from `at`, so that no
/// flow longer than one lease (an EKS upgrade across several versions) is taken for lost.
/// `None` while more than half the lease is left, which spares a write on most steps.
pub fn renew(environment: &Environment, at: OffsetDateTime) -> Option<Environment> {
    let lease = environment.lease_expires_at?;
    if environment.active_operation.is_none() || lease - at > crate::commands::OPERATION_LEASE / 2 {
        return None;
    }
    let mut env = next(environment, at);
    env.lease_expires_at = Some(at + crate::commands::OPERATION_LEASE);
    Some(env)
}

/// The flow finished: a destroyed environment becomes a tombstone (its block released, the
/// deletion audited); any other is ready with the `resources` the cloud now holds.
pub fn succeed(
    environment: &Environment,
    operation: &Operation,
    resources: Vec<ObservedResource>,
    at: OffsetDateTime,
) -> Transition {
    let mut env = released(environment, at);
    // A drill's environment is gone once its flow is done, as a destroyed one.
    let deleted = matches!(operation.kind, OperationKind::Delete | OperationKind::Drill);
    if deleted {
        env.status.phase = Phase::Deleted;
        env.status.conditions = vec![condition(
            "Ready",
            false,
            "Deleted",
            format!("destroyed by operation {}", operation.id),
            at,
        )];
        env.resources = Vec::new();
    } else {
        env.resources = resources;
        env.status.phase = Phase::Ready;
        // The cloud was just brought to the spec: an earlier drift report no longer holds.
        env.drift = None;
        env.status.conditions = ["NetworkReady", "ClusterReady", "DatabaseReady", "Ready"]
            .into_iter()
            .map(|kind| {
                condition(
                    kind,
                    true,
                    "Provisioned",
                    format!("applied by operation {}", operation.id),
                    at,
                )
            })
            .collect();
    }
    let mut op = next_operation(operation, at);
    op.status = OperationStatus::Succeeded;
    let audit = deleted.then(|| {
        let entry = AuditEntry {
            principal: SYSTEM_PRINCIPAL.into(),
            role: Role::Admin,
            action: "environment.deleted".into(),
            operation: Some(operation.id.clone()),
            change: json!({ "released_vpc_cidr": environment.spec.network.vpc_cidr }),
        };
        AuditEvent::link(&environment.name, &environment.audit_head, at, entry)
    });
    if let Some(event) = &audit {
        env.audit_head = event.head();
    }
    Transition {
        environment: env,
        operation: op,
        audit,
        release_cidr: deleted,
    }
}

/// What became of what a failed flow had made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftovers {
    /// Left where the flow stopped (an update, a destroy): consistent for a retry or a
    /// reconcile; the operation's `changes` say what was applied.
    AsStopped,
    /// Kept for inspection, as the request asked (`on_failure=keep`).
    Kept,
    /// Deleted, dependents first: nothing of the environment is left.
    RolledBack,
    /// The rollback itself failed, for this cause: what is left, a delete removes.
    RollbackFailed(String),
}

/// The flow stopped on `error`: the operation failed with it and the environment is released,
/// failed, with the cause as its `Ready` condition and, for a provisioning, what became of
/// what it had made (a `RolledBack` condition; a failed rollback's cause joins the error's, so
/// it is never silent).
pub fn fail(
    environment: &Environment,
    operation: &Operation,
    mut error: OperationError,
    leftovers: Leftovers,
    at: OffsetDateTime,
) -> Transition {
    let mut env = released(environment, at);
    env.status.phase = Phase::Failed;
    let rolled_back = match &leftovers {
        Leftovers::AsStopped => None,
        Leftovers::Kept => Some(condition(
            "RolledBack",
            false,
            "Kept",
            "kept for inspection (on_failure=keep); delete the environment to remove them".into(),
            at,
        )),
        Leftovers::RolledBack => {
            env.resources = Vec::new();
            Some(condition(
                "RolledBack",
                true,
                "RolledBack",
                format!("everything operation {} made was deleted", operation.id),
                at,
            ))
        }
        Leftovers::RollbackFailed(cause) => {
            error.cause = format!("{}; rollback failed: {cause}", error.cause);
            Some(condition(
                "RolledBack",
                false,
                "RollbackFailed",
                format!("{cause}; delete the environment to remove what is left"),
                at,
            ))
        }
    };
    env.status.conditions = vec![condition(
        "Ready",
        false,
        &error.error,
        error.cause.clone(),
        at,
    )];
    env.status.conditions.extend(rolled_back);
    // A drill torn down is gone, failed or not: its name and block are free again.
    let drill_gone = operation.kind == OperationKind::Drill && leftovers == Leftovers::RolledBack;
    if drill_gone {
        env.status.phase = Phase::Deleted;
    }
    let mut op = next_operation(operation, at);
    op.status = OperationStatus::Failed;
    op.error = Some(error);
    Transition {
        environment: env,
        operation: op,
        audit: None,
        release_cidr: drill_gone,
    }
}

/// The error name of an operation whose flow could not be started.
pub const START_FAILED: &str = "Envplane.StartFailed";

/// The operation's flow could not be started (the workflow service refused): the operation
/// fails and the environment is released in the same request that recorded it. A create that
/// never started leaves a tombstone (its name and block free again, its audit chain kept); any
/// other change stays recorded in the spec, unapplied, for a reconcile.
pub fn abandon(
    environment: &Environment,
    operation: &Operation,
    why: &str,
    at: OffsetDateTime,
) -> Transition {
    let create = operation.kind == OperationKind::Create;
    let cause = if create {
        format!("its flow could not be started: {why}; nothing was made, and the name is free")
    } else {
        format!(
            "its flow could not be started: {why}; nothing was changed in the cloud, and the spec keeps the change: reconcile applies it"
        )
    };
    let mut t = fail(
        environment,
        operation,
        OperationError {
            error: START_FAILED.into(),
            cause,
        },
        Leftovers::AsStopped,
        at,
    );
    if create {
        t.environment.status.phase = Phase::Deleted;
        t.release_cidr = true;
    }
    t
}

/// The error name of an operation cancelled on request.
pub const CANCELLED: &str = "Envplane.Cancelled";

/// `caller` cancelled the operation (its execution already stopped): it ends cancelled, the
/// environment is released, failed with the reason, and the cancel is audited with the caller.
pub fn cancel(
    environment: &Environment,
    operation: &Operation,
    caller: &crate::auth::Caller,
    at: OffsetDateTime,
) -> Transition {
    let cause = format!("cancelled by {}", caller.principal);
    let mut env = released(environment, at);
    env.status.phase = Phase::Failed;
    env.updated_by = caller.principal.clone();
    env.status.conditions.retain(|c| c.kind != "Ready");
    env.status
        .conditions
        .push(condition("Ready", false, CANCELLED, cause.clone(), at));
    let mut op = next_operation(operation, at);
    op.status = OperationStatus::Cancelled;
    op.error = Some(OperationError {
        error: CANCELLED.into(),
        cause,
    });
    let entry = AuditEntry {
        principal: caller.principal.clone(),
        role: caller.role,
        action: "operation.cancel".into(),
        operation: Some(operation.id.clone()),
        change: json!({ "operation": operation.id, "kind": operation.kind, "status": { "from": operation.status, "to": OperationStatus::Cancelled } }),
    };
    let audit = AuditEvent::link(&environment.name, &environment.audit_head, at, entry);
    env.audit_head = audit.head();
    Transition {
        environment: env,
        operation: op,
        audit: Some(audit),
        release_cidr: false,
    }
}

/// Housekeeping found the operation holding the environment past its lease: it fails with
/// [`LEASE_EXPIRED`] and the cause, and the environment is released. Earlier conditions other
/// than `Ready` are kept.
pub fn expire(environment: &Environment, operation: &Operation, at: OffsetDateTime) -> Transition {
    let cause = format!(
        "operation {} held {} past its lease ({}) without finishing; housekeeping released it",
        operation.id,
        environment.name,
        environment
            .lease_expires_at
            .map_or_else(|| "none recorded".to_owned(), |t| t.to_string())
    );
    let mut env = released(environment, at);
    env.status.phase = Phase::Failed;
    env.status.conditions.retain(|c| c.kind != "Ready");
    env.status
        .conditions
        .push(condition("Ready", false, LEASE_EXPIRED, cause.clone(), at));
    let mut op = next_operation(operation, at);
    op.status = OperationStatus::Failed;
    op.error = Some(OperationError {
        error: LEASE_EXPIRED.into(),
        cause,
    });
    Transition {
        environment: env,
        operation: op,
        audit: None,
        release_cidr: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify_chain;
    use crate::auth::Caller;
    use crate::blueprint::{Blueprint, Tier};
    use crate::cidr::VpcCidr;
    use crate::commands::{self, Request};
    use crate::name::EnvName;

    fn created() -> commands::Mutation {
        let caller = Caller {
            principal: "alice".into(),
            role: Role::Operator,
        };
        commands::create(
            EnvName::parse("dev").expect("valid"),
            Tier::Dev,
            Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
            None,
            crate::operation::OnFailure::Rollback,
            &Request {
                caller: &caller,
                at: OffsetDateTime::UNIX_EPOCH,
                operation_id: "op1".into(),
            },
        )
    }

    #[test]
    fn a_provision_starts_once_and_succeeds_ready_and_released() {
        let m = created();
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(1);
        let started = start(&m.environment, &m.operation, at).expect("pending starts");
        assert_eq!(started.environment.status.phase, Phase::Provisioning);
        assert_eq!(started.environment.version, m.environment.version + 1);
        assert!(start(&started.environment, &started.operation, at).is_none());
        let done = succeed(&started.environment, &started.operation, Vec::new(), at);
        assert_eq!(done.environment.status.phase, Phase::Ready);
        assert_eq!(done.environment.active_operation, None);
        assert_eq!(done.operation.status, OperationStatus::Succeeded);
        assert!(done.audit.is_none() && !done.release_cidr);
        assert_eq!(done.environment.status.conditions.len(), 4);
    }

    #[test]
    fn a_lease_is_renewed_once_half_of_it_is_gone() {
        let m = created();
        let start = OffsetDateTime::UNIX_EPOCH;
        assert!(renew(&m.environment, start + time::Duration::minutes(30)).is_none());
        let later = start + time::Duration::minutes(61);
        let renewed = renew(&m.environment, later).expect("renewed");
        assert_eq!(
            renewed.lease_expires_at,
            Some(later + crate::commands::OPERATION_LEASE)
        );
        assert_eq!(renewed.version, m.environment.version + 1);
        let mut released = m.environment.clone();
        released.active_operation = None;
        assert!(renew(&released, later).is_none());
    }

    #[test]
    fn a_destroy_leaves_an_audited_tombstone_and_releases_its_block() {
        let m = created();
        let mut op = m.operation.clone();
        op.kind = OperationKind::Delete;
        let done = succeed(&m.environment, &op, Vec::new(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(done.environment.status.phase, Phase::Deleted);
        assert!(done.release_cidr);
        let audit = done.audit.expect("audited");
        assert_eq!(audit.action, "environment.deleted");
        assert!(verify_chain(&[m.audit, audit], &done.environment.audit_head).valid);
    }

    #[test]
    fn failure_and_expiry_release_with_the_cause() {
        let m = created();
        let error = OperationError {
            error: "Envplane.Conflict".into(),
            cause: "nat failed".into(),
        };
        let failed = fail(
            &m.environment,
            &m.operation,
            error.clone(),
            Leftovers::AsStopped,
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(failed.environment.status.phase, Phase::Failed);
        assert_eq!(
            failed.environment.status.conditions[0].reason,
            "Envplane.Conflict"
        );
        assert_eq!(failed.environment.active_operation, None);
        assert_eq!(failed.environment.status.conditions.len(), 1);

        let unrolled = fail(
            &m.environment,
            &m.operation,
            error,
            Leftovers::RollbackFailed("DeleteVpc: DependencyViolation".into()),
            OffsetDateTime::UNIX_EPOCH,
        );
        let cause = unrolled
            .operation
            .error
            .map(|e| e.cause)
            .unwrap_or_default();
        assert_eq!(
            cause,
            "nat failed; rollback failed: DeleteVpc: DependencyViolation"
        );
        assert_eq!(
            unrolled.environment.status.conditions[1].reason,
            "RollbackFailed"
        );

        let expired = expire(&m.environment, &m.operation, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            expired.operation.error.map(|e| e.error).as_deref(),
            Some(LEASE_EXPIRED)
        );
        assert_eq!(expired.environment.lease_expires_at, None);
    }
}
