//! Choice rules.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::paths::{PathError, Scope, select};

const STRING_OPS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
];
const NUMERIC_OPS: &[&str] = &[
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
];
const TIMESTAMP_OPS: &[&str] = &[
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
];
const TYPE_TESTS: &[&str] = &[
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

fn comparison(rule: &serde_json::Map<String, Value>) -> Option<(&String, &Value)> {
    rule.iter()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment" | "Assign"))
}

fn known_operator(op: &str) -> bool {
    let base = op.strip_suffix("Path").unwrap_or(op);
    STRING_OPS.contains(&base)
        || NUMERIC_OPS.contains(&base)
        || TIMESTAMP_OPS.contains(&base)
        || base == "BooleanEquals"
        || op == "StringMatches"
        || TYPE_TESTS.contains(&op)
}

/// Checks a rule's shape when the definition is loaded.
pub fn check_rule(rule: &Value) -> Result<(), String> {
    let Value::Object(fields) = rule else {
        return Err("a rule must be an object".into());
    };
    for combinator in ["And", "Or"] {
        if let Some(rules) = fields.get(combinator) {
            let rules = rules
                .as_array()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("{combinator} needs a non-empty list"))?;
            return rules.iter().try_for_each(check_rule);
        }
    }
    if let Some(inner) = fields.get("Not") {
        return check_rule(inner);
    }
    if !fields.get("Variable").is_some_and(Value::is_string) {
        return Err("a comparison needs Variable".into());
    }
    let (op, _) = comparison(fields).ok_or("a comparison needs an operator")?;
    if !known_operator(op) {
        return Err(format!("comparison operator {op} is not supported"));
    }
    Ok(())
}

/// Whether `rule` holds for `input`.
pub fn matches(rule: &Value, input: &Value, scope: &Scope) -> Result<bool, PathError> {
    let Value::Object(fields) = rule else {
        return Ok(false);
    };
    if let Some(Value::Array(rules)) = fields.get("And") {
        for r in rules {
            if !matches(r, input, scope)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(Value::Array(rules)) = fields.get("Or") {
        for r in rules {
            if matches(r, input, scope)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(inner) = fields.get("Not") {
        return Ok(!matches(inner, input, scope)?);
    }
    let variable = fields
        .get("Variable")
        .and_then(Value::as_str)
        .unwrap_or("$");
    let Some((op, expected)) = comparison(fields) else {
        return Ok(false);
    };
    let actual = select(variable, input, scope);
    if op == "IsPresent" {
        return Ok(actual.is_ok() == expected.as_bool().unwrap_or(false));
    }
    let actual = actual?;
    if TYPE_TESTS.contains(&op.as_str()) {
        let is = match op.as_str() {
            "IsNull" => actual.is_null(),
            "IsNumeric" => actual.is_number(),
            "IsString" => actual.is_string(),
            "IsBoolean" => actual.is_boolean(),
            _ => actual
                .as_str()
                .is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok()),
        };
        return Ok(is == expected.as_bool().unwrap_or(false));
    }
    let (base, expected) = match op.strip_suffix("Path") {
        Some(base) => (
            base,
            select(expected.as_str().unwrap_or("$"), input, scope)?,
        ),
        None => (op.as_str(), expected.clone()),
    };
    Ok(compare(base, &actual, &expected))
}

fn ordering_holds(op: &str, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    if op.ends_with("LessThanEquals") {
        ordering != Greater
    } else if op.ends_with("GreaterThanEquals") {
        ordering != Less
    } else if op.ends_with("LessThan") {
        ordering == Less
    } else if op.ends_with("GreaterThan") {
        ordering == Greater
    } else {
        ordering == Equal
    }
}

fn compare(op: &str, actual: &Value, expected: &Value) -> bool {
    if op == "BooleanEquals" {
        return matches!((actual, expected), (Value::Bool(a), Value::Bool(b)) if a == b);
    }
    if op == "StringMatches" {
        return matches!((actual, expected), (Value::String(a), Value::String(p)) if glob(p, a));
    }
    if op.starts_with("String") {
        return match (actual, expected) {
            (Value::String(a), Value::String(b)) => ordering_holds(op, a.as_str().cmp(b.as_str())),
            _ => false,
        };
    }
    if op.starts_with("Numeric") {
        return match (actual.as_f64(), expected.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| ordering_holds(op, o)),
            _ => false,
        };
    }
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    };
    match (parse(actual), parse(expected)) {
        (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
        _ => false,
    }
}

/// `*` matches any run of characters; `\*` a literal star.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => parts
                .last_mut()
                .into_iter()
                .for_each(|p| p.extend(chars.next())),
            '*' => parts.push(String::new()),
            other => parts.last_mut().into_iter().for_each(|p| p.push(other)),
        }
    }
    let (first, rest) = parts
        .split_first()
        .map(|(f, r)| (f.as_str(), r))
        .unwrap_or(("", &[]));
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    if rest.is_empty() {
        return remaining.is_empty();
    }
    for (i, part) in rest.iter().enumerate() {
        if i + 1 == rest.len() {
            return remaining.ends_with(part.as_str());
        }
        match remaining.find(part.as_str()) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> bool {
        matches(&rule, &input, &crate::paths::tests::bare()).expect("evaluates")
    }

    #[test]
    fn comparisons() {
        let input = json!({"s": "ACTIVE", "n": 3, "b": true, "t": "2026-11-24T10:00:00Z", "m": 5});
        assert!(holds(
            json!({"Variable": "$.s", "StringEquals": "ACTIVE"}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.n", "StringEquals": "3"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.n", "NumericLessThan": 5}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.n", "NumericLessThanEquals": 3}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.n", "NumericGreaterThan": 3}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.n", "NumericLessThanPath": "$.m"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.b", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.t", "TimestampGreaterThan": "2026-01-01T00:00:00Z"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.s", "StringMatches": "ACT*"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.s", "StringMatches": "*TIV*"}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.s", "StringMatches": "*X"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.nope", "IsPresent": false}),
            input.clone()
        ));
        assert!(holds(
            json!({"Not": {"Variable": "$.s", "StringEquals": "FAILED"}}),
            input.clone()
        ));
        assert!(holds(
            json!({"And": [{"Variable": "$.n", "IsNumeric": true}, {"Or": [{"Variable": "$.b", "BooleanEquals": false}, {"Variable": "$.s", "StringGreaterThanEquals": "A"}]}]}),
            input.clone()
        ));
        assert!(
            matches(
                &json!({"Variable": "$.nope", "StringEquals": "x"}),
                &input,
                &crate::paths::tests::bare()
            )
            .is_err()
        );
    }

    #[test]
    fn shapes_are_checked() {
        assert!(check_rule(&json!({"Variable": "$.a", "StringEquals": "x", "Next": "N"})).is_ok());
        assert!(check_rule(&json!({"Variable": "$.a", "StringSounds": "x"})).is_err());
        assert!(check_rule(&json!({"And": []})).is_err());
        assert!(check_rule(&json!({"StringEquals": "x"})).is_err());
    }
}
