//! Helpers for tests that run against both adapters: a fresh embedded store in a temporary
//! directory, and a fresh DynamoDB table on the moto server the test command started.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::{DynamoStore, EmbeddedStore};

/// Endpoint of the moto server started by the test command.
pub const MOTO_ENDPOINT_VAR: &str = "ENVPLANE_MOTO_ENDPOINT";
/// Set by the test command: a missing moto endpoint is then a failure, not a skip.
pub const REQUIRE_MOTO_VAR: &str = "ENVPLANE_REQUIRE_MOTO";

/// The moto endpoint, or `None` when tests run without one (plain `cargo nextest run`).
///
/// # Panics
/// When [`REQUIRE_MOTO_VAR`] is set but no endpoint is: the test command must not pass
/// silently without the emulator.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var(MOTO_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var_os(REQUIRE_MOTO_VAR).is_some() => {
            panic!(
                "{REQUIRE_MOTO_VAR} is set but {MOTO_ENDPOINT_VAR} is not: moto's server did not start"
            )
        }
        _ => {
            eprintln!(
                "skipping the DynamoDB half: {MOTO_ENDPOINT_VAR} is not set (the test command sets it)"
            );
            None
        }
    }
}

/// Endpoint of the moto server whose Step Functions runs the definitions it is given.
pub const MOTO_SFN_ENDPOINT_VAR: &str = "ENVPLANE_MOTO_SFN_ENDPOINT";

/// The executing Step Functions emulator's endpoint, or `None` without one (required, like
/// [`moto_endpoint`], when the test command runs).
///
/// # Panics
/// When [`REQUIRE_MOTO_VAR`] is set but no endpoint is.
pub fn moto_sfn_endpoint() -> Option<String> {
    match std::env::var(MOTO_SFN_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var_os(REQUIRE_MOTO_VAR).is_some() => {
            panic!("{REQUIRE_MOTO_VAR} is set but {MOTO_SFN_ENDPOINT_VAR} is not")
        }
        _ => {
            eprintln!("skipping: {MOTO_SFN_ENDPOINT_VAR} is not set (the test command sets it)");
            None
        }
    }
}

/// A DynamoDB client for an emulator endpoint, with dummy credentials.
pub fn dynamodb_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "envplane-tests",
        ))
        .build();
    Client::from_conf(config)
}

/// A store on a new, uniquely named table on moto, or `None` without moto.
///
/// # Panics
/// When the table cannot be created.
#[allow(clippy::expect_used)]
pub async fn moto_store() -> Option<DynamoStore> {
    let endpoint = moto_endpoint()?;
    let client = dynamodb_client(&endpoint);
    let table = format!(
        "envplane-test-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    DynamoStore::create_table(&client, &table)
        .await
        .expect("creating a table on moto");
    Some(DynamoStore::new(client, table))
}

/// A store in a new temporary directory, which lives as long as the returned guard.
///
/// # Panics
/// When the temporary directory or the store cannot be created.
#[allow(clippy::expect_used)]
pub fn embedded_store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        EmbeddedStore::open(&dir.path().join("state.redb")).expect("opening the embedded store");
    (dir, store)
}

/// Records mutations as the API does (operation, audit event, CIDR claim), for tests that drive
/// the flows without the HTTP layer.
pub mod mutations {
    use envplane_domain::commands::{self, Request};
    use envplane_domain::operation::OnFailure;
    use envplane_domain::{Blueprint, Caller, EnvName, EnvironmentSpec, Role, Tier, VpcCidr};
    use time::OffsetDateTime;

    use crate::{Change, Expected, StateStore};

    fn caller() -> Caller {
        Caller {
            principal: "alice".into(),
            role: Role::Admin,
        }
    }

    /// Writes a mutation with its operation and audit event; returns the operation's id.
    #[allow(clippy::expect_used)]
    async fn commit(
        store: &dyn StateStore,
        mutation: commands::Mutation,
        expected: Expected,
        claim_cidr: Option<VpcCidr>,
    ) -> String {
        let op = mutation.operation.id.clone();
        store
            .commit(Change {
                environment: mutation.environment,
                expected,
                operation: Some(mutation.operation),
                audit: Some(mutation.audit),
                idempotency: None,
                claim_cidr,
                release_cidr: None,
            })
            .await
            .expect("commit");
        op
    }

