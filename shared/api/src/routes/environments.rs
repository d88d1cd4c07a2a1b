//! Environments: create (and dry-run create), list, get, change and destroy.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use envplane_domain::commands;
use envplane_domain::environment::Phase;
use envplane_domain::operation::OnFailure;
use envplane_domain::spec::{self, CidrChoice};
use envplane_domain::{Action, Blueprint, Caller, EnvName, Tier, ValidationErrors, VpcCidr};
use envplane_store::{CommitError, EnvironmentQuery, Expected};
use serde_json::Value;

use crate::AppState;
use crate::body::JsonBody;
use crate::conditional::{Contention, if_match};
use crate::idempotency::{Idempotency, replay_or_none};
use crate::mutation::{self, new_request};
use crate::problem::{ApiError, Problem};
use crate::routes::{Params, authorize, command_error, live, path_name, record_span};
use crate::views::{CreateEnvironmentRequest, EnvironmentPage, EnvironmentView, MutationResponse};

fn string_field<'a>(
    body: &'a Value,
    field: &str,
    errors: &mut ValidationErrors,
) -> Option<&'a str> {
    match body.get(field) {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(field, format!("must be a string, got {other}"));
            None
        }
        None => {
            errors.push(field, "is required");
            None
        }
    }
}

/// Creates an environment from its tier's blueprint; provisioning runs as an operation.
#[utoipa::path(post, path = "/v1/environments", tag = "environments",
    request_body = CreateEnvironmentRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body replay the first answer for 24 h"),
        ("dry_run" = Option<bool>, Query, description = "Validate and plan only: answer 200 with the environment that would be recorded and the plan of provisioning it, writing nothing"),
        ("on_failure" = Option<OnFailure>, Query, description = "What a failed provisioning leaves: `rollback` (default) deletes everything it made, in reverse order; `keep` keeps it for inspection until the environment is deleted"),
    ),
    responses(
        (status = 200, description = "Dry run: the environment that would be recorded and its provisioning plan", body = Object),
        (status = 202, description = "Recorded; provisioning is pending", body = MutationResponse,
            headers(("Location" = String, description = "The environment"), ("ETag" = String, description = "Its version"))),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or Idempotency-Key reused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_environment(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["dry_run", "on_failure"])?;
    let dry_run = params.flag("dry_run")?;
    let on_failure = params
        .get("on_failure")
        .map(|raw| OnFailure::parse(raw).map_err(|e| ApiError::bad_request("on_failure", e)))
        .transpose()?
        .unwrap_or_default();
    // The same key with another failure policy is another request.
    let path = match on_failure {
        OnFailure::Rollback => "/v1/environments",
        OnFailure::Keep => "/v1/environments?on_failure=keep",
    };
    let idempotency = Idempotency::from_headers(&headers, &caller, "POST", path, &body)?;
    if !body.is_object() {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    }
    let mut errors = ValidationErrors::default();
    let name = string_field(&body, "name", &mut errors)
        .and_then(|raw| EnvName::parse(raw).map_err(|e| errors.push("name", e)).ok());
    let tier = string_field(&body, "tier", &mut errors)
        .and_then(|raw| raw.parse::<Tier>().map_err(|e| errors.push("tier", e)).ok());
    let (Some(name), Some(tier)) = (name, tier) else {
        return Err(errors.into());
    };
    record_span(name.as_str(), None);
    authorize(&caller, Action::Mutate(tier))?;
    let blueprint = Blueprint::for_tier(tier);

    // Tiers with a seed default try it first and list the pool only if it is taken, which keeps
    // the common create at a single store call.
    let mut allocated = None;
    let requested = body
        .pointer("/network/vpc_cidr")
        .is_some_and(|v| !v.is_null());
    if blueprint.default_vpc_cidr.is_none() && !requested {
        allocated = Some(allocate(&state, None).await?);
    }
    if dry_run {
        return dry_run_create(&state, &caller, name, tier, &blueprint, &body, allocated).await;
    }
    let location = format!("/v1/environments/{name}");
    let mut tombstone: Option<envplane_domain::Environment> = None;
    let mut contention = Contention::new();
    loop {
        let (spec, choice) = spec::resolve_create(&blueprint, &body, allocated)?;
        let cidr = spec.network.vpc_cidr;
        let mutation = commands::create(
            name.clone(),
            tier,
            spec,
            tombstone.as_ref(),
            on_failure,
            &new_request(&state, &caller),
        );
        let expected = tombstone
            .as_ref()
            .map_or(Expected::Absent, |t| Expected::Version(t.version));
        record_span(name.as_str(), Some(&mutation.operation.id));
        match mutation::commit(
            &state,
            mutation,
            expected,
            Some(cidr),
            idempotency.as_ref(),
            location.clone(),
        )
        .await
        {
            Ok(response) => return Ok(response),
            Err(CommitError::IdempotencyKeyUsed) => {
                if let Some(response) = replay_or_none(&state, idempotency.as_ref()).await? {
                    return Ok(response);
                }
            }
            Err(CommitError::CidrTaken(taken)) if choice == CidrChoice::Allocated => {
                // The tier's default was taken: the next free block. A block this request
                // chose itself was lost to a concurrent create: a random free one.
                let lost_race = allocated.is_some();
                allocated = Some(allocate(&state, Some((taken, lost_race))).await?);
            }
            Err(CommitError::CidrTaken(taken)) => {
                let holder = state
                    .store
                    .cidrs_in_use()
                    .await?
                    .get(&taken)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "another environment".into());
                return Err(ApiError::invalid(
                    "network.vpc_cidr",
                    format!(
                        "{taken} overlaps environment {holder}; omit vpc_cidr to get a free block"
                    ),
                ));
            }
            Err(CommitError::Contended) => {}
            Err(CommitError::AlreadyExists | CommitError::VersionConflict) => {
                // The twin request with this key may have committed a moment ago.
                if let Some(response) = replay_or_none(&state, idempotency.as_ref()).await? {
                    return Ok(response);
                }
                // A destroyed environment's tombstone gives its name, and its audit chain, to the new one.
                match state.store.environment(&name).await? {
                    Some(existing) if existing.status.phase == Phase::Deleted => {
                        tombstone = Some(existing);
                        continue;
                    }
                    Some(_) => return Err(CommitError::AlreadyExists.into()),
                    None => {}
                }
            }
            Err(other) => return Err(other.into()),
        }
        contention.again().await?;
    }
}

