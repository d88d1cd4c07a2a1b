//! SDK clients made the first time they are used. Building an SDK client is not free: each
//! parses its service's partition table and compiles its region patterns, and a worker that
//! holds ten clients but runs one step (which needs two or three) paid for all ten before it
//! could take its first event (measured with `perf` under `coldstart-bench`).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

type Make<C> = Box<dyn FnOnce() -> C + Send>;

/// A client (or anything costly to build) made on the first dereference and shared by every
/// clone from then on. A client already made is wrapped with [`From`].
pub struct OnFirstUse<C>(Arc<LazyLock<C, Make<C>>>);

impl<C> OnFirstUse<C> {
    /// A value `make` builds on the first use.
    pub fn new(make: impl FnOnce() -> C + Send + 'static) -> Self {
        Self(Arc::new(LazyLock::new(Box::new(make))))
    }
}

impl<C: 'static> OnFirstUse<C> {
    /// A client that `make` (`aws_sdk_ec2::Client::new`, …) builds from `config` on the first
    /// use; the configuration is a handful of `Arc`s, cheap to keep until then.
    pub fn client(config: &aws_config::SdkConfig, make: fn(&aws_config::SdkConfig) -> C) -> Self {
        let config = config.clone();
        Self::new(move || make(&config))
    }
}

impl<C: Send + 'static> From<C> for OnFirstUse<C> {
    fn from(made: C) -> Self {
        Self::new(move || made)
    }
}

impl<C> Clone for OnFirstUse<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<C> Deref for OnFirstUse<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> fmt::Debug for OnFirstUse<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whether it was made yet is not worth a lock; the type says what it is.
        write!(f, "OnFirstUse<{}>", std::any::type_name::<C>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn nothing_is_made_until_first_use_and_then_once_for_every_clone() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&made);
        let lazy = OnFirstUse::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            String::from("client")
        });
        let clone = lazy.clone();
        assert_eq!(made.load(Ordering::SeqCst), 0);
        assert_eq!(clone.len(), 6);
        assert_eq!(*lazy, "client");
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }
}
