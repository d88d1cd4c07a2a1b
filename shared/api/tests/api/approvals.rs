//! Four-eyes approvals end to end: the API over a local plane (the shipped flows on the local
//! executor, the worker, the simulated cloud), production's update waiting for two distinct
//! approvers other than its requester.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use envplane_cloud::{Cloud, Simulator};
use envplane_domain::{EnvName, Role};
use envplane_worker::jobs::Jobs;
use envplane_workflow::VirtualClock;
use envplane_workflow::executor::Clock;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::common::{LocalPlane, Reply, send};

/// ada asks; bea and root (an admin) approve; otto operates; vera views.
const ADA: &str = "ada-token";
const BEA: &str = "bea-token";
const ROOT: &str = "root-token";
const OTTO: &str = "otto-token";

struct Plane {
    router: Router,
    simulator: Arc<Simulator>,
    clock: Arc<VirtualClock>,
    jobs: Jobs,
    _plane: LocalPlane,
}

impl Plane {
    fn new() -> Self {
        let clock = Arc::new(VirtualClock::new(OffsetDateTime::now_utc()));
        let plane = LocalPlane::new(
            clock.clone(),
            &[
                ("ada", Role::Approver, ADA),
                ("bea", Role::Approver, BEA),
                ("root", Role::Admin, ROOT),
                ("otto", Role::Operator, OTTO),
            ],
            None,
        );
        Self {
            router: plane.router.clone(),
            simulator: plane.simulator.clone(),
            clock,
            jobs: plane.jobs.clone(),
            _plane: plane,
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if method == Method::PATCH {
            let read = axum::http::Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {ROOT}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let current = send(self.router.clone(), read).await;
            let etag = current.headers["etag"].to_str().unwrap().to_owned();
            request = request
                .header("if-match", etag)
                .header("content-type", "application/merge-patch+json");
        } else if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(axum::body::Body::empty, |b| b.to_string().into());
        send(self.router.clone(), request.body(body).unwrap()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, ROOT, None).await
    }

    async fn decide(&self, op: &str, token: &str, decision: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/operations/{op}/approvals"),
            token,
            Some(decision),
        )
        .await
    }

