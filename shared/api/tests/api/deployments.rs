//! Deployments end to end with real traffic: the API over a local plane whose flows run the
//! shipped deploy definition on a clock ten times faster than real time (10 s intervals last
//! 1 s), the demo app behind the weighted proxy, and a generator sending real requests through
//! the proxy the whole time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use envplane_cloud::Traffic;
use envplane_domain::Role;
use envplane_traffic::LocalTraffic;
use envplane_workflow::ScaledClock;
use serde_json::{Value, json};

use crate::common::{LocalPlane, Reply, send};

pub(crate) const ADMIN: &str = "root-token";

/// A local plane with real traffic, on a clock `scale` times faster than real time.
pub(crate) struct Plane {
    router: Router,
    pub(crate) plane: LocalPlane,
}

impl Plane {
    fn new() -> Self {
        Self::with(10.0, &[("root", Role::Admin, ADMIN)])
    }

    /// With `tokens` (principal, role, token); the first is the one `call` uses.
    pub(crate) fn with(scale: f64, tokens: &[(&str, Role, &str)]) -> Self {
        let traffic: Arc<dyn Traffic> = Arc::new(LocalTraffic::new());
        let plane = LocalPlane::new(Arc::new(ScaledClock::new(scale)), tokens, Some(traffic));
        Self {
            router: plane.router.clone(),
            plane,
        }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(ADMIN, method, path, body).await
    }

