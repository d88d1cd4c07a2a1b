//! The document made exact. The handlers enforce the same few rules through shared parsers —
//! a name is an environment name, an id a ULID, `limit` 1–100, a cursor one this API encodes,
//! `Idempotency-Key` and `If-Match` well formed — and answer the same few problems for the
//! same reasons (400 for a malformed parameter, header or JSON; 401 without a valid token;
//! 404 for a path naming nothing; 413, 415 and 422 for bodies). Rather than repeat them on
//! each route's annotation, where one is easily forgotten, they are stated here once, from the
//! constants the parsers use, over the document utoipa derives from the annotations.

use serde_json::{Map, Value, json};

use envplane_domain::name::MAX_NAME_LEN;

/// An environment name: a lowercase DNS label (`EnvName::parse`).
pub const NAME_PATTERN: &str = "^[a-z]([a-z0-9-]*[a-z0-9])?$";
/// An operation id as this API issues it: a ULID in Crockford base32, upper case.
pub const ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";
/// A cursor: unpadded base64url (`cursor_after`).
pub const CURSOR_PATTERN: &str = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$";
/// An `Idempotency-Key`: 1–255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";
/// An `If-Match`: `*` or a list of entity-tags (RFC 9110 §8.8.3).
pub const IF_MATCH_PATTERN: &str =
    "^[ \\t]*(\\*|(W/)?\"[!#-~]*\"([ \\t]*,[ \\t]*(W/)?\"[!#-~]*\")*)?[ \\t]*$";

/// `value` with every object's keys in order.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut entries: Vec<(String, Value)> = fields.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The problems every route may answer, by status, and why.
fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The create body's rules JSON Schema can state: the name's syntax, sections as objects,
/// and a TTL only (and always) on a preview, 1–720 hours (`EnvironmentSpec::validate`).
fn tighten_create_request(schema: &mut Value) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(name) = properties.get_mut("name") {
        name["minLength"] = json!(1);
        name["maxLength"] = json!(MAX_NAME_LEN);
        name["pattern"] = json!(NAME_PATTERN);
    }
    for section in ["network", "cluster", "database"] {
        if let Some(field) = properties.get_mut(section) {
            field["type"] = json!(["object", "null"]);
        }
    }
    schema["additionalProperties"] = json!(false);
    schema["if"] = json!({"properties": {"tier": {"const": "preview"}}, "required": ["tier"]});
    schema["then"] = json!({
        "required": ["ttl_hours"],
        "properties": {"ttl_hours": {"type": "integer", "minimum": 1, "maximum": 720}}
    });
    schema["else"] = json!({"properties": {"ttl_hours": {"type": "null"}}});
}

/// Tightens `document` (the OpenAPI JSON utoipa derived) in place.
pub fn tighten(document: &mut Value) {
    if let Some(create) = document.pointer_mut("/components/schemas/CreateEnvironmentRequest") {
        tighten_create_request(create);
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            if let Some(operation) = operation.as_object_mut() {
                tighten_operation(path, method, operation);
            }
        }
    }
}

/// The schema of an environment name where a body carries one.
fn name_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NAME_PATTERN})
}

/// Bodies the handlers read field by field (to name every field at fault) rather than through
/// a typed struct: their schemas, as the parsers in `envplane_domain` accept them.
fn body_schema(method: &str, path: &str) -> Option<Value> {
    let text = json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"});
    let service = json!({"type": "string", "enum": ["frontend", "backend"]});
    match (method, path) {
        ("post", "/v1/environments/{name}/deployments") => Some(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["service", "version"],
            "properties": {
                "service": service,
                "version": text,
                "image": {"oneOf": [text, {"type": "null"}]},
                "env": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                "strategy": {"type": ["string", "null"], "enum": ["canary", "blue_green", "rolling", null]},
                "canary": {"type": ["object", "null"], "description": "Fields of the canary policy to change (steps, interval_seconds, min_requests, thresholds)"},
            }
        })),
        ("post", "/v1/environments/{name}/restores") => Some(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["target"],
            "oneOf": [{"required": ["backup_id"]}, {"required": ["point_in_time"]}],
            "properties": {
                "backup_id": {"type": "string", "minLength": 1, "description": "One of GET …/backups"},
                "point_in_time": {"type": "string", "format": "date-time", "description": "Inside the restorable window"},
                "target": {"oneOf": [
                    {"type": "string", "enum": ["in_place"]},
                    {"type": "object", "additionalProperties": false, "required": ["new_environment"],
                     "properties": {"new_environment": name_schema()}},
                ]},
            }
        })),
        ("post", "/v1/promotions") => Some(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["from", "to"],
            "properties": {
                "from": name_schema(),
                "to": name_schema(),
                "services": {"type": ["array", "null"], "minItems": 1, "uniqueItems": true, "items": service},
            }
        })),
        _ => None,
    }
}

