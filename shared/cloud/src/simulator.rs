//! A simulated cloud: resources go through AWS's states (creating → active, deleting → gone)
//! on AWS-like durations, and calls fail on demand (throttling, transient errors, some of them
//! after the change was made, as a timed-out AWS call can).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::resources::{Planned, ResourceKind, tags};
use time::OffsetDateTime;

use crate::{Cloud, CloudError, Modification, Resource, ResourceState, SnapshotState};

/// How long simulated resources take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyProfile {
    /// Everything is ready at once.
    Instant,
    /// AWS-like durations: EKS cluster ~10 min, node group ~4 min, NAT ~2 min, instance ~1 min.
    Realistic,
}

impl LatencyProfile {
    /// Parses `instant` or `realistic`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "instant" => Ok(Self::Instant),
            "realistic" => Ok(Self::Realistic),
            other => Err(format!(
                "unknown latency profile {other:?}; use instant or realistic"
            )),
        }
    }

    /// Time from a create call to the resource being active.
    pub fn create(self, kind: ResourceKind) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(kind.typical_create_seconds()),
        }
    }

    /// Time an in-place change keeps a resource busy.
    pub fn modify(self, kind: ResourceKind, change: &Modification) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(change.typical_seconds(kind)),
        }
    }

    /// Time a snapshot of the database volume takes.
    pub fn snapshot(self) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(90),
        }
    }

    /// Time from a delete call to the resource being gone.
    pub fn delete(self, kind: ResourceKind) -> Duration {
        match self {
            Self::Instant => Duration::ZERO,
            Self::Realistic => Duration::from_secs(kind.typical_delete_seconds()),
        }
    }
}

/// Failure injection: each call is throttled with probability `throttle`, else fails with a
/// transient error with probability `error` (half of those after making the change).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability of `Throttled`.
    pub throttle: f64,
    /// Probability of `Transient`.
    pub error: f64,
    /// Seed of the random sequence, so a failing run can be replayed.
    pub seed: u64,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        throttle: 0.0,
        error: 0.0,
        seed: 1,
    };

    /// Parses `throttle=0.1,error=0.05,seed=7` (each part optional).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut faults = Faults::NONE;
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let probability = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("{key}: {value:?} is not a probability"))
            };
            match key {
                "throttle" => faults.throttle = probability()?,
                "error" => faults.error = probability()?,
                "seed" => {
                    faults.seed = value
                        .parse()
                        .map_err(|_| format!("seed: {value:?} is not a number"))?
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; faults: throttle, error, seed"
                    ));
                }
            }
        }
        Ok(faults)
    }
}

/// The simulator's clock.
pub type Now = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

#[derive(serde::Serialize, serde::Deserialize)]
struct Simulated {
    resource: Resource,
    depends_on: Vec<String>,
    ready_at: OffsetDateTime,
    gone_at: Option<OffsetDateTime>,
    /// Until when an in-place change keeps it busy.
    #[serde(default)]
    busy_until: Option<OffsetDateTime>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    resources: BTreeMap<String, Simulated>,
    next_id: u64,
    rng: u64,
    calls: u64,
    /// Snapshots by `operation/volume id`: when each completes.
    #[serde(default)]
    snapshots: BTreeMap<String, OffsetDateTime>,
}

/// The simulated cloud.
pub struct Simulator {
    state: Mutex<State>,
    profile: LatencyProfile,
    faults: Faults,
    now: Now,
    file: Option<std::path::PathBuf>,
}

enum Fault {
    None,
    Before(CloudError),
    After(CloudError),
}

impl Simulator {
    /// A simulator with a latency profile, faults and a clock.
    pub fn new(profile: LatencyProfile, faults: Faults, now: Now) -> Self {
        let state = State {
            resources: BTreeMap::new(),
            next_id: 1,
            rng: faults.seed.max(1),
            calls: 0,
            snapshots: BTreeMap::new(),
        };
        Self {
            state: Mutex::new(state),
            profile,
            faults,
            now,
            file: None,
        }
    }

    /// A simulator whose resources are kept in `file`, so they outlive a restart (or a kill -9)
    /// of the process, as real resources outlive their creator.
    pub fn persistent(
        profile: LatencyProfile,
        faults: Faults,
        now: Now,
        file: &std::path::Path,
    ) -> Result<Self, String> {
        let mut simulator = Self::new(profile, faults, now);
        if file.exists() {
            let bytes =
                std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let state: State = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a simulator state: {e}", file.display()))?;
            simulator.state = Mutex::new(state);
        }
        simulator.file = Some(file.to_owned());
        Ok(simulator)
    }

