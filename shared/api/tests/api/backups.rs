//! Backups as the API shows them: after housekeeping's daily backup, the environment's
//! recovery points, the restorable window and the tier's policy.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_backup_shows_as_a_recovery_point_with_its_window() {
    // 06:00 UTC: the day's 05:00 backup is due.
    let origin = time::macros::datetime!(2026-12-01 06:00 UTC);
    let plane = LocalPlane::new(
        Arc::new(ScaledClock::from(100.0, origin)),
        &[("root", Role::Admin, ADMIN)],
        None,
    );
    let created = call(
        &plane,
        Method::POST,
        "/v1/environments",
        Some(json!({"name": "dev", "tier": "dev"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let op = created.body["operation"]["id"].as_str().unwrap().to_owned();
    for _ in 0..1000 {
        let got = call(&plane, Method::GET, &format!("/v1/operations/{op}"), None).await;
        if got.body["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let empty = call(&plane, Method::GET, "/v1/environments/dev/backups", None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["earliest"], Value::Null);

    let done = plane.jobs.housekeeping().await.unwrap();
    assert_eq!(done.backups.len(), 1, "{done:?}");
    let listed = call(&plane, Method::GET, "/v1/environments/dev/backups", None).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.body);
    assert!(
        items[0]["name"]
            .as_str()
            .unwrap()
            .contains("daily-20261201"),
        "{}",
        listed.body
    );
    assert_eq!(listed.body["earliest"], items[0]["taken_at"]);
    // The WAL is archived continuously: the window reaches at least the newest point.
    let time = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(
        time(&listed.body["latest"]) >= time(&items[0]["taken_at"]),
        "{}",
        listed.body
    );
    assert_eq!(listed.body["policy"]["snapshot_retention_days"], 7);
    assert_eq!(listed.body["policy"]["daily_at_utc_hour"], 5);
    // Once a day: another run takes none and records nothing new.
    assert!(plane.jobs.housekeeping().await.unwrap().backups.is_empty());
    let missing = call(&plane, Method::GET, "/v1/environments/nope/backups", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.content_type(), "application/problem+json");
}
