//! A black-box harness: the router over a real store, driven with HTTP requests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use envplane_api::{AppState, Authenticator};
use envplane_domain::environment::Phase;
use envplane_domain::{EnvName, Role};
use envplane_store::{Change, EnvironmentQuery, Expected, StateStore};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const VIEWER: &str = "viewer-token";
pub const OPERATOR: &str = "operator-token";
pub const APPROVER: &str = "approver-token";
pub const ADMIN: &str = "admin-token";

pub struct Harness {
    pub router: Router,
    pub store: Arc<dyn StateStore>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn tokens() -> Authenticator {
    let entries: Vec<Value> = [
        ("vera", Role::Viewer, VIEWER),
        ("otto", Role::Operator, OPERATOR),
        ("ada", Role::Approver, APPROVER),
        ("root", Role::Admin, ADMIN),
    ]
    .iter()
    .map(|(p, r, t)| Authenticator::token_entry(p, *r, t))
    .collect();
    Authenticator::from_tokens_json(&serde_json::json!({ "tokens": entries }).to_string())
        .expect("tokens")
}

impl Harness {
    pub fn over(store: Arc<dyn StateStore>, dir: Option<tempfile::TempDir>) -> Self {
        let router = envplane_api::router(AppState::new(store.clone(), tokens()));
        Self {
            router,
            store,
            _dir: dir,
        }
    }

    /// A harness whose requests and leases are stamped with `clock` (a time-scaled plane's).
    pub fn with_clock(clock: envplane_cloud::SharedClock) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let router = envplane_api::router(AppState::new(store.clone(), tokens()).with_clock(clock));
        Self {
            router,
            store,
            _dir: Some(dir),
        }
    }

