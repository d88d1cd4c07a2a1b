//! Plans and dry runs write nothing.

use axum::http::Method;
use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_plan_prices_a_change_and_writes_nothing() {
    let h = Harness::embedded();
    h.ready("prod", "prod").await;
    let before = h.snapshot().await;
    let reply = h
        .request(
            Method::POST,
            "/v1/environments/prod/plan",
            Some(VIEWER),
            &[],
            Some(r#"{"cluster":{"backend":{"instance_type":"t3.2xlarge"}}}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["monthly_cost_before"], 869.07);
    assert_eq!(reply.body["monthly_cost_after"], 1233.49);
    assert_eq!(reply.body["monthly_cost_delta_usd"], 364.42);
    assert_eq!(reply.body["resources"][0]["action"], "replace");
    assert_eq!(reply.body["resources"][0]["name"], "prod-backend");
    // Two distinct approvers, as the update will wait for.
    assert_eq!(reply.body["approvals"], json!(["approver", "approver"]));
    assert_eq!(h.snapshot().await, before, "a plan writes nothing");
    let bad = h
        .request(
            Method::POST,
            "/v1/environments/prod/plan",
            Some(VIEWER),
            &[],
            Some(r#"{"cluster":{"backend":{"min":9}}}"#),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("cluster.backend.min")
        )
    );
}

#[tokio::test]
async fn a_dry_run_create_plans_and_writes_nothing() {
    let h = Harness::embedded();
    h.ready("dev", "dev").await;
    let before = h.snapshot().await;
    let reply = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"dev2","tier":"dev"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["environment"]["spec"]["network"]["vpc_cidr"], "10.16.0.0/16",
        "the block a real create would get"
    );
    assert_eq!(
        reply.body["plan"]["resources"].as_array().unwrap().len(),
        25
    );
    assert_eq!(reply.body["plan"]["monthly_cost_after"], 371.72);
    assert_eq!(h.snapshot().await, before, "a dry run writes nothing");
    let taken = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"dev","tier":"dev"}"#,
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let overlap = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"x","tier":"qa","network":{"vpc_cidr":"10.0.0.0/16"}}"#,
        )
        .await;
    assert_eq!(
        (overlap.status, overlap.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("network.vpc_cidr"))
    );
    let bad = h
        .post(
            "/v1/environments?dry_run=maybe",
            r#"{"name":"x","tier":"qa"}"#,
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("dry_run"))
    );
    assert_eq!(h.snapshot().await, before);
}
