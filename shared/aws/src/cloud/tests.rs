//! The EKS calls moto lacks (`UpdateClusterVersion`, `UpdateNodegroupVersion`), checked at the
//! HTTP level against a fake endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use envplane_cloud::{Cloud, CloudError, Modification, Resource, ResourceState};
use envplane_domain::EnvName;
use envplane_domain::resources::{Observed, ResourceKind, observed};
use serde_json::json;

use super::{AwsCloud, AwsSettings, Clients};

/// One request as the fake EKS endpoint received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    body: serde_json::Value,
}

/// A fake EKS endpoint for the calls moto lacks (`UpdateClusterVersion`,
/// `UpdateNodegroupVersion`): answers each request with the next canned (status, body).
async fn fake_eks(
    answers: Vec<(u16, &'static str, serde_json::Value)>,
) -> (String, tokio::task::JoinHandle<Vec<Received>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut received = Vec::new();
        for (status, error_type, body) in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, length) = loop {
                let n = socket.read(&mut chunk).await.unwrap();
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    buffer.drain(..end + 4);
                    break (head, length);
                }
            };
            while buffer.len() < length {
                let n = socket.read(&mut chunk).await.unwrap();
                buffer.extend_from_slice(&chunk[..n]);
            }
            let mut request_line = head.lines().next().unwrap().split(' ');
            received.push(Received {
                method: request_line.next().unwrap().to_owned(),
                path: request_line.next().unwrap().to_owned(),
                body: serde_json::from_slice(&buffer).unwrap_or(serde_json::Value::Null),
            });
            let body = body.to_string();
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-amzn-errortype: {error_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        }
        received
    });
    (endpoint, handle)
}

fn cloud_on(endpoint: &str) -> AwsCloud {
    let config = aws_sdk_eks::Config::builder()
        .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_eks::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eks::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .build(),
    );
    let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
        aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
            .region(aws_sdk_elasticloadbalancingv2::config::Region::new(
                "us-east-1",
            ))
            .build(),
    );
    AwsCloud::new(
        Clients {
            ec2: ec2.into(),
            eks: aws_sdk_eks::Client::from_conf(config).into(),
            elb: elb.into(),
        },
        AwsSettings {
            stack: "envplane-test".into(),
            cluster_role_arn: String::new(),
            node_role_arn: String::new(),
            db_image_id: String::new(),
            backup_bucket: None,
            db_instance_profile: None,
        },
    )
}

fn eks_resource(kind: ResourceKind, id: &str) -> Resource {
    let observed = match kind {
        ResourceKind::Cluster => Observed::Cluster(observed::Cluster {
            version: Some("1.29".into()),
        }),
        _ => Observed::NodeGroup(observed::NodeGroup {
            cluster: "dev-eks".into(),
            instance_type: None,
            min: None,
            desired: None,
            max: None,
            version: Some("1.29".into()),
        }),
    };
    Resource {
        id: id.into(),
        name: id.into(),
        state: ResourceState::Active,
        observed,
        updating: false,
        tags: BTreeMap::from([
            ("envplane:environment".to_owned(), "dev".to_owned()),
            ("envplane:stack".to_owned(), "envplane-test".to_owned()),
        ]),
        created_at: None,
    }
}

#[tokio::test]
async fn upgrades_call_update_cluster_version_then_update_nodegroup_version() {
    let update =
        |kind: &str| json!({ "update": { "id": "u-1", "status": "InProgress", "type": kind } });
    let (endpoint, server) = fake_eks(vec![
        (200, "", update("VersionUpdate")),
        (200, "", update("VersionUpdate")),
        // Already upgrading: EKS refuses a second update, which counts as made.
        (
            409,
            "ResourceInUseException",
            json!({ "message": "Cluster has an update in progress" }),
        ),
        (
            400,
            "InvalidParameterException",
            json!({ "message": "Unsupported Kubernetes minor version update from 1.29 to 1.31" }),
        ),
    ])
    .await;
    let cloud = cloud_on(&endpoint);
    let env = EnvName::parse("dev").unwrap();
    let to = |v: &str| Modification::Version { version: v.into() };
    let cluster = eks_resource(ResourceKind::Cluster, "dev-eks");
    let nodegroup = eks_resource(ResourceKind::NodeGroup, "dev-frontend");
    cloud.modify(&env, &cluster, &to("1.30")).await.unwrap();
    cloud.modify(&env, &nodegroup, &to("1.30")).await.unwrap();
    cloud.modify(&env, &cluster, &to("1.30")).await.unwrap();
    let refused = cloud.modify(&env, &cluster, &to("1.31")).await.unwrap_err();
    assert!(
        matches!(&refused, CloudError::Invalid(m) if m.contains("UpdateClusterVersion") && m.contains("minor version")),
        "{refused:?}"
    );
    let received = server.await.unwrap();
    let calls: Vec<(&str, &str, &serde_json::Value)> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), &r.body["version"]))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/clusters/dev-eks/updates", &json!("1.30")),
            (
                "POST",
                "/clusters/dev-eks/node-groups/dev-frontend/update-version",
                &json!("1.30")
            ),
            ("POST", "/clusters/dev-eks/updates", &json!("1.30")),
            ("POST", "/clusters/dev-eks/updates", &json!("1.31")),
        ]
    );
}

#[tokio::test]
async fn nothing_without_the_stacks_tag_is_changed_or_deleted() {
    // No endpoint answers: the refusal comes before any request.
    let cloud = cloud_on("http://127.0.0.1:9");
    let env = EnvName::parse("dev").unwrap();
    let mut foreign = eks_resource(ResourceKind::Cluster, "dev-eks");
    foreign
        .tags
        .insert("envplane:stack".into(), "someone-else".into());
    let change = Modification::Version {
        version: "1.30".into(),
    };
    for refused in [
        cloud.modify(&env, &foreign, &change).await,
        cloud.delete(&foreign).await,
    ] {
        assert!(
            matches!(&refused, Err(CloudError::Invalid(m)) if m.contains("envplane:stack")),
            "{refused:?}"
        );
    }
    foreign.tags.remove("envplane:stack");
    assert!(
        cloud.delete(&foreign).await.is_err(),
        "untagged is not ours either"
    );
}
