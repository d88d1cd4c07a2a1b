//! Who is calling: from API Gateway's authorizer context in Lambda, from bearer tokens locally.

use std::collections::HashMap;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use envplane_domain::audit::sha256_hex;
use envplane_domain::{Caller, Role};
use lambda_http::request::RequestContext;
use serde::Deserialize;

use crate::AppState;
use crate::problem::ApiError;

/// How callers are identified.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Behind API Gateway: the JWT's subject and groups, or the IAM principal, mapped to a role.
    ApiGateway {
        /// Roles of IAM principals (user or role ARNs), for IAM-authorized routes.
        iam_roles: HashMap<String, Role>,
        /// The prefix a group must carry to grant a role (`envplane-operator`): a bare `admin`
        /// group of some other system grants nothing.
        group_prefix: String,
    },
    /// Local: `Authorization: Bearer <token>`, looked up by the token's SHA-256.
    Tokens(HashMap<String, Caller>),
    /// Local single-user mode: every request is this caller. Only by explicit choice.
    Dev(Caller),
}

/// A tokens file: `{"tokens": [{"principal": "alice", "role": "operator", "sha256": "…"}]}`.
/// Only digests are stored, so the file does not hold usable secrets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    role: String,
    sha256: String,
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a tokens file.
    #[error("{path} is not a tokens file: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl Authenticator {
    /// Loads a tokens file for local mode.
    pub fn from_tokens_file(path: &Path) -> Result<Self, TokensFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_tokens_json(&text).map_err(|detail| TokensFileError::Invalid {
            path: shown,
            detail,
        })
    }

    /// Parses the text of a tokens file.
    pub fn from_tokens_json(text: &str) -> Result<Self, String> {
        let file: TokensFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut tokens = HashMap::new();
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let role = entry
                .role
                .parse::<Role>()
                .map_err(|e| format!("tokens[{i}].role: {e}"))?;
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("tokens[{i}].sha256 must be 64 hex digits"));
            }
            tokens.insert(
                entry.sha256.to_ascii_lowercase(),
                Caller {
                    principal: entry.principal,
                    role,
                },
            );
        }
        Ok(Authenticator::Tokens(tokens))
    }

    /// A tokens-file line for a new token: what `envplane token` prints.
    pub fn token_entry(principal: &str, role: Role, token: &str) -> serde_json::Value {
        serde_json::json!({ "principal": principal, "role": role, "sha256": sha256_hex(token.as_bytes()) })
    }

    fn authenticate(&self, parts: &Parts) -> Result<Caller, ApiError> {
        match self {
            Authenticator::Dev(caller) => Ok(caller.clone()),
            Authenticator::Tokens(tokens) => {
                let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
                    ApiError::Unauthenticated("send Authorization: Bearer <token>".into())
                })?;
                let token = header
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        ApiError::Unauthenticated(
                            "the Authorization header must be Bearer <token>".into(),
                        )
                    })?;
                tokens
                    .get(&sha256_hex(token.as_bytes()))
                    .cloned()
                    .ok_or_else(|| ApiError::Unauthenticated("unknown or revoked token".into()))
            }
            Authenticator::ApiGateway {
                iam_roles,
                group_prefix,
            } => from_request_context(
                parts.extensions.get::<RequestContext>(),
                iam_roles,
                group_prefix,
            ),
        }
    }
}

/// The group prefix when none is configured.
pub const DEFAULT_GROUP_PREFIX: &str = "envplane-";

/// The role a JWT group grants: only `{prefix}{role}` does.
fn role_of_group(group: &str, prefix: &str) -> Option<Role> {
    group.strip_prefix(prefix)?.parse().ok()
}

