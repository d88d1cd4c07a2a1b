//! The authorization matrix: every route of the OpenAPI document × every kind of caller (no
//! token, a bad token, viewer, operator, approver, admin), each answer checked against one
//! policy table — a second copy of what the handlers decide, which must agree with them. A
//! route added to the document without a row here fails the first test.
//!
//! Requests are well formed (valid bodies, a current `If-Match`, an `Idempotency-Key`), so the
//! role is the only reason to refuse them: a caller the policy allows may get anything but
//! 401 and 403 (409 when an earlier caller's request now holds the environment, 404 for an id
//! that does not exist); one it does not allow gets exactly 401 or 403, as problem+json.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use envplane_cloud::Traffic;
use envplane_domain::Role;
use envplane_traffic::LocalTraffic;
use envplane_workflow::ScaledClock;
use serde_json::{Value, json};

use crate::common::{LocalPlane, Reply, send};

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Anyone, without a token.
    Public,
    /// Any role.
    Read,
    /// Changing an environment: operator, approver on production.
    Mutate,
    /// Deciding on someone else's operation: approver.
    Approve,
}

/// The policy: every route of the document and what it needs.
const POLICY: &[(&str, &str, Need)] = &[
    ("GET", "/health", Need::Public),
    ("GET", "/v1/blueprints", Need::Read),
    ("GET", "/v1/approvals", Need::Read),
    ("GET", "/v1/environments", Need::Read),
    ("POST", "/v1/environments", Need::Mutate),
    ("GET", "/v1/environments/{name}", Need::Read),
    ("PATCH", "/v1/environments/{name}", Need::Mutate),
    ("GET", "/v1/environments/{name}/audit", Need::Read),
    ("GET", "/v1/environments/{name}/audit/verify", Need::Read),
    ("GET", "/v1/environments/{name}/backups", Need::Read),
    ("POST", "/v1/environments/{name}/backups", Need::Mutate),
    ("GET", "/v1/environments/{name}/dr-drills", Need::Read),
    ("POST", "/v1/environments/{name}/dr-drills", Need::Mutate),
    ("GET", "/v1/environments/{name}/drift", Need::Read),
    ("POST", "/v1/environments/{name}/drift", Need::Mutate),
    ("GET", "/v1/environments/{name}/operations", Need::Read),
    ("POST", "/v1/environments/{name}/plan", Need::Read),
    ("POST", "/v1/environments/{name}/reconcile", Need::Mutate),
    ("POST", "/v1/environments/{name}/restores", Need::Mutate),
    ("POST", "/v1/environments/{name}/deployments", Need::Mutate),
    ("GET", "/v1/deployments/{id}", Need::Read),
    ("POST", "/v1/deployments/{id}/promote", Need::Mutate),
    ("POST", "/v1/deployments/{id}/abort", Need::Mutate),
    ("POST", "/v1/deployments/{id}/rollback", Need::Mutate),
    ("GET", "/v1/dr-drills/{id}", Need::Read),
    ("GET", "/v1/operations", Need::Read),
    ("GET", "/v1/operations/{id}", Need::Read),
    ("POST", "/v1/operations/{id}/approvals", Need::Approve),
    ("POST", "/v1/operations/{id}/cancel", Need::Mutate),
    ("POST", "/v1/promotions", Need::Mutate),
    ("GET", "/v1/promotions/{id}", Need::Read),
    // Last: the environments are gone afterwards.
    ("DELETE", "/v1/environments/{name}", Need::Mutate),
];

/// Who calls: no token, a token nobody was given, then each role.
const CALLERS: [(&str, Option<&str>, Option<Role>); 6] = [
    ("no token", None, None),
    ("bad token", Some("not-a-token"), None),
    ("viewer", Some("vera-token"), Some(Role::Viewer)),
    ("operator", Some("otto-token"), Some(Role::Operator)),
    ("approver", Some("ada-token"), Some(Role::Approver)),
    ("admin", Some("root-token"), Some(Role::Admin)),
];

