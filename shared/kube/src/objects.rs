//! The Kubernetes objects of one track of a service, built from the workload: a Deployment
//! running the version, a Service in front of its pods, and the AWS Load Balancer Controller's
//! `TargetGroupBinding` that registers those pods (by IP) in the track's target group.

use envplane_cloud::Workload;
use serde_json::{Value, json};

/// What every object of a track is called: `frontend-blue`.
pub fn track_name(workload: &Workload<'_>) -> String {
    format!("{}-{}", workload.service.as_str(), workload.track.as_str())
}

fn labels(workload: &Workload<'_>) -> Value {
    json!({
        "app.kubernetes.io/name": workload.service.as_str(),
        "app.kubernetes.io/managed-by": "envplane",
        "envplane.dev/environment": workload.env.as_str(),
        "envplane.dev/track": workload.track.as_str(),
    })
}

/// The image: the release's, or `{service}:{version}` from the cluster's registry.
fn image(workload: &Workload<'_>) -> String {
    workload
        .release
        .image
        .clone()
        .unwrap_or_else(|| format!("{}:{}", workload.service.as_str(), workload.release.version))
}

/// The Deployment: the version's pods, its container environment as given.
pub fn deployment(workload: &Workload<'_>) -> Value {
    let name = track_name(workload);
    let env: Vec<Value> = workload
        .release
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let port = workload.service.port();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": labels(workload),
            "annotations": {"envplane.dev/version": workload.release.version},
        },
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": {
                "app.kubernetes.io/name": workload.service.as_str(),
                "envplane.dev/track": workload.track.as_str(),
            }},
            "template": {
                "metadata": {
                    "labels": labels(workload),
                    "annotations": {"envplane.dev/version": workload.release.version},
                },
                "spec": {"containers": [{
                    "name": workload.service.as_str(),
                    "image": image(workload),
                    "env": env,
                    "ports": [{"containerPort": port, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                }]},
            },
        },
    })
}

/// The Service in front of the track's pods.
pub fn service(workload: &Workload<'_>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": track_name(workload), "labels": labels(workload)},
        "spec": {
            "selector": {
                "app.kubernetes.io/name": workload.service.as_str(),
                "envplane.dev/track": workload.track.as_str(),
            },
            "ports": [{"name": "http", "port": workload.service.port(), "targetPort": "http"}],
        },
    })
}

/// The binding of the track's Service to its target group.
pub fn target_group_binding(workload: &Workload<'_>) -> Value {
    json!({
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": track_name(workload), "labels": labels(workload)},
        "spec": {
            "serviceRef": {"name": track_name(workload), "port": workload.service.port()},
            "targetGroupARN": workload.target_group_arn,
            "targetType": "ip",
        },
    })
}
