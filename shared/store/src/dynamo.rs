//! The DynamoDB adapter: the single-table layout of the design.
//!
//! | pk | sk | holds |
//! |---|---|---|
//! | `ENV#{name}` | `META` | the environment (GSI `gsi1`: `ENV` / name, for listing) |
//! | `ENV#{name}` | `OP#{id}` | an operation (GSI `gsi1`: `OP#{id}` / `OP`, for lookup by id; GSI `gsi2`: `OPS` / id, every operation newest first), its `version` beside it |
//! | `ENV#{name}` | `OP#{id}#CHANGE#{ulid}` | in-place changes appended to the operation, in order |
//! | `ENV#{name}` | `AUDIT#{seq:020}` | an audit event |
//! | `IDEMP#{key}` | `IDEMP` | a stored response, expiring through the TTL attribute `expires_at` |
//! | `CIDR#{block}` | `CIDR` | the reservation of a VPC block, which makes overlap impossible |
//!
//! Every item keeps its record as JSON in `doc`; the attributes that keys, conditions and
//! filters need are stored beside it natively (`version`, and `active_op` on `META`, which an
//! append of changes is conditioned on). An operation is read by its primary key with
//! `ConsistentRead`, its changes in the same Query; the index only finds the environment of an
//! id. A changes item is written without reading anything, so parallel branches never erase
//! each other's changes, and a write of the whole operation never touches them.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem,
};
use envplane_domain::operation::AppliedChange;
use envplane_domain::{AuditEvent, EnvName, Environment, Operation, VpcCidr};

use crate::model::{decode, encode};
use crate::{
    Change, CommitError, EnvironmentQuery, Expected, IdempotencyRecord, OperationQuery, Page,
    StateStore, StoreError, cursor_after, decode_cursor,
};

/// Name of the table's global secondary index for listing environments and finding an
/// operation's environment.
pub const GSI: &str = "gsi1";
/// Name of the index of every operation by id (time order): one partition, `OPS`, which a
/// control plane's rate of operations stays far below the limits of.
pub const OPERATIONS_GSI: &str = "gsi2";

/// State store on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn env_pk(name: &str) -> String {
    format!("ENV#{name}")
}

fn operation_sk(id: &str) -> String {
    format!("OP#{id}")
}

/// A page of the operations `request` finds, newest first, filtered by `query`: DynamoDB's
/// pages are followed until one more than the page size is found (so that the cursor is only
/// given when there is more); `listed` says which items are operations.
async fn operation_page(
    request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    query: &OperationQuery,
    listed: impl Fn(&Item) -> bool,
) -> Result<Page<Operation>, StoreError> {
    let limit = query.limit.max(1);
    let mut items: Vec<Operation> = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let output = request
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_error)?;
        for item in output.items().iter().filter(|item| listed(item)) {
            let mut op: Operation = doc("operation", item)?;
            if query.matches(&op) {
                op.changes = Vec::new();
                items.push(op);
            }
        }
        match output.last_evaluated_key {
            Some(key) if !key.is_empty() && items.len() <= limit => start = Some(key),
            _ => break,
        }
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|o| cursor_after(&o.id))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// The key of the next batch of changes: monotonic within this process, so the batches of one
/// branch keep their order even within a millisecond; across processes, time orders them.
fn changes_sk(id: &str) -> String {
    static NEXT: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let ulid = NEXT
        .lock()
        .ok()
        .and_then(|mut g| g.generate().ok())
        .unwrap_or_else(|| ulid::Ulid::from_datetime(std::time::SystemTime::now()));
    format!("OP#{id}#CHANGE#{ulid}")
}

fn audit_sk(seq: u64) -> String {
    format!("AUDIT#{seq:020}")
}

/// Maps an SDK failure to a store error, keeping throttling distinguishable.
fn sdk_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let throttled = matches!(
        error.code(),
        Some(
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
        )
    );
    let message = DisplayErrorContext(&error).to_string();
    if throttled {
        StoreError::Throttled(message)
    } else {
        StoreError::Backend(message)
    }
}

