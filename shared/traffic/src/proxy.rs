//! A weighted reverse proxy: the local load balancer of one environment service. Each request
//! goes to the stable or the canary version by the canary's weight (spread evenly, so a weight
//! of 25 sends exactly one request in four), and the proxy keeps, per version, what it
//! forwarded since the last read: requests, 5xx answers and latencies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use envplane_cloud::Slot;
use envplane_domain::canary::Metrics;
use tokio::net::TcpListener;

fn index(slot: Slot) -> usize {
    match slot {
        Slot::Stable => 0,
        Slot::Canary => 1,
    }
}

/// What one version answered since the last read.
#[derive(Debug, Default)]
struct Window {
    requests: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

/// Latencies kept per interval; beyond it the percentile is of the first ones.
const MAX_SAMPLES: usize = 200_000;

impl Window {
    fn take(&mut self) -> Metrics {
        let mut latencies = std::mem::take(&mut self.latencies_ms);
        latencies.sort_by(f64::total_cmp);
        let p99_ms = (!latencies.is_empty()).then(|| {
            let rank = (latencies.len() as f64 * 0.99).ceil() as usize;
            latencies[rank.clamp(1, latencies.len()) - 1]
        });
        let metrics = Metrics {
            requests: self.requests,
            errors: self.errors,
            p99_ms,
        };
        self.requests = 0;
        self.errors = 0;
        metrics
    }
}

struct Shared {
    upstreams: Mutex<[Option<SocketAddr>; 2]>,
    weight: AtomicU8,
    sent: AtomicU64,
    windows: Mutex<[Window; 2]>,
    client: reqwest::Client,
}

/// A running proxy; stops when dropped.
pub struct WeightedProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl WeightedProxy {
    /// Starts a proxy on a free loopback port in front of `stable`.
    pub async fn start(stable: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstreams: Mutex::new([stable, None]),
            weight: AtomicU8::new(0),
            sent: AtomicU64::new(0),
            windows: Mutex::default(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(std::io::Error::other)?,
        });
        let state = shared.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let state = state.clone();
            async move { forward(&state, request).await }
        });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the local load balancer stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Where it listens.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points a slot at a version's address (or at nothing).
    pub fn set_upstream(&self, slot: Slot, addr: Option<SocketAddr>) {
        if let Ok(mut upstreams) = self.shared.upstreams.lock() {
            upstreams[index(slot)] = addr;
        }
    }

    /// `stable` takes all traffic and `canary` none, in one change: a promotion, or a
    /// rollback to the version kept warm.
    pub fn swap(&self, stable: Option<SocketAddr>, canary: Option<SocketAddr>) {
        if let Ok(mut upstreams) = self.shared.upstreams.lock() {
            *upstreams = [stable, canary];
            // Under the table's lock: `choose` reads the weight under it too.
            self.shared.weight.store(0, Ordering::SeqCst);
        }
    }

    /// The canary's share of traffic, percent (0 to 100), in one change.
    pub fn set_weight(&self, canary_percent: u8) {
        self.shared
            .weight
            .store(canary_percent.min(100), Ordering::SeqCst);
    }

    /// The canary's share of traffic now.
    pub fn weight(&self) -> u8 {
        self.shared.weight.load(Ordering::SeqCst)
    }

    /// What `slot` answered since the last read, and a fresh interval from now.
    pub fn take(&self, slot: Slot) -> Metrics {
        self.shared
            .windows
            .lock()
            .map(|mut w| w[index(slot)].take())
            .unwrap_or(Metrics {
                requests: 0,
                errors: 0,
                p99_ms: None,
            })
    }
}

impl Drop for WeightedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Chooses the version for the next request: the canary's exact share by weight.
fn choose(shared: &Shared) -> (Slot, Option<SocketAddr>) {
    let (upstreams, weight) = shared
        .upstreams
        .lock()
        .map(|u| (*u, shared.weight.load(Ordering::SeqCst)))
        .unwrap_or(([None, None], 0));
    let n = shared.sent.fetch_add(1, Ordering::Relaxed);
    let canary = upstreams[1].is_some() && crate::in_share(n, f64::from(weight) / 100.0);
    if canary {
        (Slot::Canary, upstreams[1])
    } else {
        (Slot::Stable, upstreams[0])
    }
}

async fn forward(shared: &Shared, request: Request) -> Response {
    let (slot, upstream) = choose(shared);
    let Some(upstream) = upstream else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no version deployed").into_response();
    };
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut outgoing = shared
        .client
        .request(parts.method, format!("http://{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut answer = Response::new(Body::from(bytes));
            *answer.status_mut() = status;
            for (name, value) in &headers {
                if name != HeaderName::from_static("transfer-encoding") {
                    answer.headers_mut().insert(name, value.clone());
                }
            }
            answer
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the version did not answer: {e}"),
        )
            .into_response(),
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(mut windows) = shared.windows.lock() {
        let window = &mut windows[index(slot)];
        window.requests += 1;
        if answer.status().is_server_error() {
            window.errors += 1;
        }
        if window.latencies_ms.len() < MAX_SAMPLES {
            window.latencies_ms.push(elapsed_ms);
        }
    }
    answer
}
