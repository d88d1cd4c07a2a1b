//! The Kubernetes adapter against a fake API server that records every request and answers as
//! kube-apiserver would (the applied object back; a `Status` for errors). No kube-apiserver
//! can be had on this machine (no Docker, no package), so the test checks the requests
//! themselves: paths, verbs, content types, server-side-apply parameters, the bearer token
//! and the objects' fields.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use envplane_cloud::{CloudError, Track, Workload, Workloads};
use envplane_domain::EnvName;
use envplane_domain::deployment::Release;
use envplane_domain::names::Service;
use envplane_kube::{Cluster, Clusters, KubeWorkloads};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    authorization: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Paths that answer with this status code.
    failing: Arc<Mutex<BTreeMap<String, u16>>>,
    /// Deployments applied so far, by path.
    applied: Arc<Mutex<BTreeMap<String, Value>>>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn answer(State(fake): State<Fake>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = parts.uri.path().to_owned();
    let seen = Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    fake.seen.lock().unwrap().push(seen.clone());
    if let Some(code) = fake.failing.lock().unwrap().get(&path) {
        return status(*code, "Injected", "injected by the test");
    }
    if let Some(deployment) = path.strip_suffix("/scale") {
        let Some(applied) = fake.applied.lock().unwrap().get(deployment).cloned() else {
            return status(404, "NotFound", "deployments.apps not found");
        };
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": applied["metadata"]["name"], "namespace": "default"},
            "spec": {"replicas": seen.body["spec"]["replicas"]}});
        return axum::Json(scale).into_response();
    }
    // Server-side apply answers the object as it now is.
    fake.applied.lock().unwrap().insert(path, seen.body.clone());
    axum::Json(seen.body).into_response()
}

async fn start() -> (Fake, String) {
    let fake = Fake::default();
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

struct FakeCluster(String);

#[async_trait]
impl Clusters for FakeCluster {
    async fn cluster(&self, env: &EnvName) -> Result<Cluster, CloudError> {
        Ok(Cluster {
            endpoint: self.0.clone(),
            ca_der: Vec::new(),
            token: format!("k8s-aws-v1.token-for-{env}"),
        })
    }
}

fn release() -> Release {
    Release {
        version: "2.4.1".into(),
        image: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend:2.4.1".into()),
        env: BTreeMap::from([("DEMO_ERROR_RATE".to_owned(), "0".to_owned())]),
    }
}

const TG: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/prod-tg-frontend-g/0123456789abcdef";

#[tokio::test]
async fn one_deployment_applies_its_track_and_scales_the_old_one_down() {
    let (fake, url) = start().await;
    let workloads = KubeWorkloads::new(Arc::new(FakeCluster(url)));
    let env = EnvName::parse("prod").unwrap();
    let release = release();
    // The stable version runs on blue; the new one goes to green, then blue stops.
    let green = Workload {
        env: &env,
        service: Service::Frontend,
        track: Track::Green,
        release: &release,
        target_group_arn: TG,
        replicas: 3,
    };
    workloads.apply(&green).await.unwrap();
    workloads.apply(&green).await.unwrap(); // safe to repeat: the same apply
    workloads
        .scale(&env, Service::Frontend, Track::Blue, 0)
        .await
        .unwrap();

    let seen = fake.seen.lock().unwrap().clone();
    println!("the fake API server received, for one deployment:");
    for s in &seen {
        println!(
            "  {} {}?{}  [{}]  {}",
            s.method, s.path, s.query, s.content_type, s.body
        );
    }
    let paths: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    let applied = [
        (
            "PATCH",
            "/api/v1/namespaces/default/services/frontend-green",
        ),
        (
            "PATCH",
            "/apis/elbv2.k8s.aws/v1beta1/namespaces/default/targetgroupbindings/frontend-green",
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/frontend-green",
        ),
    ];
    let mut expected = applied.to_vec();
    expected.extend(applied);
    expected.push((
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/frontend-blue/scale",
    ));
    assert_eq!(paths, expected);
    for s in &seen[..6] {
        assert_eq!(s.content_type, "application/apply-patch+yaml");
        let mut params: Vec<&str> = s.query.split('&').filter(|p| !p.is_empty()).collect();
        params.sort_unstable();
        assert_eq!(params, ["fieldManager=envplane", "force=true"]);
        assert_eq!(s.authorization, "Bearer k8s-aws-v1.token-for-prod");
    }
    let (service, binding, deployment) = (&seen[0].body, &seen[1].body, &seen[2].body);
    assert_eq!(service["spec"]["selector"]["envplane.dev/track"], "green");
    assert_eq!(service["spec"]["ports"][0]["port"], 3001);
    assert_eq!(binding["spec"]["targetGroupARN"], TG);
    assert_eq!(
        binding["spec"]["serviceRef"],
        json!({"name": "frontend-green", "port": 3001})
    );
    assert_eq!(binding["spec"]["targetType"], "ip");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], release.image.clone().unwrap().as_str());
    assert_eq!(
        container["env"],
        json!([{"name": "DEMO_ERROR_RATE", "value": "0"}])
    );
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "envplane"
    );
    let scale = &seen[6];
    assert_eq!(scale.content_type, "application/merge-patch+json");
    assert_eq!(scale.body, json!({"spec": {"replicas": 0}}));
}

#[tokio::test]
async fn errors_map_to_what_the_flow_does_next() {
    let (fake, url) = start().await;
    let workloads = KubeWorkloads::new(Arc::new(FakeCluster(url)));
    let env = EnvName::parse("qa").unwrap();
    // Scaling a track never applied: nothing runs there, nothing to do.
    workloads
        .scale(&env, Service::Backend, Track::Green, 0)
        .await
        .unwrap();
    let release = release();
    let blue = Workload {
        env: &env,
        service: Service::Backend,
        track: Track::Blue,
        release: &release,
        target_group_arn: TG,
        replicas: 2,
    };
    let service_path = "/api/v1/namespaces/default/services/backend-blue";
    for (code, expected) in [
        (403, "access entry"),
        (500, "transient"),
        (429, "throttled"),
        (409, "conflict"),
    ] {
        fake.failing
            .lock()
            .unwrap()
            .insert(service_path.into(), code);
        let error = workloads.apply(&blue).await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{code}: {text}");
    }
    let attempts = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == service_path)
        .count();
    assert_eq!(
        attempts, 4,
        "each failed at the first object, nothing after it"
    );
}
