//! Paths and payload templates: InputPath/OutputPath/`.$` selection with a maintained JSONPath
//! implementation, ResultPath writes, `Parameters`-style templates and intrinsic functions.

use serde_json::{Map, Value, json};
use serde_json_path::JsonPath;

/// A failure while processing paths or templates: the state fails with `States.Runtime`
/// (or `States.ResultPathMatchFailure` for ResultPath), as in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// Error name.
    pub error: &'static str,
    /// What failed.
    pub cause: String,
}

fn runtime(cause: impl Into<String>) -> PathError {
    PathError {
        error: "States.Runtime",
        cause: cause.into(),
    }
}

/// What paths can read besides a state's input: the context object (`$$…`) and the
/// variables in scope (`$name…`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The context object.
    pub context: &'a Value,
    /// The workflow variables visible to the state.
    pub variables: &'a Map<String, Value>,
}

/// The variable a path starts with (`$order.items[0]` → `order`, `.items[0]`), if it names one:
/// `$` followed by a letter or `_`.
fn variable_reference(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('$')?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// Selects one value with a path: `$…` from `input`, `$$…` from the context object, `$name…`
/// from the variable `name`.
pub fn select(path: &str, input: &Value, scope: &Scope) -> Result<Value, PathError> {
    let (document, path) = match (path.strip_prefix("$$"), variable_reference(path)) {
        (Some(rest), _) => (scope.context, format!("${rest}")),
        (None, Some((name, rest))) => {
            let value = scope
                .variables
                .get(name)
                .ok_or_else(|| runtime(format!("the variable ${name} is not defined here")))?;
            (value, format!("${rest}"))
        }
        (None, None) => (input, path.to_owned()),
    };
    let parsed =
        JsonPath::parse(&path).map_err(|e| runtime(format!("invalid path {path:?}: {e}")))?;
    let nodes = parsed.query(document).all();
    // A definite path yields one node; a query with wildcards or filters yields an array.
    let definite = !path.contains('*')
        && !path.contains("..")
        && !path.contains("?(")
        && !path.contains(':')
        && !path.contains(',');
    match (definite, nodes.as_slice()) {
        (true, [one]) => Ok((*one).clone()),
        (true, []) => Err(runtime(format!(
            "the path {path:?} matched nothing in {}",
            abbreviate(document)
        ))),
        (true, _) => Err(runtime(format!(
            "the path {path:?} matched more than one value"
        ))),
        (false, many) => Ok(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

/// At most 200 bytes of a document for an error message, cut on a character boundary (a
/// multibyte character at the cut must not panic: with `panic = "abort"` it would end `serve`).
fn abbreviate(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 200 {
        return text;
    }
    let cut = (0..=200)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// Applies InputPath/OutputPath semantics: `None` (JSON null) gives `{}`.
pub fn filter(path: Option<&str>, value: &Value, scope: &Scope) -> Result<Value, PathError> {
    match path {
        None => Ok(json!({})),
        Some("$") => Ok(value.clone()),
        Some(path) => select(path, value, scope),
    }
}

/// Applies ResultPath: `None` keeps the input, `$` replaces it, `$.a.b` sets that field
/// (creating objects on the way).
pub fn place(result_path: Option<&str>, input: &Value, result: Value) -> Result<Value, PathError> {
    let Some(path) = result_path else {
        return Ok(input.clone());
    };
    if path == "$" {
        return Ok(result);
    }
    let keys = reference_path(path).map_err(|cause| PathError {
        error: "States.ResultPathMatchFailure",
        cause,
    })?;
    let mut output = input.clone();
    set(&mut output, &keys, result, path)?;
    Ok(output)
}

fn set(node: &mut Value, keys: &[String], value: Value, path: &str) -> Result<(), PathError> {
    let Some((first, rest)) = keys.split_first() else {
        *node = value;
        return Ok(());
    };
    let Value::Object(map) = node else {
        return Err(PathError {
            error: "States.ResultPathMatchFailure",
            cause: format!("ResultPath {path:?} crosses a value that is not an object"),
        });
    };
    let child = map.entry(first.clone()).or_insert_with(|| {
        if rest.is_empty() {
            Value::Null
        } else {
            json!({})
        }
    });
    set(child, rest, value, path)
}

/// Splits a reference path (`$.a.b`, `$['a']['b']`) into field names.
fn reference_path(path: &str) -> Result<Vec<String>, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("ResultPath {path:?} must start with $"))?;
    let mut keys = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let key: String =
                    std::iter::from_fn(|| chars.next_if(|c| *c != '.' && *c != '[')).collect();
                if key.is_empty() {
                    return Err(format!("ResultPath {path:?} has an empty field name"));
                }
                keys.push(key);
            }
            '[' => {
                let quote = chars
                    .next()
                    .filter(|q| *q == '\'' || *q == '"')
                    .ok_or_else(|| {
                        format!(
                            "ResultPath {path:?}: only quoted field names may stand in brackets"
                        )
                    })?;
                let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != quote)).collect();
                if chars.next() != Some(quote) || chars.next() != Some(']') {
                    return Err(format!("ResultPath {path:?} has an unclosed bracket"));
                }
                keys.push(key);
            }
            other => return Err(format!("ResultPath {path:?}: unexpected {other:?}")),
        }
    }
    Ok(keys)
}

