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

    /// An operation by id.
    async fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError>;

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

    /// Writes a change atomically: all of it under its conditions, or none of it.
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
