//! The HTTP handlers. Each reads, decides with the pure domain, and writes one atomic change.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use envplane_domain::audit::{canonical_json, sha256_hex, verify_chain};
use envplane_domain::commands::{self, CommandError, Mutation, Request};
use envplane_domain::cost::CostBreakdown;
use envplane_domain::environment::Phase;
use envplane_domain::spec::{self, CidrChoice};
use envplane_domain::{
    Action, Blueprint, Caller, ChainVerification, EnvName, Operation, Tier, ValidationErrors,
    VpcCidr,
};
use envplane_store::{Change, CommitError, EnvironmentQuery, Expected, IdempotencyRecord};
use serde_json::Value;
use time::OffsetDateTime;

use crate::AppState;
use crate::body::{JsonBody, idempotency_key, if_match};
use crate::problem::{ApiError, Problem};
use crate::views::{
    AuditPage, BlueprintView, CreateEnvironmentRequest, EnvironmentPage, EnvironmentView, Health,
    MutationResponse,
};

/// Page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 100;
/// How long a stored idempotent response is replayed.
const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);
/// Tries of a mutation whose commit met a concurrent one, before answering 409.
const COMMIT_ATTEMPTS: u32 = 6;

fn record_span(environment: &str, operation: Option<&str>) {
    let span = tracing::Span::current();
    span.record("environment", environment);
    if let Some(operation) = operation {
        span.record("operation", operation);
    }
}

fn path_name(raw: &str) -> Result<EnvName, ApiError> {
    EnvName::parse(raw).map_err(|detail| {
        ApiError::bad_request(
            "name",
            format!("{raw:?} is not an environment name: {detail}"),
        )
    })
}

/// The environment unless it is missing or a tombstone.
fn live(
    env: Option<envplane_domain::Environment>,
    name: &EnvName,
) -> Result<envplane_domain::Environment, ApiError> {
    env.filter(|e| e.status.phase != Phase::Deleted)
        .ok_or_else(|| ApiError::NotFound(format!("no environment named {name}")))
}

fn authorize(caller: &Caller, action: Action) -> Result<(), ApiError> {
    caller
        .authorize(action)
        .map_err(|required| ApiError::role_too_low(caller.role, required))
}

fn command_error(error: CommandError) -> ApiError {
    match error {
        CommandError::Busy { operation } => ApiError::Conflict {
            detail: format!(
                "operation {operation} is still running on this environment; wait for it or cancel it"
            ),
            operation: Some(operation),
        },
        CommandError::NoChange => ApiError::invalid("", "the patch changes nothing"),
    }
}

/// Short randomized pause before retrying a contended commit, so that retries spread out.
async fn backoff(attempt: u32) {
    let jitter = u64::from(ulid::Ulid::new().random() as u16 % 20);
    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter)).await;
}

/// An idempotency key bound to its caller and to the request it first came with.
struct Idempotency {
    storage_key: String,
    fingerprint: String,
}

impl Idempotency {
    fn from_headers(
        headers: &HeaderMap,
        caller: &Caller,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Option<Self>, ApiError> {
        let Some(key) = idempotency_key(headers)? else {
            return Ok(None);
        };
        let if_match = headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Some(Idempotency {
            // Keys are scoped to their caller: two callers choosing the same key do not collide.
            storage_key: sha256_hex(format!("{}\n{key}", caller.principal).as_bytes()),
            fingerprint: sha256_hex(
                format!("{method}\n{path}\n{}\n{if_match}", canonical_json(body)).as_bytes(),
            ),
        }))
    }

    /// The stored response for this key, when an earlier request with it succeeded.
    async fn replay(&self, state: &AppState) -> Result<Option<Response>, ApiError> {
        match state.store.idempotency_record(&self.storage_key).await? {
            None => Ok(None),
            Some(record) if record.expires_at <= OffsetDateTime::now_utc().unix_timestamp() => {
                Ok(None)
            }
            Some(record) if record.fingerprint != self.fingerprint => {
                Err(ApiError::IdempotencyKeyReused)
            }
            Some(record) => {
                launch(state, &record).await;
                Ok(Some(stored_response(&record, true)))
            }
        }
    }
}

/// Starts the flow of the operation a mutation recorded. Starting is idempotent (the operation
/// id names the execution), so a replayed request also makes sure its flow runs. A failure to
/// start leaves the operation pending, to be started by a retry of the request.
async fn launch(state: &AppState, record: &IdempotencyRecord) {
    let Some(workflows) = &state.workflows else {
        return;
    };
    let Ok(body) = serde_json::from_str::<Value>(&record.body) else {
        return;
    };
    let op = &body["operation"];
    let kind = serde_json::from_value::<envplane_domain::OperationKind>(op["kind"].clone()).ok();
    let (Some(flow), Some(id), Some(env)) = (
        kind.and_then(envplane_workflow::Flow::for_operation),
        op["id"].as_str(),
        op["environment"]
            .as_str()
            .and_then(|e| EnvName::parse(e).ok()),
    ) else {
        return;
    };
    if let Err(error) = workflows.start(flow, &env, id).await {
        tracing::error!(%error, operation = id, "the operation's flow did not start; it stays pending");
    }
}