    /// Writes the state to the file, atomically, after a change.
    fn save(&self, state: &State) -> Result<(), CloudError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let tmp = file.with_extension("tmp");
        let bytes = serde_json::to_vec(state)
            .map_err(|e| CloudError::Transient(format!("simulator state: {e}")))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, file))
            .map_err(|e| CloudError::Transient(format!("saving simulator state: {e}")))
    }

    /// API calls served so far.
    pub fn calls(&self) -> u64 {
        self.state.lock().map(|s| s.calls).unwrap_or(0)
    }

    /// Every resource that exists, whatever its tags: what an orphan check counts.
    pub fn all_resources(&self) -> Vec<Resource> {
        let now = (self.now)();
        match self.state.lock() {
            Ok(mut state) => {
                refresh(&mut state, now);
                state
                    .resources
                    .values()
                    .map(|s| s.resource.clone())
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Changes a resource behind envplane's back, as a person with console access might: what
    /// drift tests inject. `change` edits its attributes; `None` deletes it at once.
    pub fn tamper(
        &self,
        env: &EnvName,
        name: &str,
        change: Option<&dyn Fn(&mut serde_json::Value)>,
    ) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let Some(id) = find(&state, env, name).map(|s| s.resource.id.clone()) else {
            return false;
        };
        match change {
            Some(edit) => {
                if let Some(s) = state.resources.get_mut(&id) {
                    edit(&mut s.resource.attributes);
                }
            }
            None => {
                state.resources.remove(&id);
                // Deleting a subnet ends its route table association, as in AWS.
                for s in state.resources.values_mut() {
                    let ours = s.resource.tags.get(tags::ENVIRONMENT).map(String::as_str)
                        == Some(env.as_str());
                    if ours
                        && let Some(served) = s
                            .resource
                            .attributes
                            .get_mut("subnets")
                            .and_then(|v| v.as_array_mut())
                    {
                        served.retain(|n| n.as_str() != Some(name));
                    }
                }
            }
        }
        self.save(&state).is_ok()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, CloudError> {
        self.state
            .lock()
            .map_err(|_| CloudError::Transient("simulator poisoned".into()))
    }

    fn call(&self, state: &mut State, what: &str) -> Fault {
        state.calls += 1;
        let mut draw = || {
            // xorshift64*: small, seedable, good enough to spread faults.
            state.rng ^= state.rng >> 12;
            state.rng ^= state.rng << 25;
            state.rng ^= state.rng >> 27;
            (state.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (a, b) = (draw(), draw());
        if a < self.faults.throttle {
            Fault::Before(CloudError::Throttled(format!(
                "{what}: Rate exceeded (simulated)"
            )))
        } else if a < self.faults.throttle + self.faults.error {
            let error = CloudError::Transient(format!("{what}: InternalError (simulated)"));
            if b < 0.5 {
                Fault::Before(error)
            } else {
                Fault::After(error)
            }
        } else {
            Fault::None
        }
    }
}

fn refresh(state: &mut State, now: OffsetDateTime) {
    state
        .resources
        .retain(|_, s| s.gone_at.is_none_or(|gone| gone > now));
    for s in state.resources.values_mut() {
        if s.busy_until.is_some_and(|t| t <= now) {
            s.busy_until = None;
            let a = &mut s.resource.attributes;
            a["updating"] = serde_json::Value::Bool(false);
            match a["power"].as_str() {
                Some("stopping") => a["power"] = "stopped".into(),
                Some("pending") => {
                    a["power"] = "running".into();
                    s.resource.state = ResourceState::Active;
                }
                _ => {}
            }
            continue;
        }
        if s.resource.state == ResourceState::Creating
            && s.ready_at <= now
            && s.resource.attributes["power"]
                .as_str()
                .is_none_or(|p| p == "running")
        {
            s.resource.state = ResourceState::Active;
        }
    }
}

fn prefix(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Vpc => "vpc",
        ResourceKind::Subnet => "subnet",
        ResourceKind::InternetGateway => "igw",
        ResourceKind::ElasticIp => "eipalloc",
        ResourceKind::NatGateway => "nat",
        ResourceKind::RouteTable => "rtb",
        ResourceKind::SecurityGroup => "sg",
        ResourceKind::Cluster => "eks",
        ResourceKind::NodeGroup => "ng",
        ResourceKind::DbInstance => "i",
        ResourceKind::Volume => "vol",
        ResourceKind::TargetGroup => "tg",
    }
}

fn find<'a>(state: &'a State, env: &EnvName, name: &str) -> Option<&'a Simulated> {
    state.resources.values().find(|s| {
        s.resource.name == name
            && s.resource.tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str())
            && s.gone_at.is_none()
    })
}

