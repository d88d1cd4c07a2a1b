//! The local adapter of the traffic port: each environment service gets a weighted proxy (its
//! load balancer) on loopback, and each version runs as a demo app task whose behaviour comes
//! from the release's environment. Tasks rather than processes: the same behaviour, and
//! nothing is left running when `envplane serve` is killed.

use std::collections::HashMap;
use std::net::SocketAddr;

use async_trait::async_trait;
use envplane_cloud::{CloudError, Slot, Traffic};
use envplane_domain::EnvName;
use envplane_domain::canary::Metrics;
use envplane_domain::deployment::Release;
use envplane_domain::names::Service;
use tokio::sync::Mutex;

use crate::{DemoBehaviour, WeightedProxy, serve_demo};

struct Running {
    release: Release,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Balancer {
    proxy: WeightedProxy,
    stable: Option<Running>,
    canary: Option<Running>,
}

/// Local load balancers and running versions, per environment service.
#[derive(Default)]
pub struct LocalTraffic {
    services: Mutex<HashMap<(EnvName, Service), Balancer>>,
}

fn transient(e: impl std::fmt::Display) -> CloudError {
    CloudError::Transient(e.to_string())
}

async fn run(release: &Release) -> Result<Running, CloudError> {
    let mut env = release.env.clone();
    env.insert("DEMO_VERSION".into(), release.version.clone());
    let behaviour =
        DemoBehaviour::from_env(|k| env.get(k).cloned()).map_err(CloudError::Invalid)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(transient)?;
    let addr = listener.local_addr().map_err(transient)?;
    let task = tokio::spawn(async move {
        if let Err(e) = serve_demo(listener, behaviour).await {
            tracing::warn!(error = %e, "a demo app stopped");
        }
    });
    Ok(Running {
        release: release.clone(),
        addr,
        task,
    })
}

impl LocalTraffic {
    /// No load balancers yet; each appears with its service's first version.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Traffic for LocalTraffic {
    async fn launch(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        release: &Release,
    ) -> Result<(), CloudError> {
        let running = run(release).await?;
        let mut services = self.services.lock().await;
        let key = (env.clone(), service);
        if !services.contains_key(&key) {
            let proxy = WeightedProxy::start(None).await.map_err(transient)?;
            services.insert(
                key.clone(),
                Balancer {
                    proxy,
                    stable: None,
                    canary: None,
                },
            );
        }
        let balancer = services
            .get_mut(&key)
            .ok_or_else(|| CloudError::Transient("the load balancer went away".into()))?;
        balancer.proxy.set_upstream(slot, Some(running.addr));
        match slot {
            Slot::Stable => balancer.stable = Some(running),
            Slot::Canary => balancer.canary = Some(running),
        }
        Ok(())
    }

    async fn set_weight(
        &self,
        env: &EnvName,
        service: Service,
        percent: u8,
    ) -> Result<(), CloudError> {
        let services = self.services.lock().await;
        let balancer = services
            .get(&(env.clone(), service))
            .ok_or_else(|| CloudError::Invalid(format!("{env} runs no {}", service.as_str())))?;
        balancer.proxy.set_weight(percent);
        Ok(())
    }

    async fn metrics(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        _interval: std::time::Duration,
    ) -> Result<Metrics, CloudError> {
        let services = self.services.lock().await;
        Ok(services.get(&(env.clone(), service)).map_or(
            Metrics {
                requests: 0,
                errors: 0,
                p99_ms: None,
            },
            |b| b.proxy.take(slot),
        ))
    }

    async fn promote(
        &self,
        env: &EnvName,
        service: Service,
        release: &Release,
    ) -> Result<(), CloudError> {
        let mut services = self.services.lock().await;
        let balancer = services
            .get_mut(&(env.clone(), service))
            .ok_or_else(|| CloudError::Invalid(format!("{env} runs no {}", service.as_str())))?;
        if balancer.stable.as_ref().map(|r| &r.release) == Some(release) {
            return Ok(());
        }
        if balancer.canary.as_ref().map(|r| &r.release) != Some(release) {
            return Err(CloudError::Invalid(format!(
                "{} {} does not run in {env}",
                service.as_str(),
                release.version
            )));
        }
        let promoted = balancer.canary.take();
        let replaced = std::mem::replace(&mut balancer.stable, promoted);
        // The upstreams and the weight change under one lock of the proxy's table: no
        // request goes to a half-swapped pair.
        balancer.proxy.swap(
            balancer.stable.as_ref().map(|r| r.addr),
            replaced.as_ref().map(|r| r.addr),
        );
        balancer.canary = replaced;
        Ok(())
    }

    async fn retire(&self, env: &EnvName, service: Service, slot: Slot) -> Result<(), CloudError> {
        let mut services = self.services.lock().await;
        if let Some(balancer) = services.get_mut(&(env.clone(), service)) {
            if slot == Slot::Canary {
                balancer.proxy.set_weight(0);
            }
            balancer.proxy.set_upstream(slot, None);
            match slot {
                Slot::Stable => balancer.stable = None,
                Slot::Canary => balancer.canary = None,
            }
        }
        Ok(())
    }

    async fn url(&self, env: &EnvName, service: Service) -> Option<String> {
        let services = self.services.lock().await;
        services.get(&(env.clone(), service)).map(|b| b.proxy.url())
    }
}
