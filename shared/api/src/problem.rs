//! The one mapping from errors to HTTP: RFC 9457 `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use envplane_domain::{FieldError, Role, ValidationErrors};
use envplane_store::{CommitError, StoreError};
use serde::Serialize;

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every way a request can fail, each with its status and problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fields of the request are invalid (422).
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The request is malformed: bad JSON, a bad query parameter or header (400).
    #[error("{detail}")]
    BadRequest {
        /// The field, parameter or header at fault.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// The body's media type is not accepted (415).
    #[error("unsupported media type")]
    UnsupportedMediaType {
        /// Media types accepted.
        accepted: &'static str,
    },
    /// The body is larger than accepted (413).
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// Largest body accepted.
        limit: usize,
    },
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role is too low, or the caller has no role (403).
    #[error("{detail}")]
    Forbidden {
        /// What is missing.
        detail: String,
    },
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the resource's state (409).
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// The operation holding the environment, if that is the conflict.
        operation: Option<String>,
    },
    /// `If-Match` is required (428).
    #[error("this request must carry If-Match with the environment's ETag")]
    PreconditionRequired,
    /// `If-Match` does not match the current version (412).
    #[error(
        "the environment has changed: If-Match {given} does not match the current ETag {current}"
    )]
    PreconditionFailed {
        /// The ETag given.
        given: String,
        /// The current ETag.
        current: String,
    },
    /// The idempotency key was used for a different request (422).
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// The store is throttling (503).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed on our side (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid(FieldError::new(field, detail).into())
    }

    /// A 403 for a role below what is required.
    pub fn role_too_low(have: Role, required: Role) -> Self {
        ApiError::Forbidden {
            detail: format!("this needs the {required} role or above; the caller has {have}"),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request is invalid",
            ),
            BadRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request is malformed",
            ),
            UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The request body is too large",
            ),
            Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "If-Match required",
            ),
            PreconditionFailed { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "The environment has changed",
            ),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ApiError::Invalid(errors) => errors.0.clone(),
            ApiError::BadRequest { field, detail } => {
                vec![FieldError::new(field.clone(), detail.clone())]
            }
            ApiError::UnsupportedMediaType { accepted } => {
                vec![FieldError::new(
                    "Content-Type",
                    format!("must be {accepted}"),
                )]
            }
            ApiError::PayloadTooLarge { limit } => vec![FieldError::new(
                "body",
                format!("must be at most {limit} bytes"),
            )],
            ApiError::PreconditionRequired | ApiError::PreconditionFailed { .. } => {
                vec![FieldError::new("If-Match", self.to_string())]
            }
            ApiError::IdempotencyKeyReused => {
                vec![FieldError::new("Idempotency-Key", self.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// An RFC 9457 problem document with envplane's extension members.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The first field at fault, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The operation that holds the environment, for conflicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let errors = self.field_errors();
        let problem = Problem {
            kind: format!("urn:envplane:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            field: errors.first().map(|e| e.field.clone()),
            errors,
            operation: match &self {
                ApiError::Conflict { operation, .. } => operation.clone(),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::Unauthenticated(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(value: ValidationErrors) -> Self {
        ApiError::Invalid(value)
    }
}

impl From<StoreError> for ApiError {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::Throttled(m) => ApiError::Unavailable(m),
            StoreError::InvalidCursor => {
                ApiError::bad_request("cursor", "not a cursor this API issued")
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<CommitError> for ApiError {
    fn from(value: CommitError) -> Self {
        match value {
            CommitError::Store(e) => e.into(),
            CommitError::AlreadyExists => ApiError::Conflict { detail: "an environment with this name already exists".into(), operation: None },
            CommitError::VersionConflict | CommitError::Contended => {
                ApiError::Conflict { detail: "the environment changed while this request was applied; read it again and retry".into(), operation: None }
            }
            CommitError::CidrTaken(cidr) => ApiError::invalid("network.vpc_cidr", format!("{cidr} is already used by another environment")),
            CommitError::IdempotencyKeyUsed => ApiError::IdempotencyKeyReused,
        }
    }
}

/// Any error answer that is not already a problem (an extractor's own rejection, such as a path
/// that is not UTF-8 once percent-decoded) becomes one, with the framework's text as its
/// detail: every error the API gives is `application/problem+json`.
pub(crate) async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    // axum's path extractor says "Invalid URL: …" for a path it cannot decode.
    let field = if detail.starts_with("Invalid URL") {
        "path"
    } else {
        "request"
    };
    let error = match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(field, detail),
        StatusCode::NOT_FOUND => ApiError::NotFound(detail),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType {
            accepted: "application/json",
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: crate::body::BODY_LIMIT,
        },
        s if s.is_server_error() => ApiError::Internal(detail),
        _ => ApiError::bad_request(field, detail),
    };
    let mut answer = error.into_response();
    *answer.status_mut() = status;
    answer
}