/// Who made the fixtures: an admin outside the matrix, so that no caller decides on its own
/// operation (four eyes would refuse that whatever the role).
const REQUESTER: &str = "req-token";

/// What the policy expects of `caller` on a route needing `need`, for an environment of
/// production or not.
fn expected(need: Need, prod: bool, caller: Option<Role>) -> Option<StatusCode> {
    let Some(role) = caller else {
        return (need != Need::Public).then_some(StatusCode::UNAUTHORIZED);
    };
    let least = match need {
        Need::Public | Need::Read => Role::Viewer,
        Need::Mutate if prod => Role::Approver,
        Need::Mutate => Role::Operator,
        Need::Approve => Role::Approver,
    };
    (role < least).then_some(StatusCode::FORBIDDEN)
}

fn document_routes() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&envplane_api::openapi_json()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_policy_names_every_route_of_the_document_once() {
    let policy: Vec<(String, String)> = POLICY
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let unique: BTreeSet<_> = policy.iter().cloned().collect();
    assert_eq!(unique.len(), policy.len(), "a route twice in the policy");
    assert_eq!(unique, document_routes());
}

struct Fixtures {
    /// The made environment of each kind: (dev, prod).
    env: [&'static str; 2],
    /// An operation on each.
    operation: [String; 2],
    /// A deployment on each; production's waits for approvers.
    deployment: [String; 2],
    /// Production's deployment's operation, waiting for approvers.
    awaiting: String,
}

async fn call(
    plane: &LocalPlane,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut request = axum::http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("idempotency-key", ulid::Ulid::new().to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if method == Method::PATCH || method == Method::DELETE {
        // A current ETag, read as the requester: the precondition is never why it is refused.
        let env_path = path.split('?').next().unwrap_or(path);
        let read = plane.call(REQUESTER, Method::GET, env_path, None).await;
        if let Some(etag) = read.headers.get("etag") {
            request = request.header("if-match", etag.clone());
        }
    }
    if body.is_some() {
        let media = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        request = request.header("content-type", media);
    }
    let body = body.map_or_else(axum::body::Body::empty, |b| b.to_string().into());
    send(plane.router.clone(), request.body(body).unwrap()).await
}

async fn until(plane: &LocalPlane, op: &str, statuses: &[&str]) -> Value {
    for _ in 0..600 {
        let got = plane
            .call(
                REQUESTER,
                Method::GET,
                &format!("/v1/operations/{op}"),
                None,
            )
            .await;
        if statuses.contains(&got.body["status"].as_str().unwrap_or("")) {
            return got.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("operation {op} never reached {statuses:?}");
}

async fn fixtures(plane: &LocalPlane) -> Fixtures {
    let mut operation = Vec::new();
    for (name, tier) in [("mdev", "dev"), ("mprod", "prod")] {
        let made = plane
            .call(
                REQUESTER,
                Method::POST,
                "/v1/environments",
                Some(json!({"name": name, "tier": tier})),
            )
            .await;
        assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
        let op = made.body["operation"]["id"].as_str().unwrap().to_owned();
        until(plane, &op, &["succeeded"]).await;
        operation.push(op);
    }
    let mut deployment = Vec::new();
    let mut awaiting = String::new();
    for (name, settles) in [("mdev", "succeeded"), ("mprod", "awaiting_approval")] {
        let deployed = plane
            .call(
                REQUESTER,
                Method::POST,
                &format!("/v1/environments/{name}/deployments"),
                Some(json!({"service": "frontend", "version": "1.0.0"})),
            )
            .await;
        assert_eq!(deployed.status, StatusCode::ACCEPTED, "{}", deployed.body);
        let op = deployed.body["operation"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        until(plane, &op, &[settles]).await;
        deployment.push(op.clone());
        awaiting = op;
    }
    Fixtures {
        env: ["mdev", "mprod"],
        operation: [operation[0].clone(), operation[1].clone()],
        deployment: [deployment[0].clone(), deployment[1].clone()],
        awaiting,
    }
}

/// The request a route gets for the environment of kind `which` (0 dev, 1 prod), the `n`th
/// time (names it creates are fresh).
fn request(
    path: &str,
    method: &str,
    which: usize,
    f: &Fixtures,
    n: usize,
) -> (String, Option<Value>) {
    let env = f.env[which];
    let tier = ["dev", "prod"][which];
    let concrete = path.replace("{name}", env).replace(
        "{id}",
        match path {
            p if p.starts_with("/v1/deployments/") => &f.deployment[which],
            "/v1/operations/{id}/approvals" => &f.awaiting,
            p if p.starts_with("/v1/operations/") => &f.operation[which],
            // Ids of nothing: reads answer 404 to whoever may read.
            _ => "01JNOSUCH0000000000000000Z",
        },
    );
    let body = match (method, path) {
        ("POST", "/v1/environments") => Some(json!({"name": format!("m{tier}-{n}"), "tier": tier})),
        ("PATCH", _) => Some(json!({"cluster": {"frontend": {"desired": 3}}})),
        ("POST", "/v1/environments/{name}/plan") => {
            Some(json!({"cluster": {"frontend": {"desired": 3}}}))
        }
        ("POST", "/v1/environments/{name}/restores") => Some(json!({
            "point_in_time": "2026-01-01T00:00:00Z",
            "into": {"new_environment": format!("mcopy-{n}")},
        })),
        ("POST", "/v1/environments/{name}/deployments") => {
            Some(json!({"service": "backend", "version": format!("2.0.{n}")}))
        }
        ("POST", "/v1/operations/{id}/approvals") => {
            Some(json!({"decision": "approve", "comment": "checked"}))
        }
        ("POST", "/v1/promotions") => Some(json!({"from": f.env[1 - which], "to": env})),
        _ => None,
    };
    (concrete, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let traffic: Arc<dyn Traffic> = Arc::new(LocalTraffic::new());
    let plane = LocalPlane::new(
        Arc::new(ScaledClock::new(100.0)),
        &[
            ("vera", Role::Viewer, "vera-token"),
            ("otto", Role::Operator, "otto-token"),
            ("ada", Role::Approver, "ada-token"),
            ("root", Role::Admin, "root-token"),
            ("req", Role::Admin, REQUESTER),
        ],
        Some(traffic),
    );
    let f = fixtures(&plane).await;

    let mut checked = 0;
    let mut cells = BTreeSet::new();
    let mut wrong = Vec::new();
    for (n, (method, path, need)) in POLICY.iter().enumerate() {
        // A route on an environment is tried on dev and on prod, where changes need more.
        let kinds: &[usize] = if *need == Need::Mutate { &[0, 1] } else { &[1] };
        for &which in kinds {
            let prod = which == 1;
            for (who, token, role) in CALLERS {
                let (concrete, body) = request(path, method, which, &f, n * 10 + checked % 10);
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let reply = call(&plane, token, method.clone(), &concrete, body.as_ref()).await;
                checked += 1;
                cells.insert((*path, method.to_string(), who));
                let refused = matches!(
                    reply.status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                );
                let fine = match expected(*need, prod, role) {
                    Some(status) => {
                        reply.status == status && reply.content_type() == "application/problem+json"
                    }
                    None => !refused && !reply.status.is_server_error(),
                };
                if !fine {
                    wrong.push(format!(
                        "{method} {concrete} as {who}: {} (policy: {:?}) {}",
                        reply.status,
                        expected(*need, prod, role),
                        reply.body
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers disagree with the policy:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Every route × every caller, and the changing routes again on production.
    assert_eq!(cells.len(), POLICY.len() * CALLERS.len());
    let changing = POLICY.iter().filter(|(_, _, n)| *n == Need::Mutate).count();
    assert_eq!(checked, (POLICY.len() + changing) * CALLERS.len());
    println!(
        "authorization matrix: {} routes × {} callers = {} cells, {checked} requests",
        POLICY.len(),
        CALLERS.len(),
        cells.len()
    );
}