    /// Waits (real time, the flows run on their own tasks) until the operation is `status`.
    async fn until(&self, op: &str, status: &str) -> Value {
        for _ in 0..500 {
            let reply = self.get(&format!("/v1/operations/{op}")).await;
            if reply.body["status"] == status {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "operation {op} never became {status}: {}",
            self.get(&format!("/v1/operations/{op}")).await.body
        );
    }

    /// A ready production environment.
    async fn prod(&self) {
        let reply = self
            .call(
                Method::POST,
                "/v1/environments",
                ADA,
                Some(json!({"name": "prod", "tier": "prod"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let op = reply.body["operation"]["id"].as_str().unwrap().to_owned();
        self.until(&op, "succeeded").await;
    }

    /// ada asks for a bigger frontend; answers the operation once it waits for approvals.
    async fn scale(&self, desired: u32) -> String {
        let reply = self
            .call(
                Method::PATCH,
                "/v1/environments/prod",
                ADA,
                Some(json!({"cluster": {"frontend": {"desired": desired}}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let op = reply.body["operation"]["id"].as_str().unwrap().to_owned();
        self.until(&op, "awaiting_approval").await;
        op
    }

    async fn frontend_desired(&self) -> u64 {
        self.simulator
            .list(&EnvName::parse("prod").unwrap())
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.name == "prod-frontend")
            .unwrap()
            .attributes()["desired"]
            .as_u64()
            .unwrap()
    }
}

fn problem(reply: &Reply, status: StatusCode, says: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type(), "application/problem+json");
    assert!(
        reply.body["detail"].as_str().unwrap_or("").contains(says),
        "{says:?} not in {}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_waits_for_two_approvers_who_are_not_the_requester() {
    let plane = Plane::new();
    plane.prod().await;
    let op = plane.scale(4).await;
    assert_eq!(
        plane.frontend_desired().await,
        3,
        "nothing changes before approval"
    );

    let waiting = plane.get("/v1/approvals?status=pending").await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.body);
    assert_eq!(waiting.body["items"][0]["operation"]["id"], op.as_str());
    assert_eq!(waiting.body["items"][0]["required"], 2);
    let digest = waiting.body["items"][0]["operation"]["approval"]["plan_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        waiting.body["items"][0]["operation"]["approval"]
            .get("task_token")
            .is_none(),
        "the task token is never shown"
    );

    problem(
        &plane.decide(&op, ADA, json!({"decision": "approve"})).await,
        StatusCode::FORBIDDEN,
        "someone else must approve",
    );
    problem(
        &plane
            .decide(&op, OTTO, json!({"decision": "approve"}))
            .await,
        StatusCode::FORBIDDEN,
        "approver role",
    );
    // An admin is one approver: no bypass.
    let first = plane
        .decide(
            &op,
            ROOT,
            json!({"decision": "approve", "plan_digest": digest}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        (
            first.body["standing"].as_str(),
            first.body["approvers"].as_u64()
        ),
        (Some("pending"), Some(1))
    );
    problem(
        &plane.decide(&op, ROOT, json!({"decision": "reject"})).await,
        StatusCode::CONFLICT,
        "already decided",
    );
    assert_eq!(
        plane.frontend_desired().await,
        3,
        "one approver is not enough"
    );

    let second = plane
        .decide(
            &op,
            BEA,
            json!({"decision": "approve", "comment": "capacity for the sale"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["standing"], "approved");
    plane.until(&op, "succeeded").await;
    assert_eq!(plane.frontend_desired().await, 4);
    let left = plane.get("/v1/approvals").await;
    assert_eq!(left.body["items"], json!([]));

    // Every decision is audited with the approver and the plan digest.
    let audit = plane.get("/v1/environments/prod/audit").await;
    let decisions: Vec<(String, String, String)> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("operation.appro"))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["principal"].as_str().unwrap().to_owned(),
                e["change"]["plan_digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("operation.approval".into(), "root".into(), digest.clone()),
            ("operation.approved".into(), "bea".into(), digest),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plan_voids_approvals_and_its_author_cannot_approve_it() {
    let plane = Plane::new();
    plane.prod().await;
    let op = plane.scale(4).await;
    let first = plane
        .decide(&op, ROOT, json!({"decision": "approve"}))
        .await;
    assert_eq!(first.body["approvers"], 1, "{}", first.body);
    let before =
        plane.get(&format!("/v1/operations/{op}")).await.body["approval"]["plan_digest"].clone();

    // bea changes the waiting plan: root's approval no longer counts, and bea may not approve.
    let amended = plane
        .call(
            Method::PATCH,
            "/v1/environments/prod",
            BEA,
            Some(json!({"cluster": {"frontend": {"desired": 5}}})),
        )
        .await;
    assert_eq!(amended.status, StatusCode::ACCEPTED, "{}", amended.body);
    assert_eq!(
        amended.body["operation"]["id"],
        op.as_str(),
        "the same operation"
    );
    let now = plane.get(&format!("/v1/operations/{op}")).await.body;
    assert_ne!(now["approval"]["plan_digest"], before);
    problem(
        &plane
            .decide(
                &op,
                ROOT,
                json!({"decision": "approve", "plan_digest": before}),
            )
            .await,
        StatusCode::CONFLICT,
        "the plan changed",
    );
    problem(
        &plane.decide(&op, BEA, json!({"decision": "approve"})).await,
        StatusCode::FORBIDDEN,
        "someone else must approve",
    );
    let again = plane
        .decide(&op, ROOT, json!({"decision": "approve"}))
        .await;
    assert_eq!(
        (
            again.body["standing"].as_str(),
            again.body["approvers"].as_u64()
        ),
        (Some("pending"), Some(1)),
        "{}",
        again.body
    );
    assert_eq!(plane.frontend_desired().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_or_expired_approval_changes_nothing() {
    let plane = Plane::new();
    plane.prod().await;
    let op = plane.scale(4).await;
    let rejected = plane
        .decide(
            &op,
            BEA,
            json!({"decision": "reject", "comment": "not during the freeze"}),
        )
        .await;
    assert_eq!(rejected.body["standing"], "rejected", "{}", rejected.body);
    let failed = plane.until(&op, "failed").await;
    assert_eq!(failed["error"]["error"], "Envplane.Rejected");
    assert!(
        failed["error"]["cause"]
            .as_str()
            .unwrap()
            .contains("not during the freeze"),
        "{failed}"
    );
    assert_eq!(plane.frontend_desired().await, 3);

    // The spec went back? No: the environment keeps the asked-for spec unapplied, as after any
    // failed update; a reconcile or a new PATCH decides. What matters: the cloud is unchanged.
    let op = plane.scale(6).await;
    plane.clock.sleep(Duration::from_secs(7 * 24 * 3600)).await;
    let swept = plane.jobs.housekeeping().await.unwrap();
    assert_eq!(swept.expired_approvals.len(), 1, "{swept:?}");
    let failed = plane.until(&op, "failed").await;
    assert_eq!(failed["error"]["error"], "Envplane.ApprovalExpired");
    assert_eq!(plane.frontend_desired().await, 3);
    problem(
        &plane.decide(&op, BEA, json!({"decision": "approve"})).await,
        StatusCode::CONFLICT,
        "not awaiting approval",
    );
}