    fn request(caller: &Caller) -> Request<'_> {
        Request {
            caller,
            at: OffsetDateTime::now_utc(),
            operation_id: ulid::Ulid::new().to_string(),
        }
    }

    /// Records the creation of `name` from its tier's blueprint on `10.{cidr}.0.0/16`, edited
    /// by `edit`; returns the operation's id.
    ///
    /// # Panics
    /// When the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn create(
        store: &dyn StateStore,
        name: &EnvName,
        tier: Tier,
        cidr: u8,
        edit: impl FnOnce(&mut EnvironmentSpec),
    ) -> String {
        create_with(store, name, tier, cidr, OnFailure::Rollback, edit).await
    }

    /// Records the creation of `name` as POST does with `?on_failure=`; returns the operation's
    /// id.
    ///
    /// # Panics
    /// When the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn create_with(
        store: &dyn StateStore,
        name: &EnvName,
        tier: Tier,
        cidr: u8,
        on_failure: OnFailure,
        edit: impl FnOnce(&mut EnvironmentSpec),
    ) -> String {
        let mut spec = Blueprint::for_tier(tier).spec(VpcCidr::from_second_octet(cidr));
        edit(&mut spec);
        let previous = store.environment(name).await.expect("read");
        let caller = caller();
        let mutation = commands::create(
            name.clone(),
            tier,
            spec.clone(),
            previous.as_ref(),
            on_failure,
            &request(&caller),
        );
        let expected = previous
            .as_ref()
            .map_or(Expected::Absent, |p| Expected::Version(p.version));
        commit(store, mutation, expected, Some(spec.network.vpc_cidr)).await
    }

    /// Records a merge patch of `name` as PATCH does; returns the update operation's id.
    ///
    /// # Panics
    /// When the patch is invalid or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn update(
        store: &dyn StateStore,
        name: &EnvName,
        patch: &serde_json::Value,
        allow_replacement: bool,
    ) -> String {
        let env = store
            .environment(name)
            .await
            .expect("read")
            .expect("exists");
        let spec =
            envplane_domain::spec::apply_patch(&env.spec, env.tier, patch, allow_replacement)
                .expect("a valid patch");
        let caller = caller();
        let mutation = commands::update(&env, spec, allow_replacement, &request(&caller))
            .expect("the environment is free");
        commit(store, mutation, Expected::Version(env.version), None).await
    }

    /// Records the destruction of `name` as DELETE does; returns the operation's id.
    ///
    /// # Panics
    /// When the environment is busy or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn delete(store: &dyn StateStore, name: &EnvName) -> String {
        let env = store
            .environment(name)
            .await
            .expect("read")
            .expect("exists");
        let caller = caller();
        let mutation = commands::delete(&env, &request(&caller)).expect("free");
        commit(store, mutation, Expected::Version(env.version), None).await
    }

    /// Records each of `approvers` (role approver) approving `operation` of `name` as
    /// `POST /v1/operations/{id}/approvals` does; returns the task token its flow waits on.
    ///
    /// # Panics
    /// When the operation does not wait for approval or the store refuses a decision.
    #[allow(clippy::expect_used)]
    pub async fn approve(
        store: &dyn StateStore,
        name: &EnvName,
        operation: &str,
        approvers: &[&str],
    ) -> Option<String> {
        use envplane_domain::approval::{self, Verdict};
        for principal in approvers {
            let caller = Caller {
                principal: (*principal).to_owned(),
                role: Role::Approver,
            };
            let env = store
                .environment(name)
                .await
                .expect("read")
                .expect("exists");
            let op = store
                .operation_of(name, operation)
                .await
                .expect("read")
                .expect("exists");
            // Enough approvers already: the operation runs (one approver for most).
            if op.approval.as_ref().is_some_and(|a| a.granted()) {
                break;
            }
            let at = OffsetDateTime::now_utc();
            let (decided, standing) =
                approval::decide(&op, &caller, Verdict::Approve, None, None, at)
                    .expect("a decision the rules accept");
            let t = approval::recorded(&env, decided, standing, &caller, at);
            store
                .commit(Change::transition(&env, t))
                .await
                .expect("commit");
        }
        store
            .operation_of(name, operation)
            .await
            .expect("read")
            .and_then(|op| op.approval.and_then(|a| a.task_token))
    }

    /// Records a deployment of `name` as `POST …/deployments` does, from its request body;
    /// returns the operation's id.
    ///
    /// # Panics
    /// When the request is invalid, the environment is busy or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn deploy(
        store: &dyn StateStore,
        name: &EnvName,
        body: &serde_json::Value,
    ) -> String {
        let env = store
            .environment(name)
            .await
            .expect("read")
            .expect("exists");
        let deployment =
            envplane_domain::deployment::parse(body, &env).expect("a valid deployment");
        let caller = caller();
        let mutation =
            commands::deploy(&env, deployment, &request(&caller)).expect("the environment is free");
        commit(store, mutation, Expected::Version(env.version), None).await
    }

    /// Records a promotion of what `from` runs to `to` as `POST /v1/promotions` does; returns
    /// the operation's id.
    ///
    /// # Panics
    /// When there is nothing to promote, the target is busy or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn promote(
        store: &dyn StateStore,
        from: &EnvName,
        to: &EnvName,
        services: &[envplane_domain::names::Service],
    ) -> String {
        let source = store
            .environment(from)
            .await
            .expect("read")
            .expect("exists");
        let target = store.environment(to).await.expect("read").expect("exists");
        let (first, promotion) = envplane_domain::promotion::plan(&source, &target, Some(services))
            .expect("something to promote");
        let caller = caller();
        let mutation = commands::promote(&target, first, promotion, &request(&caller))
            .expect("the environment is free");
        commit(store, mutation, Expected::Version(target.version), None).await
    }

    /// Records a restore of `source`'s database at `point` into `into` as
    /// `POST …/restores` (or `…/dr-drills`) does, a new environment taking `10.{cidr}.0.0/16`;
    /// returns the operation's id.
    ///
    /// # Panics
    /// When the source is busy or missing, or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn restore(
        store: &dyn StateStore,
        source: &EnvName,
        point: envplane_domain::restore::RestorePoint,
        into: envplane_domain::restore::RestoreInto,
        cidr: u8,
    ) -> String {
        use envplane_domain::restore::RestoreInto;
        let env = store
            .environment(source)
            .await
            .expect("read")
            .expect("exists");
        let caller = caller();
        let request = request(&caller);
        let (previous, block) = match &into {
            RestoreInto::InPlace => (None, None),
            RestoreInto::NewEnvironment { name } | RestoreInto::Drill { name } => (
                store.environment(name).await.expect("read"),
                Some(VpcCidr::from_second_octet(cidr)),
            ),
        };
        let mutation = commands::restore(
            &env,
            point,
            into.clone(),
            previous.as_ref(),
            block,
            &request,
        )
        .expect("the source is free");
        let expected = match (&into, &previous) {
            (RestoreInto::InPlace, _) => Expected::Version(env.version),
            (_, Some(p)) => Expected::Version(p.version),
            (_, None) => Expected::Absent,
        };
        commit(store, mutation, expected, block).await
    }

    /// Records a reconcile of `name` as `POST …/reconcile` does; returns the operation's id.
    ///
    /// # Panics
    /// When the environment is busy or the store refuses the change.
    #[allow(clippy::expect_used)]
    pub async fn reconcile(store: &dyn StateStore, name: &EnvName) -> String {
        let env = store
            .environment(name)
            .await
            .expect("read")
            .expect("exists");
        let caller = caller();
        let mutation =
            commands::reconcile(&env, serde_json::Value::Null, &request(&caller)).expect("free");
        commit(store, mutation, Expected::Version(env.version), None).await
    }
}

