//! The traffic port: where a service's versions run and how its load balancer splits
//! requests between them. On AWS: the Kubernetes Deployment behind a target group, and the
//! ALB listener's weights, with CloudWatch's figures; locally: the demo app behind a weighted
//! proxy that measures what it forwards (`envplane-traffic`).

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::canary::Metrics;
use envplane_domain::deployment::Release;
use envplane_domain::names::Service;

use crate::CloudError;

/// Which version of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The version serving now.
    Stable,
    /// The version being introduced.
    Canary,
}

/// Runs a service's versions and splits its traffic.
#[async_trait]
pub trait Traffic: Send + Sync {
    /// Runs `release` in `slot` (replacing what ran there), taking no traffic until weighted.
    async fn launch(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        release: &Release,
    ) -> Result<(), CloudError>;

    /// Gives the canary `percent` of the service's requests (the rest to the stable version),
    /// in one change.
    async fn set_weight(
        &self,
        env: &EnvName,
        service: Service,
        percent: u8,
    ) -> Result<(), CloudError>;

    /// What `slot` answered over the `interval` that just ended (locally: since the last
    /// read, and the next interval starts now; on AWS: CloudWatch's figures of that window).
    async fn metrics(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        interval: std::time::Duration,
    ) -> Result<Metrics, CloudError>;

    /// `release`, running in the canary slot, becomes the stable version and takes all
    /// traffic in one change; the version it replaces stays warm in the canary slot, taking
    /// none, until retired or replaced (a rollback within the window is this call again with
    /// the warm version). Nothing happens when `release` is already the stable version, so a
    /// retry never swaps back.
    async fn promote(
        &self,
        env: &EnvName,
        service: Service,
        release: &Release,
    ) -> Result<(), CloudError>;

    /// Stops what runs in `slot`; a retired canary takes no traffic.
    async fn retire(&self, env: &EnvName, service: Service, slot: Slot) -> Result<(), CloudError>;

    /// The service's load balancer address, once something runs.
    async fn url(&self, env: &EnvName, service: Service) -> Option<String>;
}
