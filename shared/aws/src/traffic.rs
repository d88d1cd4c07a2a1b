//! The traffic port on AWS: each service has two tracks (blue and green), each a target group
//! and, on the cluster, a Deployment (`Workloads`); the environment's listeners forward to the
//! service's two tracks by weight (the frontend by their default action, the backend by the
//! `/api/*` rule), and CloudWatch measures each track. Which track is stable is recorded on
//! the load balancer (`envplane:stable:{service}`), and the version each track runs
//! (`envplane:version:{service}:{track}`), so that any Lambda invocation finds them and a
//! promotion repeated after a retry changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::Tag;
use envplane_cloud::{CloudError, Slot, Traffic, Workload, Workloads};
use envplane_domain::EnvName;
use envplane_domain::canary::Metrics;
use envplane_domain::deployment::Release;
use envplane_domain::names::{self, Service, Track};
use envplane_domain::resources::{desired, tags};

use crate::errors::cloud_error;
use crate::{AlbMetrics, ListenerWeights, OnFirstUse, TargetGroupDimensions};

/// Pods per track of a new version (the node groups' autoscaling adds nodes for them).
const REPLICAS: u32 = 2;

/// The environment's load balancer as the adapter needs it.
struct Balancer {
    arn: String,
    dns_name: Option<String>,
    tags: BTreeMap<String, String>,
    /// The envplane listeners' ARNs.
    listeners: Vec<String>,
}

/// The traffic port over ELBv2, CloudWatch and the cluster's workloads.
pub struct AwsTraffic {
    elb: OnFirstUse<Client>,
    weights: ListenerWeights,
    metrics: AlbMetrics,
    workloads: Arc<dyn Workloads>,
    stack: String,
}

fn stable_key(service: Service) -> String {
    format!("envplane:stable:{}", service.as_str())
}

fn version_key(service: Service, track: Track) -> String {
    format!("envplane:version:{}:{}", service.as_str(), track.as_str())
}

/// What a track runs, as its tag says: the version and a digest of the whole release (image
/// and environment too), so that a redeployment of a version with other settings is told
/// apart, as the local adapter does.
fn release_tag(release: &Release) -> String {
    let material = format!(
        "{:?}|{:?}|{:?}",
        release.version, release.image, release.env
    );
    let digest = names::fnv1a(material.as_bytes());
    format!("{}@{:08x}", release.version, digest as u32)
}

impl AwsTraffic {
    /// Traffic on this stack's load balancers, its versions run by `workloads`.
    pub fn new(
        elb: impl Into<OnFirstUse<Client>>,
        metrics: AlbMetrics,
        workloads: Arc<dyn Workloads>,
        stack: impl Into<String>,
    ) -> Self {
        let stack = stack.into();
        let elb = elb.into();
        Self {
            weights: ListenerWeights::new(elb.clone(), stack.clone()),
            elb,
            metrics,
            workloads,
            stack,
        }
    }

    async fn balancer(&self, env: &EnvName) -> Result<Balancer, CloudError> {
        let name = names::target_group_aws_name(&names::load_balancer(env));
        let found = self
            .elb
            .describe_load_balancers()
            .names(&name)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeLoadBalancers", e))?;
        let b = found
            .load_balancers()
            .first()
            .ok_or_else(|| CloudError::Invalid(format!("{env} has no load balancer")))?;
        let arn = b
            .load_balancer_arn()
            .ok_or_else(|| CloudError::Invalid(format!("{name} has no ARN")))?
            .to_owned();
        let listeners: Vec<String> = self
            .elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeListeners", e))?
            .listeners()
            .iter()
            .filter_map(|l| l.listener_arn().map(str::to_owned))
            .collect();
        let mut all = vec![arn.clone()];
        all.extend(listeners.iter().cloned());
        let mut tagged = crate::cloud::elbv2::tags_of(&self.elb, all).await?;
        let tags = tagged.remove(&arn).unwrap_or_default();
        envplane_cloud::check_owned(&tags, &self.stack, &name)?;
        let listeners = listeners
            .into_iter()
            .filter(|l| {
                tagged.get(l).is_some_and(|t| {
                    t.get(tags::STACK) == Some(&self.stack) && t.contains_key(tags::NAME)
                })
            })
            .collect();
        Ok(Balancer {
            arn,
            dns_name: b.dns_name().map(str::to_owned),
            tags,
            listeners,
        })
    }

    fn stable(balancer: &Balancer, service: Service) -> Track {
        match balancer.tags.get(&stable_key(service)).map(String::as_str) {
            Some("green") => Track::Green,
            _ => Track::Blue,
        }
    }

    fn track(balancer: &Balancer, service: Service, slot: Slot) -> Track {
        let stable = Self::stable(balancer, service);
        match slot {
            Slot::Stable => stable,
            Slot::Canary => stable.other(),
        }
    }

    async fn target_group(
        &self,
        env: &EnvName,
        service: Service,
        track: Track,
    ) -> Result<String, CloudError> {
        let name = names::target_group_aws_name(&names::track_target_group(env, service, track));
        let found = self
            .elb
            .describe_target_groups()
            .names(&name)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeTargetGroups", e))?;
        found
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .map(str::to_owned)
            .ok_or_else(|| CloudError::Invalid(format!("no target group {name}")))
    }