fn stored_response(record: &IdempotencyRecord, replayed: bool) -> Response {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    let mut response = (status, record.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &record.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(name, value);
        }
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Writes a mutation with its idempotency record; the response is built from that record so a
/// replay is byte-for-byte the first answer.
async fn commit_mutation(
    state: &AppState,
    mutation: Mutation,
    expected: Expected,
    claim_cidr: Option<VpcCidr>,
    idempotency: Option<&Idempotency>,
    location: String,
) -> Result<Response, CommitError> {
    let etag = mutation.environment.etag();
    let body = MutationResponse {
        environment: mutation.environment.clone().into(),
        operation: mutation.operation.clone(),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| CommitError::Store(envplane_store::StoreError::Corrupt(e.to_string())))?;
    let record = IdempotencyRecord {
        key: idempotency
            .map(|i| i.storage_key.clone())
            .unwrap_or_default(),
        fingerprint: idempotency
            .map(|i| i.fingerprint.clone())
            .unwrap_or_default(),
        status: StatusCode::ACCEPTED.as_u16(),
        headers: vec![("location".into(), location), ("etag".into(), etag)],
        body,
        expires_at: (mutation.operation.requested_at + IDEMPOTENCY_TTL).unix_timestamp(),
    };
    let change = Change {
        environment: mutation.environment,
        expected,
        operation: Some(mutation.operation),
        audit: Some(mutation.audit),
        idempotency: idempotency.map(|_| record.clone()),
        claim_cidr,
        release_cidr: None,
    };
    state.store.commit(change).await?;
    launch(state, &record).await;
    Ok(stored_response(&record, false))
}

fn new_request(caller: &Caller) -> Request<'_> {
    Request {
        caller,
        at: OffsetDateTime::now_utc(),
        operation_id: ulid::Ulid::new().to_string(),
    }
}

#[utoipa::path(get, path = "/health", tag = "meta", security(()), responses((status = 200, description = "The process answers", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Tiers with their defaults, policies and monthly cost.
#[utoipa::path(get, path = "/v1/blueprints", tag = "blueprints", responses(
    (status = 200, description = "Every tier's blueprint", body = [BlueprintView]),
    (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_blueprints(caller: Caller) -> Result<Json<Vec<BlueprintView>>, ApiError> {
    authorize(&caller, Action::Read)?;
    let views = Blueprint::all()
        .into_iter()
        .map(|blueprint| {
            let cidr = blueprint
                .default_vpc_cidr
                .unwrap_or(VpcCidr::from_second_octet(16));
            let cost = CostBreakdown::of(&blueprint.spec(cidr), blueprint.tier);
            BlueprintView { blueprint, cost }
        })
        .collect();
    Ok(Json(views))
}

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
    ))]
pub(crate) async fn create_environment(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let pairs = parse_query(query, &["dry_run"])?;
    let dry_run = flag(&pairs, "dry_run")?;
    let idempotency =
        Idempotency::from_headers(&headers, &caller, "POST", "/v1/environments", &body)?;
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
    for attempt in 1..=COMMIT_ATTEMPTS {
        let (spec, choice) = spec::resolve_create(&blueprint, &body, allocated)?;
        let cidr = spec.network.vpc_cidr;
        let mutation = commands::create(
            name.clone(),
            tier,
            spec,
            tombstone.as_ref(),
            &new_request(&caller),
        );
        let expected = tombstone
            .as_ref()
            .map_or(Expected::Absent, |t| Expected::Version(t.version));
        record_span(name.as_str(), Some(&mutation.operation.id));
        match commit_mutation(
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
                allocated = Some(allocate(&state, Some(taken)).await?);
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
        backoff(attempt).await;
    }
    Err(CommitError::Contended.into())
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
    let would_be = commands::create(name, tier, spec, None, &new_request(caller)).environment;
    Ok(Json(serde_json::json!({ "dry_run": true, "environment": EnvironmentView::from(would_be), "plan": plan })).into_response())
}

async fn replay_or_none(
    state: &AppState,
    idempotency: Option<&Idempotency>,
) -> Result<Option<Response>, ApiError> {
    match idempotency {
        Some(i) => i.replay(state).await,
        None => Ok(None),
    }
}

/// A free VPC block, avoiding `taken` which was just found to be in use.
async fn allocate(state: &AppState, taken: Option<VpcCidr>) -> Result<VpcCidr, ApiError> {
    let mut in_use: std::collections::BTreeSet<VpcCidr> =
        state.store.cidrs_in_use().await?.into_keys().collect();
    in_use.extend(taken);
    VpcCidr::allocate(None, &in_use).ok_or_else(|| {
        ApiError::invalid(
            "network.vpc_cidr",
            "the address pool 10.0.0.0/8 has no free /16 left",
        )
    })
}

/// A boolean query parameter, false when absent; the last occurrence wins.
fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            name,
            format!("must be true or false, got {other:?}"),
        )),
    }
}

