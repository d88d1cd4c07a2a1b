//! A simulated cloud: resources go through AWS's states (creating → active, deleting → gone)
//! on AWS-like durations, and calls fail on demand (throttling, transient errors, some of them
//! after the change was made, as a timed-out AWS call can). Split by service as the AWS adapter
//! is: what EC2 and EKS do to a resource on an in-place change lives in `ec2` and `eks`.

mod databases;
mod ec2;
mod eks;
mod faults;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::names;
use envplane_domain::resources::{Observed, Planned, ResourceKind, tags};
use time::OffsetDateTime;

use crate::{
    Cloud, CloudError, Image, Modification, Resource, ResourceState, SharedClock, Snapshot,
    SnapshotState,
};

pub use databases::SimulatedDatabases;
use faults::Fault;
pub use faults::{Faults, LatencyProfile, RESTORE_STEPS};

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
    /// Snapshots by `operation/volume id`, with when each completes.
    #[serde(default)]
    taken: BTreeMap<String, SimulatedSnapshot>,
    /// Machine images by `label/host id`.
    #[serde(default)]
    images: BTreeMap<String, Image>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SimulatedSnapshot {
    snapshot: Snapshot,
    done_at: OffsetDateTime,
}

/// The stack name of a local plane: what its resources carry as `envplane:stack`.
pub const LOCAL_STACK: &str = "envplane-local";

/// The simulated cloud.
pub struct Simulator {
    state: Mutex<State>,
    profile: LatencyProfile,
    faults: Faults,
    clock: SharedClock,
    file: Option<std::path::PathBuf>,
    stack: String,
    changes_drawn: Mutex<Vec<ChangeDrawn>>,
    creations_drawn: Mutex<BTreeMap<String, std::time::Duration>>,
}

/// An in-place change this simulator made, and how long it kept its resource busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDrawn {
    /// The resource's name.
    pub resource: String,
    /// Whether it was a Kubernetes version step (which node groups take only after their
    /// control plane).
    pub version: bool,
    /// How long it took.
    pub took: std::time::Duration,
}

impl Simulator {
    /// A simulator with a latency profile, faults and a clock.
    pub fn new(profile: LatencyProfile, faults: Faults, clock: SharedClock) -> Self {
        let state = State {
            resources: BTreeMap::new(),
            next_id: 1,
            rng: faults.seed.max(1),
            calls: 0,
            taken: BTreeMap::new(),
            images: BTreeMap::new(),
        };
        Self {
            state: Mutex::new(state),
            profile,
            faults,
            clock,
            file: None,
            stack: LOCAL_STACK.to_owned(),
            changes_drawn: Mutex::default(),
            creations_drawn: Mutex::default(),
        }
    }

    /// A simulator whose resources are kept in `file`, so they outlive a restart (or a kill -9)
    /// of the process, as real resources outlive their creator.
    pub fn persistent(
        profile: LatencyProfile,
        faults: Faults,
        clock: SharedClock,
        file: &std::path::Path,
    ) -> Result<Self, String> {
        let mut simulator = Self::new(profile, faults, clock);
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

    /// The latest time a simulator kept in `file` recorded (a creation, a readiness, a
    /// deletion's or a change's end, a snapshot's completion): where a restarted plane's
    /// clock must start so that its time never runs back, whatever the time scale before.
    pub fn latest_time(file: &std::path::Path) -> Result<Option<OffsetDateTime>, String> {
        if !file.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a simulator state: {e}", file.display()))?;
        let times = state.resources.values().flat_map(|s| {
            [
                Some(s.ready_at),
                s.gone_at,
                s.busy_until,
                s.resource.created_at,
            ]
        });
        Ok(times
            .chain(state.taken.values().map(|t| Some(t.done_at)))
            .flatten()
            .max())
    }

    /// Writes the state to the file, atomically, after a change.
    fn save(&self, state: &State) -> Result<(), CloudError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(state)
            .map_err(|e| CloudError::Transient(format!("simulator state: {e}")))?;
        replace_durably(file, &bytes)
            .map_err(|e| CloudError::Transient(format!("saving simulator state: {e}")))
    }

