//! The workloads port: a service's version running on the environment's Kubernetes cluster,
//! registered in a load-balancer target group. Each service has two fixed *tracks* (blue and
//! green), each with its own target group; a deployment runs the new version on the track that
//! does not serve, and the listener's weights choose between them. On AWS: the `kube` adapter
//! (`envplane-kube`) server-side-applies a Deployment, a Service and an AWS Load Balancer
//! Controller `TargetGroupBinding` per track.

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::deployment::Release;
use envplane_domain::names::Service;

use crate::CloudError;

pub use envplane_domain::names::Track;

/// A version to run on a track.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// The environment (its cluster).
    pub env: &'a EnvName,
    /// The service.
    pub service: Service,
    /// Where it runs.
    pub track: Track,
    /// What runs.
    pub release: &'a Release,
    /// The target group its pods register in.
    pub target_group_arn: &'a str,
    /// How many pods.
    pub replicas: u32,
}

/// Runs versions of services on an environment's cluster.
#[async_trait]
pub trait Workloads: Send + Sync {
    /// Makes the track run `workload` (created, or changed in place), its pods registered in
    /// the target group. Safe to repeat.
    async fn apply(&self, workload: &Workload<'_>) -> Result<(), CloudError>;

    /// Sets the track's pods to `replicas` (0 stops it, keeping its objects for the next
    /// version). Safe to repeat; nothing happens to a track never applied.
    async fn scale(
        &self,
        env: &EnvName,
        service: Service,
        track: Track,
        replicas: u32,
    ) -> Result<(), CloudError>;
}
