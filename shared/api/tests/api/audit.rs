//! The audit chain detects tampering.

use axum::http::Method;
use axum::http::StatusCode;
use envplane_domain::EnvName;
use envplane_store::AuditTamper;
use serde_json::json;

use crate::common::*;

pub async fn audit_verify_detects_an_edited_and_a_removed_event<S: AuditTamper>(
    h: Harness,
    tamper: &S,
) {
    let mut etag = h.ready("dev", "dev").await;
    for desired in [3, 4, 2] {
        let body = json!({"cluster": {"backend": {"desired": desired}}}).to_string();
        let reply = h
            .request(
                Method::PATCH,
                "/v1/environments/dev",
                Some(ADMIN),
                &[("if-match", etag.as_str())],
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        etag = h.finish_operation("dev").await;
    }
    let verify = || async { h.get("/v1/environments/dev/audit/verify").await.body };
    assert_eq!(
        verify().await,
        json!({"valid": true, "events_checked": 4, "head_seq": 4, "first_broken": null})
    );
    let dev = EnvName::parse("dev").unwrap();
    tamper
        .edit_audit_principal(&dev, 2, "mallory")
        .await
        .unwrap();
    let edited = verify().await;
    assert_eq!(
        (
            edited["valid"].as_bool(),
            edited["first_broken"]["seq"].as_u64()
        ),
        (Some(false), Some(2)),
        "{edited}"
    );
    tamper.edit_audit_principal(&dev, 2, "root").await.unwrap();
    assert_eq!(verify().await["valid"], true);
    tamper.remove_audit_event(&dev, 3).await.unwrap();
    let removed = verify().await;
    assert_eq!(
        (
            removed["valid"].as_bool(),
            removed["first_broken"]["seq"].as_u64()
        ),
        (Some(false), Some(3)),
        "{removed}"
    );
    assert!(
        removed["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
}
