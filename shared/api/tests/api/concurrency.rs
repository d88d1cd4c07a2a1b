//! Concurrent requests on one environment: one winner, no duplicates.

use axum::http::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::collections::BTreeSet;

use crate::common::*;

pub async fn fifty_patches_with_one_if_match_have_one_winner(h: Harness) {
    let etag = h.ready("dev", "dev").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let router = h.router.clone();
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"cluster": {"frontend": {"max": 5 + i}}}).to_string();
            let request = axum::http::Request::patch("/v1/environments/dev")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/merge-patch+json")
                .header("if-match", etag)
                .body(axum::body::Body::from(body))
                .unwrap();
            send(router, request).await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            reply.status == StatusCode::ACCEPTED
                || reply.content_type() == "application/problem+json"
        );
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 412, 409].contains(s)),
        "{statuses:?}"
    );
    let audit = h.get("/v1/environments/dev/audit").await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.get("/v1/environments/dev/audit/verify").await.body["valid"],
        true
    );
}

pub async fn hundred_identical_posts_with_one_key_make_one_environment(h: Harness) {
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let router = h.router.clone();
        tasks.push(tokio::spawn(async move {
            let request = axum::http::Request::post("/v1/environments")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "4f1c2a9e-create-dev")
                .body(axum::body::Body::from(r#"{"name":"dev","tier":"dev"}"#))
                .unwrap();
            send(router, request).await
        }));
    }
    let mut bodies = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        bodies.insert(reply.raw);
    }
    assert_eq!(bodies.len(), 1, "bodies differ");
    let body: Value = serde_json::from_slice(bodies.first().unwrap()).unwrap();
    let list = h.get("/v1/environments").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let env = h.get("/v1/environments/dev").await;
    assert_eq!(env.body["active_operation"], body["operation"]["id"]);
    let audit = h.get("/v1/environments/dev/audit").await;
    let events = audit.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one create, audited once");
    assert_eq!(events[0]["operation"], body["operation"]["id"]);
    assert_eq!(events[0]["principal"], "otto");
}

pub async fn twenty_concurrent_creates_of_one_tier_are_all_accepted(h: Harness) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let router = h.router.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": format!("preview-{i}"), "tier": "dev"}).to_string();
            let request = axum::http::Request::post("/v1/environments")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            send(router, request).await
        }));
    }
    let mut blocks = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let block = reply.body["environment"]["spec"]["network"]["vpc_cidr"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(blocks.insert(block.clone()), "{block} given twice");
    }
    assert_eq!(blocks.len(), 20);
}
