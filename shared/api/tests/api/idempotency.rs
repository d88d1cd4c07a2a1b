//! Idempotency keys replay the first answer.

use axum::http::Method;
use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn retries_with_the_same_key_replay_the_first_answer() {
    let h = Harness::embedded();
    let body = r#"{"name":"dev","tier":"dev"}"#;
    let first = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    let again = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!((again.status, &again.raw), (first.status, &first.raw));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["etag"], first.headers["etag"]);
    // The same key from another caller is another key.
    let other = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(ADMIN),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
}