fn tighten_operation(path: &str, method: &str, operation: &mut Map<String, Value>) {
    if let Some(schema) = body_schema(method, path)
        && let Some(content) = operation
            .get_mut("requestBody")
            .and_then(|b| b.get_mut("content"))
            .and_then(Value::as_object_mut)
    {
        for media in content.values_mut() {
            media["schema"] = schema.clone();
        }
    }
    let public = path == "/health";
    let has_body = operation.contains_key("requestBody");
    let mut has_path_parameter = false;
    let mut takes_idempotency_key = false;
    if let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for parameter in parameters.iter_mut() {
            has_path_parameter |= parameter["in"] == "path";
            takes_idempotency_key |= parameter["name"] == "Idempotency-Key";
            tighten_parameter(path, parameter);
        }
    }
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    let mut declare = |status: &str, why: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(why));
    };
    if !public {
        // Unknown query parameters and malformed headers are refused on every route.
        declare("400", "A malformed parameter, header or body");
        declare("401", "No token, or not a valid one");
    }
    if !public && method != "get" {
        declare("403", "The caller's role is too low for this");
    }
    if has_path_parameter {
        declare("404", "Nothing by that name or id");
    }
    if has_body {
        declare("413", "Body too large");
        declare("415", "Not a media type this route takes");
        declare("422", "Invalid fields, each named");
    }
    if takes_idempotency_key {
        declare(
            "422",
            "Idempotency-Key already used for a different request",
        );
    }
}

fn tighten_parameter(path: &str, parameter: &mut Value) {
    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
    let location = parameter["in"].as_str().unwrap_or_default().to_owned();
    let schema = match (location.as_str(), name.as_str()) {
        ("path", "name") => Some(json!({
            "type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NAME_PATTERN
        })),
        ("path", "id") => Some(json!({"type": "string", "pattern": ID_PATTERN})),
        ("query", "environment") => Some(name_schema()),
        ("query", "limit") => {
            Some(json!({"type": "integer", "minimum": 1, "maximum": crate::routes::MAX_PAGE_SIZE}))
        }
        ("query", "cursor") => {
            Some(json!({"type": "string", "minLength": 2, "pattern": CURSOR_PATTERN}))
        }
        ("header", "Idempotency-Key") => Some(json!({
            "type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN
        })),
        ("header", "If-Match") => Some(json!({"type": "string", "pattern": IF_MATCH_PATTERN})),
        ("query", "status") if path == "/v1/approvals" => {
            Some(json!({"type": "string", "enum": ["pending"]}))
        }
        ("query", "status") => Some(json!({"$ref": "#/components/schemas/OperationStatus"})),
        ("query", "kind") => Some(json!({"$ref": "#/components/schemas/OperationKind"})),
        _ => None,
    };
    if let Some(schema) = schema {
        parameter["schema"] = schema;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// A pattern without its anchors, as proptest generates from it (whole strings anyway).
    fn unanchored(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
        proptest::string::string_regex(pattern.trim_start_matches('^').trim_end_matches('$'))
            .expect("regex")
    }

    proptest! {
        /// Whatever the document's patterns admit, the parsers accept: a client generated
        /// from the document never sends what the server refuses as malformed.
        #[test]
        fn what_the_patterns_admit_the_parsers_accept(
            name in unanchored(NAME_PATTERN),
            id in unanchored(ID_PATTERN),
            cursor in unanchored(CURSOR_PATTERN),
        ) {
            if name.len() <= MAX_NAME_LEN {
                prop_assert!(envplane_domain::EnvName::parse(&name).is_ok(), "{}", name);
            }
            prop_assert!(ulid::Ulid::from_string(&id).is_ok(), "{}", id);
            // The document adds minLength 2 to the pattern.
            if cursor.len() >= 2 {
                prop_assert!(envplane_store::decode_cursor(&cursor).is_ok(), "{}", cursor);
            }
        }
    }

    #[test]
    fn what_the_parsers_refuse_the_patterns_do_not_admit() {
        for bad in ["", "0", "-a", "a-", "A", "a_b"] {
            assert!(envplane_domain::EnvName::parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "",
            "01JABCDEFGHJKMNPQRSTVWXYZ",
            "01JABCDEFGHJKMNPQRSTVWXYZ00",
        ] {
            assert!(ulid::Ulid::from_string(bad).is_err(), "{bad}");
        }
        assert!(envplane_store::decode_cursor("%%%").is_err());
    }

    #[test]
    fn every_route_but_health_declares_its_auth_problems() {
        let document: Value = serde_json::from_str(&crate::openapi_json()).expect("json");
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                let responses = &operation["responses"];
                let public = path == "/health";
                assert_eq!(responses.get("401").is_some(), !public, "{method} {path}");
                if path.contains('{') {
                    assert!(responses.get("404").is_some(), "{method} {path}");
                }
            }
        }
    }
}
