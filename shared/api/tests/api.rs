//! Black-box tests of the API: requests in, HTTP answers and store contents out.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::*;
use envplane_domain::EnvName;
use envplane_store::AuditTamper;
use serde_json::{Value, json};

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
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<String>,
    status: u16,
    field: Option<&'static str>,
}

fn case(
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Option<String>,
    status: u16,
    field: Option<&'static str>,
) -> Case {
    Case {
        what,
        method,
        path,
        token: Some(ADMIN),
        headers: vec![],
        body,
        status,
        field,
    }
}

fn create(body: Value) -> Option<String> {
    Some(body.to_string())
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_writes_nothing() {
    let h = Harness::embedded();
    let etag = h.ready("dev", "dev").await;
    let etag: &'static str = Box::leak(etag.into_boxed_str());
    h.ready("prod", "prod").await;
    let before = h.snapshot().await;
    let big = format!(
        r#"{{"name":"big","tier":"dev","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let post = Method::POST;
    let mut cases = vec![
        case(
            "malformed JSON",
            post.clone(),
            "/v1/environments",
            Some(r#"{"name": "x", "tier": "#.into()),
            400,
            Some("body"),
        ),
        case(
            "JSON array",
            post.clone(),
            "/v1/environments",
            create(json!([1, 2])),
            422,
            Some(""),
        ),
        case(
            "unknown top-level field",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "replicas": 3})),
            422,
            Some("replicas"),
        ),
        case(
            "unknown nested field",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "cluster": {"colour": "blue"}})),
            422,
            Some("cluster.colour"),
        ),
        case(
            "missing name",
            post.clone(),
            "/v1/environments",
            create(json!({"tier": "dev"})),
            422,
            Some("name"),
        ),
        case(
            "name not a string",
            post.clone(),
            "/v1/environments",
            create(json!({"name": 7, "tier": "dev"})),
            422,
            Some("name"),
        ),
        case(
            "uppercase name",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "Dev", "tier": "dev"})),
            422,
            Some("name"),
        ),
        case(
            "name too long",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a".repeat(41), "tier": "dev"})),
            422,
            Some("name"),
        ),
        case(
            "name ends with a dash",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "dev-", "tier": "dev"})),
            422,
            Some("name"),
        ),
        case(
            "missing tier",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a"})),
            422,
            Some("tier"),
        ),
        case(
            "unknown tier",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "gold"})),
            422,
            Some("tier"),
        ),
        case(
            "duplicate name",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "dev", "tier": "dev"})),
            409,
            None,
        ),
        case(
            "overlapping CIDR",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "qa", "network": {"vpc_cidr": "10.0.0.0/16"}})),
            422,
            Some("network.vpc_cidr"),
        ),
        case(
            "CIDR not a /16",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "qa", "network": {"vpc_cidr": "10.9.0.0/20"}})),
            422,
            Some("network.vpc_cidr"),
        ),
        case(
            "CIDR outside 10/8",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "qa", "network": {"vpc_cidr": "172.16.0.0/16"}})),
            422,
            Some("network.vpc_cidr"),
        ),
        case(
            "three AZs too many",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "network": {"az_count": 4}})),
            422,
            Some("network.az_count"),
        ),
        case(
            "min > max",
            post.clone(),
            "/v1/environments",
            create(
                json!({"name": "a", "tier": "dev", "cluster": {"frontend": {"min": 5, "max": 4}}}),
            ),
            422,
            Some("cluster.frontend.min"),
        ),
        case(
            "desired > max",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "cluster": {"backend": {"desired": 9}}})),
            422,
            Some("cluster.backend.desired"),
        ),
        case(
            "negative size",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "database": {"volume": {"size_gb": -1}}})),
            422,
            Some("database.volume.size_gb"),
        ),
        case(
            "instance type off the allowlist",
            post.clone(),
            "/v1/environments",
            create(
                json!({"name": "a", "tier": "dev", "cluster": {"frontend": {"instance_type": "p5.48xlarge"}}}),
            ),
            422,
            Some("cluster.frontend.instance_type"),
        ),
        case(
            "unsupported EKS version",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "cluster": {"version": "1.19"}})),
            422,
            Some("cluster.version"),
        ),
        case(
            "gp3 IOPS beyond the ratio",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "database": {"volume": {"iops": 40000}}})),
            422,
            Some("database.volume.iops"),
        ),
        case(
            "TTL on a non-preview",
            post.clone(),
            "/v1/environments",
            create(json!({"name": "a", "tier": "dev", "ttl_hours": 5})),
            422,
            Some("ttl_hours"),
        ),
        case(
            "oversized body",
            post.clone(),
            "/v1/environments",
            Some(big),
            413,
            Some("body"),
        ),
        Case {
            headers: vec![("content-type", "text/plain")],
            ..case(
                "wrong content type",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                415,
                Some("Content-Type"),
            )
        },
        Case {
            headers: vec![("content-type", "application/merge-patch+json")],
            ..case(
                "merge patch on POST",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                415,
                Some("Content-Type"),
            )
        },
        Case {
            headers: vec![("idempotency-key", "")],
            ..case(
                "empty Idempotency-Key",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                400,
                Some("Idempotency-Key"),
            )
        },
        Case {
            token: None,
            ..case(
                "no credentials",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                401,
                None,
            )
        },
        Case {
            token: Some("forged"),
            ..case(
                "unknown token",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                401,
                None,
            )
        },
        Case {
            token: Some(VIEWER),
            ..case(
                "viewer creating",
                post.clone(),
                "/v1/environments",
                create(json!({"name": "a", "tier": "dev"})),
                403,
                None,
            )
        },
        Case {
            token: Some(OPERATOR),
            ..case(
                "operator creating prod",
                post.clone(),
                "/v1/environments",
                create(
                    json!({"name": "p2", "tier": "prod", "network": {"vpc_cidr": "10.50.0.0/16"}}),
                ),
                403,
                None,
            )
        },
        case(
            "PATCH without If-Match",
            Method::PATCH,
            "/v1/environments/dev",
            create(json!({"cluster": {"frontend": {"desired": 3}}})),
            428,
            Some("If-Match"),
        ),
        Case {
            headers: vec![("if-match", "\"1\"")],
            ..case(
                "PATCH with a stale If-Match",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"frontend": {"desired": 3}}})),
                412,
                Some("If-Match"),
            )
        },
        Case {
            headers: vec![("if-match", "v2")],
            ..case(
                "PATCH with a malformed If-Match",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"frontend": {"desired": 3}}})),
                400,
                Some("If-Match"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH renaming",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"name": "other"})),
                422,
                Some("name"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH downgrading EKS",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"version": "1.30"}})),
                422,
                Some("cluster.version"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH shrinking the volume",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"database": {"volume": {"size_gb": 20}}})),
                422,
                Some("database.volume.size_gb"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH replacing a node group without allow_replacement",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"backend": {"instance_type": "t3.xlarge"}}})),
                422,
                Some("cluster.backend.instance_type"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH with a non-boolean allow_replacement",
                Method::PATCH,
                "/v1/environments/dev?allow_replacement=yes",
                create(json!({"cluster": {"frontend": {"desired": 3}}})),
                400,
                Some("allow_replacement"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH with an unknown query parameter",
                Method::PATCH,
                "/v1/environments/dev?force=true",
                create(json!({"cluster": {"frontend": {"desired": 3}}})),
                400,
                Some("force"),
            )
        },
        Case {
            token: Some(VIEWER),
            ..case(
                "reconcile by a viewer",
                post.clone(),
                "/v1/environments/dev/reconcile",
                None,
                403,
                None,
            )
        },
        case(
            "reconcile of an unknown environment",
            post.clone(),
            "/v1/environments/nowhere/reconcile",
            None,
            404,
            None,
        ),
        case(
            "drift of an environment never checked",
            Method::GET,
            "/v1/environments/dev/drift",
            None,
            404,
            None,
        ),
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH moving the VPC",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"network": {"vpc_cidr": "10.40.0.0/16"}})),
                422,
                Some("network.vpc_cidr"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH removing a section",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": null})),
                422,
                Some("cluster"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH with min > max",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"backend": {"min": 6}}})),
                422,
                Some("cluster.backend.min"),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            ..case(
                "PATCH changing nothing",
                Method::PATCH,
                "/v1/environments/dev",
                create(json!({"cluster": {"version": "1.31"}})),
                422,
                Some(""),
            )
        },
        Case {
            headers: vec![("if-match", etag)],
            token: Some(OPERATOR),
            ..case(
                "operator patching prod",
                Method::PATCH,
                "/v1/environments/prod",
                create(json!({"cluster": {"frontend": {"desired": 4}}})),
                403,
                None,
            )
        },
        case(
            "bad name in the path",
            Method::GET,
            "/v1/environments/Bad_Name",
            None,
            400,
            Some("name"),
        ),
        case(
            "unknown environment",
            Method::GET,
            "/v1/environments/nope",
            None,
            404,
            None,
        ),
        case(
            "DELETE of an unknown environment",
            Method::DELETE,
            "/v1/environments/nope",
            None,
            404,
            None,
        ),
        Case {
            headers: vec![("if-match", "\"99\"")],
            ..case(
                "DELETE with a stale If-Match",
                Method::DELETE,
                "/v1/environments/dev",
                None,
                412,
                Some("If-Match"),
            )
        },
        case(
            "limit of zero",
            Method::GET,
            "/v1/environments?limit=0",
            None,
            400,
            Some("limit"),
        ),
        case(
            "unknown tier filter",
            Method::GET,
            "/v1/environments?tier=gold",
            None,
            400,
            Some("tier"),
        ),
        case(
            "forged cursor",
            Method::GET,
            "/v1/environments?cursor=%21%21",
            None,
            400,
            Some("cursor"),
        ),
        case(
            "unknown query parameter",
            Method::GET,
            "/v1/environments?colour=red",
            None,
            400,
            Some("colour"),
        ),
        case(
            "operation id not a ULID",
            Method::GET,
            "/v1/operations/123",
            None,
            400,
            Some("id"),
        ),
        case("unknown route", Method::GET, "/v1/nothing", None, 404, None),
        case(
            "wrong method",
            Method::PUT,
            "/v1/environments/dev",
            None,
            405,
            None,
        ),
    ];
    // An Idempotency-Key used once may not carry a different request.
    let key_reuse = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(ADMIN),
            &[("idempotency-key", "k-1")],
            Some(r#"{"name":"keyed","tier":"qa"}"#),
        )
        .await;
    assert_eq!(key_reuse.status, StatusCode::ACCEPTED);
    let before_reuse = h.snapshot().await;
    cases.push(Case {
        headers: vec![("idempotency-key", "k-1")],
        ..case(
            "Idempotency-Key reused for another body",
            post,
            "/v1/environments",
            create(json!({"name": "keyed2", "tier": "qa"})),
            422,
            Some("Idempotency-Key"),
        )
    });
    assert!(cases.len() >= 25, "{} cases", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let reply = h
            .request(
                c.method.clone(),
                c.path,
                c.token,
                &c.headers,
                c.body.as_deref(),
            )
            .await;
        let field = reply.body.get("field").and_then(Value::as_str);
        let ok = reply.status.as_u16() == c.status
            && reply.content_type() == "application/problem+json"
            && reply.body["status"] == c.status
            && reply.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:envplane:problem:"))
            && reply.body["detail"].as_str().is_some_and(|d| !d.is_empty())
            && (c.field.is_none() || field == c.field);
        if !ok {
            failures.push(format!(
                "{}: got {} {} {}",
                c.what,
                reply.status,
                reply.content_type(),
                reply.body
            ));
        }
        assert!(!reply.status.is_server_error(), "{}: 5xx", c.what);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let after = h.snapshot().await;
    assert_ne!(before, before_reuse, "the keyed create was written");
    assert_eq!(before_reuse, after, "a refused request wrote something");
}

#[tokio::test]
async fn drift_is_shown_and_reconcile_starts_an_audited_operation() {
    let h = Harness::embedded();
    h.ready("dev", "dev").await;
    let name = EnvName::parse("dev").unwrap();
    // A drift check's report, as the scheduler stores it.
    let env = h.store.environment(&name).await.unwrap().unwrap();
    let mut next = env.clone();
    next.drift = Some(envplane_domain::drift::DriftReport {
        checked_at: time::OffsetDateTime::UNIX_EPOCH,
        status: envplane_domain::drift::DriftStatus::Drifted,
        missing: vec![envplane_domain::drift::Named {
            resource: "dev-private-2".into(),
            kind: envplane_domain::resources::ResourceKind::Subnet,
        }],
        unexpected: vec![],
        changed: vec![],
        api_calls: 13,
        note: None,
    });
    h.store
        .commit(envplane_store::Change {
            environment: next,
            expected: envplane_store::Expected::Version(env.version),
            operation: None,
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        })
        .await
        .unwrap();
    let drift = h.get("/v1/environments/dev/drift").await;
    assert_eq!(drift.status, StatusCode::OK, "{}", drift.body);
    assert_eq!(drift.body["status"], "drifted");
    assert_eq!(drift.body["api_calls"], 13);
    assert_eq!(drift.body["missing"][0]["resource"], "dev-private-2");

    let reply = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[("idempotency-key", "r-1")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["operation"]["kind"], "reconcile");
    assert_eq!(reply.body["environment"]["status"]["phase"], "updating");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v1/operations/"));
    let again = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[("idempotency-key", "r-1")],
            None,
        )
        .await;
    assert_eq!(again.raw, reply.raw, "a retry replays the answer");
    let busy = h
        .request(
            Method::POST,
            "/v1/environments/dev/reconcile",
            Some(OPERATOR),
            &[],
            None,
        )
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    let audit = h.get("/v1/environments/dev/audit").await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "environment.reconcile");
    assert_eq!(last["principal"], "otto");
    assert!(
        last["change"]["drift"]
            .as_str()
            .unwrap()
            .contains("dev-private-2 missing")
    );
}