fn parse_query(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    known: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    for (key, _) in &pairs {
        if !known.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                key.clone(),
                format!("unknown query parameter; known: {}", known.join(", ")),
            ));
        }
    }
    Ok(pairs)
}

fn page_size(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "limit",
                    format!("must be a number from 1 to {MAX_PAGE_SIZE}, got {raw:?}"),
                )
            }),
    }
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
    let pairs = parse_query(query, &["tier", "phase", "limit", "cursor"])?;
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let query = EnvironmentQuery {
        tier: get("tier")
            .map(|t| {
                t.parse::<Tier>()
                    .map_err(|e| ApiError::bad_request("tier", e))
            })
            .transpose()?,
        phase: get("phase")
            .map(|p| {
                p.parse::<Phase>()
                    .map_err(|e| ApiError::bad_request("phase", e))
            })
            .transpose()?,
        limit: page_size(get("limit"))?,
        cursor: get("cursor").map(str::to_owned),
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
    let mut response = Json(EnvironmentView::from(env)).into_response();
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// The outcome of one attempt at a conditional mutation.
enum Attempt {
    Done(Response),
    Retry,
}

/// Runs `attempt` until it answers, retrying when a concurrent change won the race; each
/// attempt re-reads, so a retry ends as 412 or 409 when the winner changed what matters.
async fn with_retries<F, Fut>(mut attempt: F) -> Result<Response, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt, ApiError>>,
{
    for n in 1..=COMMIT_ATTEMPTS {
        match attempt().await? {
            Attempt::Done(response) => return Ok(response),
            Attempt::Retry => backoff(n).await,
        }
    }
    Err(CommitError::Contended.into())
}

fn settle(result: Result<Response, CommitError>) -> Result<Attempt, ApiError> {
    match result {
        Ok(response) => Ok(Attempt::Done(response)),
        Err(
            CommitError::VersionConflict | CommitError::Contended | CommitError::IdempotencyKeyUsed,
        ) => Ok(Attempt::Retry),
        Err(other) => Err(other.into()),
    }
}

/// A mutation of an existing environment: replays a retried request, reads the environment,
/// checks the caller's role and `If-Match`, then commits what `mutate` decides under the
/// version read, re-reading when a concurrent change wins.
async fn conditional_mutation<F>(
    state: &AppState,
    caller: &Caller,
    name: &EnvName,
    idempotency: Option<&Idempotency>,
    precondition: Option<(u64, String)>,
    mutate: F,
) -> Result<Response, ApiError>
where
    F: Fn(&envplane_domain::Environment) -> Result<(Mutation, String), ApiError>,
{
    with_retries(|| async {
        if let Some(response) = replay_or_none(state, idempotency).await? {
            return Ok(Attempt::Done(response));
        }
        let env = live(state.store.environment(name).await?, name)?;
        authorize(caller, Action::Mutate(env.tier))?;
        if let Some((version, given)) = &precondition
            && env.version != *version
        {
            return Err(ApiError::PreconditionFailed {
                given: given.clone(),
                current: env.etag(),
            });
        }
        let (mutation, location) = mutate(&env)?;
        record_span(name.as_str(), Some(&mutation.operation.id));
        settle(
            commit_mutation(
                state,
                mutation,
                Expected::Version(env.version),
                None,
                idempotency,
                location,
            )
            .await,
        )
    })
    .await
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
        (status = 202, description = "Recorded; the update flow applies it", body = MutationResponse),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
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
    let allow_replacement = flag(
        &parse_query(query, &["allow_replacement"])?,
        "allow_replacement",
    )?;
    let idempotency = Idempotency::from_headers(
        &headers,
        &caller,
        "PATCH",
        &format!("/v1/environments/{name}?allow_replacement={allow_replacement}"),
        &patch,
    )?;
    let precondition = if_match(&headers)?.ok_or(ApiError::PreconditionRequired)?;
    conditional_mutation(
        &state,
        &caller,
        &name,
        idempotency.as_ref(),
        Some(precondition),
        |env| {
            let spec = spec::apply_patch(&env.spec, env.tier, &patch, allow_replacement)?;
            let mutation = commands::update(env, spec, allow_replacement, &new_request(&caller))
                .map_err(command_error)?;
            Ok((mutation, format!("/v1/environments/{name}")))
        },
    )
    .await
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
    ))]
