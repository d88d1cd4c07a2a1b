//! After a deployment: a rollback within its window (the replaced version kept warm, back in
//! one weight change), and promotions of what one environment runs to another as one
//! operation, with the target's approvals and gates, undone as a whole when a part fails.
//! Real requests through the local load balancers, on a clock faster than real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use envplane_domain::Role;
use serde_json::{Value, json};

use crate::deployments::{ADMIN, Plane, load};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";

/// A plane whose clock runs `scale` times real time, with an admin and two approvers.
fn plane(scale: f64) -> Plane {
    Plane::with(
        scale,
        &[
            ("root", Role::Admin, ADMIN),
            ("alice", Role::Approver, ALICE),
            ("bob", Role::Approver, BOB),
        ],
    )
}

/// Waits (real time) until operation `id` is one of `statuses`.
async fn settled(plane: &Plane, id: &str, statuses: &[&str]) -> Value {
    for _ in 0..2000 {
        let op = plane
            .call(Method::GET, &format!("/v1/operations/{id}"), None)
            .await;
        if statuses.contains(&op.body["status"].as_str().unwrap_or("")) {
            return op.body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation {id} never reached {statuses:?}");
}

async fn create(plane: &Plane, name: &str, tier: &str) {
    let created = plane
        .call(
            Method::POST,
            "/v1/environments",
            Some(json!({"name": name, "tier": tier})),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let op = created.body["operation"]["id"].as_str().unwrap();
    assert_eq!(
        settled(plane, op, &["succeeded", "failed"]).await["status"],
        "succeeded"
    );
}

/// Approves `op` as each of `approvers` in turn.
async fn approve(plane: &Plane, op: &str, approvers: &[&str]) {
    settled(plane, op, &["awaiting_approval"]).await;
    for token in approvers {
        let decided = plane
            .call_as(
                token,
                Method::POST,
                &format!("/v1/operations/{op}/approvals"),
                Some(json!({"decision": "approve"})),
            )
            .await;
        assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    }
}

/// Deploys `service` `version` to `env` (approved by `approvers`) and waits for its end.
async fn deploy(plane: &Plane, env: &str, body: Value, approvers: &[&str]) -> (String, Value) {
    let reply = plane
        .call(
            Method::POST,
            &format!("/v1/environments/{env}/deployments"),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["operation"]["id"].as_str().unwrap().to_owned();
    if !approvers.is_empty() {
        approve(plane, &id, approvers).await;
    }
    let done = plane.until(&id, &["succeeded", "failed"]).await;
    (id, done)
}

async fn version_served(url: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    answer["version"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_within_the_window_restores_the_warm_version_in_one_change() {
    let plane = plane(100.0);
    create(&plane, "dev", "dev").await;
    let window = json!({"rollback_window_seconds": 60});
    let (_, v1) = deploy(
        &plane,
        "dev",
        json!({"service": "frontend", "version": "v1", "canary": window}),
        &[],
    )
    .await;
    assert_eq!(v1["status"], "succeeded", "{v1}");
    let url = v1["url"].as_str().unwrap().to_owned();
    let (v2_id, v2) = deploy(
        &plane,
        "dev",
        json!({"service": "frontend", "version": "v2", "canary": window}),
        &[],
    )
    .await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    assert_eq!(version_served(&url).await, "v2");
    let env = plane.call(Method::GET, "/v1/environments/dev", None).await;
    assert_eq!(
        env.body["warm"]["frontend"]["release"]["version"], "v1",
        "{}",
        env.body
    );
    assert_eq!(env.body["warm"]["frontend"]["replaced_by"], v2_id.as_str());
    assert_eq!(
        env.body["load_balancers"]["frontend"],
        url.as_str(),
        "{}",
        env.body
    );

    let rolled = plane
        .call(
            Method::POST,
            &format!("/v1/deployments/{v2_id}/rollback"),
            None,
        )
        .await;
    assert_eq!(rolled.status, StatusCode::ACCEPTED, "{}", rolled.body);
    assert_eq!(rolled.body["operation"]["kind"], "rollback");
    assert_eq!(
        rolled.body["operation"]["approval"],
        Value::Null,
        "no approvers"
    );
    let rollback = rolled.body["operation"]["id"].as_str().unwrap().to_owned();
    let done = plane.until(&rollback, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["deployment"]["rollback_of"], v2_id.as_str());
    for _ in 0..10 {
        assert_eq!(version_served(&url).await, "v1");
    }
    let env = plane.call(Method::GET, "/v1/environments/dev", None).await;
    assert_eq!(env.body["releases"]["frontend"]["version"], "v1");
    assert_eq!(
        env.body["warm"],
        Value::Null,
        "nothing warm after a rollback"
    );
    // Undone once: again is refused, as is undoing the rollback.
    for id in [&v2_id, &rollback] {
        let again = plane
            .call(
                Method::POST,
                &format!("/v1/deployments/{id}/rollback"),
                None,
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    }

    // The window closes: housekeeping stops the warm version and a rollback is refused.
    let (v3_id, v3) = deploy(
        &plane,
        "dev",
        json!({"service": "frontend", "version": "v3", "canary": window}),
        &[],
    )
    .await;
    assert_eq!(v3["status"], "succeeded", "{v3}");
    tokio::time::sleep(Duration::from_millis(700)).await; // 70 s at 100×
    let kept = plane.plane.jobs.housekeeping().await.unwrap();
    assert_eq!(kept.cooled.len(), 1, "{kept:?}");
    let late = plane
        .call(
            Method::POST,
            &format!("/v1/deployments/{v3_id}/rollback"),
            None,
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    let env = plane.call(Method::GET, "/v1/environments/dev", None).await;
    assert_eq!(env.body["warm"], Value::Null);
    assert_eq!(version_served(&url).await, "v3");
}

/// staging runs frontend v2 and backend b1; prod runs frontend v1.
async fn staging_ahead_of_prod(plane: &Plane, frontend_env: Value) {
    create(plane, "staging", "staging").await;
    create(plane, "prod", "prod").await;
    let (_, prod_v1) = deploy(
        plane,
        "prod",
        json!({"service": "frontend", "version": "v1"}),
        &[ALICE, BOB],
    )
    .await;
    assert_eq!(prod_v1["status"], "succeeded", "{prod_v1}");
    for body in [
        json!({"service": "frontend", "version": "v1"}),
        json!({"service": "frontend", "version": "v2", "env": frontend_env}),
        json!({"service": "backend", "version": "b1"}),
    ] {
        let (_, done) = deploy(plane, "staging", body, &[ALICE]).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
}

async fn promote(plane: &Plane, services: Value) -> String {
    let reply = plane
        .call(
            Method::POST,
            "/v1/promotions",
            Some(json!({"from": "staging", "to": "prod", "services": services})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["operation"]["kind"], "promote");
    assert_eq!(reply.body["operation"]["approval"]["required"], 2);
    reply.body["operation"]["id"].as_str().unwrap().to_owned()
}

async fn promotion(plane: &Plane, id: &str) -> Value {
    let reply = plane
        .call(Method::GET, &format!("/v1/promotions/{id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_from_staging_to_prod_is_one_audited_operation_with_its_gate() {
    // 10×: a canary interval of prod's minute lasts 6 s, enough requests for a verdict.
    let plane = plane(10.0);
    staging_ahead_of_prod(&plane, json!({})).await;
    let prod = plane.call(Method::GET, "/v1/environments/prod", None).await;
    let url = prod.body["releases"]["frontend"]["version"].clone();
    assert_eq!(url, "v1");

    let id = promote(&plane, json!(["frontend", "backend"])).await;
    approve(&plane, &id, &[ALICE, BOB]).await;
    // The frontend goes by canary on prod: real requests through prod's load balancer.
    let deployment = loop {
        let p = promotion(&plane, &id).await;
        if p["current"]["progress"]["weight"].as_u64().unwrap_or(0) > 0 {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(deployment["current"]["service"], "frontend");
    let url = plane.until(&id, &["running", "awaiting_approval"]).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = Arc::new(AtomicBool::new(true));
    let generators: Vec<_> = (0..2).map(|_| load(url.clone(), running.clone())).collect();
    // The gate before 100 %: the requester may not open it, an approver may.
    let gated = plane
        .until(&id, &["awaiting_approval", "failed", "succeeded"])
        .await;
    assert_eq!(gated["status"], "awaiting_approval", "{gated}");
    assert_eq!(
        gated["deployment"]["decision"]["decision"], "await_gate",
        "{gated}"
    );
    assert_eq!(gated["deployment"]["progress"]["weight"], 25);
    let own = plane
        .call(Method::POST, &format!("/v1/deployments/{id}/promote"), None)
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    let opened = plane
        .call_as(
            ALICE,
            Method::POST,
            &format!("/v1/deployments/{id}/promote"),
            None,
        )
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    let done = settled(&plane, &id, &["succeeded", "failed"]).await;
    running.store(false, Ordering::Relaxed);
    for generator in generators {
        generator.await.unwrap();
    }
    assert_eq!(done["status"], "succeeded", "{done}");

    let shown = promotion(&plane, &id).await;
    assert_eq!(shown["from"], "staging");
    assert_eq!(shown["to"], "prod");
    let done_versions: Vec<_> = shown["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["service"].as_str().unwrap(),
                d["release"]["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(done_versions, [("frontend", "v2"), ("backend", "b1")]);
    assert_eq!(shown["current"], Value::Null);
    assert_eq!(shown["evidence"]["frontend"]["version"], "v2");
    let prod = plane.call(Method::GET, "/v1/environments/prod", None).await;
    assert_eq!(prod.body["releases"]["frontend"]["version"], "v2");
    assert_eq!(prod.body["releases"]["backend"]["version"], "b1");
    assert_eq!(version_served(&url).await, "v2");
    // One audited request, with what it carried and the source's evidence.
    let audit = plane
        .call(Method::GET, "/v1/environments/prod/audit?limit=100", None)
        .await;
    let requested: Vec<&Value> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "environment.promote")
        .collect();
    assert_eq!(requested.len(), 1, "{}", audit.body);
    assert_eq!(requested[0]["operation"], id.as_str());
    assert_eq!(requested[0]["change"]["promotion"]["from"], "staging");
    assert_eq!(
        requested[0]["change"]["promotion"]["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(requested[0]["change"]["promotion"]["evidence"]["frontend"].is_object());
    let completed = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "deployment.completed" && e["operation"] == id.as_str())
        .count();
    assert_eq!(completed, 2, "one per service");

    // Nothing left to promote.
    let again = plane
        .call(
            Method::POST,
            "/v1/promotions",
            Some(json!({"from": "staging", "to": "prod"})),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.body
    );
    assert_eq!(
        again.body["errors"][0]["field"], "services",
        "{}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_promotion_puts_back_what_it_already_replaced() {
    // 10×: a canary interval of prod's minute lasts 6 s, enough requests for a verdict.
    let plane = plane(10.0);
    // staging's frontend v2 answers 30 % of requests with 5xx: staging rolled it out at once.
    staging_ahead_of_prod(&plane, json!({"DEMO_ERROR_RATE": "0.3"})).await;
    let prod = plane.call(Method::GET, "/v1/environments/prod", None).await;
    assert!(prod.body["releases"].get("backend").is_none());
    // The backend goes first (prod's first backend: all at once), then the frontend fails.
    let id = promote(&plane, json!(["backend", "frontend"])).await;
    approve(&plane, &id, &[ALICE, BOB]).await;
    let url = loop {
        let reply = plane
            .call(Method::GET, &format!("/v1/deployments/{id}"), None)
            .await;
        if reply.body["deployment"]["service"] == "frontend" && reply.body["url"].is_string() {
            break reply.body["url"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let running = Arc::new(AtomicBool::new(true));
    let generators: Vec<_> = (0..2).map(|_| load(url.clone(), running.clone())).collect();
    let failed = settled(&plane, &id, &["succeeded", "failed"]).await;
    running.store(false, Ordering::Relaxed);
    for generator in generators {
        generator.await.unwrap();
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["error"], "Envplane.RolledBack", "{failed}");
    let prod = plane.call(Method::GET, "/v1/environments/prod", None).await;
    assert_eq!(
        prod.body["releases"]["frontend"]["version"], "v1",
        "{}",
        prod.body
    );
    assert!(
        prod.body["releases"].get("backend").is_none(),
        "{}",
        prod.body
    );
    assert_eq!(version_served(&url).await, "v1");
    let shown = promotion(&plane, &id).await;
    assert_eq!(shown["done"], json!([]), "undone: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_overrides_its_tiers_deploy_policy_within_the_rules() {
    let plane = plane(100.0);
    create(&plane, "staging", "staging").await;
    create(&plane, "prod", "prod").await;
    // Staging asks for two approvers and a canary of its own.
    let policy = json!({"deploy": {
        "approvals": 2, "strategy": "canary",
        "canary": {"steps": [10, 100], "interval_seconds": 30},
    }});
    let patched = plane
        .call(Method::PATCH, "/v1/environments/staging", Some(policy))
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.body);
    let op = patched.body["operation"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        settled(&plane, &op, &["succeeded", "failed"]).await["status"],
        "succeeded"
    );
    let reply = plane
        .call(
            Method::POST,
            "/v1/environments/staging/deployments",
            Some(json!({"service": "frontend", "version": "v1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let op = &reply.body["operation"];
    assert_eq!(op["approval"]["required"], 2, "{op}");
    assert_eq!(op["deployment"]["strategy"], "canary");
    assert_eq!(op["deployment"]["canary"]["steps"], json!([10, 100]));
    assert_eq!(op["deployment"]["canary"]["interval_seconds"], 30);
    // The tier's other defaults stay.
    assert_eq!(op["deployment"]["canary"]["max_error_rate"], 0.01);

    // Production never goes below two approvers; a policy that does not hold is refused.
    for (patch, field) in [
        (json!({"approvals": 1}), "spec.deploy.approvals"),
        (
            json!({"canary": {"steps": [50, 20]}}),
            "spec.deploy.canary.steps",
        ),
        (json!({"strategy": "yolo"}), "spec.deploy.strategy"),
    ] {
        let refused = plane
            .call(
                Method::PATCH,
                "/v1/environments/prod",
                Some(json!({"deploy": patch})),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
        let fields: Vec<&str> = refused.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields
                .iter()
                .any(|f| f.ends_with(field.trim_start_matches("spec."))),
            "{field}: {}",
            refused.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_a_deployment_and_writes_nothing() {
    let plane = plane(100.0);
    create(&plane, "dev", "dev").await;
    let (_, v1) = deploy(
        &plane,
        "dev",
        json!({"service": "frontend", "version": "v1"}),
        &[],
    )
    .await;
    assert_eq!(v1["status"], "succeeded");
    let before = plane.call(Method::GET, "/v1/environments/dev", None).await;
    let planned = plane
        .call(
            Method::POST,
            "/v1/environments/dev/deployments?dry_run=true",
            Some(
                json!({"service": "frontend", "version": "v2", "strategy": "canary",
                        "canary": {"gates": [25]}}),
            ),
        )
        .await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    let plan = &planned.body;
    assert_eq!(plan["previous"], "v1");
    assert_eq!(
        plan["transitions"],
        json!([
            {"weight": 5, "at_seconds": 0, "gate": false, "analysed": true},
            {"weight": 25, "at_seconds": 60, "gate": true, "analysed": true},
            {"weight": 100, "at_seconds": 120, "gate": false, "analysed": true},
        ])
    );
    assert_eq!(plan["approvals"], 0);
    assert_eq!(plan["minimum_seconds"], 180);
    // The second version's nodes for the bake and the rollback window.
    let extra = &plan["extra_capacity"];
    let nodes = extra["nodes"].as_f64().unwrap();
    assert!(nodes >= 1.0, "{plan}");
    let hours = extra["node_hours"].as_f64().unwrap();
    assert!(
        (hours - nodes * (180.0 + 1800.0) / 3600.0).abs() < 1e-9,
        "{plan}"
    );
    assert!(extra["cost_usd"].as_f64().unwrap() > 0.0, "{plan}");
    // Nothing recorded: same version, no operation.
    let after = plane.call(Method::GET, "/v1/environments/dev", None).await;
    assert_eq!(after.body["version"], before.body["version"]);
    assert_eq!(after.body["active_operation"], Value::Null);
    // Bad input is named, as for a real deployment.
    let bad = plane
        .call(
            Method::POST,
            "/v1/environments/dev/deployments?dry_run=true",
            Some(json!({"service": "db", "version": "v2"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "service");
}
