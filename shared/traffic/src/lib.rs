//! Real traffic for the local plane: an environment service's load balancer is a weighted
//! reverse proxy on loopback that splits requests between the stable and the canary version
//! and measures what it forwards (requests, 5xx answers, latency percentiles per version), and
//! each deployed version runs as the built-in demo app, whose behaviour follows its container
//! environment (`DEMO_ERROR_RATE`, `DEMO_LATENCY_MS`). The canary analysis reads the proxy's
//! figures as it reads CloudWatch's on AWS.
#![forbid(unsafe_code)]

pub mod demo;
mod local;
pub mod proxy;

pub use demo::{DemoBehaviour, serve_demo};
pub use envplane_cloud::Slot;
pub use local::LocalTraffic;
pub use proxy::WeightedProxy;

/// Every `n`-th share of a stream, exactly: whether item `index` (0-based) falls in a share of
/// `rate` (0 to 1) spread evenly, so that any run of items holds the share to within one.
pub(crate) fn in_share(index: u64, rate: f64) -> bool {
    let rate = rate.clamp(0.0, 1.0);
    let before = (index as f64 * rate).floor();
    let after = ((index + 1) as f64 * rate).floor();
    after > before
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_are_exact_over_any_run() {
        let picked = (0..1000).filter(|i| super::in_share(*i, 0.3)).count();
        assert_eq!(picked, 300);
        let picked = (0..100).filter(|i| super::in_share(*i, 0.05)).count();
        assert_eq!(picked, 5);
        assert_eq!((0..50).filter(|i| super::in_share(*i, 0.0)).count(), 0);
        assert_eq!((0..50).filter(|i| super::in_share(*i, 1.0)).count(), 50);
    }
}
