//! Environments: create, read, list.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_answers_202_and_get_shows_the_blueprint_defaults() {
    let h = Harness::embedded();
    let reply = h
        .post("/v1/environments", r#"{"name":"dev","tier":"dev"}"#)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.headers["location"], "/v1/environments/dev");
    assert_eq!(reply.headers["etag"], "\"1\"");
    let op = &reply.body["operation"];
    assert_eq!(
        (
            op["kind"].as_str(),
            op["status"].as_str(),
            op["requested_by"].as_str()
        ),
        (Some("create"), Some("pending"), Some("root"))
    );

    let env = h.get("/v1/environments/dev").await;
    assert_eq!(env.status, StatusCode::OK);
    assert_eq!(env.headers["etag"], "\"1\"");
    let spec = &env.body["spec"];
    assert_eq!(spec["network"]["vpc_cidr"], "10.0.0.0/16");
    assert_eq!(spec["cluster"]["version"], "1.31");
    assert_eq!(
        spec["cluster"]["frontend"],
        json!({"instance_type": "t3.medium", "min": 2, "desired": 2, "max": 4})
    );
    assert_eq!(
        spec["cluster"]["backend"],
        json!({"instance_type": "t3.large", "min": 2, "desired": 2, "max": 4})
    );
    assert_eq!(spec["database"]["instance_type"], "t3.large");
    assert_eq!(
        spec["database"]["volume"],
        json!({"size_gb": 50, "iops": 3000, "throughput_mibps": 125})
    );
    assert_eq!(env.body["status"]["phase"], "pending");
    assert_eq!(env.body["active_operation"], op["id"]);
    assert_eq!(
        env.body["subnets"]["private"],
        json!(["10.0.3.0/24", "10.0.4.0/24"])
    );
    assert_eq!(env.body["cost"]["monthly_usd"], 371.72);

    let op_id = op["id"].as_str().unwrap();
    let fetched = h.get(&format!("/v1/operations/{op_id}")).await;
    assert_eq!(fetched.body, reply.body["operation"]);
}

#[tokio::test]
async fn a_second_environment_of_a_tier_gets_the_next_free_block() {
    let h = Harness::embedded();
    h.post("/v1/environments", r#"{"name":"dev","tier":"dev"}"#)
        .await;
    let second = h
        .post("/v1/environments", r#"{"name":"dev2","tier":"dev"}"#)
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(
        second.body["environment"]["spec"]["network"]["vpc_cidr"],
        "10.16.0.0/16"
    );
    let preview = h
        .post(
            "/v1/environments",
            r#"{"name":"pr-1","tier":"preview","ttl_hours":6}"#,
        )
        .await;
    assert_eq!(
        preview.body["environment"]["spec"]["network"]["vpc_cidr"],
        "10.17.0.0/16"
    );
    assert!(preview.body["environment"]["expires_at"].is_string());
}

/// One request of the bad-input matrix and what it must answer.
#[tokio::test]
async fn listing_filters_and_pages_through_the_api() {
    let h = Harness::embedded();
    for (name, tier) in [
        ("a1", "dev"),
        ("a2", "qa"),
        ("a3", "dev"),
        ("a4", "dev"),
        ("a5", "staging"),
    ] {
        assert_eq!(
            h.post(
                "/v1/environments",
                &format!(r#"{{"name":"{name}","tier":"{tier}"}}"#)
            )
            .await
            .status,
            StatusCode::ACCEPTED
        );
    }
    let first = h.get("/v1/environments?tier=dev&limit=2").await;
    let names = |r: &Reply| {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), vec!["a1", "a3"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = h
        .get(&format!(
            "/v1/environments?tier=dev&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(names(&second), vec!["a4"]);
    assert!(second.body["next_cursor"].is_null());
    assert_eq!(
        names(&h.get("/v1/environments?phase=pending").await).len(),
        5
    );
}

#[tokio::test]
async fn the_failure_policy_is_recorded_with_the_request() {
    let h = Harness::embedded();
    let kept = h
        .post(
            "/v1/environments?on_failure=keep",
            r#"{"name":"dev","tier":"dev"}"#,
        )
        .await;
    assert_eq!(kept.status, StatusCode::ACCEPTED, "{}", kept.body);
    assert_eq!(kept.body["operation"]["input"]["on_failure"], "keep");
    let default = h
        .post("/v1/environments", r#"{"name":"qa","tier":"qa"}"#)
        .await;
    assert_eq!(default.body["operation"]["input"]["on_failure"], "rollback");
}

#[tokio::test]
async fn requests_and_leases_are_stamped_with_the_planes_clock() {
    // A time-scaled local plane runs ahead of the wall clock: its leases must be on its time,
    // as its housekeeping reads them, or every operation looks expired within a minute.
    let plane_time = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let h = Harness::with_clock(std::sync::Arc::new(move || plane_time));
    let reply = h
        .post("/v1/environments", r#"{"name":"dev","tier":"dev"}"#)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let lease = reply.body["environment"]["lease_expires_at"]
        .as_str()
        .unwrap();
    let lease =
        time::OffsetDateTime::parse(lease, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(
        lease,
        plane_time + envplane_domain::commands::OPERATION_LEASE
    );
}