    /// The same, with `token`.
    pub(crate) async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let method_is_patch = method == Method::PATCH;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if method_is_patch {
            let read = axum::http::Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let current = send(self.router.clone(), read).await;
            let etag = current.headers["etag"].to_str().unwrap().to_owned();
            request = request
                .header("if-match", etag)
                .header("content-type", "application/merge-patch+json");
        } else if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(axum::body::Body::empty, |b| b.to_string().into());
        send(self.router.clone(), request.body(body).unwrap()).await
    }

    /// Deploys `version` of the frontend by canary; answers the deployment's id.
    async fn deploy(&self, version: &str, env: Value) -> String {
        let reply = self
            .call(
                Method::POST,
                "/v1/environments/dev/deployments",
                Some(json!({
                    "service": "frontend", "version": version, "env": env,
                    "strategy": "canary",
                    "canary": {"interval_seconds": 10, "min_requests": 10},
                })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["operation"]["id"].as_str().unwrap().to_owned()
    }

    /// Waits (real time) until the deployment's status is one of `statuses`.
    pub(crate) async fn until(&self, id: &str, statuses: &[&str]) -> Value {
        for _ in 0..1500 {
            let reply = self
                .call(Method::GET, &format!("/v1/deployments/{id}"), None)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            if statuses.contains(&reply.body["status"].as_str().unwrap_or("")) {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("deployment {id} never reached {statuses:?}");
    }
}

/// Sends requests through `url` until stopped, as real users would.
pub(crate) fn load(url: String, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut sent = 0;
        while running.load(Ordering::Relaxed) {
            if client.get(&url).send().await.is_ok() {
                sent += 1;
            }
        }
        sent
    })
}

fn weights(deployment: &Value) -> Vec<(u64, String)> {
    deployment["deployment"]["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["weight"].as_u64().unwrap(),
                a["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_walk_the_steps_roll_back_on_errors_and_hold_without_traffic() {
    let plane = Plane::new();
    let created = plane
        .call(
            Method::POST,
            "/v1/environments",
            Some(json!({"name": "dev", "tier": "dev"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let provision = created.body["operation"]["id"].as_str().unwrap().to_owned();
    for _ in 0..1000 {
        let op = plane
            .call(Method::GET, &format!("/v1/operations/{provision}"), None)
            .await;
        if op.body["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The first version has nothing to compare with: it takes all traffic at once.
    let first = plane.deploy("v1", json!({})).await;
    let v1 = plane.until(&first, &["succeeded", "failed"]).await;
    assert_eq!(v1["status"], "succeeded", "{v1}");
    let url = v1["url"].as_str().unwrap().to_owned();

    let running = Arc::new(AtomicBool::new(true));
    let generators: Vec<_> = (0..4).map(|_| load(url.clone(), running.clone())).collect();

    // A good version walks 5 → 25 → 100 and becomes stable.
    let good = plane.deploy("v2", json!({})).await;
    let v2 = plane
        .until(&good, &["succeeded", "failed", "awaiting_approval"])
        .await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    let walked = weights(&v2);
    assert_eq!(
        walked.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        vec![5, 25, 100],
        "{walked:?}"
    );
    assert!(walked.iter().all(|(_, v)| v == "pass"), "{walked:?}");
    for analysis in v2["deployment"]["analyses"].as_array().unwrap() {
        assert!(
            analysis["metrics"]["requests"].as_u64().unwrap() >= 10,
            "{analysis}"
        );
        assert!(
            analysis["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("error rate 0.000 ≤"),
            "{analysis}"
        );
    }

    // A version failing 30 % of requests is rolled back at its first interval.
    let bad = plane.deploy("v3", json!({"DEMO_ERROR_RATE": "0.3"})).await;
    let started = Instant::now();
    let v3 = plane.until(&bad, &["succeeded", "failed"]).await;
    assert_eq!(v3["status"], "failed", "{v3}");
    let analysed = weights(&v3);
    let first_bad = analysed.iter().position(|(_, v)| v == "fail").unwrap();
    let intervals_to_zero = analysed.len() - first_bad;
    println!(
        "bad version: first failed interval at {} %, weight 0 after {intervals_to_zero} analysis interval(s) ({:.1} s real at 10× time)",
        analysed[first_bad].0,
        started.elapsed().as_secs_f64()
    );
    assert!(intervals_to_zero <= 2, "{analysed:?}");
    assert_eq!(v3["deployment"]["progress"]["weight"], 0);
    // The evidence: the figure against its threshold.
    assert_eq!(v3["error"]["error"], "Envplane.RolledBack");
    let cause = v3["error"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("error rate 0.") && cause.contains("> 0.010"),
        "{v3}"
    );
    // Every verdict is in the audit chain as it was taken, with its figures.
    let audit = plane
        .call(Method::GET, "/v1/environments/dev/audit?limit=100", None)
        .await;
    let verdicts: Vec<&Value> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "deployment.analysis" && e["operation"] == bad.as_str())
        .collect();
    assert_eq!(verdicts.len(), analysed.len(), "{}", audit.body);
    assert_eq!(verdicts[first_bad]["change"]["analysis"]["verdict"], "fail");
    assert_eq!(
        verdicts[first_bad]["change"]["decision"]["decision"],
        "roll_back"
    );
    // What users get now is the stable version only.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..20 {
        let answer: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["version"], "v2");
    }

    // Without traffic nothing is judged: the deployment holds for a person, never at 100.
    running.store(false, Ordering::Relaxed);
    let mut sent = 0;
    for generator in generators {
        sent += generator.await.unwrap();
    }
    assert!(sent > 100, "{sent} requests sent");
    let quiet = plane.deploy("v4", json!({})).await;
    let held = plane
        .until(&quiet, &["awaiting_approval", "succeeded", "failed"])
        .await;
    assert_eq!(held["status"], "awaiting_approval", "{held}");
    assert_eq!(held["deployment"]["progress"]["weight"], 5);
    assert!(
        held["deployment"]["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient data"),
        "{held}"
    );
    assert!(weights(&held).iter().all(|(_, v)| v == "inconclusive"));
    let aborted = plane
        .call(
            Method::POST,
            &format!("/v1/deployments/{quiet}/abort"),
            None,
        )
        .await;
    assert_eq!(aborted.status, StatusCode::OK, "{}", aborted.body);
    let v4 = plane.until(&quiet, &["failed", "succeeded"]).await;
    assert_eq!(v4["status"], "failed");
    assert_eq!(v4["error"]["error"], "Envplane.Aborted", "{v4}");
    let answer: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["version"], "v2", "still the stable version");
}
