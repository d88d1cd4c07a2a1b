//! A typed client of the envplane API: one method per route, answers in the API's own view
//! types, problems as [`ClientError::Problem`]. Reads and keyed mutations are retried on
//! transport errors and 5xx (the `Idempotency-Key` makes a retried mutation safe).
#![forbid(unsafe_code)]

mod error;
mod http;

use envplane_api::views::{
    ApprovalList, ApprovalStanding, AuditPage, BlueprintView, CancelResponse, DecisionRequest,
    DeploymentView, EnvironmentPage, EnvironmentView, MutationResponse, PromotionView,
};
use envplane_domain::drift::DriftReport;
use envplane_domain::operation::OnFailure;
use envplane_domain::plan::ChangePlan;
use envplane_domain::{ChainVerification, Operation};
use reqwest::Method;
use serde_json::Value;

pub use error::ClientError;
use http::Call;

/// Where and as whom to call the API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

/// An environment with the ETag a conditional change needs.
#[derive(Debug)]
pub struct Tagged<T> {
    /// The document.
    pub value: T,
    /// Its version, as `If-Match` takes it.
    pub etag: String,
}

/// A mutation the API accepted: the environment as changed and the operation applying it.
#[derive(Debug)]
pub struct Accepted {
    /// The HTTP status (202).
    pub status: u16,
    /// The answer.
    pub response: MutationResponse,
}

/// Filters of a listing of environments.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentFilter {
    /// Only this tier.
    pub tier: Option<String>,
    /// Only this phase.
    pub phase: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

