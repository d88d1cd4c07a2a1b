//! Drift shown, reconcile started and audited.

use axum::http::Method;
use axum::http::StatusCode;
use envplane_domain::EnvName;

use crate::common::*;

#[tokio::test]
async fn drift_is_shown_and_reconcile_starts_an_audited_operation() {
    let h = Harness::embedded();
    h.ready("dev", "dev").await;
    // Before any check: what is known is that nothing is, as of the last change.
    let unchecked = h.get("/v1/environments/dev/drift").await;
    assert_eq!(unchecked.status, StatusCode::OK, "{}", unchecked.body);
    assert_eq!(unchecked.body["status"], "unchecked");
    assert_eq!(unchecked.body["api_calls"], 0);
    let name = EnvName::parse("dev").unwrap();
    // A drift check's report, as the scheduler stores it.
    let env = h.store.environment(&name).await.unwrap().unwrap();
    let mut next = env.clone();
    next.drift = Some(envplane_domain::drift::DriftReport {
        checked_at: time::OffsetDateTime::UNIX_EPOCH,
        status: envplane_domain::drift::DriftStatus::Drifted,
        missing: vec![envplane_domain::drift::Named {
            resource: "dev-private-2".into(),
            kind: envplane_domain::resources::ResourceKind::Subnet,
        }],
        unexpected: vec![],
        changed: vec![],
        api_calls: 13,
        note: None,
    });
    h.store
        .commit(envplane_store::Change {
            environment: next,
            expected: envplane_store::Expected::Version(env.version),
            operation: None,
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        })
        .await
        .unwrap();
    let drift = h.get("/v1/environments/dev/drift").await;
    assert_eq!(drift.status, StatusCode::OK, "{}", drift.body);
    assert_eq!(drift.body["status"], "drifted");
    assert_eq!(drift.body["api_calls"], 13);
    assert_eq!(drift.body["missing"][0]["resource"], "dev-private-2");

    let reply = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[("idempotency-key", "r-1")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["operation"]["kind"], "reconcile");
    assert_eq!(reply.body["environment"]["status"]["phase"], "updating");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v1/operations/"));
    let again = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[("idempotency-key", "r-1")],
            None,
        )
        .await;
    assert_eq!(again.raw, reply.raw, "a retry replays the answer");
    let busy = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[],
            None,
        )
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    let audit = h.get("/v1/environments/dev/audit").await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "environment.reconcile");
    assert_eq!(last["principal"], "otto");
    assert!(
        last["change"]["drift"]
            .as_str()
            .unwrap()
            .contains("dev-private-2 missing")
    );
}
