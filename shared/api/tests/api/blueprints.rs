//! Blueprints and the API's own description.

use axum::http::Method;
use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn blueprints_list_every_tier_with_its_cost() {
    let h = Harness::embedded();
    let reply = h.get("/v1/blueprints").await;
    let tiers: Vec<&str> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, vec!["dev", "qa", "staging", "prod", "preview"]);
    assert_eq!(reply.body[3]["cost"]["monthly_usd"], 869.07);
    assert_eq!(
        reply.body[3]["dr"],
        json!({"rto_minutes": 60, "rpo_minutes": 5})
    );
}

#[tokio::test]
async fn health_needs_no_credentials_and_the_api_describes_itself() {
    let h = Harness::embedded();
    assert_eq!(
        h.request(Method::GET, "/health", None, &[], None)
            .await
            .status,
        StatusCode::OK
    );
    let spec = h.get("/v1/openapi.json").await;
    assert_eq!(spec.body["openapi"], "3.1.0");
    assert!(spec.body["paths"]["/v1/environments/{name}"]["patch"].is_object());
}

// ---- The same guarantees on both stores ----