    /// API calls served so far.
    pub fn calls(&self) -> u64 {
        self.state.lock().map(|s| s.calls).unwrap_or(0)
    }

    /// How long the creation of each resource took (from its create call to active), by name:
    /// the durations this run actually drew (kept after the resource is gone), from which a
    /// benchmark computes the least time any schedule could have taken.
    pub fn creation_durations(&self) -> BTreeMap<String, std::time::Duration> {
        self.creations_drawn
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Every in-place change made so far, in order, with the time it took.
    pub fn changes_drawn(&self) -> Vec<ChangeDrawn> {
        self.changes_drawn
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Every resource that exists, whatever its tags: what an orphan check counts.
    pub fn all_resources(&self) -> Vec<Resource> {
        let now = self.clock.now();
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
    /// drift tests inject. `change` edits what the cloud reports of it, in its JSON form
    /// (`Resource::attributes`); `None` deletes it at once. False when there is no such
    /// resource or the edit does not leave a valid resource of its kind.
    pub fn tamper(
        &self,
        env: &EnvName,
        name: &str,
        change: Option<&dyn Fn(&mut serde_json::Value)>,
    ) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let Some(id) = find(&state, env, &self.stack, name).map(|s| s.resource.id.clone()) else {
            return false;
        };
        match change {
            Some(edit) => {
                let Some(s) = state.resources.get_mut(&id) else {
                    return false;
                };
                let mut json = s.resource.observed.to_json();
                edit(&mut json);
                match serde_json::from_value(json) {
                    Ok(observed) => s.resource.observed = observed,
                    Err(_) => return false,
                }
            }
            None => {
                state.resources.remove(&id);
                for s in state.resources.values_mut() {
                    if ours(&s.resource, env, &self.stack) {
                        ec2::forget_subnet(&mut s.resource.observed, name);
                    }
                }
            }
        }
        self.save(&state).is_ok()
    }

    /// Puts a resource someone else made into the cloud, as it is (tags included): what
    /// ownership tests plant beside an environment's own.
    pub fn plant(&self, resource: Resource) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let now = self.clock.now();
        state.resources.insert(
            resource.id.clone(),
            Simulated {
                resource,
                depends_on: Vec::new(),
                ready_at: now,
                gone_at: None,
                busy_until: None,
            },
        );
        self.save(&state).is_ok()
    }

    /// Refuses to change or delete what this stack did not make, by the tags the cloud holds
    /// (not the caller's copy).
    fn check_owned(&self, state: &State, resource: &Resource) -> Result<(), CloudError> {
        match state.resources.get(&resource.id) {
            Some(s) => crate::check_owned(
                &s.resource.tags,
                &self.stack,
                &format!("{} ({})", resource.name, resource.id),
            ),
            None => Ok(()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, CloudError> {
        self.state
            .lock()
            .map_err(|_| CloudError::Transient("simulator poisoned".into()))
    }

    /// Counts a call, draws its fault, and brings the resources up to `now`.
    fn begin(
        &self,
        what: &str,
    ) -> Result<(std::sync::MutexGuard<'_, State>, OffsetDateTime, Fault), CloudError> {
        let now = self.clock.now();
        let mut state = self.lock()?;
        refresh(&mut state, now);
        state.calls += 1;
        let fault = self.faults.draw(&mut state.rng, what);
        Ok((state, now, fault))
    }

    /// Saves a change and answers as the fault says: a fault after the change still fails.
    fn finish<T>(
        &self,
        state: &mut State,
        now: OffsetDateTime,
        fault: Fault,
        out: T,
    ) -> Result<T, CloudError> {
        refresh(state, now);
        self.save(state)?;
        match fault {
            Fault::After(error) => Err(error),
            _ => Ok(out),
        }
    }
}

/// Whether `resource` is `env`'s and made by `stack`: nothing else is seen, changed or deleted.
/// Replaces `path` with `bytes` so that a crash or a power cut leaves the old content or the
/// new, never half of one, and never loses a replacement already answered for: the new file
/// is written and flushed to disk, renamed over the old (atomic), and the rename flushed.
fn replace_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn ours(resource: &Resource, env: &EnvName, stack: &str) -> bool {
    resource.tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str())
        && resource.tags.get(tags::STACK).map(String::as_str) == Some(stack)
}

fn refresh(state: &mut State, now: OffsetDateTime) {
    state
        .resources
        .retain(|_, s| s.gone_at.is_none_or(|gone| gone > now));
    for s in state.resources.values_mut() {
        let r = &mut s.resource;
        if s.busy_until.is_some_and(|t| t <= now) {
            s.busy_until = None;
            r.updating = false;
            ec2::settle(&mut r.observed, &mut r.state);
            continue;
        }
        if r.state == ResourceState::Creating && s.ready_at <= now && ec2::powered(&r.observed) {
            r.state = ResourceState::Active;
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
        ResourceKind::LoadBalancer => "alb",
        ResourceKind::Listener => "listener",
    }
}

fn find<'a>(state: &'a State, env: &EnvName, stack: &str, name: &str) -> Option<&'a Simulated> {
    state
        .resources
        .values()
        .find(|s| s.resource.name == name && ours(&s.resource, env, stack) && s.gone_at.is_none())
}

/// Creates `p` in `state`, as AWS would report it once made.
fn create(
    state: &mut State,
    stack: &str,
    env: &EnvName,
    operation: &str,
    p: &Planned,
    ready_at: OffsetDateTime,
    now: OffsetDateTime,
) {
    let id = format!("{}-{:08x}", prefix(p.kind()), state.next_id);
    state.next_id += 1;
    let mut resource_tags = BTreeMap::from([
        (tags::ENVIRONMENT.to_owned(), env.to_string()),
        (tags::STACK.to_owned(), stack.to_owned()),
        (tags::OPERATION.to_owned(), operation.to_owned()),
        (tags::NAME.to_owned(), p.name.clone()),
    ]);
    if matches!(&p.desired, envplane_domain::resources::Desired::Volume(v) if v.backup) {
        resource_tags.insert(tags::BACKUP.to_owned(), "true".to_owned());
    }
    let resource = Resource {
        created_at: Some(now),
        id: id.clone(),
        name: p.name.clone(),
        state: ResourceState::Creating,
        observed: Observed::as_created(&p.desired, || names::target_group_aws_name(&p.name)),
        updating: false,
        tags: resource_tags,
    };
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
}

#[async_trait]
impl Cloud for Simulator {
    async fn ensure(
        &self,
        env: &EnvName,
        operation: &str,
        planned: &[Planned],
    ) -> Result<Vec<Resource>, CloudError> {
        let (mut state, now, fault) = self.begin("ensure")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        // Passes until nothing more can be created: what depends on a resource that became
        // active at once (the instant profile, or a VPC) is created in the same call.
        loop {
            let mut created = false;
            for p in planned {
                if find(&state, env, &self.stack, &p.name).is_some() {
                    continue;
                }
                let ready = p.depends_on.iter().all(|dep| {
                    find(&state, env, &self.stack, dep)
                        .is_some_and(|d| d.resource.state == ResourceState::Active)
                });
                if !ready {
                    continue;
                }
                let took = self.profile.create(p.kind(), self.faults.seed, &p.name);
                if let Ok(mut drawn) = self.creations_drawn.lock() {
                    drawn.insert(p.name.clone(), took);
                }
                let ready_at = now + took;
                create(&mut state, &self.stack, env, operation, p, ready_at, now);
                refresh(&mut state, now);
                created = true;
            }
            if !created {
                break;
            }
        }
        let out: Vec<Resource> = planned
            .iter()
            .filter_map(|p| find(&state, env, &self.stack, &p.name).map(|s| s.resource.clone()))
            .collect();
        self.finish(&mut state, now, fault, out)
    }

    async fn list(&self, env: &EnvName) -> Result<Vec<Resource>, CloudError> {
        let (state, _, fault) = self.begin("describe")?;
        if let Fault::Before(error) | Fault::After(error) = fault {
            return Err(error);
        }
        Ok(state
            .resources
            .values()
            .filter(|s| ours(&s.resource, env, &self.stack))
            .map(|s| s.resource.clone())
            .collect())
    }

    async fn delete(&self, resource: &Resource) -> Result<(), CloudError> {
        let (mut state, now, fault) = self.begin("delete")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        self.check_owned(&state, resource)?;
        let env = resource.tags.get(tags::ENVIRONMENT).cloned();
        let dependents: Vec<String> = state
            .resources
            .values()
            .filter(|s| {
                s.resource.tags.get(tags::ENVIRONMENT) == env.as_ref()
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
        let gone_at = now
            + self
                .profile
                .delete(resource.kind(), self.faults.seed, &resource.name);
        if let Some(s) = state.resources.get_mut(&resource.id)
            && s.gone_at.is_none()
        {
            s.resource.state = ResourceState::Deleting;
            s.gone_at = Some(gone_at);
        }
        self.finish(&mut state, now, fault, ())
    }

    async fn modify(
        &self,
        env: &EnvName,
        resource: &Resource,
        change: &Modification,
    ) -> Result<(), CloudError> {
        let (mut state, now, fault) = self.begin("modify")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        self.check_owned(&state, resource)?;
        let cluster_version = find(&state, env, &self.stack, &names::cluster(env)).and_then(|c| {
            match &c.resource.observed {
                Observed::Cluster(c) => c.version.clone(),
                _ => None,
            }
        });
        let key = format!("{} {}", resource.name, state.calls);
        let busy_for = self
            .profile
            .modify(resource.kind(), change, self.faults.seed, &key);
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
        let r = &mut s.resource;
        let applied = eks::modify(&r.name, &mut r.observed, change, cluster_version.as_deref())?
            || ec2::modify(&r.id, &mut r.observed, &mut r.state, change)?;
        if !applied {
            return Err(CloudError::Invalid(format!(
                "{change:?} does not apply to a {}",
                resource.kind().as_str()
            )));
        }
        // Busy even for no time: the next refresh settles a stop or start at once.
        r.updating = true;
        s.busy_until = Some(now + busy_for);
        if let Ok(mut drawn) = self.changes_drawn.lock() {
            drawn.push(ChangeDrawn {
                resource: resource.name.clone(),
                version: matches!(change, Modification::Version { .. }),
                took: busy_for,
            });
        }
        self.finish(&mut state, now, fault, ())
    }

    async fn snapshot(
        &self,
        env: &EnvName,
        operation: &str,
        volume: &Resource,
    ) -> Result<SnapshotState, CloudError> {
        let now = self.clock.now();
        let mut state = self.lock()?;
        state.calls += 1;
        let fault = self.faults.draw(&mut state.rng, "snapshot");
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let key = format!("{operation}/{}", volume.id);
        if !state.taken.contains_key(&key) {
            let id = format!("snap-{:08x}", state.next_id);
            state.next_id += 1;
            let name = names::pre_change_snapshot(&volume.name, operation);
            let snapshot = Snapshot {
                id,
                tags: BTreeMap::from([
                    (tags::ENVIRONMENT.to_owned(), env.to_string()),
                    (tags::STACK.to_owned(), self.stack.clone()),
                    (tags::OPERATION.to_owned(), operation.to_owned()),
                    (tags::NAME.to_owned(), name.clone()),
                ]),
                name,
                started_at: now,
            };
            let done_at = now + self.profile.snapshot(self.faults.seed, &key);
            state
                .taken
                .insert(key.clone(), SimulatedSnapshot { snapshot, done_at });
        }
        let done = state.taken.get(&key).is_some_and(|t| t.done_at <= now);
        self.save(&state)?;
        match fault {
            Fault::After(error) => Err(error),
            _ if done => Ok(SnapshotState::Completed),
            _ => Ok(SnapshotState::Pending),
        }
    }

    async fn snapshots(&self, env: &EnvName) -> Result<Vec<Snapshot>, CloudError> {
        let (state, _, fault) = self.begin("describe snapshots")?;
        if let Fault::Before(error) | Fault::After(error) = fault {
            return Err(error);
        }
        let ours = |t: &BTreeMap<String, String>| {
            t.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str())
                && t.get(tags::STACK) == Some(&self.stack)
        };
        Ok(state
            .taken
            .values()
            .filter(|t| ours(&t.snapshot.tags))
            .map(|t| t.snapshot.clone())
            .collect())
    }

    async fn delete_snapshot(&self, snapshot: &Snapshot) -> Result<(), CloudError> {
        let (mut state, now, fault) = self.begin("delete snapshot")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let key = state
            .taken
            .iter()
            .find(|(_, t)| t.snapshot.id == snapshot.id)
            .map(|(k, t)| (k.clone(), t.snapshot.tags.clone()));
        if let Some((key, stored)) = key {
            crate::check_owned(&stored, &self.stack, &snapshot.id)?;
            state.taken.remove(&key);
        }
        self.finish(&mut state, now, fault, ())
    }

    async fn image(&self, env: &EnvName, label: &str, host: &Resource) -> Result<(), CloudError> {
        let (mut state, now, fault) = self.begin("create image")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        self.check_owned(&state, host)?;
        let key = format!("{label}/{}", host.id);
        if !state.images.contains_key(&key) {
            let id = format!("ami-{:08x}", state.next_id);
            let snapshot = format!("snap-{:08x}", state.next_id + 1);
            state.next_id += 2;
            let name = format!("{}-{label}", host.name);
            let image = Image {
                id,
                tags: BTreeMap::from([
                    (tags::ENVIRONMENT.to_owned(), env.to_string()),
                    (tags::STACK.to_owned(), self.stack.clone()),
                    (tags::OPERATION.to_owned(), label.to_owned()),
                    (tags::NAME.to_owned(), name.clone()),
                ]),
                name,
                created_at: now,
                snapshots: vec![snapshot],
            };
            state.images.insert(key, image);
        }
        self.finish(&mut state, now, fault, ())
    }

    async fn images(&self, env: &EnvName) -> Result<Vec<Image>, CloudError> {
        let (state, _, fault) = self.begin("describe images")?;
        if let Fault::Before(error) | Fault::After(error) = fault {
            return Err(error);
        }
        Ok(state
            .images
            .values()
            .filter(|i| {
                i.tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(env.as_str())
                    && i.tags.get(tags::STACK) == Some(&self.stack)
            })
            .cloned()
            .collect())
    }

    async fn delete_image(&self, image: &Image) -> Result<(), CloudError> {
        let (mut state, now, fault) = self.begin("deregister image")?;
        if let Fault::Before(error) = fault {
            return Err(error);
        }
        let key = state
            .images
            .iter()
            .find(|(_, i)| i.id == image.id)
            .map(|(k, i)| (k.clone(), i.tags.clone()));
        if let Some((key, stored)) = key {
            crate::check_owned(&stored, &self.stack, &image.id)?;
            state.images.remove(&key);
        }
        self.finish(&mut state, now, fault, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envplane_domain::resources::plan;
    use envplane_domain::{Blueprint, Tier, VpcCidr};
    use std::sync::Arc;
    use std::time::Duration;

    fn clock() -> (Arc<Mutex<OffsetDateTime>>, SharedClock) {
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
            .find(|r| r.kind() == ResourceKind::Vpc)
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

    #[tokio::test]
    async fn a_restarted_plane_starts_no_earlier_than_anything_it_recorded() {
        let dir = tempfile_dir();
        let file = dir.join("cloud.json");
        assert_eq!(Simulator::latest_time(&file), Ok(None));
        let (now, reader) = clock();
        let sim = Simulator::persistent(LatencyProfile::Realistic, Faults::NONE, reader, &file)
            .expect("persistent");
        let env = EnvName::parse("dev").expect("valid");
        let planned = plan(
            &env,
            &Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0)),
        );
        let vpc: Vec<_> = planned.into_iter().take(1).collect();
        let made = sim.ensure(&env, "op", &vpc).await.expect("ensure");
        *now.lock().expect("clock") += Duration::from_secs(2);
        sim.delete(&made[0]).await.expect("delete");
        // The deletion ends later on this plane's clock (what this seed drew for it): a
        // restart starts there.
        let latest = Simulator::latest_time(&file)
            .expect("readable")
            .expect("a time");
        let deletion =
            LatencyProfile::Realistic.delete(ResourceKind::Vpc, Faults::NONE.seed, &made[0].name);
        assert!(deletion > Duration::ZERO);
        assert_eq!(
            latest,
            OffsetDateTime::UNIX_EPOCH + Duration::from_secs(2) + deletion
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("envplane-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
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
