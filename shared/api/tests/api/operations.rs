//! One operation at a time; conflicts name the operation holding the environment.

use axum::http::Method;
use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn one_operation_at_a_time_and_conflicts_name_it() {
    let h = Harness::embedded();
    let etag = h.ready("dev", "dev").await;
    let patch = r#"{"cluster":{"frontend":{"desired":3}}}"#;
    let headers = [
        ("if-match", etag.as_str()),
        ("content-type", "application/merge-patch+json"),
    ];
    let first = h
        .request(
            Method::PATCH,
            "/v1/environments/dev",
            Some(OPERATOR),
            &headers,
            Some(patch),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(
        first.body["environment"]["spec"]["cluster"]["frontend"]["desired"],
        3
    );
    assert_eq!(
        first.body["operation"]["input"]["changes"]["cluster.frontend.desired"],
        json!({"from": 2, "to": 3})
    );
    let new_etag = first.headers["etag"].to_str().unwrap().to_owned();
    let second = h
        .request(
            Method::DELETE,
            "/v1/environments/dev",
            Some(OPERATOR),
            &[("if-match", new_etag.as_str())],
            None,
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.body["operation"], first.body["operation"]["id"]);
    assert_eq!(second.content_type(), "application/problem+json");

    h.finish_operation("dev").await;
    let deleted = h
        .request(
            Method::DELETE,
            "/v1/environments/dev",
            Some(OPERATOR),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert_eq!(deleted.body["environment"]["status"]["phase"], "deleting");
    assert_eq!(deleted.body["operation"]["kind"], "delete");
}