/// Builds a payload from a template: keys ending in `.$` take the value of a path or an
/// intrinsic function; other values are copied (objects recursively).
pub fn template(template: &Value, input: &Value, scope: &Scope) -> Result<Value, PathError> {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(name) => {
                        let expression = value.as_str().ok_or_else(|| {
                            runtime(format!("the value of {key:?} must be a path string"))
                        })?;
                        out.insert(name.to_owned(), evaluate(expression, input, scope)?);
                    }
                    None => {
                        out.insert(key.clone(), template_value(value, input, scope)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        other => template_value(other, input, scope),
    }
}

fn template_value(value: &Value, input: &Value, scope: &Scope) -> Result<Value, PathError> {
    match value {
        Value::Object(_) => template(value, input, scope),
        Value::Array(items) => items
            .iter()
            .map(|v| template_value(v, input, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// A path or an intrinsic function call.
fn evaluate(expression: &str, input: &Value, scope: &Scope) -> Result<Value, PathError> {
    let expression = expression.trim();
    if expression.starts_with("States.") {
        let mut parser = Parser {
            text: expression,
            pos: 0,
        };
        let value = parser.call(input, scope)?;
        parser.skip_ws();
        if parser.pos != expression.len() {
            return Err(runtime(format!("unexpected text after {expression:?}")));
        }
        return Ok(value);
    }
    select(expression, input, scope)
}

/// Every intrinsic function of the Amazon States Language (all 18).
pub const INTRINSICS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
];

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        // By whole characters: Unicode whitespace (a no-break space) is more than one byte.
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn call(&mut self, input: &Value, scope: &Scope) -> Result<Value, PathError> {
        let name_end = self.text[self.pos..]
            .find('(')
            .map(|i| self.pos + i)
            .ok_or_else(|| runtime("an intrinsic function needs (arguments)"))?;
        let name = self.text[self.pos..name_end].trim().to_owned();
        self.pos = name_end + 1;
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            if self.text[self.pos..].starts_with(')') {
                self.pos += 1;
                break;
            }
            args.push(self.argument(input, scope)?);
            self.skip_ws();
            if self.text[self.pos..].starts_with(',') {
                self.pos += 1;
            } else if !self.text[self.pos..].starts_with(')') {
                return Err(runtime(format!("expected , or ) in {:?}", self.text)));
            }
        }
        apply(&name, args)
    }

    fn argument(&mut self, input: &Value, scope: &Scope) -> Result<Value, PathError> {
        let rest = &self.text[self.pos..];
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '\'' => {
                        self.pos += i + 2;
                        return Ok(Value::String(out));
                    }
                    other => out.push(other),
                }
            }
            return Err(runtime("unterminated string in an intrinsic function"));
        }
        if rest.starts_with("States.") {
            return self.call(input, scope);
        }
        let end = rest.find([',', ')']).unwrap_or(rest.len());
        let token = rest[..end].trim();
        self.pos += end;
        if token.starts_with('$') {
            return select(token, input, scope);
        }
        serde_json::from_str(token)
            .map_err(|_| runtime(format!("{token:?} is not a literal, path or function")))
    }
}

