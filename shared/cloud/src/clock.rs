//! The one clock the worker, the jobs and the simulator read: the real one in AWS, a virtual
//! or time-scaled one in tests and in a local plane.

use std::sync::Arc;

use time::OffsetDateTime;

/// Tells the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// Any `Fn() -> OffsetDateTime` is a clock, so a test can hand in a closure over its own.
impl<F: Fn() -> OffsetDateTime + Send + Sync> Clock for F {
    fn now(&self) -> OffsetDateTime {
        self()
    }
}

/// A clock shared between the parts of a plane.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
pub fn system_clock() -> SharedClock {
    Arc::new(OffsetDateTime::now_utc)
}