#[tokio::test]
async fn retries_with_the_same_key_replay_the_first_answer() {
    let h = Harness::embedded();
    let body = r#"{"name":"dev","tier":"dev"}"#;
    let first = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    let again = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!((again.status, &again.raw), (first.status, &first.raw));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["etag"], first.headers["etag"]);
    // The same key from another caller is another key.
    let other = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(ADMIN),
            &[("idempotency-key", "abc")],
            Some(body),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
}

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
async fn prod_changes_need_an_approver() {
    let h = Harness::embedded();
    let body = r#"{"name":"prod","tier":"prod"}"#;
    let refused = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(OPERATOR),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let accepted = h
        .request(
            Method::POST,
            "/v1/environments",
            Some(APPROVER),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let spec = &accepted.body["environment"]["spec"];
    assert_eq!(
        (
            spec["network"]["vpc_cidr"].as_str(),
            spec["network"]["az_count"].as_u64()
        ),
        (Some("10.2.0.0/16"), Some(3))
    );
    let viewer = h
        .request(
            Method::GET,
            "/v1/environments/prod",
            Some(VIEWER),
            &[],
            None,
        )
        .await;
    assert_eq!(viewer.status, StatusCode::OK);
}

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
async fn a_plan_prices_a_change_and_writes_nothing() {
    let h = Harness::embedded();
    h.ready("prod", "prod").await;
    let before = h.snapshot().await;
    let reply = h
        .request(
            Method::POST,
            "/v1/environments/prod/plan",
            Some(VIEWER),
            &[],
            Some(r#"{"cluster":{"backend":{"instance_type":"t3.2xlarge"}}}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["monthly_cost_before"], 869.07);
    assert_eq!(reply.body["monthly_cost_after"], 1233.49);
    assert_eq!(reply.body["monthly_cost_delta_usd"], 364.42);
    assert_eq!(reply.body["resources"][0]["action"], "replace");
    assert_eq!(reply.body["resources"][0]["name"], "prod-backend");
    assert_eq!(reply.body["approvals"], json!(["approver"]));
    assert_eq!(h.snapshot().await, before, "a plan writes nothing");
    let bad = h
        .request(
            Method::POST,
            "/v1/environments/prod/plan",
            Some(VIEWER),
            &[],
            Some(r#"{"cluster":{"backend":{"min":9}}}"#),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("cluster.backend.min")
        )
    );
}

#[tokio::test]
async fn a_dry_run_create_plans_and_writes_nothing() {
    let h = Harness::embedded();
    h.ready("dev", "dev").await;
    let before = h.snapshot().await;
    let reply = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"dev2","tier":"dev"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["environment"]["spec"]["network"]["vpc_cidr"], "10.16.0.0/16",
        "the block a real create would get"
    );
    assert_eq!(
        reply.body["plan"]["resources"].as_array().unwrap().len(),
        21
    );
    assert_eq!(reply.body["plan"]["monthly_cost_after"], 371.72);
    assert_eq!(h.snapshot().await, before, "a dry run writes nothing");
    let taken = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"dev","tier":"dev"}"#,
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let overlap = h
        .post(
            "/v1/environments?dry_run=true",
            r#"{"name":"x","tier":"qa","network":{"vpc_cidr":"10.0.0.0/16"}}"#,
        )
        .await;
    assert_eq!(
        (overlap.status, overlap.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("network.vpc_cidr"))
    );
    let bad = h
        .post(
            "/v1/environments?dry_run=maybe",
            r#"{"name":"x","tier":"qa"}"#,
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("dry_run"))
    );
    assert_eq!(h.snapshot().await, before);
}

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