impl Client {
    /// A client of the API at `endpoint`, with a bearer token unless the plane needs none.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(35))
            .build()
            .map_err(|e| ClientError::Transport {
                url: endpoint.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn call(&self, method: Method, path: String) -> Call<'_> {
        Call::new(self, method, path)
    }

    /// `GET /v1/blueprints`.
    pub async fn blueprints(&self) -> Result<Vec<BlueprintView>, ClientError> {
        self.call(Method::GET, "/v1/blueprints".into()).json().await
    }

    /// `POST /v1/environments`: the body as the API takes it (name, tier, overrides), and
    /// what a failed provisioning leaves.
    pub async fn create_environment(
        &self,
        body: &Value,
        on_failure: OnFailure,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        let path = match on_failure {
            OnFailure::Rollback => "/v1/environments".to_owned(),
            OnFailure::Keep => "/v1/environments?on_failure=keep".to_owned(),
        };
        self.call(Method::POST, path)
            .body(body)
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `GET /v1/environments/{name}`, with its ETag.
    pub async fn environment(&self, name: &str) -> Result<Tagged<EnvironmentView>, ClientError> {
        let reply = self
            .call(Method::GET, format!("/v1/environments/{name}"))
            .reply()
            .await?;
        let (value, etag) = (reply.value, reply.etag);
        let etag = etag.ok_or_else(|| ClientError::Decode {
            what: format!("environment {name}"),
            message: "the API sent no ETag".into(),
        })?;
        Ok(Tagged { value, etag })
    }

    /// `GET /v1/environments`: one page, after `cursor`.
    pub async fn environments(
        &self,
        filter: &EnvironmentFilter,
        cursor: Option<&str>,
    ) -> Result<EnvironmentPage, ClientError> {
        let mut query = Vec::new();
        query.extend(filter.limit.map(|l| format!("limit={l}")));
        query.extend(filter.tier.as_ref().map(|t| format!("tier={t}")));
        query.extend(filter.phase.as_ref().map(|p| format!("phase={p}")));
        query.extend(cursor.map(|c| format!("cursor={c}")));
        let path = match query.is_empty() {
            true => "/v1/environments".to_owned(),
            false => format!("/v1/environments?{}", query.join("&")),
        };
        self.call(Method::GET, path).json().await
    }

    /// `PATCH /v1/environments/{name}` with a merge patch, based on `etag`.
    pub async fn update_environment(
        &self,
        name: &str,
        patch: &Value,
        etag: &str,
        allow_replacement: bool,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        let path = format!("/v1/environments/{name}?allow_replacement={allow_replacement}");
        self.call(Method::PATCH, path)
            .body(patch)
            .header("if-match", etag)
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `DELETE /v1/environments/{name}`, only at `if_match` when given.
    pub async fn delete_environment(
        &self,
        name: &str,
        if_match: Option<&str>,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        let mut call = self
            .call(Method::DELETE, format!("/v1/environments/{name}"))
            .header("idempotency-key", idempotency_key);
        if let Some(etag) = if_match {
            call = call.header("if-match", etag);
        }
        call.accepted().await
    }

    /// `GET /v1/environments/{name}/drift`.
    pub async fn drift(&self, name: &str) -> Result<DriftReport, ClientError> {
        self.call(Method::GET, format!("/v1/environments/{name}/drift"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/drift`: a drift check now, its report.
    pub async fn check_drift(&self, name: &str) -> Result<DriftReport, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/drift"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/reconcile`.
    pub async fn reconcile(
        &self,
        name: &str,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/reconcile"))
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `POST /v1/environments/{name}/plan`: what `patch` would do.
    pub async fn plan(&self, name: &str, patch: &Value) -> Result<ChangePlan, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/plan"))
            .body(patch)
            .json()
            .await
    }

    /// `GET /v1/operations/{id}`.
    pub async fn operation(&self, id: &str) -> Result<Operation, ClientError> {
        self.call(Method::GET, format!("/v1/operations/{id}"))
            .json()
            .await
    }

    /// `POST /v1/operations/{id}/cancel`: the operation stopped and cancelled, and the delete
    /// rolling back a provisioning, when there is one.
    pub async fn cancel_operation(&self, id: &str) -> Result<CancelResponse, ClientError> {
        self.call(Method::POST, format!("/v1/operations/{id}/cancel"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/deployments`: a service's new version, deployed by the
    /// deploy flow.
    pub async fn deploy(
        &self,
        name: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/deployments"))
            .body(body)
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `POST /v1/environments/{name}/deployments?dry_run=true`: what the deployment would do.
    pub async fn plan_deployment(
        &self,
        name: &str,
        body: &Value,
    ) -> Result<envplane_domain::release_plan::DeploymentPlan, ClientError> {
        self.call(
            Method::POST,
            format!("/v1/environments/{name}/deployments?dry_run=true"),
        )
        .body(body)
        .json()
        .await
    }

    /// `GET /v1/deployments/{id}`.
    pub async fn deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.call(Method::GET, format!("/v1/deployments/{id}"))
            .json()
            .await
    }

    /// `POST /v1/deployments/{id}/promote` or `…/abort`: a person's decision at a gate or a
    /// hold.
    pub async fn decide_deployment(
        &self,
        id: &str,
        promote: bool,
    ) -> Result<DeploymentView, ClientError> {
        let verb = if promote { "promote" } else { "abort" };
        self.call(Method::POST, format!("/v1/deployments/{id}/{verb}"))
            .json()
            .await
    }

    /// `POST /v1/deployments/{id}/rollback`: the version a succeeded deployment replaced,
    /// back within its rollback window (a new operation).
    pub async fn rollback_deployment(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        self.call(Method::POST, format!("/v1/deployments/{id}/rollback"))
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `POST /v1/promotions`: what one environment runs, deployed to another.
    pub async fn promote(
        &self,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        self.call(Method::POST, "/v1/promotions".into())
            .body(body)
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `GET /v1/promotions/{id}`.
    pub async fn promotion(&self, id: &str) -> Result<PromotionView, ClientError> {
        self.call(Method::GET, format!("/v1/promotions/{id}"))
            .json()
            .await
    }

    /// `GET /v1/approvals`: operations waiting for approvers.
    pub async fn approvals(&self) -> Result<ApprovalList, ClientError> {
        self.call(Method::GET, "/v1/approvals?status=pending".into())
            .json()
            .await
    }

    /// `POST /v1/operations/{id}/approvals`: an approver's decision, and where it leaves the
    /// operation's approval.
    pub async fn decide(
        &self,
        id: &str,
        decision: &DecisionRequest,
    ) -> Result<ApprovalStanding, ClientError> {
        let body = serde_json::to_value(decision).map_err(|e| ClientError::Decode {
            what: "the decision".into(),
            message: e.to_string(),
        })?;
        self.call(Method::POST, format!("/v1/operations/{id}/approvals"))
            .body(&body)
            .json()
            .await
    }

    /// `GET /v1/environments/{name}/audit`: a page of events after `after`.
    pub async fn audit(&self, name: &str, after: u64) -> Result<AuditPage, ClientError> {
        self.call(
            Method::GET,
            format!("/v1/environments/{name}/audit?after={after}"),
        )
        .json()
        .await
    }

    /// `GET /v1/environments/{name}/audit/verify`.
    pub async fn verify_audit(&self, name: &str) -> Result<ChainVerification, ClientError> {
        self.call(Method::GET, format!("/v1/environments/{name}/audit/verify"))
            .json()
            .await
    }

    /// `GET /v1/environments/{name}/backups`: recovery points, window and policy.
    pub async fn backups(
        &self,
        name: &str,
    ) -> Result<envplane_api::views::BackupList, ClientError> {
        self.call(Method::GET, format!("/v1/environments/{name}/backups"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/backups`: a recovery point now.
    pub async fn create_backup(
        &self,
        name: &str,
    ) -> Result<envplane_domain::backup::RecordedPoint, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/backups"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/restores`: a restore in place or into a new environment.
    pub async fn restore(
        &self,
        name: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/restores"))
            .body(body)
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `POST /v1/environments/{name}/dr-drills`: a DR drill.
    pub async fn drill(&self, name: &str, idempotency_key: &str) -> Result<Accepted, ClientError> {
        self.call(Method::POST, format!("/v1/environments/{name}/dr-drills"))
            .header("idempotency-key", idempotency_key)
            .accepted()
            .await
    }

    /// `GET /v1/dr-drills/{id}`.
    pub async fn drill_view(
        &self,
        id: &str,
    ) -> Result<envplane_api::views::DrillView, ClientError> {
        self.call(Method::GET, format!("/v1/dr-drills/{id}"))
            .json()
            .await
    }

    /// `GET /v1/environments/{name}/dr-drills`: the drills' evidence, oldest first.
    pub async fn drills(
        &self,
        name: &str,
    ) -> Result<envplane_api::views::DrillHistory, ClientError> {
        self.call(Method::GET, format!("/v1/environments/{name}/dr-drills"))
            .json()
            .await
    }

    /// `POST /v1/environments/{name}/restores?dry_run=true`: the plan of a restore.
    pub async fn plan_restore(
        &self,
        name: &str,
        body: &Value,
    ) -> Result<envplane_domain::restore_plan::RestorePlan, ClientError> {
        self.call(
            Method::POST,
            format!("/v1/environments/{name}/restores?dry_run=true"),
        )
        .body(body)
        .json()
        .await
    }

    /// `POST /v1/environments/{name}/dr-drills?dry_run=true`: the plan of a drill.
    pub async fn plan_drill(
        &self,
        name: &str,
    ) -> Result<envplane_domain::restore_plan::RestorePlan, ClientError> {
        self.call(
            Method::POST,
            format!("/v1/environments/{name}/dr-drills?dry_run=true"),
        )
        .json()
        .await
    }

    /// `GET /v1/environments/{name}/operations`: a page of its operations, newest first.
    pub async fn operations(
        &self,
        name: Option<&str>,
        status: Option<&str>,
        kind: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<envplane_api::views::OperationPage, ClientError> {
        let mut query = vec!["limit=100".to_owned()];
        for (key, value) in [("status", status), ("kind", kind), ("cursor", cursor)] {
            if let Some(value) = value {
                query.push(format!("{key}={value}"));
            }
        }
        // One environment's through its own resource (404 when it never existed); every
        // environment's otherwise.
        let path = match name {
            Some(name) => format!("/v1/environments/{name}/operations"),
            None => "/v1/operations".to_owned(),
        };
        self.call(Method::GET, format!("{path}?{}", query.join("&")))
            .json()
            .await
    }
}
