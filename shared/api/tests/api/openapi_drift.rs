//! `openapi/openapi.json` is generated from the code and committed; this fails when they differ.

#[test]
fn committed_openapi_matches_the_code() {
    let path = format!("{}/../../openapi/openapi.json", env!("CARGO_MANIFEST_DIR"));
    let generated = envplane_api::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `cargo run -p envplane -- openapi > openapi/openapi.json` (or UPDATE_OPENAPI=1 cargo nextest run -p envplane-api openapi) and commit it"
    );
}

#[test]
fn every_error_response_is_problem_json() {
    let spec: serde_json::Value =
        serde_json::from_str(&envplane_api::openapi_json()).unwrap_or_default();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                if status.starts_with('4') {
                    checked += 1;
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(checked > 10);
}

/// The router serves the document's routes from the same list of handlers but without their
/// operations (a cold start's saving): every (method, path) of the document reaches a handler,
/// never the fallback's "no such route" nor a 405.
#[tokio::test]
async fn every_route_of_the_document_is_served() {
    use axum::http::Method;
    let plane = crate::common::Harness::embedded();
    let spec: serde_json::Value = serde_json::from_str(&envplane_api::openapi_json()).unwrap();
    let mut served = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        // Placeholders of the right shapes: a name, a ULID-like id.
        let concrete = path
            .replace("{name}", "dev")
            .replace("{id}", "01JB0000000000000000000000");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = plane
                .request(
                    method.clone(),
                    &concrete,
                    Some(crate::common::ADMIN),
                    &[],
                    None,
                )
                .await;
            let detail = reply.body["detail"].as_str().unwrap_or("");
            assert!(
                reply.status.as_u16() != 405 && !detail.starts_with("no such route"),
                "{method} {path}: {} {detail}",
                reply.status
            );
            served += 1;
        }
    }
    assert!(served >= 32, "{served} routes");
    let unknown = plane.get("/v1/nothing-here").await;
    assert_eq!(unknown.status.as_u16(), 404);
    assert!(
        unknown.body["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("no such route")
    );
}