/// A store whose lookup of an operation by id answers from an index that has not caught up:
/// the first copy it served, forever (a DynamoDB global secondary index is eventually
/// consistent; under load it can lag by seconds). Every other read and every write goes to the
/// store underneath, so a caller that writes what it read by id loses what others wrote since.
pub struct LaggingIndex<S> {
    inner: S,
    served: std::sync::Mutex<std::collections::HashMap<String, envplane_domain::Operation>>,
}

impl<S> LaggingIndex<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            served: std::sync::Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl<S: crate::StateStore> crate::StateStore for LaggingIndex<S> {
    async fn environment(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<Option<envplane_domain::Environment>, crate::StoreError> {
        self.inner.environment(name).await
    }

    async fn list_environments(
        &self,
        query: &crate::EnvironmentQuery,
    ) -> Result<crate::Page<envplane_domain::Environment>, crate::StoreError> {
        self.inner.list_environments(query).await
    }

    async fn operation(
        &self,
        id: &str,
    ) -> Result<Option<envplane_domain::Operation>, crate::StoreError> {
        if let Some(stale) = self.served.lock().ok().and_then(|s| s.get(id).cloned()) {
            return Ok(Some(stale));
        }
        let fresh = self.inner.operation(id).await?;
        if let (Some(op), Ok(mut served)) = (&fresh, self.served.lock()) {
            served.insert(id.to_owned(), op.clone());
        }
        Ok(fresh)
    }

    async fn operation_of(
        &self,
        environment: &envplane_domain::EnvName,
        id: &str,
    ) -> Result<Option<envplane_domain::Operation>, crate::StoreError> {
        self.inner.operation_of(environment, id).await
    }

    async fn append_changes(
        &self,
        environment: &envplane_domain::EnvName,
        id: &str,
        changes: &[envplane_domain::operation::AppliedChange],
    ) -> Result<(), crate::CommitError> {
        self.inner.append_changes(environment, id, changes).await
    }

    async fn audit_events(
        &self,
        name: &envplane_domain::EnvName,
        after: u64,
        limit: usize,
    ) -> Result<crate::Page<envplane_domain::AuditEvent>, crate::StoreError> {
        self.inner.audit_events(name, after, limit).await
    }

    async fn idempotency_record(
        &self,
        key: &str,
    ) -> Result<Option<crate::IdempotencyRecord>, crate::StoreError> {
        self.inner.idempotency_record(key).await
    }

    async fn operations_of_environment(
        &self,
        name: &envplane_domain::EnvName,
        query: &crate::OperationQuery,
    ) -> Result<crate::Page<envplane_domain::Operation>, crate::StoreError> {
        self.inner.operations_of_environment(name, query).await
    }

    async fn operations(
        &self,
        query: &crate::OperationQuery,
    ) -> Result<crate::Page<envplane_domain::Operation>, crate::StoreError> {
        self.inner.operations(query).await
    }

    async fn cidrs_in_use(
        &self,
    ) -> Result<
        std::collections::BTreeMap<envplane_domain::VpcCidr, envplane_domain::EnvName>,
        crate::StoreError,
    > {
        self.inner.cidrs_in_use().await
    }

    async fn commit(&self, change: crate::Change) -> Result<(), crate::CommitError> {
        self.inner.commit(change).await
    }
}