async fn fifty_patches_with_one_if_match_have_one_winner(h: Harness) {
    let etag = h.ready("dev", "dev").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let router = h.router.clone();
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"cluster": {"frontend": {"max": 5 + i}}}).to_string();
            let request = axum::http::Request::patch("/v1/environments/dev")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/merge-patch+json")
                .header("if-match", etag)
                .body(axum::body::Body::from(body))
                .unwrap();
            send(router, request).await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            reply.status == StatusCode::ACCEPTED
                || reply.content_type() == "application/problem+json"
        );
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 412, 409].contains(s)),
        "{statuses:?}"
    );
    let audit = h.get("/v1/environments/dev/audit").await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.get("/v1/environments/dev/audit/verify").await.body["valid"],
        true
    );
}

async fn hundred_identical_posts_with_one_key_make_one_environment(h: Harness) {
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let router = h.router.clone();
        tasks.push(tokio::spawn(async move {
            let request = axum::http::Request::post("/v1/environments")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "4f1c2a9e-create-dev")
                .body(axum::body::Body::from(r#"{"name":"dev","tier":"dev"}"#))
                .unwrap();
            send(router, request).await
        }));
    }
    let mut bodies = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        bodies.insert(reply.raw);
    }
    assert_eq!(bodies.len(), 1, "bodies differ");
    let body: Value = serde_json::from_slice(bodies.first().unwrap()).unwrap();
    let list = h.get("/v1/environments").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let env = h.get("/v1/environments/dev").await;
    assert_eq!(env.body["active_operation"], body["operation"]["id"]);
    let audit = h.get("/v1/environments/dev/audit").await;
    let events = audit.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one create, audited once");
    assert_eq!(events[0]["operation"], body["operation"]["id"]);
    assert_eq!(events[0]["principal"], "otto");
}