fn apply(name: &str, args: Vec<Value>) -> Result<Value, PathError> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let number = |v: &Value| {
        v.as_i64()
            .ok_or_else(|| runtime(format!("{name}: {v} is not an integer")))
    };
    match (name, args.as_slice()) {
        ("States.Format", [format, rest @ ..]) => {
            let format = format
                .as_str()
                .ok_or_else(|| runtime("States.Format: the first argument must be a string"))?;
            let pieces: Vec<&str> = format.split("{}").collect();
            if pieces.len() != rest.len() + 1 {
                return Err(runtime(format!(
                    "States.Format: {} placeholders for {} values",
                    pieces.len() - 1,
                    rest.len()
                )));
            }
            let mut out = pieces[0].to_owned();
            for (value, piece) in rest.iter().zip(&pieces[1..]) {
                out.push_str(&text(value));
                out.push_str(piece);
            }
            Ok(Value::String(out))
        }
        ("States.StringToJson", [Value::String(s)]) => {
            serde_json::from_str(s).map_err(|e| runtime(format!("States.StringToJson: {e}")))
        }
        ("States.JsonToString", [value]) => Ok(Value::String(value.to_string())),
        ("States.Array", values) => Ok(Value::Array(values.to_vec())),
        ("States.ArrayLength", [Value::Array(items)]) => Ok(json!(items.len())),
        ("States.ArrayGetItem", [Value::Array(items), index]) => {
            let index = usize::try_from(number(index)?)
                .map_err(|_| runtime("States.ArrayGetItem: negative index"))?;
            items
                .get(index)
                .cloned()
                .ok_or_else(|| runtime(format!("States.ArrayGetItem: no item {index}")))
        }
        ("States.MathAdd", [a, b]) => Ok(json!(number(a)? + number(b)?)),
        ("States.JsonMerge", [Value::Object(a), Value::Object(b), Value::Bool(false)]) => {
            let mut merged = a.clone();
            merged.extend(b.clone());
            Ok(Value::Object(merged))
        }
        (
            "States.ArrayPartition"
            | "States.ArrayContains"
            | "States.ArrayRange"
            | "States.ArrayUnique"
            | "States.Base64Encode"
            | "States.Base64Decode"
            | "States.Hash"
            | "States.MathRandom"
            | "States.StringSplit"
            | "States.UUID",
            _,
        ) => crate::intrinsics::apply(name, &args).map_err(runtime),
        _ if !INTRINSICS.contains(&name) => Err(runtime(format!(
            "intrinsic function {name} is not supported"
        ))),
        _ => Err(runtime(format!(
            "{name}: wrong arguments {}",
            Value::Array(args.clone())
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// No context and no variables.
    pub(crate) fn bare() -> Scope<'static> {
        static EMPTY: std::sync::LazyLock<(Value, Map<String, Value>)> =
            std::sync::LazyLock::new(|| (json!({}), Map::new()));
        Scope {
            context: &EMPTY.0,
            variables: &EMPTY.1,
        }
    }

    #[test]
    fn unicode_whitespace_between_intrinsic_arguments_is_skipped_whole() {
        // Found by the property test (tests/workflow/fuzz.rs): a no-break space is two bytes.
        let template = json!({ "sum.$": "States.MathAdd(\u{a0}1,\u{3000}2\u{a0})" });
        assert_eq!(
            super::template(&template, &json!({}), &bare()),
            Ok(json!({ "sum": 3 }))
        );
    }

    #[test]
    fn a_multibyte_character_at_the_cut_does_not_panic() {
        for pad in 0..4 {
            let document = json!({ "x": format!("{}{}", "a".repeat(190 + pad), "é€𝄞".repeat(20)) });
            let short = abbreviate(&document);
            assert!(short.len() <= 200 + "…".len(), "{}", short.len());
            assert!(short.ends_with('…'));
        }
        let missing = select("$.nowhere", &json!({ "é": "€".repeat(300) }), &bare());
        assert!(missing.is_err());
    }

    #[test]
    fn selection_and_placement_follow_the_asl_rules() {
        let input = json!({"a": {"b": [1, 2, 3]}, "c": "x"});
        let context = json!({"Execution": {"Id": "e1"}});
        let variables = Map::from_iter([("order".to_owned(), json!({"items": ["a", "b"]}))]);
        let ctx = Scope {
            context: &context,
            variables: &variables,
        };
        assert_eq!(select("$.a.b[1]", &input, &ctx), Ok(json!(2)));
        assert_eq!(select("$$.Execution.Id", &input, &ctx), Ok(json!("e1")));
        assert_eq!(select("$order.items[1]", &input, &ctx), Ok(json!("b")));
        assert_eq!(
            select("$order", &input, &ctx),
            Ok(json!({"items": ["a", "b"]}))
        );
        assert_eq!(
            select("$nothing.x", &input, &ctx).map_err(|e| e.error),
            Err("States.Runtime")
        );
        assert_eq!(select("$.a.b[*]", &input, &ctx), Ok(json!([1, 2, 3])));
        assert_eq!(
            select("$.nope", &input, &ctx).map_err(|e| e.error),
            Err("States.Runtime")
        );
        assert_eq!(filter(None, &input, &ctx), Ok(json!({})));
        assert_eq!(
            place(Some("$.r.s"), &input, json!(9)).map(|v| v["r"]["s"].clone()),
            Ok(json!(9))
        );
        assert_eq!(place(None, &input, json!(9)), Ok(input.clone()));
        assert_eq!(place(Some("$"), &input, json!(9)), Ok(json!(9)));
        assert_eq!(
            place(Some("$.c.d"), &input, json!(9)).map_err(|e| e.error),
            Err("States.ResultPathMatchFailure")
        );
        assert_eq!(
            place(Some("$['odd key']"), &json!({}), json!(1)),
            Ok(json!({"odd key": 1}))
        );
    }

    #[test]
    fn templates_resolve_paths_and_intrinsics() {
        let input = json!({"env": "dev", "n": 2, "items": [1, 2], "doc": "{\"k\":1}"});
        let t = json!({
            "name.$": "$.env",
            "fixed": {"nested.$": "$.n", "keep": [1, {"x.$": "$.env"}]},
            "label.$": "States.Format('envplane-{}-{}', $.env, $.n)",
            "next.$": "States.MathAdd($.n, 1)",
            "count.$": "States.ArrayLength($.items)",
            "parsed.$": "States.StringToJson($.doc)",
            "arr.$": "States.Array($.env, 'it\\'s', 3)",
        });
        let out = template(&t, &input, &bare()).expect("valid");
        assert_eq!(out["name"], "dev");
        assert_eq!(
            out["fixed"],
            json!({"nested": 2, "keep": [1, {"x": "dev"}]})
        );
        assert_eq!(out["label"], "envplane-dev-2");
        assert_eq!(out["next"], 3);
        assert_eq!(out["count"], 2);
        assert_eq!(out["parsed"], json!({"k": 1}));
        assert_eq!(out["arr"], json!(["dev", "it's", 3]));
        assert_eq!(
            template(
                &json!({"x.$": "States.Hash($.env, 'SHA-1')"}),
                &input,
                &bare()
            )
            .map(|v| v["x"].as_str().map(str::len)),
            Ok(Some(40))
        );
        assert!(template(&json!({"x.$": "States.Nope($.env)"}), &input, &bare()).is_err());
    }
}
