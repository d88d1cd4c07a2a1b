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

#[tokio::test]
async fn a_cancel_releases_the_environment_rolls_back_a_provisioning_and_is_audited() {
    let h = Harness::embedded();
    let created = h
        .post("/v1/environments", r#"{"name":"dev","tier":"dev"}"#)
        .await;
    let id = created.body["operation"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/operations/{id}/cancel");
    let viewer = h
        .request(Method::POST, &path, Some(VIEWER), &[], None)
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN, "{}", viewer.body);

    let cancelled = h
        .request(Method::POST, &path, Some(OPERATOR), &[], None)
        .await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.body);
    assert_eq!(cancelled.body["operation"]["status"], "cancelled");
    assert_eq!(
        cancelled.body["operation"]["error"]["cause"],
        "cancelled by otto"
    );
    let rollback = &cancelled.body["rollback"];
    assert_eq!(rollback["kind"], "delete");
    let env = h.get("/v1/environments/dev").await;
    assert_eq!(env.body["active_operation"], rollback["id"]);
    let audit = h.get("/v1/environments/dev/audit").await;
    let actions: Vec<(&str, &str)> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["principal"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("environment.create", "root"),
            ("operation.cancel", "otto"),
            ("environment.delete", "otto")
        ]
    );
    assert_eq!(
        h.get("/v1/environments/dev/audit/verify").await.body["valid"],
        true
    );

    // Cancelling again changes nothing.
    let again = h
        .request(Method::POST, &path, Some(OPERATOR), &[], None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["rollback"], serde_json::Value::Null);

    // An operation that no longer holds its environment cannot be cancelled.
    let qa = h
        .post("/v1/environments", r#"{"name":"qa","tier":"qa"}"#)
        .await;
    let qa_op = qa.body["operation"]["id"].as_str().unwrap().to_owned();
    h.finish_operation("qa").await;
    let late = h
        .request(
            Method::POST,
            &format!("/v1/operations/{qa_op}/cancel"),
            Some(OPERATOR),
            &[],
            None,
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.content_type(), "application/problem+json");
}

/// A workflow service that refuses to start or stop anything, as Step Functions can when
/// throttled or down; it counts the starts.
#[derive(Default)]
struct Refusing(std::sync::atomic::AtomicU32);

#[async_trait::async_trait]
impl envplane_workflow::Workflows for Refusing {
    async fn start(
        &self,
        _flow: envplane_workflow::Flow,
        _env: &envplane_domain::EnvName,
        _op: &str,
    ) -> Result<(), envplane_workflow::WorkflowError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(envplane_workflow::WorkflowError::Unavailable(
            "StartExecution: ThrottlingException".into(),
        ))
    }
    async fn steps(
        &self,
        _flow: envplane_workflow::Flow,
        _op: &str,
    ) -> Result<
        Option<Vec<envplane_domain::operation::OperationStep>>,
        envplane_workflow::WorkflowError,
    > {
        Ok(None)
    }
    async fn stop(
        &self,
        _flow: envplane_workflow::Flow,
        _op: &str,
        _cause: &str,
    ) -> Result<(), envplane_workflow::WorkflowError> {
        Err(envplane_workflow::WorkflowError::Unavailable(
            "StopExecution: ThrottlingException".into(),
        ))
    }
    async fn send_task_success(
        &self,
        _token: &str,
        _output: serde_json::Value,
    ) -> Result<(), envplane_workflow::WorkflowError> {
        Err(envplane_workflow::WorkflowError::Unavailable(
            "SendTaskSuccess: ThrottlingException".into(),
        ))
    }
    async fn send_task_failure(
        &self,
        _token: &str,
        _error: &str,
        _cause: &str,
    ) -> Result<(), envplane_workflow::WorkflowError> {
        Err(envplane_workflow::WorkflowError::Unavailable(
            "SendTaskFailure: ThrottlingException".into(),
        ))
    }
}

#[tokio::test]
async fn a_flow_that_cannot_start_is_a_503_and_leaves_nothing_held() {
    let refusing = std::sync::Arc::new(Refusing::default());
    let h = Harness::with_workflows(refusing.clone());
    let body = r#"{"name":"dev","tier":"dev"}"#;
    let key = [
        ("idempotency-key", "create-dev-1"),
        ("content-type", "application/json"),
    ];
    let first = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(ADMIN),
            &key,
            Some(body),
        )
        .await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.body
    );
    assert_eq!(first.content_type(), "application/problem+json");
    assert_eq!(first.headers["retry-after"], "1");
    assert!(
        first.body["detail"]
            .as_str()
            .unwrap()
            .contains("ThrottlingException")
    );
    // Nothing holds the name or its block: the create never happened.
    assert_eq!(
        h.get("/v1/environments/dev").await.status,
        StatusCode::NOT_FOUND
    );
    // The same key never replays a success for it.
    let replay = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(ADMIN),
            &key,
            Some(body),
        )
        .await;
    assert_eq!(
        replay.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        replay.body
    );
    assert!(replay.body["detail"].as_str().unwrap().contains("new key"));
    // An update whose flow cannot start fails at once and releases the environment.
    let qa = envplane_domain::EnvName::parse("qa").unwrap();
    envplane_store::testing::mutations::create(
        h.store.as_ref(),
        &qa,
        envplane_domain::Tier::Qa,
        1,
        |_| {},
    )
    .await;
    let etag = h.finish_operation("qa").await;
    let patch = h
        .request(
            Method::PATCH,
            "/v1/environments/qa",
            Some(ADMIN),
            &[
                ("if-match", etag.as_str()),
                ("content-type", "application/merge-patch+json"),
            ],
            Some(r#"{"cluster":{"frontend":{"desired":3}}}"#),
        )
        .await;
    assert_eq!(
        patch.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        patch.body
    );
    let qa = h.get("/v1/environments/qa").await;
    assert_eq!(qa.body["active_operation"], serde_json::Value::Null);
    assert_eq!(qa.body["status"]["phase"], "failed");
    assert!(refusing.0.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_cancel_whose_execution_cannot_be_stopped_is_a_503_and_changes_nothing() {
    let h = Harness::with_workflows(std::sync::Arc::new(Refusing::default()));
    let dev = envplane_domain::EnvName::parse("dev").unwrap();
    let op = envplane_store::testing::mutations::create(
        h.store.as_ref(),
        &dev,
        envplane_domain::Tier::Dev,
        0,
        |_| {},
    )
    .await;
    let reply = h
        .request(
            Method::POST,
            &format!("/v1/operations/{op}/cancel"),
            Some(OPERATOR),
            &[],
            None,
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.content_type(), "application/problem+json");
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
    let env = h.get("/v1/environments/dev").await;
    assert_eq!(env.body["active_operation"], op.as_str());
    let still = h.get(&format!("/v1/operations/{op}")).await;
    assert_eq!(still.body["status"], "pending");
}
