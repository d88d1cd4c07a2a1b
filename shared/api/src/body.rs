//! Request bodies read the strict way: declared media type, bounded size, JSON
//! errors with their position, all reported as problems rather than framework defaults.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use crate::problem::ApiError;

/// Largest request body accepted. Specs are small; anything bigger is a mistake or an attack.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON request body (`application/json`, or `application/merge-patch+json` for PATCH).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let accepted = if req.method() == axum::http::Method::PATCH {
            "application/merge-patch+json or application/json"
        } else {
            "application/json"
        };
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        match media_type.as_deref() {
            Some("application/json") => {}
            Some("application/merge-patch+json") if req.method() == axum::http::Method::PATCH => {}
            _ => return Err(ApiError::UnsupportedMediaType { accepted }),
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::bad_request("body", rejection.body_text())
            }
        })?;
        let value = serde_json::from_slice::<Strict>(&bytes)
            .map(|s| s.0)
            .map_err(|e| {
                ApiError::bad_request(
                    "body",
                    format!(
                        "malformed JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )
            })?;
        Ok(JsonBody(value))
    }
}

/// A JSON value read strictly: an object that names a key twice is refused (serde_json would
/// keep the last one silently, and two readers of the same body could disagree on it).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_twice_is_refused_anywhere_and_values_read_as_json() {
        let twice = serde_json::from_str::<Strict>(r#"{"name": "a", "name": "b"}"#);
        assert!(twice.is_err_and(|e| e.to_string().contains("\"name\" appears twice")));
        let nested = serde_json::from_str::<Strict>(r#"{"a": [{"x": 1, "x": 2}]}"#);
        assert!(nested.is_err());
        let text = r#"{"a": [1, -2, 3.5, "s", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let strict = serde_json::from_str::<Strict>(text).expect("valid").0;
        assert_eq!(strict, serde_json::from_str::<Value>(text).expect("valid"));
    }
}