/// The role behind an assumed-role session (`arn:aws:sts::123:assumed-role/ci/run-42` →
/// `arn:aws:iam::123:role/ci`), so that the map names roles, not sessions. The session stays
/// the principal: the audit says which run acted.
fn role_arn_of_session(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (_, partition, service, _, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    (service == "sts" && !role.is_empty())
        .then(|| format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// Refuses a request that API Gateway did not authorize with IAM: the `/iam` routes are for
/// signed callers only.
pub async fn require_iam_principal(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let signed = matches!(
        request.extensions().get::<RequestContext>(),
        Some(RequestContext::ApiGatewayV2(c))
            if c.authorizer.as_ref().and_then(|a| a.iam.as_ref()).is_some()
    );
    if signed {
        next.run(request).await
    } else {
        ApiError::Unauthenticated("the /iam routes need a request signed with IAM (SigV4)".into())
            .into_response()
    }
}

/// Reads the caller from API Gateway's authorizer context.
fn from_request_context(
    context: Option<&RequestContext>,
    iam_roles: &HashMap<String, Role>,
    group_prefix: &str,
) -> Result<Caller, ApiError> {
    let Some(RequestContext::ApiGatewayV2(context)) = context else {
        return Err(ApiError::Unauthenticated(
            "no API Gateway authorizer context on the request".into(),
        ));
    };
    let authorizer = context.authorizer.as_ref();
    if let Some(jwt) = authorizer.and_then(|a| a.jwt.as_ref()) {
        let claims = &jwt.claims;
        // The subject is the identity: stable, unlike an email the user may change. The email
        // is only shown, on the request's span.
        let principal = claims
            .get("sub")
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated("the token has no subject (sub)".into()))?;
        if let Some(email) = claims.get("email") {
            tracing::Span::current().record("display_name", email.as_str());
        }
        // HTTP APIs flatten array claims to "[a b]"; Cognito uses `cognito:groups`.
        let groups = claims
            .get("groups")
            .or_else(|| claims.get("cognito:groups"))
            .map(String::as_str)
            .unwrap_or("");
        let role = groups
            .trim_matches(|c| c == '[' || c == ']')
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|g| g.trim_matches('"'))
            .filter_map(|g| role_of_group(g, group_prefix))
            .max()
            .ok_or_else(|| ApiError::Forbidden {
                detail: format!("the caller's groups ({groups:?}) hold no envplane role ({group_prefix}viewer, {group_prefix}operator, {group_prefix}approver, {group_prefix}admin)"),
            })?;
        return Ok(Caller { principal, role });
    }
    if let Some(arn) = authorizer
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.clone())
    {
        let role = iam_roles
            .get(&arn)
            .or_else(|| role_arn_of_session(&arn).and_then(|role| iam_roles.get(&role)))
            .copied()
            .ok_or_else(|| ApiError::Forbidden {
                detail: format!("the IAM principal {arn} is not mapped to an envplane role"),
            })?;
        return Ok(Caller {
            principal: arn,
            role,
        });
    }
    Err(ApiError::Unauthenticated(
        "the request carries neither JWT claims nor an IAM principal".into(),
    ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = state.auth.authenticate(parts)?;
        tracing::Span::current().record("principal", caller.principal.as_str());
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_maps_through_its_role_and_nothing_else_does() {
        assert_eq!(
            role_arn_of_session("arn:aws:sts::123456789012:assumed-role/ci/run-42").as_deref(),
            Some("arn:aws:iam::123456789012:role/ci")
        );
        assert_eq!(
            role_arn_of_session("arn:aws-us-gov:sts::1:assumed-role/deploy/x").as_deref(),
            Some("arn:aws-us-gov:iam::1:role/deploy")
        );
        assert_eq!(role_arn_of_session("arn:aws:iam::1:user/alice"), None);
        assert_eq!(
            role_arn_of_session("arn:aws:sts::1:federated-user/bob"),
            None
        );
        assert_eq!(role_arn_of_session("not an arn"), None);
    }

    #[test]
    fn groups_grant_roles_only_with_the_prefix() {
        let roles: Vec<Option<Role>> = [
            "admin",
            "envplane-operator",
            "developers",
            "Operator",
            "envplane-admin",
            "other-admin",
        ]
        .iter()
        .map(|g| role_of_group(g, DEFAULT_GROUP_PREFIX))
        .collect();
        assert_eq!(
            roles,
            vec![
                None,
                Some(Role::Operator),
                None,
                None,
                Some(Role::Admin),
                None
            ]
        );
        assert_eq!(role_of_group("ops-admin", "ops-"), Some(Role::Admin));
    }

    #[test]
    fn tokens_files_are_checked_when_loaded() {
        assert!(
            Authenticator::from_tokens_json(
                r#"{"tokens":[{"principal":"a","role":"root","sha256":"00"}]}"#
            )
            .is_err()
        );
        assert!(
            Authenticator::from_tokens_json(
                r#"{"tokens":[{"principal":"a","role":"viewer","sha256":"00"}]}"#
            )
            .is_err()
        );
        let entry = Authenticator::token_entry("a", Role::Viewer, "secret");
        let file = serde_json::json!({ "tokens": [entry] }).to_string();
        assert!(
            matches!(Authenticator::from_tokens_json(&file), Ok(Authenticator::Tokens(t)) if t.len() == 1)
        );
    }
}
