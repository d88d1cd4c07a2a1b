//! The envplane REST API: one axum router, served by the Lambda function behind API Gateway and
//! by `envplane serve` locally, with its OpenAPI document generated from the same handlers.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
mod conditional;
pub mod contract;
mod idempotency;
mod mutation;
pub mod problem;
mod routes;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use envplane_store::StateStore;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Authenticator, DEFAULT_GROUP_PREFIX, require_iam_principal};
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use routes::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// How callers are identified.
    pub auth: Arc<Authenticator>,
    /// Where operations' flows run; `None` records operations without starting them.
    pub workflows: Option<Arc<dyn envplane_workflow::Workflows>>,
    /// The plane's clock: requests and leases are stamped with it, as the flows and
    /// housekeeping read it, whatever the time scale of a local plane.
    pub clock: envplane_cloud::SharedClock,
    /// Where deployed versions run (their load balancers' addresses are shown).
    pub traffic: Option<Arc<dyn envplane_cloud::Traffic>>,
    /// Where the environments' databases run (their connection strings are shown).
    pub databases: Option<Arc<dyn envplane_cloud::Databases>>,
    /// What runs a scheduled job's work on request (`POST …/backups`, `POST …/drift`).
    pub on_demand: Option<Arc<dyn OnDemand>>,
}

/// The scheduled jobs' work, run now for one environment on a caller's request. `Err` says why
/// not, for the caller.
#[async_trait::async_trait]
pub trait OnDemand: Send + Sync {
    /// Takes a backup now: a snapshot of the data volume and the database's own backup under
    /// the snapshot's id; the new recovery point.
    async fn back_up(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::backup::RecordedPoint, String>;

    /// Checks the environment for drift now, as a drift cycle does, and records the report.
    async fn check_drift(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::drift::DriftReport, String>;
}

impl AppState {
    /// State over a store and an authenticator.
    pub fn new(store: Arc<dyn StateStore>, auth: Authenticator) -> Self {
        Self {
            store,
            auth: Arc::new(auth),
            workflows: None,
            clock: envplane_cloud::system_clock(),
            traffic: None,
            databases: None,
            on_demand: None,
        }
    }

    /// Stamps requests and leases with `clock` (a time-scaled local plane's).
    pub fn with_clock(mut self, clock: envplane_cloud::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Shows databases' connection strings from `databases`.
    pub fn with_databases(mut self, databases: Arc<dyn envplane_cloud::Databases>) -> Self {
        self.databases = Some(databases);
        self
    }

    /// Runs backups and drift checks on request with `on_demand`.
    pub fn with_on_demand(mut self, on_demand: Arc<dyn OnDemand>) -> Self {
        self.on_demand = Some(on_demand);
        self
    }

    /// Shows deployments' load balancers from `traffic`.
    pub fn with_traffic(mut self, traffic: Arc<dyn envplane_cloud::Traffic>) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// Starts each recorded operation's flow on `workflows`.
    pub fn with_workflows(mut self, workflows: Arc<dyn envplane_workflow::Workflows>) -> Self {
        self.workflows = Some(workflows);
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "envplane",
        description = "Control plane for application environments on AWS: create, inspect, change and destroy environments; every long change runs as an operation.",
    ),
    tags(
        (name = "environments", description = "Environments and their desired state"),
        (name = "operations", description = "Long-running changes"),
        (name = "approvals", description = "Four-eyes decisions on operations that wait for approvers"),
        (name = "deployments", description = "New versions of services, by canary, blue/green or rolling"),
        (name = "backups", description = "Recovery points of an environment's database"),
        (name = "audit", description = "Tamper-evident history"),
        (name = "blueprints", description = "Tier defaults and costs"),
        (name = "meta", description = "Health and the API description"),
    ),
    components(schemas(envplane_domain::operation::OnFailure)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A JWT from the API Gateway authorizer, or a local token of `envplane serve`"))
                    .build(),
            ),
        );
    }
}

/// Every handler, once, in the order the document lists them: `$each!(router, module, handler)`
/// is applied to each, so that the document and the served routes come from one list.
macro_rules! every_handler {
    ($each:ident, $start:expr) => {{
        let r = $start;
        let r = $each!(r, routes::meta, health);
        let r = $each!(r, routes::blueprints, list_blueprints);
        let r = $each!(r, routes::environments, create_environment);
        let r = $each!(r, routes::environments, list_environments);
        let r = $each!(r, routes::environments, get_environment);
        let r = $each!(r, routes::environments, patch_environment);
        let r = $each!(r, routes::environments, delete_environment);
        let r = $each!(r, routes::plans, plan_change);
        let r = $each!(r, routes::drift, get_drift);
        let r = $each!(r, routes::drift, check_drift);
        let r = $each!(r, routes::drift, reconcile_environment);
        let r = $each!(r, routes::operations, get_operation);
        let r = $each!(r, routes::operations, list_all_operations);
        let r = $each!(r, routes::operations, list_operations);
        let r = $each!(r, routes::operations, cancel_operation);
        let r = $each!(r, routes::approvals, decide);
        let r = $each!(r, routes::approvals, list_approvals);
        let r = $each!(r, routes::deployments, create_deployment);
        let r = $each!(r, routes::deployments, get_deployment);
        let r = $each!(r, routes::deployments, promote_deployment);
        let r = $each!(r, routes::deployments, abort_deployment);
        let r = $each!(r, routes::deployments, rollback_deployment);
        let r = $each!(r, routes::promotions, create_promotion);
        let r = $each!(r, routes::promotions, get_promotion);
        let r = $each!(r, routes::backups, list_backups);
        let r = $each!(r, routes::backups, create_backup);
        let r = $each!(r, routes::restores, create_restore);
        let r = $each!(r, routes::restores, create_drill);
        let r = $each!(r, routes::restores, list_drills);
        let r = $each!(r, routes::restores, get_drill);
        let r = $each!(r, routes::audit, list_audit);
        $each!(r, routes::audit, verify_audit)
    }};
}

/// Adds a handler with its OpenAPI operation (and the schemas it names) to the document.
macro_rules! documented {
    ($router:expr, $($module:ident)::+, $handler:ident) => {
        $router.routes(routes!($($module)::+::$handler))
    };
}

/// Routes a handler at the path and methods its `#[utoipa::path]` declares, without building
/// its operation: `routes!` makes every schema of it, which a cold Lambda paid for at start
/// and dropped (a third of the API's init, by `perf`).
macro_rules! served {
    ($router:expr, $($module:ident)::+, $handler:ident) => {
        utoipa_axum::paste! {{
            use utoipa::Path as _;
            use utoipa_axum::PathItemExt as _;
            let methods = $($module)::+::[<__path_ $handler>]::methods();
            let method_router = methods
                .iter()
                .fold(axum::routing::MethodRouter::new(), |r, m| {
                    r.on(m.to_method_filter(), $($module)::+::$handler)
                });
            $router.route(&$($module)::+::[<__path_ $handler>]::path(), method_router)
        }}
    };
}

fn split() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    every_handler!(documented, OpenApiRouter::with_openapi(ApiDoc::openapi())).split_for_parts()
}

