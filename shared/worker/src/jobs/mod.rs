//! The scheduled jobs, one module each: drift detection per tier (`drift`), and
//! housekeeping (`housekeeping`: expired previews, lost operations). One look at the cloud per
//! environment, within a call budget, stopping the cycle at the first throttle rather than
//! pressing on.

mod approvals;
mod backups;
mod drift;
mod drills;
mod housekeeping;
mod warm;

use std::sync::Arc;

use envplane_cloud::{Cloud, SharedClock, Traffic, system_clock};
use envplane_domain::{Environment, Tier};
use envplane_notify::Publisher;
use envplane_store::{EnvironmentQuery, StateStore, StoreError};
use envplane_workflow::Workflows;

pub use drift::{DriftLine, DriftRun};
pub use housekeeping::{Housekeeping, START_GRACE};

/// Principal the scheduler acts as.
pub const SCHEDULER_PRINCIPAL: &str = "envplane-scheduler";

/// Reads how many cloud API calls have been made so far (an SDK interceptor's count in AWS,
/// the simulator's in a local plane).
pub type CallMeter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The default API-call budget of one drift cycle: about 75 environments of 13 calls.
pub const DEFAULT_CALL_BUDGET: u64 = 1000;

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cloud refused or failed.
    #[error(transparent)]
    Cloud(#[from] envplane_cloud::CloudError),
    /// The environment cannot be backed up as it is.
    #[error("{0}")]
    NotReady(String),
}

/// The scheduled jobs over a store, a cloud and the flows.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn StateStore>,
    cloud: Arc<dyn Cloud>,
    workflows: Option<Arc<dyn Workflows>>,
    traffic: Option<Arc<dyn Traffic>>,
    databases: Option<Arc<dyn envplane_cloud::Databases>>,
    events: Arc<dyn Publisher>,
    calls: CallMeter,
    clock: SharedClock,
}

impl Jobs {
    /// Jobs over a store and a cloud whose calls `calls` counts.
    pub fn new(store: Arc<dyn StateStore>, cloud: Arc<dyn Cloud>, calls: CallMeter) -> Self {
        Self {
            store,
            cloud,
            workflows: None,
            databases: None,
            traffic: None,
            events: Arc::new(envplane_notify::Silent),
            calls,
            clock: system_clock(),
        }
    }

    /// Starts the flows of the operations housekeeping records.
    pub fn with_workflows(mut self, workflows: Arc<dyn Workflows>) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// Takes the databases' base backups there with each daily snapshot.
    pub fn with_databases(mut self, databases: Arc<dyn envplane_cloud::Databases>) -> Self {
        self.databases = Some(databases);
        self
    }

    /// Stops versions kept warm past their rollback window there.
    pub fn with_traffic(mut self, traffic: Arc<dyn Traffic>) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// Publishes drift and expiry events there.
    pub fn with_events(mut self, events: Arc<dyn Publisher>) -> Self {
        self.events = events;
        self
    }

    /// Reads time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) async fn all_environments(
        &self,
        tier: Option<Tier>,
    ) -> Result<Vec<Environment>, JobError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_environments(&EnvironmentQuery {
                    tier,
                    phase: None,
                    limit: 100,
                    cursor,
                })
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}