/// A create that writes nothing: the environment it would record, and the plan of provisioning it.
async fn dry_run_create(
    state: &AppState,
    caller: &Caller,
    name: EnvName,
    tier: Tier,
    blueprint: &Blueprint,
    body: &Value,
    allocated: Option<VpcCidr>,
) -> Result<Response, ApiError> {
    if state
        .store
        .environment(&name)
        .await?
        .is_some_and(|e| e.status.phase != Phase::Deleted)
    {
        return Err(CommitError::AlreadyExists.into());
    }
    let in_use = state.store.cidrs_in_use().await?;
    let allocated = match allocated {
        Some(cidr) => Some(cidr),
        None => VpcCidr::allocate(
            blueprint.default_vpc_cidr,
            &in_use.keys().copied().collect(),
        ),
    };
    let (spec, choice) = spec::resolve_create(blueprint, body, allocated)?;
    if let Some(holder) = in_use
        .get(&spec.network.vpc_cidr)
        .filter(|_| choice == CidrChoice::Requested)
    {
        return Err(ApiError::invalid(
            "network.vpc_cidr",
            format!(
                "{} overlaps environment {holder}; omit vpc_cidr to get a free block",
                spec.network.vpc_cidr
            ),
        ));
    }
    let plan = envplane_domain::plan::for_create(&name, tier, &spec);
    let would_be = commands::create(
        name,
        tier,
        spec,
        None,
        OnFailure::default(),
        &new_request(state, caller),
    )
    .environment;
    Ok(Json(serde_json::json!({ "dry_run": true, "environment": EnvironmentView::from(would_be), "plan": plan })).into_response())
}

/// A free VPC block, avoiding `taken` (found in use): the lowest, or a random one when it was
/// lost in a race, so that a burst of creates does not collide round after round.
pub(crate) async fn allocate(
    state: &AppState,
    taken: Option<(VpcCidr, bool)>,
) -> Result<VpcCidr, ApiError> {
    let mut in_use: std::collections::BTreeSet<VpcCidr> =
        state.store.cidrs_in_use().await?.into_keys().collect();
    let chosen = match taken {
        Some((lost, true)) => {
            in_use.insert(lost);
            VpcCidr::allocate_spread(&in_use, u64::from(ulid::Ulid::new().random() as u32))
        }
        Some((taken, false)) => {
            in_use.insert(taken);
            VpcCidr::allocate(None, &in_use)
        }
        None => VpcCidr::allocate(None, &in_use),
    };
    chosen.ok_or_else(|| {
        ApiError::invalid(
            "network.vpc_cidr",
            "the address pool 10.0.0.0/8 has no free /16 left",
        )
    })
}

