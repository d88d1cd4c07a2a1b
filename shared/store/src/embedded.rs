//! The embedded adapter: a redb file, for the local control plane.
//!
//! redb gives serializable write transactions with copy-on-write commits that are durable when
//! `commit` returns, so a change is all-or-nothing across a crash or `kill -9`, and the
//! conditions of a [`Change`] are checked inside the same write transaction that applies it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use envplane_domain::operation::AppliedChange;
use envplane_domain::{AuditEvent, EnvName, Environment, Operation, VpcCidr};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::model::{decode, encode};
use crate::{
    Change, CommitError, EnvironmentQuery, Expected, IdempotencyRecord, OperationQuery, Page,
    StateStore, StoreError, cursor_after, decode_cursor,
};

const ENVIRONMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("environments");
const OPERATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("operations");
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const CIDRS: TableDefinition<u8, &str> = TableDefinition::new("cidrs");

/// State store in a single redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`. redb allows one process per file: a second
    /// `envplane serve` on the same data directory fails here with a clear error.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(ENVIRONMENTS).map_err(backend)?;
            txn.open_table(OPERATIONS).map_err(backend)?;
            txn.open_table(AUDIT).map_err(backend)?;
            txn.open_table(IDEMPOTENCY).map_err(backend)?;
            txn.open_table(CIDRS).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async runtime's worker threads.
    async fn blocking<T, E>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| E::from(backend(e)))?
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn environment(&self, name: &EnvName) -> Result<Option<Environment>, StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(ENVIRONMENTS)
                .map_err(backend)?;
            let value = table.get(name.as_str()).map_err(backend)?;
            value.map(|v| decode("environment", v.value())).transpose()
        })
        .await
    }

    async fn list_environments(
        &self,
        query: &EnvironmentQuery,
    ) -> Result<Page<Environment>, StoreError> {
        let query = query.clone();
        self.blocking(move |db| {
            let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(ENVIRONMENTS)
                .map_err(backend)?;
            let range = match after.as_deref() {
                Some(after) => table
                    .range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                None => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut items = Vec::new();
            let mut more = false;
            for entry in range {
                let (_, value) = entry.map_err(backend)?;
                let env: Environment = decode("environment", value.value())?;
                if !query.matches(&env) {
                    continue;
                }
                if items.len() == query.limit.max(1) {
                    more = true;
                    break;
                }
                items.push(env);
            }
            let next = if more {
                items
                    .last()
                    .map(|e: &Environment| cursor_after(e.name.as_str()))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(OPERATIONS)
                .map_err(backend)?;
            let value = table.get(id.as_str()).map_err(backend)?;
            value.map(|v| decode("operation", v.value())).transpose()
        })
        .await
    }

    async fn operation_of(
        &self,
        environment: &EnvName,
        id: &str,
    ) -> Result<Option<Operation>, StoreError> {
        // One file, serializable transactions: every read is consistent; the environment only
        // scopes the lookup as it does on DynamoDB.
        Ok(self
            .operation(id)
            .await?
            .filter(|op| &op.environment == environment))
    }

    async fn append_changes(
        &self,
        environment: &EnvName,
        id: &str,
        changes: &[AppliedChange],
    ) -> Result<(), CommitError> {
        let (name, id, changes) = (environment.to_string(), id.to_owned(), changes.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let held = txn
                    .open_table(ENVIRONMENTS)
                    .map_err(backend)?
                    .get(name.as_str())
                    .map_err(backend)?
                    .map(|v| decode::<Environment>("environment", v.value()))
                    .transpose()?
                    .is_some_and(|env| env.active_operation.as_deref() == Some(id.as_str()));
                if !held {
                    return Err(CommitError::VersionConflict);
                }
                let mut operations = txn.open_table(OPERATIONS).map_err(backend)?;
                let stored = operations
                    .get(id.as_str())
                    .map_err(backend)?
                    .map(|v| decode::<Operation>("operation", v.value()))
                    .transpose()?;
                let mut op = stored.ok_or(CommitError::VersionConflict)?;
                op.changes.extend(changes);
                operations
                    .insert(id.as_str(), encode(&op)?.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn audit_events(
        &self,
        name: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(AUDIT)
                .map_err(backend)?;
            let range = table
                .range((name.as_str(), after.saturating_add(1))..=(name.as_str(), u64::MAX))
                .map_err(backend)?;
            let mut items = Vec::new();
            let mut more = false;
            for entry in range {
                let (_, value) = entry.map_err(backend)?;
                if items.len() == limit.max(1) {
                    more = true;
                    break;
                }
                items.push(decode::<AuditEvent>("audit event", value.value())?);
            }
            let next = if more {
                items.last().map(|e| e.seq.to_string())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(IDEMPOTENCY)
                .map_err(backend)?;
            let value = table.get(key.as_str()).map_err(backend)?;
            value
                .map(|v| decode("idempotency record", v.value()))
                .transpose()
        })
        .await
    }

    async fn operations_of_environment(
        &self,
        name: &EnvName,
        query: &OperationQuery,
    ) -> Result<Page<Operation>, StoreError> {
        self.operations_where(Some(name.clone()), query).await
    }

    async fn operations(&self, query: &OperationQuery) -> Result<Page<Operation>, StoreError> {
        self.operations_where(None, query).await
    }

    async fn cidrs_in_use(&self) -> Result<BTreeMap<VpcCidr, EnvName>, StoreError> {
        self.blocking(move |db| {
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(CIDRS)
                .map_err(backend)?;
            let mut out = BTreeMap::new();
            for entry in table.iter().map_err(backend)? {
                let (octet, holder) = entry.map_err(backend)?;
                let holder = EnvName::parse(holder.value()).map_err(StoreError::Corrupt)?;
                out.insert(VpcCidr::from_second_octet(octet.value()), holder);
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, change: Change) -> Result<(), CommitError> {
        self.blocking(move |db| commit_blocking(db, change)).await
    }
}

fn commit_blocking(db: &Database, change: Change) -> Result<(), CommitError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let name = change.environment.name.as_str();
        // The idempotency key is checked first: a retry of a request that already succeeded
        // must be recognised as such even though its other conditions now fail too.
        if let Some(record) = &change.idempotency {
            let mut table = txn.open_table(IDEMPOTENCY).map_err(backend)?;
            let existing = table
                .get(record.key.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_vec());
            if let Some(existing) = existing {
                // An expired record no longer holds its key, as DynamoDB's TTL would have removed it.
                let existing: IdempotencyRecord = decode("idempotency record", &existing)?;
                if existing.expires_at > time::OffsetDateTime::now_utc().unix_timestamp() {
                    return Err(CommitError::IdempotencyKeyUsed);
                }
            }
            table
                .insert(record.key.as_str(), encode(record)?.as_bytes())
                .map_err(backend)?;
        }
        let mut environments = txn.open_table(ENVIRONMENTS).map_err(backend)?;
        let stored: Option<Environment> = environments
            .get(name)
            .map_err(backend)?
            .map(|v| decode("environment", v.value()))
            .transpose()?;
        match (change.expected, &stored) {
            (Expected::Absent, Some(_)) => return Err(CommitError::AlreadyExists),
            (Expected::Version(v), Some(env)) if env.version != v => {
                return Err(CommitError::VersionConflict);
            }
            (Expected::Version(_), None) => return Err(CommitError::VersionConflict),
            _ => {}
        }
        if let Some(cidr) = change.claim_cidr {
            let mut cidrs = txn.open_table(CIDRS).map_err(backend)?;
            if cidrs.get(cidr.second_octet()).map_err(backend)?.is_some() {
                return Err(CommitError::CidrTaken(cidr));
            }
            cidrs.insert(cidr.second_octet(), name).map_err(backend)?;
        }
        if let Some(cidr) = change.release_cidr {
            let mut cidrs = txn.open_table(CIDRS).map_err(backend)?;
            let holder = cidrs
                .get(cidr.second_octet())
                .map_err(backend)?
                .map(|h| h.value().to_owned());
            if holder.as_deref() == Some(name) {
                cidrs.remove(cidr.second_octet()).map_err(backend)?;
            }
        }
        environments
            .insert(name, encode(&change.environment)?.as_bytes())
            .map_err(backend)?;
        if let Some(op) = &change.operation {
            let mut operations = txn.open_table(OPERATIONS).map_err(backend)?;
            let stored = operations
                .get(op.id.as_str())
                .map_err(backend)?
                .map(|v| decode::<Operation>("operation", v.value()))
                .transpose()?;
            // Written only over the version before its own; appended changes are kept.
            let mut op = op.clone();
            match stored {
                None if op.version <= 1 => {}
                Some(stored) if stored.version + 1 == op.version => op.changes = stored.changes,
                _ => return Err(CommitError::VersionConflict),
            }
            operations
                .insert(op.id.as_str(), encode(&op)?.as_bytes())
                .map_err(backend)?;
        }
        if let Some(event) = &change.audit {
            let mut audit = txn.open_table(AUDIT).map_err(backend)?;
            if audit.get((name, event.seq)).map_err(backend)?.is_some() {
                return Err(CommitError::VersionConflict);
            }
            audit
                .insert((name, event.seq), encode(event)?.as_bytes())
                .map_err(backend)?;
        }
    }
    // Returning early above drops `txn`, which aborts it: nothing of a refused change is written.
    txn.commit().map_err(backend)?;
    Ok(())
}

#[cfg(feature = "test-support")]
#[async_trait]
impl crate::AuditTamper for EmbeddedStore {
    async fn edit_audit_principal(
        &self,
        name: &EnvName,
        seq: u64,
        principal: &str,
    ) -> Result<(), StoreError> {
        let (name, principal) = (name.to_string(), principal.to_owned());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(AUDIT).map_err(backend)?;
                let stored = table
                    .get((name.as_str(), seq))
                    .map_err(backend)?
                    .map(|v| v.value().to_vec());
                let mut event: AuditEvent = decode(
                    "audit event",
                    &stored.ok_or_else(|| backend("no such event"))?,
                )?;
                event.principal = principal;
                table
                    .insert((name.as_str(), seq), encode(&event)?.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn remove_audit_event(&self, name: &EnvName, seq: u64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(AUDIT)
                .map_err(backend)?
                .remove((name.as_str(), seq))
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }
}

impl EmbeddedStore {
    /// Operations newest first, of one environment or of all.
    async fn operations_where(
        &self,
        name: Option<EnvName>,
        query: &OperationQuery,
    ) -> Result<Page<Operation>, StoreError> {
        let query = query.clone();
        self.blocking(move |db| {
            let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
            let table = db
                .begin_read()
                .map_err(backend)?
                .open_table(OPERATIONS)
                .map_err(backend)?;
            // Operations are keyed by id (a ULID: time-ordered), newest first.
            let range = match before.as_deref() {
                Some(before) => table.range::<&str>((
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Excluded(before),
                )),
                None => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let limit = query.limit.max(1);
            let mut items: Vec<Operation> = Vec::new();
            let mut more = false;
            for entry in range.rev() {
                let (_, value) = entry.map_err(backend)?;
                let mut op: Operation = decode("operation", value.value())?;
                if name.as_ref().is_some_and(|n| op.environment != *n) || !query.matches(&op) {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                op.changes = Vec::new();
                items.push(op);
            }
            let next = if more {
                items.last().map(|o| cursor_after(&o.id))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }
}