pub(crate) async fn delete_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bodyless_operation(
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

/// A mutation with no body that starts an operation (delete, reconcile): optional `If-Match`,
/// optional `Idempotency-Key`, answered with the operation's location.
async fn bodyless_operation<F>(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    headers: &HeaderMap,
    method: &str,
    suffix: &str,
    command: F,
) -> Result<Response, ApiError>
where
    F: Fn(&envplane_domain::Environment, &Request<'_>) -> Result<Mutation, CommandError>,
{
    let name = path_name(raw)?;
    record_span(name.as_str(), None);
    let idempotency = Idempotency::from_headers(
        headers,
        caller,
        method,
        &format!("/v1/environments/{name}{suffix}"),
        &Value::Null,
    )?;
    let precondition = if_match(headers)?;
    conditional_mutation(
        state,
        caller,
        &name,
        idempotency.as_ref(),
        precondition,
        |env| {
            let mutation = command(env, &new_request(caller)).map_err(command_error)?;
            let location = format!("/v1/operations/{}", mutation.operation.id);
            Ok((mutation, location))
        },
    )
    .await
}

/// The last drift check's report: what differed between the cloud and the spec, and the AWS
/// calls the check made.
#[utoipa::path(get, path = "/v1/environments/{name}/drift", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The last report", body = envplane_domain::drift::DriftReport),
        (status = 404, description = "No such environment, or no check since its last change", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_drift(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<envplane_domain::drift::DriftReport>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    env.drift.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no drift check of {name} since its last change; the scheduler checks {} environments on its schedule",
            env.tier
        ))
    })
}

/// Reconcile: runs the update flow to bring the cloud back to the unchanged spec.
#[utoipa::path(post, path = "/v1/environments/{name}/reconcile", tag = "environments",
    params(
        ("name" = String, Path, description = "Environment name"),
        ("If-Match" = Option<String>, Header, description = "Only if still at this ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    responses(
        (status = 202, description = "Recorded; the update flow puts the cloud back to the spec", body = MutationResponse),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation holds the environment", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn reconcile_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bodyless_operation(
        &state,
        &caller,
        &raw,
        &headers,
        "POST",
        "/reconcile",
        |env, request| {
            let reason = env
                .drift
                .as_ref()
                .map_or(Value::Null, |d| Value::String(d.summary()));
            commands::reconcile(env, reason, request)
        },
    )
    .await
}

/// What-if: what a merge patch would change (resources, monthly cost, time, approvals). Writes nothing.
#[utoipa::path(post, path = "/v1/environments/{name}/plan", tag = "environments",
    request_body(content = Object, description = "The merge patch to evaluate, as PATCH would take it"),
    params(("name" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The plan", body = envplane_domain::plan::ChangePlan),
        (status = 404, description = "No such environment", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The change is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn plan_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(patch): JsonBody,
) -> Result<Json<envplane_domain::plan::ChangePlan>, ApiError> {
    authorize(&caller, Action::Read)?;
    let name = path_name(&raw)?;
    record_span(name.as_str(), None);
    let env = live(state.store.environment(&name).await?, &name)?;
    // A plan shows replacements rather than refusing them: that is what it is for.
    let next = spec::apply_patch(&env.spec, env.tier, &patch, true)?;
    Ok(Json(envplane_domain::plan::what_if(
        &name, env.tier, &env.spec, &next,
    )))
}

/// An operation and its steps.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 404, description = "No such operation", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    authorize(&caller, Action::Read)?;
    if ulid::Ulid::from_string(&id).is_err() {
        return Err(ApiError::bad_request(
            "id",
            format!("{id:?} is not an operation id (a ULID)"),
        ));
    }
    let mut op = state
        .store
        .operation(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))?;
    record_span(op.environment.as_str(), Some(&op.id));
    if let Some(workflows) = &state.workflows
        && let Ok(Some(steps)) = workflows.steps(&op.id).await
    {
        op.steps = steps;
    }
    Ok(Json(op))
}

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
    let pairs = parse_query(query, &["after", "limit"])?;
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let after = get("after")
        .map(|a| {
            a.parse::<u64>().map_err(|_| {
                ApiError::bad_request("after", format!("must be a sequence number, got {a:?}"))
            })
        })
        .transpose()?
        .unwrap_or(0);
    let limit = page_size(get("limit"))?;
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
