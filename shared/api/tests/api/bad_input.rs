//! Bad input of every kind gets a problem naming the field, and writes nothing.

use axum::http::Method;
use axum::http::StatusCode;
use serde_json::Value;
use serde_json::json;

use crate::common::*;

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
            "a key named twice",
            post.clone(),
            "/v1/environments",
            Some(r#"{"name": "x", "tier": "dev", "name": "y"}"#.into()),
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
            "drift of an environment that does not exist",
            Method::GET,
            "/v1/environments/nope/drift",
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
            "unknown failure policy",
            Method::POST,
            "/v1/environments?on_failure=ignore",
            create(json!({"name": "dev", "tier": "dev"})),
            400,
            Some("on_failure"),
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
        case(
            "a path that is not UTF-8 once decoded",
            Method::GET,
            "/v1/environments/%FF",
            None,
            400,
            Some("path"),
        ),
        case(
            "an operation path that is not UTF-8",
            Method::POST,
            "/v1/operations/%FF%FE/approvals",
            Some(r#"{"decision":"approve"}"#.into()),
            400,
            Some("path"),
        ),
        case(
            "a query that is not UTF-8",
            Method::GET,
            "/v1/environments?tier=%FF",
            None,
            400,
            None,
        ),
        case(
            "an unknown decision",
            Method::POST,
            "/v1/operations/01J0000000000000000000000A/approvals",
            Some(r#"{"decision":"maybe"}"#.into()),
            422,
            None,
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
