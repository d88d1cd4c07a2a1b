//! The state store port of envplane and its two adapters.
//!
//! [`StateStore`] is deliberately narrow: reads of one environment, one operation, a page of
//! environments or audit events, and one [`Change`] committed atomically. The DynamoDB adapter
//! keeps the single-table layout of the design (one `TransactWriteItems` per change, one `Query`
//! per environment read); the embedded adapter keeps the same guarantees in a redb file so the
//! local control plane survives restarts and `kill -9`.
#![forbid(unsafe_code)]

pub mod dynamo;
pub mod embedded;
mod model;
#[cfg(feature = "test-support")]
pub mod testing;

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;
pub use model::*;

use std::collections::BTreeMap;

use async_trait::async_trait;
use envplane_domain::operation::AppliedChange;
use envplane_domain::{AuditEvent, EnvName, Environment, Operation, VpcCidr};

/// Durable record of desired state, operations, audit history and idempotent responses.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The environment's record, read consistently.
    async fn environment(&self, name: &EnvName) -> Result<Option<Environment>, StoreError>;

    /// A page of environments in name order, filtered.
    async fn list_environments(
        &self,
        query: &EnvironmentQuery,
    ) -> Result<Page<Environment>, StoreError>;

    /// An operation by id alone. On DynamoDB the id is found through the table's index, which
    /// can lag a new operation by a moment; the record itself is then read consistently.
    async fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError>;

    /// An operation of `environment`, read consistently by its primary key: what the flows
    /// read before they write.
    async fn operation_of(
        &self,
        environment: &EnvName,
        id: &str,
    ) -> Result<Option<Operation>, StoreError>;

    /// Appends in-place changes to an operation, after those already recorded, provided it
    /// still holds `environment` ([`CommitError::VersionConflict`] otherwise). No read comes
    /// before the write: parallel branches append at the same time and none loses another's.
    async fn append_changes(
        &self,
        environment: &EnvName,
        id: &str,
        changes: &[AppliedChange],
    ) -> Result<(), CommitError>;

    /// A page of an environment's audit events after sequence number `after`, in order.
    async fn audit_events(
        &self,
        name: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Page<AuditEvent>, StoreError>;

    /// The stored response of an earlier mutation made with the same idempotency key.
    async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Every VPC block held by an environment, with its holder.
    async fn cidrs_in_use(&self) -> Result<BTreeMap<VpcCidr, EnvName>, StoreError>;

    /// A page of an environment's operations, newest first, filtered; without the in-place
    /// changes each recorded (`operation_of` reads those).
    async fn operations_of_environment(
        &self,
        name: &EnvName,
        query: &OperationQuery,
    ) -> Result<Page<Operation>, StoreError>;

    /// A page of every environment's operations (destroyed ones' too), newest first, filtered;
    /// without their in-place changes.
    async fn operations(&self, query: &OperationQuery) -> Result<Page<Operation>, StoreError>;

    /// Writes a change atomically: all of it under its conditions, or none of it. An operation
    /// in it is written only over the version before its own (absent for version 1), and keeps
    /// the changes appended to it: they are only ever appended.
    async fn commit(&self, change: Change) -> Result<(), CommitError>;
}

/// Ways to break stored audit events, for tests that prove verification catches them.
#[cfg(feature = "test-support")]
#[async_trait]
pub trait AuditTamper {
    /// Rewrites the principal of one stored event without fixing its hash.
    async fn edit_audit_principal(
        &self,
        name: &EnvName,
        seq: u64,
        principal: &str,
    ) -> Result<(), StoreError>;
    /// Deletes one stored event.
    async fn remove_audit_event(&self, name: &EnvName, seq: u64) -> Result<(), StoreError>;
}

/// A shared store is a store: wrappers (metering, fault injection, tests' lagging index) take
/// the `Arc` the plane already holds.
#[async_trait]
impl<S: StateStore + ?Sized> StateStore for std::sync::Arc<S> {
    async fn environment(&self, name: &EnvName) -> Result<Option<Environment>, StoreError> {
        (**self).environment(name).await
    }

    async fn list_environments(
        &self,
        query: &EnvironmentQuery,
    ) -> Result<Page<Environment>, StoreError> {
        (**self).list_environments(query).await
    }

    async fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        (**self).operation(id).await
    }

    async fn operation_of(
        &self,
        environment: &EnvName,
        id: &str,
    ) -> Result<Option<Operation>, StoreError> {
        (**self).operation_of(environment, id).await
    }

    async fn append_changes(
        &self,
        environment: &EnvName,
        id: &str,
        changes: &[AppliedChange],
    ) -> Result<(), CommitError> {
        (**self).append_changes(environment, id, changes).await
    }

    async fn audit_events(
        &self,
        name: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Page<AuditEvent>, StoreError> {
        (**self).audit_events(name, after, limit).await
    }

    async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        (**self).idempotency_record(key).await
    }

    async fn cidrs_in_use(&self) -> Result<BTreeMap<VpcCidr, EnvName>, StoreError> {
        (**self).cidrs_in_use().await
    }

    async fn operations_of_environment(
        &self,
        name: &EnvName,
        query: &OperationQuery,
    ) -> Result<Page<Operation>, StoreError> {
        (**self).operations_of_environment(name, query).await
    }

    async fn operations(&self, query: &OperationQuery) -> Result<Page<Operation>, StoreError> {
        (**self).operations(query).await
    }

    async fn commit(&self, change: Change) -> Result<(), CommitError> {
        (**self).commit(change).await
    }
}
