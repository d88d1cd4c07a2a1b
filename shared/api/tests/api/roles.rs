//! Who may change what.

use axum::http::Method;
use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn prod_changes_need_an_approver() {
    let h = Harness::embedded();
    let body = r#"{"name":"prod","tier":"prod"}"#;
    let refused = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let accepted = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(APPROVER),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let spec = &accepted.body["environment"]["spec"];
    assert_eq!(
        (
            spec["network"]["vpc_cidr"].as_str(),
            spec["network"]["az_count"].as_u64()
        ),
        (Some("10.2.0.0/16"), Some(3))
    );
    let viewer = h
        .request(
            Method::GET,
            "/v1/environments/prod",
            Some(VIEWER),
            &[],
            None,
        )
        .await;
    assert_eq!(viewer.status, StatusCode::OK);
}