fn doc<T: serde::de::DeserializeOwned>(what: &str, item: &Item) -> Result<T, StoreError> {
    match item.get("doc") {
        Some(AttributeValue::S(json)) => decode(what, json.as_bytes()),
        _ => Err(StoreError::Corrupt(format!(
            "{what}: item without a doc attribute"
        ))),
    }
}

impl DynamoStore {
    /// A store on `table` (created by the SAM template, or by [`DynamoStore::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with its GSI, on-demand billing and TTL, as the SAM template does;
    /// for local runs against an emulator and for tests.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI)
            .key_schema(
                key("gsi1pk", KeyType::Hash).map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .key_schema(
                key("gsi1sk", KeyType::Range).map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let operations = GlobalSecondaryIndex::builder()
            .index_name(OPERATIONS_GSI)
            .key_schema(
                key("gsi2pk", KeyType::Hash).map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .key_schema(
                key("gsi2sk", KeyType::Range).map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for name in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
            request = request
                .attribute_definitions(attr(name).map_err(|e| StoreError::Backend(e.to_string()))?);
        }
        request
            .key_schema(key("pk", KeyType::Hash).map_err(|e| StoreError::Backend(e.to_string()))?)
            .key_schema(key("sk", KeyType::Range).map_err(|e| StoreError::Backend(e.to_string()))?)
            .global_secondary_indexes(gsi)
            .global_secondary_indexes(operations)
            .send()
            .await
            .map_err(sdk_error)?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Creates the table unless it exists: for local runs against an emulator or a dev account.
    pub async fn ensure_table(client: &Client, table: &str) -> Result<(), StoreError> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Self::create_table(client, table).await
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// The client, for callers that add instrumentation or administration.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(condition) = condition {
            put = put.condition_expression(condition);
        }
        put = put.set_expression_attribute_values(values);
        let put = put
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Queries the GSI's environment partition after `after`, returning (name, item) pairs.
    async fn query_environments(
        &self,
        after: Option<&str>,
        limit: Option<i32>,
        projection: Option<&str>,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI)
            .expression_attribute_values(":pk", s("ENV"))
            .set_limit(limit);
        request = match after {
            Some(after) => request
                .key_condition_expression("gsi1pk = :pk AND gsi1sk > :after")
                .expression_attribute_values(":after", s(after)),
            None => request.key_condition_expression("gsi1pk = :pk"),
        };
        if let Some(projection) = projection {
            request = request.projection_expression(projection);
        }
        let output = request.send().await.map_err(sdk_error)?;
        Ok((
            output.items.unwrap_or_default(),
            output.last_evaluated_key.is_some(),
        ))
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn environment(&self, name: &EnvName) -> Result<Option<Environment>, StoreError> {
        // One Query on the partition: META, and (later) the observed resources stored under
        // `META#RES#…`, come back together.
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :meta)")
            .expression_attribute_values(":pk", s(env_pk(name.as_str())))
            .expression_attribute_values(":meta", s("META"))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let items = output.items.unwrap_or_default();
        let meta = items
            .iter()
            .find(|item| matches!(item.get("sk"), Some(AttributeValue::S(sk)) if sk == "META"));
        meta.map(|item| doc("environment", item)).transpose()
    }

    async fn list_environments(
        &self,
        query: &EnvironmentQuery,
    ) -> Result<Page<Environment>, StoreError> {
        let limit = query.limit.max(1);
        let mut after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut items: Vec<Environment> = Vec::new();
        loop {
            // Ask for one more than needed, to know whether another page exists.
            let want = i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX);
            let (page, more) = self
                .query_environments(after.as_deref(), Some(want), None)
                .await?;
            for item in &page {
                let env: Environment = doc("environment", item)?;
                after = Some(env.name.to_string());
                if query.matches(&env) {
                    items.push(env);
                }
            }
            if items.len() > limit || !more {
                break;
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| cursor_after(e.name.as_str()))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI)
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(":pk", s(format!("OP#{id}")))
            .projection_expression("pk")
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = output.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let environment = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.strip_prefix("ENV#").map(EnvName::parse),
            _ => None,
        };
        match environment {
            Some(Ok(environment)) => self.operation_of(&environment, id).await,
            _ => Err(StoreError::Corrupt(format!(
                "operation {id}: index entry without its environment"
            ))),
        }
    }

    async fn operation_of(
        &self,
        environment: &EnvName,
        id: &str,
    ) -> Result<Option<Operation>, StoreError> {
        let sk = operation_sk(id);
        let mut op: Option<Operation> = None;
        let mut changes: Vec<AppliedChange> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :op)")
                .expression_attribute_values(":pk", s(env_pk(environment.as_str())))
                .expression_attribute_values(":op", s(&sk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in output.items() {
                match item.get("sk") {
                    Some(AttributeValue::S(key)) if *key == sk => {
                        op = Some(doc("operation", item)?)
                    }
                    _ => changes.extend(doc::<Vec<AppliedChange>>("operation changes", item)?),
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(op.map(|mut op| {
            op.changes = changes;
            op
        }))
    }

    async fn append_changes(
        &self,
        environment: &EnvName,
        id: &str,
        changes: &[AppliedChange],
    ) -> Result<(), CommitError> {
        let pk = env_pk(environment.as_str());
        let held = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("META"))
            .condition_expression("active_op = :op")
            .expression_attribute_values(":op", s(id))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s(changes_sk(id))),
            ("doc".into(), s(encode(&changes)?)),
        ]);
        let writes = vec![
            TransactWriteItem::builder().condition_check(held).build(),
            self.put(item, Some("attribute_not_exists(pk)"), None)?,
        ];
        let roles = [Role::Held, Role::Plain];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(commit_error(error, &roles)),
        }
    }

    async fn audit_events(
        &self,
        name: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let limit = limit.max(1);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(env_pk(name.as_str())))
            .expression_attribute_values(":from", s(audit_sk(after.saturating_add(1))))
            .expression_attribute_values(":to", s(audit_sk(u64::MAX)))
            .consistent_read(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(sdk_error)?;
        let mut items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| doc::<AuditEvent>("audit event", item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("IDEMP#{key}")))
            .key("sk", s("IDEMP"))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output
            .item
            .as_ref()
            .map(|item| doc("idempotency record", item))
            .transpose()
    }

    async fn operations_of_environment(
        &self,
        name: &EnvName,
        query: &OperationQuery,
    ) -> Result<Page<Operation>, StoreError> {
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        // Newest first: the operation items (`OP#{ulid}`) below the cursor's, their change
        // items (`OP#{ulid}#CHANGE#…`) skipped.
        let upper = before
            .as_deref()
            .map_or_else(|| "OP#~".to_owned(), operation_sk);
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(env_pk(name.as_str())))
            .expression_attribute_values(":lo", s("OP#"))
            .expression_attribute_values(":hi", s(&upper))
            .scan_index_forward(false)
            .consistent_read(true);
        operation_page(request, query, |item| {
            matches!(item.get("sk"), Some(AttributeValue::S(key)) if !key.contains("#CHANGE#") && *key != upper)
        })
        .await
    }

    async fn operations(&self, query: &OperationQuery) -> Result<Page<Operation>, StoreError> {
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPERATIONS_GSI)
            .expression_attribute_values(":pk", s("OPS"))
            .scan_index_forward(false);
        let request = match &before {
            Some(before) => request
                .key_condition_expression("gsi2pk = :pk AND gsi2sk < :before")
                .expression_attribute_values(":before", s(before)),
            None => request.key_condition_expression("gsi2pk = :pk"),
        };
        operation_page(request, query, |_| true).await
    }

    async fn cidrs_in_use(&self) -> Result<BTreeMap<VpcCidr, EnvName>, StoreError> {
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let (items, more) = self
                .query_environments(after.as_deref(), None, Some("gsi1sk, vpc_cidr"))
                .await?;
            for item in &items {
                let (Some(AttributeValue::S(name)), Some(AttributeValue::S(cidr))) =
                    (item.get("gsi1sk"), item.get("vpc_cidr"))
                else {
                    return Err(StoreError::Corrupt(
                        "environment index entry without name or vpc_cidr".into(),
                    ));
                };
                let holder = EnvName::parse(name).map_err(StoreError::Corrupt)?;
                out.insert(VpcCidr::parse(cidr).map_err(StoreError::Corrupt)?, holder);
                after = Some(name.clone());
            }
            if !more {
                return Ok(out);
            }
        }
    }

    async fn commit(&self, change: Change) -> Result<(), CommitError> {
        let env = &change.environment;
        let name = env.name.as_str();
        let pk = env_pk(name);
        // Positions of the conditional items, to read the cancellation reasons by index.
        let mut roles: Vec<Role> = Vec::new();
        let mut writes = Vec::new();

        let meta: Item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s("META")),
            ("gsi1pk".into(), s("ENV")),
            ("gsi1sk".into(), s(name)),
            ("tier".into(), s(env.tier.as_str())),
            ("phase".into(), s(env.status.phase.as_str())),
            ("vpc_cidr".into(), s(env.spec.network.vpc_cidr.to_string())),
            ("version".into(), n(env.version)),
            ("doc".into(), s(encode(env)?)),
        ]);
        let mut meta = meta;
        if let Some(op) = &env.active_operation {
            meta.insert("active_op".into(), s(op));
        }
        let (condition, values) = match change.expected {
            Expected::Absent => ("attribute_not_exists(pk)", None),
            Expected::Version(v) => (
                "version = :expected",
                Some(HashMap::from([(":expected".to_owned(), n(v))])),
            ),
        };
        writes.push(self.put(meta, Some(condition), values)?);
        roles.push(Role::Meta(change.expected));

        if let Some(cidr) = change.claim_cidr {
            let item = HashMap::from([
                ("pk".into(), s(format!("CIDR#{cidr}"))),
                ("sk".into(), s("CIDR")),
                ("environment".into(), s(name)),
            ]);
            writes.push(self.put(item, Some("attribute_not_exists(pk)"), None)?);
            roles.push(Role::Cidr(cidr));
        }
        if let Some(cidr) = change.release_cidr {
            // Only the holder gives a block back.
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(format!("CIDR#{cidr}")))
                .key("sk", s("CIDR"))
                .condition_expression("attribute_not_exists(pk) OR environment = :holder")
                .expression_attribute_values(":holder", s(name))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            writes.push(TransactWriteItem::builder().delete(delete).build());
            roles.push(Role::Plain);
        }
        if let Some(op) = &change.operation {
            // The changes live in their own items, which this write leaves alone.
            let mut record = op.clone();
            record.changes = Vec::new();
            let item = HashMap::from([
                ("pk".into(), s(&pk)),
                ("sk".into(), s(operation_sk(&op.id))),
                ("gsi1pk".into(), s(format!("OP#{}", op.id))),
                ("gsi1sk".into(), s("OP")),
                ("gsi2pk".into(), s("OPS")),
                ("gsi2sk".into(), s(&op.id)),
                ("version".into(), n(op.version)),
                ("doc".into(), s(encode(&record)?)),
            ]);
            // Over the version before its own; version 1 is new (or predates versions).
            let (condition, values) = match op.version {
                0 | 1 => ("attribute_not_exists(version)", None),
                v => (
                    "version = :before",
                    Some(HashMap::from([(":before".to_owned(), n(v - 1))])),
                ),
            };
            writes.push(self.put(item, Some(condition), values)?);
            roles.push(Role::Operation);
        }
        if let Some(event) = &change.audit {
            let item = HashMap::from([
                ("pk".into(), s(&pk)),
                ("sk".into(), s(audit_sk(event.seq))),
                ("doc".into(), s(encode(event)?)),
            ]);
            writes.push(self.put(item, Some("attribute_not_exists(pk)"), None)?);
            roles.push(Role::Audit);
        }
        if let Some(record) = &change.idempotency {
            let item = HashMap::from([
                ("pk".into(), s(format!("IDEMP#{}", record.key))),
                ("sk".into(), s("IDEMP")),
                ("expires_at".into(), n(record.expires_at)),
                ("doc".into(), s(encode(record)?)),
            ]);
            // TTL deletion lags expiry by up to days: an expired record must not hold its key.
            let now = HashMap::from([(
                ":now".to_owned(),
                n(time::OffsetDateTime::now_utc().unix_timestamp()),
            )]);
            writes.push(self.put(
                item,
                Some("attribute_not_exists(pk) OR expires_at < :now"),
                Some(now),
            )?);
            roles.push(Role::Idempotency);
        }

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(commit_error(error, &roles)),
        }
    }
}