async fn audit_verify_detects_an_edited_and_a_removed_event<S: AuditTamper>(
    h: Harness,
    tamper: &S,
) {
    let mut etag = h.ready("dev", "dev").await;
    for desired in [3, 4, 2] {
        let body = json!({"cluster": {"backend": {"desired": desired}}}).to_string();
        let reply = h
            .request(
                Method::PATCH,
                "/v1/environments/dev",
                Some(ADMIN),
                &[("if-match", etag.as_str())],
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        etag = h.finish_operation("dev").await;
    }
    let verify = || async { h.get("/v1/environments/dev/audit/verify").await.body };
    assert_eq!(
        verify().await,
        json!({"valid": true, "events_checked": 4, "head_seq": 4, "first_broken": null})
    );
    let dev = EnvName::parse("dev").unwrap();
    tamper
        .edit_audit_principal(&dev, 2, "mallory")
        .await
        .unwrap();
    let edited = verify().await;
    assert_eq!(
        (
            edited["valid"].as_bool(),
            edited["first_broken"]["seq"].as_u64()
        ),
        (Some(false), Some(2)),
        "{edited}"
    );
    tamper.edit_audit_principal(&dev, 2, "root").await.unwrap();
    assert_eq!(verify().await["valid"], true);
    tamper.remove_audit_event(&dev, 3).await.unwrap();
    let removed = verify().await;
    assert_eq!(
        (
            removed["valid"].as_bool(),
            removed["first_broken"]["seq"].as_u64()
        ),
        (Some(false), Some(3)),
        "{removed}"
    );
    assert!(
        removed["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
}

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_patches() {
        fifty_patches_with_one_if_match_have_one_winner(Harness::embedded()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_posts() {
        hundred_identical_posts_with_one_key_make_one_environment(Harness::embedded()).await;
    }

    #[tokio::test]
    async fn audit_tampering() {
        let (dir, store) = envplane_store::testing::embedded_store();
        let h = Harness::over(std::sync::Arc::new(store.clone()), Some(dir));
        audit_verify_detects_an_edited_and_a_removed_event(h, &store).await;
    }
}

mod dynamodb {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_patches() {
        let Some(h) = Harness::dynamodb().await else {
            return;
        };
        fifty_patches_with_one_if_match_have_one_winner(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_posts() {
        let Some(h) = Harness::dynamodb().await else {
            return;
        };
        hundred_identical_posts_with_one_key_make_one_environment(h).await;
    }

    #[tokio::test]
    async fn audit_tampering() {
        let Some(store) = envplane_store::testing::moto_store().await else {
            return;
        };
        let h = Harness::over(std::sync::Arc::new(store.clone()), None);
        audit_verify_detects_an_edited_and_a_removed_event(h, &store).await;
    }
}
