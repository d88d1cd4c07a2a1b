//! The demo app: what a deployed version runs locally, in place of its image. It answers `GET
//! /` with its version, failing a given share of requests with 500 and taking a given time, as
//! its container environment says; `/health` always answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;
use tokio::net::TcpListener;

/// How a demo app behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoBehaviour {
    /// The version it reports.
    pub version: String,
    /// Share of `GET /` answered 500, spread evenly (0 to 1).
    pub error_rate: f64,
    /// Time each answer takes.
    pub latency: Duration,
}

impl DemoBehaviour {
    /// From a container environment: `DEMO_VERSION`, `DEMO_ERROR_RATE`, `DEMO_LATENCY_MS`.
    pub fn from_env(vars: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let error_rate = match vars("DEMO_ERROR_RATE") {
            None => 0.0,
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("DEMO_ERROR_RATE: {raw:?} is not a share from 0 to 1"))?,
        };
        let latency = match vars("DEMO_LATENCY_MS") {
            None => Duration::ZERO,
            Some(raw) => Duration::from_millis(
                raw.parse::<u64>()
                    .map_err(|_| format!("DEMO_LATENCY_MS: {raw:?} is not milliseconds"))?,
            ),
        };
        Ok(Self {
            version: vars("DEMO_VERSION").unwrap_or_else(|| "unversioned".into()),
            error_rate,
            latency,
        })
    }
}

/// Serves the demo app on `listener` until the task is dropped.
pub async fn serve_demo(listener: TcpListener, behaviour: DemoBehaviour) -> std::io::Result<()> {
    let served = Arc::new(AtomicU64::new(0));
    let behaviour = Arc::new(behaviour);
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback(move || {
            let (served, behaviour) = (served.clone(), behaviour.clone());
            async move {
                let n = served.fetch_add(1, Ordering::Relaxed);
                if !behaviour.latency.is_zero() {
                    tokio::time::sleep(behaviour.latency).await;
                }
                let status = if crate::in_share(n, behaviour.error_rate) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                (status, Json(json!({ "version": behaviour.version }))).into_response()
            }
        });
    axum::serve(listener, app).await
}