    /// A harness whose mutations start their flows on `workflows`.
    pub fn with_workflows(workflows: Arc<dyn envplane_workflow::Workflows>) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let router =
            envplane_api::router(AppState::new(store.clone(), tokens()).with_workflows(workflows));
        Self {
            router,
            store,
            _dir: Some(dir),
        }
    }

    pub fn embedded() -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        Self::over(Arc::new(store), Some(dir))
    }

    pub async fn dynamodb() -> Option<Self> {
        let store = envplane_store::testing::moto_store().await?;
        Some(Self::over(Arc::new(store), None))
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let mut has_type = false;
        for (name, value) in headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            builder = builder.header(*name, *value);
        }
        if body.is_some() && !has_type {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(
                body.map(|b| Body::from(b.to_owned()))
                    .unwrap_or_else(Body::empty),
            )
            .expect("request");
        send(self.router.clone(), request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, Some(ADMIN), &[], None)
            .await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.request(Method::POST, path, Some(ADMIN), &[], Some(body))
            .await
    }

    /// Creates `name` of `tier` and completes its operation, as provisioning would.
    pub async fn ready(&self, name: &str, tier: &str) -> String {
        let reply = self
            .post(
                "/v1/environments",
                &format!(r#"{{"name":"{name}","tier":"{tier}"}}"#),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        self.finish_operation(name).await
    }

    /// Releases the environment's active operation, returning the new ETag.
    pub async fn finish_operation(&self, name: &str) -> String {
        let env = self
            .store
            .environment(&EnvName::parse(name).expect("name"))
            .await
            .expect("read")
            .expect("exists");
        let mut next = env.clone();
        next.version += 1;
        next.active_operation = None;
        next.lease_expires_at = None;
        next.status.phase = Phase::Ready;
        let change = Change {
            environment: next.clone(),
            expected: Expected::Version(env.version),
            operation: None,
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        };
        self.store.commit(change).await.expect("finish");
        next.etag()
    }

    /// Everything the store holds that a request could write, to prove a refusal wrote nothing.
    pub async fn snapshot(&self) -> String {
        let page = self
            .store
            .list_environments(&EnvironmentQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("list");
        let mut out = String::new();
        for env in page.items {
            out.push_str(&serde_json::to_string(&env).expect("json"));
            let audit = self
                .store
                .audit_events(&env.name, 0, 1000)
                .await
                .expect("audit");
            out.push_str(&serde_json::to_string(&audit.items).expect("json"));
        }
        out.push_str(&format!(
            "{:?}",
            self.store.cidrs_in_use().await.expect("cidrs")
        ));
        out
    }
}

pub async fn send(router: Router, request: Request<Body>) -> Reply {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

impl LocalPlane {
    /// Sends a request as the holder of `token`, with a JSON body when given.
    pub async fn call(
        &self,
        token: &str,
        method: axum::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(axum::body::Body::empty, |b| b.to_string().into());
        send(self.router.clone(), request.body(body).expect("a request")).await
    }
}

/// The jobs' work on request, as `envplane serve` runs it.
struct JobsOnDemand(envplane_worker::jobs::Jobs);

#[async_trait::async_trait]
impl envplane_api::OnDemand for JobsOnDemand {
    async fn back_up(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::backup::RecordedPoint, String> {
        self.0.back_up_now(name).await.map_err(|e| e.to_string())
    }

    async fn check_drift(
        &self,
        name: &envplane_domain::EnvName,
    ) -> Result<envplane_domain::drift::DriftReport, String> {
        self.0.drift_now(name).await.map_err(|e| e.to_string())
    }
}

/// A local plane behind the router: the shipped flows on the local executor (on `clock`), the
/// worker, the instant simulated cloud, housekeeping, and `traffic` for deployments; callers
/// are `tokens` (principal, role, token).
pub struct LocalPlane {
    pub router: Router,
    pub simulator: Arc<envplane_cloud::Simulator>,
    pub jobs: envplane_worker::jobs::Jobs,
    _dir: tempfile::TempDir,
}

impl LocalPlane {
    pub fn new(
        clock: Arc<dyn envplane_workflow::Clock>,
        tokens: &[(&str, Role, &str)],
        traffic: Option<Arc<dyn envplane_cloud::Traffic>>,
    ) -> Self {
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let reader = clock.clone();
        let now: envplane_cloud::SharedClock = Arc::new(move || reader.now());
        let simulator = Arc::new(envplane_cloud::Simulator::new(
            envplane_cloud::LatencyProfile::Instant,
            envplane_cloud::Faults::NONE,
            now.clone(),
        ));
        // Modelled database hosts: the API's tests are about requests and answers; restores on
        // a real PostgreSQL are the worker's and `envplane serve`'s tests.
        let databases = Arc::new(envplane_cloud::SimulatedDatabases::new(
            envplane_cloud::LatencyProfile::Instant,
            1,
            now.clone(),
            std::time::Duration::from_secs(60),
        ));
        let mut worker = envplane_worker::Worker::new(store.clone(), simulator.clone())
            .with_clock(now.clone())
            .with_databases(databases.clone());
        if let Some(traffic) = &traffic {
            worker = worker.with_traffic(traffic.clone());
        }
        let executor = envplane_workflow::Executor::new(Arc::new(worker), clock);
        let workflows = Arc::new(
            envplane_workflow::LocalWorkflows::new(executor, &dir.path().join("executions"))
                .expect("local workflows"),
        );
        let entries: Vec<Value> = tokens
            .iter()
            .map(|(p, r, t)| Authenticator::token_entry(p, *r, t))
            .collect();
        let auth =
            Authenticator::from_tokens_json(&serde_json::json!({ "tokens": entries }).to_string())
                .expect("tokens");
        let mut state = AppState::new(store.clone(), auth)
            .with_workflows(workflows.clone())
            .with_clock(now.clone());
        let mut jobs = envplane_worker::jobs::Jobs::new(store, simulator.clone(), Arc::new(|| 0))
            .with_workflows(workflows)
            .with_clock(now)
            .with_databases(databases.clone());
        state = state
            .with_databases(databases)
            .with_on_demand(Arc::new(JobsOnDemand(jobs.clone())));
        if let Some(traffic) = traffic {
            state = state.with_traffic(traffic.clone());
            jobs = jobs.with_traffic(traffic);
        }
        Self {
            router: envplane_api::router(state),
            simulator,
            jobs,
            _dir: dir,
        }
    }
}