/// The routes alone, as the document declares them.
fn served_routes() -> Router<AppState> {
    every_handler!(served, Router::new())
}

/// The OpenAPI document of the API, as derived from the routes' annotations (see
/// [`openapi_json`] for the document served and committed, made exact by [`contract`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = split();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The OpenAPI document as served and committed in `openapi/openapi.json`: the derived one
/// with every shared rule and problem stated ([`contract::tighten`]).
pub fn openapi_json() -> String {
    let Ok(mut document) = serde_json::to_value(openapi()) else {
        return String::new();
    };
    contract::tighten(&mut document);
    // Keys sorted whatever `serde_json`'s features in this build (some dependencies turn on
    // `preserve_order`): the committed document is the same from every build.
    serde_json::to_string_pretty(&contract::sorted(document))
        .map(|json| json + "\n")
        .unwrap_or_default()
}

/// The router: every route, problem+json for unknown paths and methods, a body limit, and a
/// tracing span per request that handlers enrich with the environment and operation.
pub fn router(state: AppState) -> Router {
    let routes = served_routes();
    // Rendered on first request, not at start: a cold Lambda would otherwise build, tighten
    // and print the whole document before serving anything (measured by coldstart-bench).
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    SPEC.get_or_init(openapi_json).clone(),
                )
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such route; see /v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(axum::middleware::map_response(problem::as_problem))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        principal = tracing::field::Empty,
                        display_name = tracing::field::Empty,
                        environment = tracing::field::Empty,
                        operation = tracing::field::Empty,
                    )
                })
                // One line per answered request (status and latency, in the request's span).
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .with_state(state)
}
