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
