//! API Gateway HTTP API (v2) events, as JSON fixtures, through the Lambda's handler.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use envplane_domain::Role;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn fixture(name: &str) -> lambda_http::Request {
    let path = format!(
        "{}/../../tests/fixtures/apigw/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&json)
        .unwrap_or_else(|e| panic!("{path} is not an API Gateway event: {e}"))
}

struct Lambda {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

impl Lambda {
    fn new() -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        // The role, not a session of it: every run of the pipeline maps.
        let iam = HashMap::from([(
            "arn:aws:iam::123456789012:role/ci".to_owned(),
            Role::Operator,
        )]);
        Self {
            app: envplane_fn_api::app(Arc::new(store), iam, None, None),
            _dir: dir,
        }
    }

    async fn invoke(&self, name: &str) -> (u16, HashMap<String, String>, Value) {
        let response = self.app.clone().oneshot(fixture(name)).await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn a_jwt_operator_creates_and_a_viewer_reads() {
    let lambda = Lambda::new();
    let (status, headers, body) = lambda.invoke("create-dev-operator.json").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(headers["location"], "/v1/environments/dev");
    // The token's stable subject, not the email its holder may change.
    assert_eq!(
        body["operation"]["requested_by"],
        "5f0c7a1e-0000-4000-8000-000000000001"
    );

    let (status, headers, body) = lambda.invoke("get-dev-viewer.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(body["spec"]["network"]["vpc_cidr"], "10.0.0.0/16");

    let (status, _, body) = lambda.invoke("list-viewer.json").await;
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    // The same event again replays the stored answer (the portal retried).
    let (status, headers, _) = lambda.invoke("create-dev-operator.json").await;
    assert_eq!(
        (
            status,
            headers.get("idempotent-replayed").map(String::as_str)
        ),
        (202, Some("true"))
    );
}

#[tokio::test]
async fn roles_come_from_the_groups_claim() {
    let lambda = Lambda::new();
    let (status, headers, body) = lambda.invoke("create-prod-operator.json").await;
    assert_eq!(
        (status, headers["content-type"].as_str()),
        (403, "application/problem+json")
    );
    assert!(
        body["detail"].as_str().unwrap().contains("approver"),
        "{body}"
    );

    // A bare `admin` group (some other system's) grants nothing: only `envplane-admin` would.
    let (status, _, body) = lambda.invoke("create-bare-admin-group.json").await;
    assert_eq!(status, 403, "{body}");

    let (status, _, body) = lambda.invoke("create-no-envplane-group.json").await;
    assert_eq!(status, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no envplane role"),
        "{body}"
    );
}

#[tokio::test]
async fn iam_signed_callers_use_the_iam_routes_with_their_roles_and_anonymous_events_are_refused() {
    let lambda = Lambda::new();
    // POST /iam/v1/environments, signed by a session of the mapped role: the session acts.
    let (status, headers, body) = lambda.invoke("create-iam-ci.json").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(headers["location"], "/v1/environments/qa");
    assert_eq!(
        body["operation"]["requested_by"],
        "arn:aws:sts::123456789012:assumed-role/ci/run-42"
    );
    let (status, _, body) = lambda.invoke("create-iam-unmapped.json").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("intruder"),
        "{body}"
    );
    let (status, _, body) = lambda.invoke("iam-route-unsigned.json").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("SigV4"), "{body}");
    let (status, _, _) = lambda.invoke("no-authorizer.json").await;
    assert_eq!(status, 401);
}

#[test]
fn the_iam_role_map_is_checked_at_start() {
    assert!(envplane_fn_api::iam_roles(Some(r#"{"arn:x": "operator"}"#)).is_ok());
    assert!(envplane_fn_api::iam_roles(Some(r#"{"arn:x": "god"}"#)).is_err());
    assert!(envplane_fn_api::iam_roles(None).expect("empty").is_empty());
}
