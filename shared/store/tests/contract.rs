//! One contract, two adapters: every test here runs against the embedded store and against
//! DynamoDB on moto's server.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use envplane_domain::audit::verify_chain;
use envplane_domain::commands::{self, Mutation, Request};
use envplane_domain::environment::Phase;
use envplane_domain::{Blueprint, Caller, EnvName, Role, Tier, VpcCidr};
use envplane_store::testing::{embedded_store, moto_store};
use envplane_store::{
    AuditTamper, Change, CommitError, EnvironmentQuery, Expected, IdempotencyRecord,
    OperationQuery, StateStore,
};
use time::OffsetDateTime;

fn alice() -> Caller {
    Caller {
        principal: "alice".into(),
        role: Role::Admin,
    }
}

fn name(raw: &str) -> EnvName {
    EnvName::parse(raw).expect("valid name")
}

fn create_mutation(env: &str, tier: Tier, cidr: u8) -> Mutation {
    let caller = alice();
    let spec = Blueprint::for_tier(tier).spec(VpcCidr::from_second_octet(cidr));
    let request = Request {
        caller: &caller,
        at: OffsetDateTime::now_utc(),
        operation_id: ulid::Ulid::new().to_string(),
    };
    commands::create(name(env), tier, spec, None, Default::default(), &request)
}

fn create_change(mutation: Mutation) -> Change {
    let cidr = mutation.environment.spec.network.vpc_cidr;
    Change {
        environment: mutation.environment,
        expected: Expected::Absent,
        operation: Some(mutation.operation),
        audit: Some(mutation.audit),
        idempotency: None,
        claim_cidr: Some(cidr),
        release_cidr: None,
    }
}

fn idempotency(key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        fingerprint: "f".into(),
        status: 202,
        headers: vec![("location".into(), "/v1/environments/x".into())],
        body: "{}".into(),
        expires_at: 4_000_000_000,
    }
}

/// Creates `env` and releases its operation's hold, as a finished provisioning would.
async fn ready<S: StateStore>(store: &S, env: &str, cidr: u8) -> envplane_domain::Environment {
    let mutation = create_mutation(env, Tier::Dev, cidr);
    store
        .commit(create_change(mutation.clone()))
        .await
        .expect("create");
    let mut next = mutation.environment.clone();
    next.version += 1;
    next.active_operation = None;
    next.status.phase = Phase::Ready;
    let change = Change {
        environment: next.clone(),
        expected: Expected::Version(1),
        operation: None,
        audit: None,
        idempotency: None,
        claim_cidr: None,
        release_cidr: None,
    };
    store.commit(change).await.expect("finish");
    next
}