    async fn tag(&self, arn: &str, key: String, value: &str) -> Result<(), CloudError> {
        self.elb
            .add_tags()
            .resource_arns(arn)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| cloud_error("AddTags", e))?;
        Ok(())
    }

    /// Gives `to` `percent` of the service's requests and `from` the rest, on every listener.
    async fn weigh(
        &self,
        env: &EnvName,
        balancer: &Balancer,
        service: Service,
        from: Track,
        to: Track,
        percent: u8,
    ) -> Result<(), CloudError> {
        let from = self.target_group(env, service, from).await?;
        let to = self.target_group(env, service, to).await?;
        for listener in &balancer.listeners {
            match service {
                Service::Frontend => self.weights.set(listener, &from, &to, percent).await?,
                Service::Backend => {
                    let rule = self.backend_rule(listener).await?;
                    self.weights.set_rule(&rule, &from, &to, percent).await?;
                }
            }
        }
        Ok(())
    }

    async fn backend_rule(&self, listener: &str) -> Result<String, CloudError> {
        let rules = self
            .elb
            .describe_rules()
            .listener_arn(listener)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeRules", e))?;
        rules
            .rules()
            .iter()
            .find(|r| {
                r.conditions().iter().any(|c| {
                    c.path_pattern_config().is_some_and(|p| {
                        p.values()
                            .iter()
                            .any(|v| v == desired::Listener::BACKEND_PATH)
                    })
                })
            })
            .and_then(|r| r.rule_arn())
            .map(str::to_owned)
            .ok_or_else(|| CloudError::Invalid(format!("listener {listener} has no backend rule")))
    }
}

#[async_trait]
impl Traffic for AwsTraffic {
    async fn launch(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        release: &Release,
    ) -> Result<(), CloudError> {
        let balancer = self.balancer(env).await?;
        let track = Self::track(&balancer, service, slot);
        let target_group_arn = self.target_group(env, service, track).await?;
        self.workloads
            .apply(&Workload {
                env,
                service,
                track,
                release,
                target_group_arn: &target_group_arn,
                replicas: REPLICAS,
            })
            .await?;
        self.tag(
            &balancer.arn,
            version_key(service, track),
            &release_tag(release),
        )
        .await
    }

    async fn set_weight(
        &self,
        env: &EnvName,
        service: Service,
        percent: u8,
    ) -> Result<(), CloudError> {
        let balancer = self.balancer(env).await?;
        let stable = Self::stable(&balancer, service);
        self.weigh(env, &balancer, service, stable, stable.other(), percent)
            .await
    }

    async fn metrics(
        &self,
        env: &EnvName,
        service: Service,
        slot: Slot,
        interval: Duration,
    ) -> Result<Metrics, CloudError> {
        let balancer = self.balancer(env).await?;
        let track = Self::track(&balancer, service, slot);
        let target_group = self.target_group(env, service, track).await?;
        let on = TargetGroupDimensions::from_arns(&balancer.arn, &target_group)
            .ok_or_else(|| CloudError::Invalid(format!("no dimensions for {target_group}")))?;
        let end = SystemTime::now();
        let start = end - interval.max(Duration::from_secs(60));
        // CloudWatch's finest ALB period is a minute.
        let period = i32::try_from(interval.as_secs().max(60)).unwrap_or(i32::MAX);
        self.metrics
            .interval(&on, DateTime::from(start), DateTime::from(end), period)
            .await
    }

    async fn promote(
        &self,
        env: &EnvName,
        service: Service,
        release: &Release,
    ) -> Result<(), CloudError> {
        let balancer = self.balancer(env).await?;
        let stable = Self::stable(&balancer, service);
        let wanted = release_tag(release);
        let running = |track: Track| balancer.tags.get(&version_key(service, track));
        if running(stable) == Some(&wanted) {
            // Already stable (a retried promotion): a swap now would undo it.
            return Ok(());
        }
        let promoted = stable.other();
        if running(promoted) != Some(&wanted) {
            return Err(CloudError::Invalid(format!(
                "{} {} does not run in {env}",
                service.as_str(),
                release.version
            )));
        }
        // All traffic to the promoted track in one change per listener; the old one stays
        // warm at weight 0 until retired.
        self.weigh(env, &balancer, service, stable, promoted, 100)
            .await?;
        self.tag(&balancer.arn, stable_key(service), promoted.as_str())
            .await
    }

    async fn retire(&self, env: &EnvName, service: Service, slot: Slot) -> Result<(), CloudError> {
        let balancer = self.balancer(env).await?;
        let track = Self::track(&balancer, service, slot);
        if slot == Slot::Canary {
            let stable = track.other();
            self.weigh(env, &balancer, service, stable, track, 0)
                .await?;
        }
        self.workloads.scale(env, service, track, 0).await
    }

    async fn url(&self, env: &EnvName, _service: Service) -> Option<String> {
        let balancer = self.balancer(env).await.ok()?;
        balancer.dns_name.map(|dns| format!("http://{dns}"))
    }
}