/// Lists environments in name order, filtered by tier and phase, a page at a time.
#[utoipa::path(get, path = "/v1/environments", tag = "environments",
    params(
        ("tier" = Option<Tier>, Query, description = "Only this tier"),
        ("phase" = Option<Phase>, Query, description = "Only this phase"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of environments", body = EnvironmentPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_environments(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<EnvironmentPage>, ApiError> {
    authorize(&caller, Action::Read)?;
    let params = Params::parse(query, &["tier", "phase", "limit", "cursor"])?;
    let query = EnvironmentQuery {
        tier: params
            .get("tier")
            .map(|t| {
                t.parse::<Tier>()
                    .map_err(|e| ApiError::bad_request("tier", e))
            })
            .transpose()?,
        phase: params
            .get("phase")
            .map(|p| {
                p.parse::<Phase>()
                    .map_err(|e| ApiError::bad_request("phase", e))
            })
            .transpose()?,
        limit: params.page_size()?,
        cursor: params.get("cursor").map(str::to_owned),
    };
    let page = state.store.list_environments(&query).await?;
    Ok(Json(EnvironmentPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next,
    }))
}

/// One environment, with its ETag for conditional changes.
#[utoipa::path(get, path = "/v1/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The environment", body = EnvironmentView, headers(("ETag" = String, description = "Its version"))),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    let etag = env.etag();
    let mut view = EnvironmentView::from(env);
    if let Some(traffic) = &state.traffic {
        for service in view.environment.releases.keys() {
            if let Some(url) = traffic.url(&view.environment.name, *service).await {
                view.load_balancers.insert(*service, url);
            }
        }
    }
    if let Some(databases) = &state.databases {
        view.database = databases
            .endpoint(&view.environment.name)
            .await
            .ok()
            .flatten();
    }
    let mut response = Json(view).into_response();
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Changes the desired spec with a JSON merge patch; the update runs as an operation.
#[utoipa::path(patch, path = "/v1/environments/{name}", tag = "environments",
    request_body(content = Object, content_type = "application/merge-patch+json", description = "RFC 7396 merge patch of the spec, e.g. {\"cluster\": {\"frontend\": {\"desired\": 3}}}"),
    params(
        ("name" = String, Path, description = "Environment name"),
        ("If-Match" = String, Header, description = "The ETag the change is based on"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
        ("allow_replacement" = Option<bool>, Query, description = "Allow changes that replace a resource (a node group's instance type); refused otherwise"),
    ),
    responses(
        (status = 202, description = "Recorded; the update flow applies it (an update still waiting for approval is amended: its earlier approvals no longer count)", body = MutationResponse),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn patch_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    JsonBody(patch): JsonBody,
) -> Result<Response, ApiError> {
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let allow_replacement =
        Params::parse(query, &["allow_replacement"])?.flag("allow_replacement")?;
    let idempotency = Idempotency::from_headers(
        &headers,
        &caller,
        "PATCH",
        &format!("/v1/environments/{name}?allow_replacement={allow_replacement}"),
        &patch,
    )?;
    let precondition = if_match(&headers)?.ok_or(ApiError::PreconditionRequired)?;
    // An update still waiting for its approvals is amended rather than refused as busy.
    let waiting = awaiting_approval(&state, &name).await?;
    mutation::of_existing(
        &state,
        &caller,
        &name,
        idempotency.as_ref(),
        Some(precondition),
        |env| {
            let spec = spec::apply_patch(&env.spec, env.tier, &patch, allow_replacement)?;
            let request = new_request(&state, &caller);
            let mutation = match &waiting {
                Some(op) if env.active_operation.as_deref() == Some(op.id.as_str()) => {
                    commands::amend(env, op, spec, allow_replacement, &request)
                }
                _ => commands::update(env, spec, allow_replacement, &request),
            }
            .map_err(command_error)?;
            Ok((mutation, format!("/v1/environments/{name}")))
        },
    )
    .await
}

/// The update holding `name` while it waits for approvals, if one does.
async fn awaiting_approval(
    state: &AppState,
    name: &EnvName,
) -> Result<Option<envplane_domain::Operation>, ApiError> {
    let Some(env) = state.store.environment(name).await? else {
        return Ok(None);
    };
    let Some(id) = &env.active_operation else {
        return Ok(None);
    };
    Ok(state.store.operation_of(name, id).await?.filter(|op| {
        op.kind == envplane_domain::OperationKind::Update
            && op.status == envplane_domain::OperationStatus::AwaitingApproval
    }))
}

/// Destroys the environment; the teardown runs as an operation.
#[utoipa::path(delete, path = "/v1/environments/{name}", tag = "environments",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("If-Match" = Option<String>, Header, description = "Only if still at this ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    responses(
        (status = 202, description = "Recorded; the teardown is pending", body = MutationResponse),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The operation's flow could not be started: it was marked failed, nothing was changed; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    mutation::bodyless(
        &state,
        &caller,
        &raw,
        &headers,
        "DELETE",
        "",
        commands::delete,
    )
    .await
}
