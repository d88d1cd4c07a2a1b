//! Audit: the environment's hash-chained history, and its verification.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use envplane_domain::audit::verify_chain;
use envplane_domain::{Action, Caller, ChainVerification};

use crate::AppState;
use crate::problem::{ApiError, Problem};
use crate::routes::{MAX_PAGE_SIZE, Params, authorize, path_name, record_span};
use crate::views::AuditPage;

/// The environment's audit history, oldest first.
#[utoipa::path(get, path = "/v1/environments/{name}/audit", tag = "audit",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("after" = Option<u64>, Query, description = "Only events after this sequence number"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–100 (default 20)"),
    ),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let params = Params::parse(query, &["after", "limit"])?;
    let after = params
        .get("after")
        .map(|a| {
            // Sequence numbers are int64 in the document: 0 up to i64::MAX.
            a.parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("after", format!("must be a sequence number, got {a:?}"))
                })
        })
        .transpose()?
        .unwrap_or(0);
    let limit = params.page_size()?;
    if state.store.environment(&name).await?.is_none() {
        return Err(ApiError::NotFound(format!("no environment named {name}")));
    }
    let page = state.store.audit_events(&name, after, limit).await?;
    let next_after = page.next.and_then(|n| n.parse().ok());
    Ok(Json(AuditPage {
        items: page.items,
        next_after,
    }))
}

/// Recomputes the environment's hash chain and reports the first broken link.
#[utoipa::path(get, path = "/v1/environments/{name}/audit/verify", tag = "audit",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The verification, valid or not", body = ChainVerification),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<ChainVerification>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = state
        .store
        .environment(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no environment named {name}")))?;
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = state
            .store
            .audit_events(&name, after, MAX_PAGE_SIZE)
            .await?;
        after = page.items.last().map_or(after, |e| e.seq);
        events.extend(page.items);
        if page.next.is_none() {
            break;
        }
    }
    Ok(Json(verify_chain(&events, &env.audit_head)))
}
