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
        let value = serde_json::from_slice(&bytes).map_err(|e| {
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