#[async_trait]
impl Cloud for Simulator {
    async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        planned: &[Planned],
    ) -> Result<Vec<Resource>, CloudError> {
        let now = (self.now)();
        let mut state = self
            .state
            .lock()
            .map_err(|_| CloudError::Transient("simulator poisoned".into()))?;
        refresh(&mut state, now);
        let fault = self.call(&mut state, "ensure");
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        // Passes until nothing more can be created: what depends on a resource that became
        // active at once (the instant profile, or a VPC) is created in the same call.
        loop {
            let mut created = false;
            for p in planned {
                if find(&state, env, &p.name).is_some() {
                    continue;
                }
                let ready = p.depends_on.iter().all(|dep| {
                    find(&state, env, dep)
                        .is_some_and(|d| d.resource.state == ResourceState::Active)
                });
                if !ready {
                    continue;
                }
                let id = format!("{}-{:08x}", prefix(p.kind), state.next_id);
                state.next_id += 1;
                let mut resource_tags = BTreeMap::from([
                    (tags::ENVIRONMENT.to_owned(), env.to_string()),
                    (tags::OPERATION.to_owned(), operation.to_owned()),
                    ("Name".to_owned(), p.name.clone()),
                ]);
                if p.attributes
                    .get("backup")
                    .and_then(serde_json::Value::as_bool)
                    == Some(true)
                {
                    resource_tags.insert(tags::BACKUP.to_owned(), "true".to_owned());
                }
                let mut attributes = p.attributes.clone();
                if p.kind == ResourceKind::DbInstance {
                    attributes["power"] = "running".into();
                }
                let resource = Resource {
                    created_at: Some(now),
                    kind: p.kind,
                    id: id.clone(),
                    name: p.name.clone(),
                    state: ResourceState::Creating,
                    attributes,
                    tags: resource_tags,
                };
                let ready_at = now + self.profile.create(p.kind);
                state.resources.insert(
                    id,
                    Simulated {
                        resource,
                        depends_on: p.depends_on.clone(),
                        ready_at,
                        gone_at: None,
                        busy_until: None,
                    },
                );
                refresh(&mut state, now);
                created = true;
            }
            if !created {
                break;
            }
        }
        let out: Vec<Resource> = planned
            .iter()
            .filter_map(|p| find(&state, env, &p.name).map(|s| s.resource.clone()))
            .collect();
        refresh(&mut state, now);
        self.save(&state)?;
        if let Fault::After(error) = fault {
            return Err(error);
        }
        Ok(out)
    }

    async fn list(&self, env: &EnvName) -> Result<Vec<Resource>, CloudError> {
        let now = (self.now)();
        let mut state = self
            .state
            .lock()
            .map_err(|_| CloudError::Transient("simulator poisoned".into()))?;
        refresh(&mut state, now);
        if let Fault::Before(error) | Fault::After(error) = self.call(&mut state, "describe") {
            return Err(error);
        }
        Ok(state
            .resources
            .values()
            .filter(|s| {
                s.resource.tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str())
            })
            .map(|s| s.resource.clone())
            .collect())
    }

    async fn delete(&self, resource: &Resource) -> Result<(), CloudError> {
        let now = (self.now)();
        let mut state = self
            .state
            .lock()
            .map_err(|_| CloudError::Transient("simulator poisoned".into()))?;
        refresh(&mut state, now);
        let fault = self.call(&mut state, "delete");
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let env = resource
            .tags
            .get(tags::ENVIRONMENT)
            .cloned()
            .unwrap_or_default();
        let dependents: Vec<String> = state
            .resources
            .values()
            .filter(|s| {
                s.resource.tags.get(tags::ENVIRONMENT) == Some(&env)
                    && s.depends_on.contains(&resource.name)
            })
            .map(|s| s.resource.name.clone())
            .collect();
        if !dependents.is_empty() {
            return Err(CloudError::Conflict(format!(
                "DependencyViolation: {} is still used by {}",
                resource.name,
                dependents.join(", ")
            )));
        }
        let profile = self.profile;
        if let Some(s) = state.resources.get_mut(&resource.id)
            && s.gone_at.is_none()
        {
            s.resource.state = ResourceState::Deleting;
            s.gone_at = Some(now + profile.delete(resource.kind));
        }
        refresh(&mut state, now);
        self.save(&state)?;
        if let Fault::After(error) = fault {
            return Err(error);
        }
        Ok(())
    }

    async fn modify(
        &self,
        env: &EnvName,
        resource: &Resource,
        change: &Modification,
    ) -> Result<(), CloudError> {
        let now = (self.now)();
        let mut state = self.lock()?;
        refresh(&mut state, now);
        let fault = self.call(&mut state, "modify");
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let cluster_version = find(&state, env, &format!("{env}-eks"))
            .and_then(|c| c.resource.attributes["version"].as_str().map(str::to_owned));
        let busy_for = self.profile.modify(resource.kind, change);
        let s = state
            .resources
            .get_mut(&resource.id)
            .filter(|s| s.gone_at.is_none())
            .ok_or_else(|| CloudError::Invalid(format!("{} does not exist", resource.id)))?;
        if s.busy_until.is_some() {
            return Err(CloudError::Conflict(format!(
                "ResourceInUseException: {} is being updated",
                resource.name
            )));
        }
        let a = &mut s.resource.attributes;
        match (resource.kind, change) {
            (ResourceKind::NodeGroup, Modification::Scale { min, desired, max }) => {
                a["min"] = (*min).into();
                a["desired"] = (*desired).into();
                a["max"] = (*max).into();
            }
            (
                ResourceKind::Cluster | ResourceKind::NodeGroup,
                Modification::Version { version },
            ) => {
                let current = a["version"].as_str().unwrap_or_default();
                let step = envplane_domain::spec::next_eks_version(current, version);
                if step.as_deref() != Some(version.as_str()) {
                    return Err(CloudError::Invalid(format!(
                        "InvalidParameterException: {} cannot move from {current} to {version}: one minor version up at a time",
                        resource.name
                    )));
                }
                if resource.kind == ResourceKind::NodeGroup
                    && cluster_version
                        .as_deref()
                        .and_then(envplane_domain::spec::eks_version)
                        < envplane_domain::spec::eks_version(version)
                {
                    return Err(CloudError::Invalid(format!(
                        "InvalidParameterException: node group {} cannot run {version}, newer than its control plane",
                        resource.name
                    )));
                }
                a["version"] = version.clone().into();
            }
            (
                ResourceKind::Volume,
                Modification::ModifyVolume {
                    size_gb,
                    iops,
                    throughput_mibps,
                },
            ) => {
                a["size_gb"] = (*size_gb).into();
                a["iops"] = (*iops).into();
                a["throughput_mibps"] = (*throughput_mibps).into();
            }
            (ResourceKind::DbInstance, Modification::StopInstance) => {
                a["power"] = "stopping".into();
                s.resource.state = ResourceState::Creating;
            }
            (ResourceKind::DbInstance, Modification::InstanceType { instance_type }) => {
                if a["power"].as_str() != Some("stopped") {
                    return Err(CloudError::Conflict(format!(
                        "IncorrectInstanceState: {} must be stopped to change its type",
                        resource.id
                    )));
                }
                a["instance_type"] = instance_type.clone().into();
            }
            (ResourceKind::DbInstance, Modification::StartInstance) => {
                a["power"] = "pending".into();
            }
            (ResourceKind::SecurityGroup, Modification::AuthorizeIngress { rules }) => {
                let mut now_rules = a["ingress"].as_array().cloned().unwrap_or_default();
                for rule in rules {
                    if !now_rules.contains(rule) {
                        now_rules.push(rule.clone());
                    }
                }
                a["ingress"] = now_rules.into();
            }
            (ResourceKind::RouteTable, Modification::AssociateSubnets { subnets }) => {
                let mut served = a["subnets"].as_array().cloned().unwrap_or_default();
                for name in subnets {
                    let name = serde_json::Value::String(name.clone());
                    if !served.contains(&name) {
                        served.push(name);
                    }
                }
                a["subnets"] = served.into();
            }
            (ResourceKind::SecurityGroup, Modification::RevokeIngress { rules }) => {
                let mut now_rules = a["ingress"].as_array().cloned().unwrap_or_default();
                now_rules.retain(|r| !rules.contains(r));
                a["ingress"] = now_rules.into();
            }
            (kind, change) => {
                return Err(CloudError::Invalid(format!(
                    "{change:?} does not apply to a {}",
                    kind.as_str()
                )));
            }
        }
        // Busy even for no time: the next refresh settles a stop or start at once.
        a["updating"] = true.into();
        s.busy_until = Some(now + busy_for);
        refresh(&mut state, now);
        self.save(&state)?;
        if let Fault::After(error) = fault {
            return Err(error);
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        _env: &EnvName,
        operation: &str,
        volume: &Resource,
    ) -> Result<SnapshotState, CloudError> {
        let now = (self.now)();
        let mut state = self.lock()?;
        let fault = self.call(&mut state, "snapshot");
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let key = format!("{operation}/{}", volume.id);
        let done_at = *state
            .snapshots
            .entry(key)
            .or_insert(now + self.profile.snapshot());
        self.save(&state)?;
        if let Fault::After(error) = fault {
            return Err(error);
        }
        Ok(if done_at <= now {
            SnapshotState::Completed
        } else {
            SnapshotState::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envplane_domain::resources::plan;
    use envplane_domain::{Blueprint, Tier, VpcCidr};

    fn clock() -> (Arc<Mutex<OffsetDateTime>>, Now) {
        let now = Arc::new(Mutex::new(OffsetDateTime::UNIX_EPOCH));
        let reader = now.clone();
        (now, Arc::new(move || *reader.lock().expect("clock")))
    }

    #[tokio::test]
    async fn resources_become_active_after_their_latency_and_wait_for_dependencies() {
        let (now, reader) = clock();
        let sim = Simulator::new(LatencyProfile::Realistic, Faults::NONE, reader);
        let env = EnvName::parse("dev").expect("valid");
        let planned = plan(
            &env,
            &Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
        );
        let network: Vec<_> = planned
            .iter()
            .filter(|p| p.group == envplane_domain::resources::Group::Network)
            .cloned()
            .collect();
        let first = sim.ensure(&env, "op", &network).await.expect("ensure");
        assert_eq!(
            first.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            vec!["dev-vpc"],
            "only what has no pending dependency"
        );
        *now.lock().expect("clock") += Duration::from_secs(2);
        let second = sim.ensure(&env, "op", &network).await.expect("ensure");
        assert!(second.len() > first.len());
        let again = sim.ensure(&env, "op", &network).await.expect("idempotent");
        assert_eq!(sim.list(&env).await.expect("list").len(), again.len());

        let vpc = again
            .iter()
            .find(|r| r.kind == ResourceKind::Vpc)
            .expect("vpc")
            .clone();
        assert!(
            matches!(sim.delete(&vpc).await, Err(CloudError::Conflict(_))),
            "subnets depend on it"
        );
    }

    #[tokio::test]
    async fn faults_follow_their_seed() {
        let run = |seed| async move {
            let (_, reader) = clock();
            let sim = Simulator::new(
                LatencyProfile::Instant,
                Faults {
                    throttle: 0.3,
                    error: 0.2,
                    seed,
                },
                reader,
            );
            let env = EnvName::parse("dev").expect("valid");
            let mut outcomes = Vec::new();
            for _ in 0..40 {
                outcomes.push(match sim.list(&env).await {
                    Ok(_) => 'o',
                    Err(CloudError::Throttled(_)) => 't',
                    Err(_) => 'e',
                });
            }
            outcomes.into_iter().collect::<String>()
        };
        let a = run(7).await;
        assert_eq!(a, run(7).await);
        assert_ne!(a, run(8).await);
        assert!(a.contains('t') && a.contains('e') && a.contains('o'), "{a}");
    }

    #[test]
    fn faults_parse() {
        assert_eq!(
            Faults::parse("throttle=0.1,error=0.05,seed=3"),
            Ok(Faults {
                throttle: 0.1,
                error: 0.05,
                seed: 3
            })
        );
        assert!(Faults::parse("throttle=2").is_err());
        assert!(Faults::parse("explode=0.1").is_err());
    }
}
