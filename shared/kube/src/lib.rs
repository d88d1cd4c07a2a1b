//! The Kubernetes adapter of envplane's workloads port ([`KubeWorkloads`]): each track of a
//! service is a Deployment, a Service and a `TargetGroupBinding`, server-side-applied with
//! envplane as the field manager (so a person's `kubectl` edits of other fields survive, and
//! envplane's own fields always win). Clusters are reached through [`Clusters`]: on AWS,
//! `DescribeCluster` for the endpoint and CA, and a presigned STS token ([`token`]).
#![forbid(unsafe_code)]

mod adapter;
pub mod objects;
pub mod token;

pub use adapter::{Cluster, Clusters, EksClusters, KubeWorkloads, NAMESPACE};
use envplane_aws::OnFirstUse;

/// The traffic port on AWS for `stack`, from one SDK configuration: ELBv2 weights, CloudWatch
/// figures and the environments' EKS clusters (reached as the configuration's identity, which
/// each cluster's access entry makes its admin).
pub fn aws_traffic(
    config: &aws_config::SdkConfig,
    stack: impl Into<String>,
) -> Result<envplane_aws::AwsTraffic, envplane_cloud::CloudError> {
    let credentials = config.credentials_provider().ok_or_else(|| {
        envplane_cloud::CloudError::Invalid("no AWS credentials to reach EKS with".into())
    })?;
    let region = config
        .region()
        .ok_or_else(|| envplane_cloud::CloudError::Invalid("no AWS region".into()))?
        .to_string();
    // Each client is made when a step first needs it (see `OnFirstUse`).
    let clusters = EksClusters::new(
        OnFirstUse::client(config, aws_sdk_eks::Client::new),
        credentials,
        region,
    );
    Ok(envplane_aws::AwsTraffic::new(
        OnFirstUse::client(config, aws_sdk_elasticloadbalancingv2::Client::new),
        envplane_aws::AlbMetrics::new(OnFirstUse::client(config, aws_sdk_cloudwatch::Client::new)),
        std::sync::Arc::new(KubeWorkloads::new(std::sync::Arc::new(clusters))),
        stack,
    ))
}