/// What each item of a transaction stands for, to explain a cancellation.
#[derive(Debug, Clone, Copy)]
enum Role {
    Meta(Expected),
    Cidr(VpcCidr),
    Audit,
    Idempotency,
    /// An operation written over its previous version.
    Operation,
    /// The check that an operation still holds its environment.
    Held,
    Plain,
}

fn commit_error<R: std::fmt::Debug>(
    error: SdkError<TransactWriteItemsError, R>,
    roles: &[Role],
) -> CommitError {
    let reasons: Vec<Option<String>> = match &error {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
            _ => return CommitError::Store(sdk_error(error)),
        },
        _ => return CommitError::Store(sdk_error(error)),
    };
    let failed = |wanted: fn(&Role) -> bool| {
        roles
            .iter()
            .zip(&reasons)
            .any(|(role, code)| wanted(role) && code.as_deref() == Some("ConditionalCheckFailed"))
    };
    // A retried request must be recognised first, whatever else its replay collides with.
    if failed(|r| matches!(r, Role::Idempotency)) {
        return CommitError::IdempotencyKeyUsed;
    }
    for (role, code) in roles.iter().zip(&reasons) {
        if code.as_deref() != Some("ConditionalCheckFailed") {
            continue;
        }
        return match role {
            Role::Meta(Expected::Absent) => CommitError::AlreadyExists,
            Role::Meta(Expected::Version(_)) | Role::Audit | Role::Operation | Role::Held => {
                CommitError::VersionConflict
            }
            Role::Cidr(cidr) => CommitError::CidrTaken(*cidr),
            Role::Idempotency | Role::Plain => continue,
        };
    }
    if reasons
        .iter()
        .any(|code| code.as_deref() == Some("TransactionConflict"))
    {
        return CommitError::Contended;
    }
    CommitError::Store(StoreError::Backend(format!(
        "transaction cancelled: {reasons:?}"
    )))
}

#[cfg(feature = "test-support")]
#[async_trait]
impl crate::AuditTamper for DynamoStore {
    async fn edit_audit_principal(
        &self,
        name: &EnvName,
        seq: u64,
        principal: &str,
    ) -> Result<(), StoreError> {
        let key = HashMap::from([
            ("pk".to_owned(), s(env_pk(name.as_str()))),
            ("sk".to_owned(), s(audit_sk(seq))),
        ]);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.clone()))
            .send()
            .await
            .map_err(sdk_error)?;
        let item = output
            .item
            .ok_or_else(|| StoreError::Backend("no such audit event".into()))?;
        let mut event: AuditEvent = doc("audit event", &item)?;
        event.principal = principal.to_owned();
        let mut item = item;
        item.insert("doc".into(), s(encode(&event)?));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn remove_audit_event(&self, name: &EnvName, seq: u64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(env_pk(name.as_str())))
            .key("sk", s(audit_sk(seq)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