async fn created_environment_reads_back<S: StateStore>(store: S) {
    let mutation = create_mutation("dev", Tier::Dev, 0);
    store
        .commit(create_change(mutation.clone()))
        .await
        .expect("commit");
    let env = store
        .environment(&name("dev"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(env, mutation.environment);
    let op = store
        .operation(&mutation.operation.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(op, mutation.operation);
    let audit = store.audit_events(&name("dev"), 0, 10).await.expect("read");
    assert_eq!(audit.items, vec![mutation.audit]);
    assert!(
        store
            .environment(&name("nope"))
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .operation("01NOSUCHOPERATION")
            .await
            .expect("read")
            .is_none()
    );
}

async fn refused_changes_write_nothing<S: StateStore>(store: S) {
    store
        .commit(create_change(create_mutation("dev", Tier::Dev, 0)))
        .await
        .expect("first");
    let mut used = create_change(create_mutation("other", Tier::Dev, 9));
    used.idempotency = Some(idempotency("k1"));
    store.commit(used).await.expect("second");

    let same_name = create_change(create_mutation("dev", Tier::Qa, 1));
    let same_cidr = create_change(create_mutation("qa", Tier::Qa, 0));
    let mut stale = create_change(create_mutation("stage", Tier::Staging, 3));
    stale.expected = Expected::Version(7);
    let mut reused_key = create_change(create_mutation("prod", Tier::Prod, 2));
    reused_key.idempotency = Some(idempotency("k1"));
    let ops: Vec<String> = [&same_name, &same_cidr, &stale, &reused_key]
        .iter()
        .filter_map(|c| c.operation.as_ref().map(|o| o.id.clone()))
        .collect();

    assert!(matches!(
        store.commit(same_name).await,
        Err(CommitError::AlreadyExists)
    ));
    assert!(
        matches!(store.commit(same_cidr).await, Err(CommitError::CidrTaken(c)) if c.second_octet() == 0)
    );
    assert!(matches!(
        store.commit(stale).await,
        Err(CommitError::VersionConflict)
    ));
    assert!(matches!(
        store.commit(reused_key).await,
        Err(CommitError::IdempotencyKeyUsed)
    ));

    for env in ["qa", "stage", "prod"] {
        assert!(
            store.environment(&name(env)).await.expect("read").is_none(),
            "{env} written"
        );
        assert!(
            store
                .audit_events(&name(env), 0, 10)
                .await
                .expect("read")
                .items
                .is_empty(),
            "{env} audited"
        );
    }
    for op in ops {
        assert!(
            store.operation(&op).await.expect("read").is_none(),
            "operation {op} written"
        );
    }
    assert_eq!(
        store
            .environment(&name("dev"))
            .await
            .expect("read")
            .map(|e| e.tier),
        Some(Tier::Dev)
    );
    let cidrs = store.cidrs_in_use().await.expect("read");
    assert_eq!(
        cidrs
            .into_iter()
            .map(|(c, n)| (c.second_octet(), n.to_string()))
            .collect::<Vec<_>>(),
        vec![(0, "dev".into()), (9, "other".into())]
    );
}

async fn an_expired_idempotency_key_is_free_again<S: StateStore>(store: S) {
    let mut first = create_change(create_mutation("dev", Tier::Dev, 0));
    first.idempotency = Some(IdempotencyRecord {
        expires_at: OffsetDateTime::now_utc().unix_timestamp() - 1,
        ..idempotency("old")
    });
    store.commit(first).await.expect("first");
    let mut second = create_change(create_mutation("qa", Tier::Qa, 1));
    second.idempotency = Some(idempotency("old"));
    store
        .commit(second)
        .await
        .expect("an expired key does not hold");
    assert_eq!(
        store
            .idempotency_record("old")
            .await
            .expect("read")
            .map(|r| r.expires_at),
        Some(4_000_000_000)
    );
}

async fn listing_pages_and_filters<S: StateStore>(store: S) {
    for i in 0..7u8 {
        let tier = if i % 2 == 0 { Tier::Dev } else { Tier::Qa };
        store
            .commit(create_change(create_mutation(
                &format!("env-{i}"),
                tier,
                20 + i,
            )))
            .await
            .expect("create");
    }
    let mut names = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_environments(&EnvironmentQuery {
                limit: 3,
                cursor,
                ..Default::default()
            })
            .await
            .expect("list");
        pages += 1;
        assert!(page.items.len() <= 3);
        names.extend(page.items.into_iter().map(|e| e.name.to_string()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..7).map(|i| format!("env-{i}")).collect::<Vec<_>>()
    );

    let qa = store
        .list_environments(&EnvironmentQuery {
            tier: Some(Tier::Qa),
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        qa.items
            .iter()
            .map(|e| e.name.to_string())
            .collect::<Vec<_>>(),
        vec!["env-1", "env-3"]
    );
    let rest = store
        .list_environments(&EnvironmentQuery {
            tier: Some(Tier::Qa),
            limit: 2,
            cursor: qa.next,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        rest.items
            .iter()
            .map(|e| e.name.to_string())
            .collect::<Vec<_>>(),
        vec!["env-5"]
    );
    assert_eq!(rest.next, None);
    let ready = store
        .list_environments(&EnvironmentQuery {
            phase: Some(Phase::Ready),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(ready.items.is_empty());
    assert!(
        store
            .list_environments(&EnvironmentQuery {
                limit: 1,
                cursor: Some("!!".into()),
                ..Default::default()
            })
            .await
            .is_err()
    );
}

async fn fifty_concurrent_conditional_writes_have_one_winner<S: StateStore>(store: S) {
    let store = Arc::new(store);
    let env = ready(store.as_ref(), "dev", 0).await;
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let (store, env) = (store.clone(), env.clone());
        tasks.push(tokio::spawn(async move {
            let caller = alice();
            let mut spec = env.spec.clone();
            spec.cluster.frontend.desired = 2 + (i % 3);
            spec.cluster.frontend.max = 5 + i;
            let request = Request {
                caller: &caller,
                at: OffsetDateTime::now_utc(),
                operation_id: ulid::Ulid::new().to_string(),
            };
            let mutation = commands::update(&env, spec, false, &request).expect("allowed");
            let change = Change {
                environment: mutation.environment,
                expected: Expected::Version(env.version),
                operation: Some(mutation.operation),
                audit: Some(mutation.audit),
                idempotency: None,
                claim_cidr: None,
                release_cidr: None,
            };
            store.commit(change).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => won += 1,
            Err(CommitError::VersionConflict | CommitError::Contended) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let stored = store
        .environment(&name("dev"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.version, env.version + 1);
    let audit = store
        .audit_events(&name("dev"), 0, 100)
        .await
        .expect("read")
        .items;
    assert_eq!(audit.len(), 2);
    assert!(verify_chain(&audit, &stored.audit_head).valid);
}

async fn hundred_concurrent_creates_with_one_key_have_one_winner<S: StateStore>(store: S) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut change = create_change(create_mutation("dev", Tier::Dev, 0));
            change.idempotency = Some(idempotency("same-key"));
            store.commit(change).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => won += 1,
            Err(CommitError::IdempotencyKeyUsed | CommitError::Contended) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let env = store
        .environment(&name("dev"))
        .await
        .expect("read")
        .expect("exists");
    assert!(
        store
            .operation(env.active_operation.as_deref().expect("op"))
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        store
            .audit_events(&name("dev"), 0, 100)
            .await
            .expect("read")
            .items
            .len(),
        1
    );
    assert!(
        store
            .idempotency_record("same-key")
            .await
            .expect("read")
            .is_some()
    );
}

async fn audit_tampering_is_detected<S: StateStore + AuditTamper>(store: S) {
    let mut env = ready(&store, "dev", 0).await;
    for i in 0..4u32 {
        env.active_operation = None;
        let caller = alice();
        let mut spec = env.spec.clone();
        spec.cluster.backend.max = 5 + i;
        let request = Request {
            caller: &caller,
            at: OffsetDateTime::now_utc(),
            operation_id: ulid::Ulid::new().to_string(),
        };
        let mutation = commands::update(&env, spec, false, &request).expect("allowed");
        let mut next = mutation.environment.clone();
        store
            .commit(Change {
                environment: next.clone(),
                expected: Expected::Version(env.version),
                operation: Some(mutation.operation),
                audit: Some(mutation.audit),
                idempotency: None,
                claim_cidr: None,
                release_cidr: None,
            })
            .await
            .expect("update");
        next.active_operation = None;
        next.version += 1;
        store
            .commit(Change {
                environment: next.clone(),
                expected: Expected::Version(next.version - 1),
                operation: None,
                audit: None,
                idempotency: None,
                claim_cidr: None,
                release_cidr: None,
            })
            .await
            .expect("finish");
        env = next;
    }
    let head = store
        .environment(&name("dev"))
        .await
        .expect("read")
        .expect("exists")
        .audit_head;
    let verify = |events: Vec<envplane_domain::AuditEvent>| verify_chain(&events, &head);
    let all = || async {
        store
            .audit_events(&name("dev"), 0, 100)
            .await
            .expect("read")
            .items
    };
    assert_eq!(head.seq, 5);
    assert!(verify(all().await).valid);

    store
        .edit_audit_principal(&name("dev"), 3, "mallory")
        .await
        .expect("tamper");
    assert_eq!(verify(all().await).first_broken.map(|b| b.seq), Some(3));
    store
        .edit_audit_principal(&name("dev"), 3, "alice")
        .await
        .expect("undo");
    assert!(verify(all().await).valid);

    store
        .remove_audit_event(&name("dev"), 2)
        .await
        .expect("tamper");
    assert_eq!(verify(all().await).first_broken.map(|b| b.seq), Some(2));
}

async fn audit_pages_in_order<S: StateStore>(store: S) {
    let mut env = ready(&store, "dev", 0).await;
    for i in 0..5u32 {
        let caller = alice();
        let mut spec = env.spec.clone();
        spec.cluster.backend.max = 5 + i;
        let request = Request {
            caller: &caller,
            at: OffsetDateTime::now_utc(),
            operation_id: ulid::Ulid::new().to_string(),
        };
        let mutation = commands::update(&env, spec, false, &request).expect("allowed");
        let mut next = mutation.environment.clone();
        next.active_operation = None;
        store
            .commit(Change {
                environment: next.clone(),
                expected: Expected::Version(env.version),
                operation: Some(mutation.operation),
                audit: Some(mutation.audit),
                idempotency: None,
                claim_cidr: None,
                release_cidr: None,
            })
            .await
            .expect("update");
        env = next;
    }
    let first = store.audit_events(&name("dev"), 0, 4).await.expect("read");
    assert_eq!(
        first.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(first.next.as_deref(), Some("4"));
    let second = store.audit_events(&name("dev"), 4, 4).await.expect("read");
    assert_eq!(
        second.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert_eq!(second.next, None);
}

/// Parallel branches append at once while the operation is also rewritten from an old read:
/// every change is kept exactly once, the second writer from the same read is refused, and an
/// operation that no longer holds its environment appends nothing.
async fn concurrent_appends_lose_nothing<S: StateStore>(store: S) {
    let store = Arc::new(store);
    let mutation = create_mutation("dev", Tier::Dev, 0);
    store
        .commit(create_change(mutation.clone()))
        .await
        .expect("create");
    let (env, op) = (mutation.environment.clone(), mutation.operation.clone());
    let at = OffsetDateTime::now_utc();
    let change = move |i: usize| envplane_domain::operation::AppliedChange {
        at,
        resource: format!("dev-r{i}"),
        change: format!("change {i}"),
        expected_seconds: 1,
    };
    let appends = (0..20).map(|i| {
        let store = store.clone();
        let name = env.name.clone();
        let id = op.id.clone();
        tokio::spawn(async move {
            loop {
                match store.append_changes(&name, &id, &[change(i)]).await {
                    Err(CommitError::Contended) => tokio::task::yield_now().await,
                    other => return other,
                }
            }
        })
    });
    // Meanwhile the operation is started from the record read before any append.
    let started = envplane_domain::lifecycle::start(&env, &op, at).expect("pending");
    let write = store.commit(Change::transition(&env, started.clone()));
    let (results, write) = tokio::join!(futures::future::join_all(appends), write);
    write.expect("the first write from a read succeeds");
    for result in results {
        result.expect("task").expect("append");
    }
    let again = envplane_domain::lifecycle::start(&env, &op, at).expect("pending");
    let mut newer = env.clone();
    newer.version += 1;
    assert!(
        matches!(
            store.commit(Change::transition(&newer, again)).await,
            Err(CommitError::VersionConflict)
        ),
        "a second write from the same read of the operation is refused"
    );

    let stored = store
        .operation_of(&env.name, &op.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored.status,
        envplane_domain::operation::OperationStatus::Running
    );
    let mut recorded: Vec<String> = stored.changes.iter().map(|c| c.change.clone()).collect();
    recorded.sort();
    let mut expected: Vec<String> = (0..20).map(|i| change(i).change).collect();
    expected.sort();
    assert_eq!(recorded, expected, "every change once, none lost");
    assert_eq!(
        store
            .operation(&op.id)
            .await
            .expect("read")
            .expect("exists"),
        stored
    );

    let released = ready(store.as_ref(), "free", 5).await;
    assert!(matches!(
        store
            .append_changes(&released.name, &op.id, &[change(99)])
            .await,
        Err(CommitError::VersionConflict)
    ));
}

/// An environment's operations, newest first, a page at a time, filtered by kind and status,
/// never another environment's, without the in-place changes (those are `operation_of`'s).
async fn operations_list_newest_first_in_pages<S: StateStore>(store: S) {
    let mut env = ready(&store, "dev", 0).await;
    ready(&store, "other", 1).await;
    let created = store
        .operations_of_environment(
            &env.name,
            &OperationQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(created.items.len(), 1);
    let first = created.items[0].id.clone();
    let mut ids = vec![first.clone()];
    for _ in 0..4 {
        // ULIDs order by time between milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let caller = alice();
        let request = Request {
            caller: &caller,
            at: OffsetDateTime::now_utc(),
            operation_id: ulid::Ulid::new().to_string(),
        };
        let m = commands::reconcile(&env, serde_json::json!({}), &request).expect("free");
        let op = m.operation.id.clone();
        store
            .commit(Change::mutation(&env, m.clone()))
            .await
            .expect("record");
        let mut released = m.environment.clone();
        released.version += 1;
        released.active_operation = None;
        store
            .commit(Change::of(&m.environment, released.clone()))
            .await
            .expect("release");
        env = released;
        ids.push(op);
    }
    // A change appended to the newest: a separate item on DynamoDB, never listed as one.
    let newest = ids.last().cloned().expect("ops");
    let mut holding = env.clone();
    holding.version += 1;
    holding.active_operation = Some(newest.clone());
    store
        .commit(Change::of(&env, holding.clone()))
        .await
        .expect("hold");
    store
        .append_changes(
            &env.name,
            &newest,
            &[envplane_domain::operation::AppliedChange {
                at: OffsetDateTime::now_utc(),
                resource: "dev-eks".into(),
                change: "version 1.30 → 1.31".into(),
                expected_seconds: 600,
            }],
        )
        .await
        .expect("append");

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .operations_of_environment(
                &env.name,
                &OperationQuery {
                    limit: 2,
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("page");
        assert!(page.items.len() <= 2);
        assert!(
            page.items
                .iter()
                .all(|o| o.changes.is_empty() && o.environment == env.name)
        );
        seen.extend(page.items.iter().map(|o| o.id.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every operation once, newest first");
    let creates = store
        .operations_of_environment(
            &env.name,
            &OperationQuery {
                kind: Some(envplane_domain::OperationKind::Create),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("filtered");
    assert_eq!(
        creates
            .items
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&first)
    );
    let bad = store
        .operations_of_environment(
            &env.name,
            &OperationQuery {
                limit: 1,
                cursor: Some("%%%".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(bad.is_err(), "a cursor this store did not make is refused");

    // Every environment's operations: the other's create among dev's, newest first, in pages.
    let other_create = store
        .operations_of_environment(
            &EnvName::parse("other").expect("name"),
            &OperationQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("other's")
        .items[0]
        .id
        .clone();
    let mut expected: Vec<String> = ids.iter().cloned().chain([other_create.clone()]).collect();
    expected.sort();
    expected.reverse();
    let mut everything = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .operations(&OperationQuery {
                limit: 3,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .expect("page of all");
        assert!(page.items.len() <= 3 && page.items.iter().all(|o| o.changes.is_empty()));
        everything.extend(page.items.iter().map(|o| o.id.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        everything, expected,
        "every environment's operations once, newest first"
    );
    let all_creates = store
        .operations(&OperationQuery {
            kind: Some(envplane_domain::OperationKind::Create),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("filtered");
    let mut creates: Vec<String> = all_creates.items.into_iter().map(|o| o.id).collect();
    creates.sort();
    let mut want = vec![first, other_create];
    want.sort();
    assert_eq!(creates, want);
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (_dir, store) = super::embedded_store();
                    super::$test(store).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(store) = super::moto_store().await else { return };
                    super::$test(store).await;
                }
            )*
        }
    };
}

contract!(
    created_environment_reads_back,
    refused_changes_write_nothing,
    an_expired_idempotency_key_is_free_again,
    listing_pages_and_filters,
    fifty_concurrent_conditional_writes_have_one_winner,
    hundred_concurrent_creates_with_one_key_have_one_winner,
    audit_tampering_is_detected,
    audit_pages_in_order,
    concurrent_appends_lose_nothing,
    operations_list_newest_first_in_pages,
);
