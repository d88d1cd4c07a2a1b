//! Time as the local executor sees it: the wall clock (optionally compressed for a
//! time-scaled local plane) or virtual time for tests.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// Time as the executor sees it.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
    /// Waits `duration` of this clock's time.
    async fn sleep(&self, duration: Duration);
}

/// Wall-clock time, optionally compressed: `scale` 60 makes a minute pass in a second.
#[derive(Debug)]
pub struct ScaledClock {
    scale: f64,
    started: std::time::Instant,
    origin: OffsetDateTime,
}

impl ScaledClock {
    /// A clock running `scale` times faster than real time (1.0 = real time).
    pub fn new(scale: f64) -> Self {
        Self::from(scale, OffsetDateTime::now_utc())
    }

    /// The same clock, reading `origin` now: a restarted plane goes on from the latest time
    /// its cloud recorded rather than from the wall clock, so that its time never runs back.
    pub fn from(scale: f64, origin: OffsetDateTime) -> Self {
        Self {
            scale: scale.max(f64::MIN_POSITIVE),
            started: std::time::Instant::now(),
            origin,
        }
    }
}

#[async_trait]
impl Clock for ScaledClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = self.started.elapsed().as_secs_f64() * self.scale;
        self.origin + time::Duration::seconds_f64(elapsed)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration.div_f64(self.scale)).await;
    }
}

/// Virtual time: sleeping returns at once and moves the clock on. For tests and the instant profile.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<OffsetDateTime>,
}

impl VirtualClock {
    /// A virtual clock starting at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }
}

#[async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> OffsetDateTime {
        self.now
            .lock()
            .map(|n| *n)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    async fn sleep(&self, duration: Duration) {
        if let Ok(mut now) = self.now.lock() {
            *now += duration;
        }
        tokio::task::yield_now().await;
    }
}
