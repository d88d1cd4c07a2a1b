//! Restores and DR drills through the API: a backup on request (audited), every malformed
//! restore refused as problem+json naming its field and writing nothing, a restore into a new
//! environment, one in place waiting for its approver, and a drill whose evidence is read
//! from `GET /v1/dr-drills/{id}` and from the environment's drill history.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use envplane_domain::Role;
use envplane_workflow::ScaledClock;
use serde_json::{Value, json};

use crate::common::{LocalPlane, Reply};

const ADMIN: &str = "root-token";

async fn call(plane: &LocalPlane, method: Method, path: &str, body: Option<Value>) -> Reply {
    plane.call(ADMIN, method, path, body).await
}

async fn until(plane: &LocalPlane, op: &str, statuses: &[&str]) -> Value {
    for _ in 0..2000 {
        let got = call(plane, Method::GET, &format!("/v1/operations/{op}"), None).await;
        if statuses.iter().any(|s| got.body["status"] == *s) {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation {op} never reached {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_and_drills_through_the_api() {
    let plane = LocalPlane::new(
        Arc::new(ScaledClock::new(100.0)),
        &[("root", Role::Admin, ADMIN)],
        None,
    );
    let created = call(
        &plane,
        Method::POST,
        "/v1/environments",
        Some(json!({"name": "shop", "tier": "staging"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    until(
        &plane,
        created.body["operation"]["id"].as_str().unwrap(),
        &["succeeded"],
    )
    .await;

    // A drift check on request: in sync after provisioning, then the simulated cloud loses a
    // resource out of band and the next check says so.
    let check = call(&plane, Method::POST, "/v1/environments/shop/drift", None).await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    assert_eq!(check.body["status"], "in_sync", "{}", check.body);
    let shop = envplane_domain::EnvName::parse("shop").unwrap();
    let nodes = envplane_cloud::Cloud::list(plane.simulator.as_ref(), &shop)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind() == envplane_domain::resources::ResourceKind::NodeGroup)
        .unwrap();
    envplane_cloud::Cloud::delete(plane.simulator.as_ref(), &nodes)
        .await
        .unwrap();
    let check = call(&plane, Method::POST, "/v1/environments/shop/drift", None).await;
    assert_eq!(check.body["status"], "drifted", "{}", check.body);
    let shown = call(&plane, Method::GET, "/v1/environments/shop/drift", None).await;
    assert_eq!(shown.body, check.body, "the report is recorded");
    let missing = call(&plane, Method::POST, "/v1/environments/nope/drift", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // No recovery point yet: no drill.
    let early = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/dr-drills",
        None,
    )
    .await;
    assert_eq!(
        early.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        early.body
    );

    // A backup on request: the new point, listed, audited with the caller.
    let backup = call(&plane, Method::POST, "/v1/environments/shop/backups", None).await;
    assert_eq!(backup.status, StatusCode::CREATED, "{}", backup.body);
    let backup_id = backup.body["id"].as_str().unwrap().to_owned();
    let listed = call(&plane, Method::GET, "/v1/environments/shop/backups", None).await;
    assert_eq!(listed.body["items"][0]["id"], backup_id.as_str());
    let audit = call(&plane, Method::GET, "/v1/environments/shop/audit", None).await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (last["action"].as_str(), last["principal"].as_str()),
        (Some("environment.backup"), Some("root"))
    );

    // Malformed restores: each names its field, writes nothing.
    let version = call(&plane, Method::GET, "/v1/environments/shop", None)
        .await
        .body["version"]
        .clone();
    for (body, field) in [
        (json!({}), "backup_id"),
        (
            json!({"backup_id": backup_id, "point_in_time": "2026-01-01T00:00:00Z", "target": "in_place"}),
            "point_in_time",
        ),
        (
            json!({"backup_id": "snap-nope", "target": "in_place"}),
            "backup_id",
        ),
        (json!({"backup_id": 7, "target": "in_place"}), "backup_id"),
        (
            json!({"point_in_time": "yesterday", "target": "in_place"}),
            "point_in_time",
        ),
        (
            json!({"point_in_time": "2999-01-01T00:00:00Z", "target": "in_place"}),
            "point_in_time",
        ),
        (
            json!({"point_in_time": "2000-01-01T00:00:00Z", "target": "in_place"}),
            "point_in_time",
        ),
        (json!({"backup_id": backup_id}), "target"),
        (
            json!({"backup_id": backup_id, "target": "elsewhere"}),
            "target",
        ),
        (
            json!({"backup_id": backup_id, "target": {"new_environment": "Bad_Name"}}),
            "target.new_environment",
        ),
        (
            json!({"backup_id": backup_id, "target": {"new_environment": "shop"}}),
            "target.new_environment",
        ),
        (
            json!({"backup_id": backup_id, "target": "in_place", "force": true}),
            "force",
        ),
    ] {
        let refused = call(
            &plane,
            Method::POST,
            "/v1/environments/shop/restores",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.body
        );
        assert_eq!(refused.content_type(), "application/problem+json");
        let fields: Vec<&str> = refused.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{body}: {}", refused.body);
    }
    let unchanged = call(&plane, Method::GET, "/v1/environments/shop", None).await;
    assert_eq!(
        unchanged.body["version"], version,
        "a refused restore wrote nothing"
    );
    let missing = call(
        &plane,
        Method::POST,
        "/v1/environments/nope/restores",
        Some(json!({"backup_id": backup_id, "target": "in_place"})),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Plans: what a restore in place and a drill would take, writing nothing.
    let planned = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/restores?dry_run=true",
        Some(json!({"backup_id": backup_id, "target": "in_place"})),
    )
    .await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    assert_eq!(planned.body["approvals"], 1);
    assert_eq!(planned.body["estimated_rto_seconds"], 520);
    let drill_plan = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/dr-drills?dry_run=true",
        None,
    )
    .await;
    assert_eq!(drill_plan.status, StatusCode::OK, "{}", drill_plan.body);
    assert_eq!(
        drill_plan.body["within_rto_target"], true,
        "{}",
        drill_plan.body
    );
    assert!(drill_plan.body["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(drill_plan.body["teardown_seconds"].as_u64().unwrap() > 0);
    let still = call(&plane, Method::GET, "/v1/environments/shop", None).await;
    assert_eq!(still.body["version"], version, "a plan wrote nothing");

    // Into a new environment: made in its own block, ready with the restored database.
    let copy = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/restores",
        Some(json!({"backup_id": backup_id, "target": {"new_environment": "shop-copy"}})),
    )
    .await;
    assert_eq!(copy.status, StatusCode::ACCEPTED, "{}", copy.body);
    let done = until(
        &plane,
        copy.body["operation"]["id"].as_str().unwrap(),
        &["succeeded", "failed"],
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["kind"], "restore");
    let env = call(&plane, Method::GET, "/v1/environments/shop-copy", None).await;
    assert_eq!(env.body["status"]["phase"], "ready", "{}", env.body);
    assert_ne!(
        env.body["spec"]["network"]["vpc_cidr"],
        unchanged.body["spec"]["network"]["vpc_cidr"]
    );
    assert!(
        env.body["database"]
            .as_str()
            .is_some_and(|d| d.contains("shop-copy")),
        "{}",
        env.body
    );
    let again = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/restores",
        Some(json!({"backup_id": backup_id, "target": {"new_environment": "shop-copy"}})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    // In place: waits for an approver other than the requester.
    let in_place = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/restores",
        Some(json!({"backup_id": backup_id, "target": "in_place"})),
    )
    .await;
    assert_eq!(in_place.status, StatusCode::ACCEPTED, "{}", in_place.body);
    let waiting = until(
        &plane,
        in_place.body["operation"]["id"].as_str().unwrap(),
        &["awaiting_approval"],
    )
    .await;
    assert_eq!(waiting["approval"]["required"], 1, "{waiting}");
    let cancelled = call(
        &plane,
        Method::POST,
        &format!("/v1/operations/{}/cancel", waiting["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(cancelled.status.is_success(), "{}", cancelled.body);

    // A drill: its evidence from the drill and from the history; its environment gone.
    let drill = call(
        &plane,
        Method::POST,
        "/v1/environments/shop/dr-drills",
        None,
    )
    .await;
    assert_eq!(drill.status, StatusCode::ACCEPTED, "{}", drill.body);
    let id = drill.body["operation"]["id"].as_str().unwrap().to_owned();
    let location = drill
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(location, format!("/v1/dr-drills/{id}"));
    let ended = until(&plane, &id, &["succeeded", "failed"]).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let view = call(&plane, Method::GET, &location, None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    let evidence = &view.body["drill"]["evidence"];
    assert_eq!(evidence["outcome"], "passed", "{}", view.body);
    assert_eq!(evidence["left"], json!([]));
    assert_eq!(
        evidence["targets"],
        json!({"rto_minutes": 240, "rpo_minutes": 15})
    );
    let history = call(&plane, Method::GET, "/v1/environments/shop/dr-drills", None).await;
    assert_eq!(history.body["items"][0]["id"], id.as_str());
    assert_eq!(&history.body["items"][0]["evidence"], evidence);
    let gone = call(
        &plane,
        Method::GET,
        &format!(
            "/v1/environments/{}",
            evidence["drill_environment"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let not_a_drill = call(
        &plane,
        Method::GET,
        &format!(
            "/v1/dr-drills/{}",
            created.body["operation"]["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(not_a_drill.status, StatusCode::NOT_FOUND);
    let bad_id = call(&plane, Method::GET, "/v1/dr-drills/not-an-id", None).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);

    // The environment's operations, newest first, filtered.
    let all = call(
        &plane,
        Method::GET,
        "/v1/environments/shop/operations",
        None,
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let kinds: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["restore", "create"], "{}", all.body);
    let restores = call(
        &plane,
        Method::GET,
        "/v1/environments/shop/operations?kind=restore&status=cancelled&limit=1",
        None,
    )
    .await;
    assert_eq!(
        restores.body["items"][0]["id"], waiting["id"],
        "{}",
        restores.body
    );
    let bogus = call(
        &plane,
        Method::GET,
        "/v1/environments/shop/operations?status=bogus",
        None,
    )
    .await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    assert_eq!(bogus.body["errors"][0]["field"], "status", "{}", bogus.body);
    let nope = call(
        &plane,
        Method::GET,
        "/v1/environments/nope/operations",
        None,
    )
    .await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);

    // Every environment's: the drill's own environment (destroyed) is listed too.
    let everything = call(&plane, Method::GET, "/v1/operations?limit=100", None).await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.body);
    let listed: Vec<(String, String)> = everything.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["environment"].as_str().unwrap_or("").to_owned(),
                o["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        listed.contains(&("shop".into(), "create".into())),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|(e, k)| e != "shop" && k == "drill"),
        "{listed:?}"
    );
    let ids: Vec<&str> = everything.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first);
    let shops = call(
        &plane,
        Method::GET,
        "/v1/operations?environment=shop&kind=restore",
        None,
    )
    .await;
    assert!(
        shops.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["environment"] == "shop" && o["kind"] == "restore"),
        "{}",
        shops.body
    );
    let bad = call(
        &plane,
        Method::GET,
        "/v1/operations?environment=Not_A_Name",
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body["errors"][0]["field"], "environment",
        "{}",
        bad.body
    );
}
