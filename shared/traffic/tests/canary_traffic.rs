//! Real requests through the local load balancer: two demo apps (a good stable version, a
//! canary failing 30 % of its requests) behind the weighted proxy; the canary analysis reads
//! the proxy's figures and the rollback is one weight change.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use envplane_domain::Tier;
use envplane_domain::canary::{CanaryPolicy, Decision, Progress, Verdict, analyse, next};
use envplane_traffic::{DemoBehaviour, Slot, WeightedProxy, serve_demo};

async fn demo(version: &str, error_rate: f64, latency_ms: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let behaviour = DemoBehaviour {
        version: version.into(),
        error_rate,
        latency: Duration::from_millis(latency_ms),
    };
    tokio::spawn(serve_demo(listener, behaviour));
    addr
}

/// Sends `n` requests through the proxy; answers how many came from each version.
async fn send(proxy: &WeightedProxy, n: usize) -> (usize, usize) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (mut v1, mut v2) = (0, 0);
    for _ in 0..n {
        let answer = client.get(proxy.url()).send().await.unwrap();
        let body: serde_json::Value = answer.json().await.unwrap();
        match body["version"].as_str() {
            Some("v1") => v1 += 1,
            Some("v2") => v2 += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_seen_through_real_requests_and_rolled_back_in_one_change() {
    let policy = CanaryPolicy::for_tier(Tier::Prod);
    let proxy = WeightedProxy::start(Some(demo("v1", 0.0, 0).await))
        .await
        .unwrap();
    proxy.set_upstream(Slot::Canary, Some(demo("v2", 0.3, 0).await));
    proxy.set_weight(25);

    let (v1, v2) = send(&proxy, 400).await;
    assert_eq!(
        (v1, v2),
        (300, 100),
        "a weight of 25 sends one request in four"
    );
    let canary = proxy.take(Slot::Canary);
    assert_eq!((canary.requests, canary.errors), (100, 30));
    assert!(canary.p99_ms.is_some());
    let analysis = analyse(25, canary, &policy);
    assert_eq!(analysis.verdict, Verdict::Fail);
    assert_eq!(analysis.reasons[0], "error rate 0.300 > 0.010");
    let stable = analyse(0, proxy.take(Slot::Stable), &policy);
    assert_eq!(stable.verdict, Verdict::Pass, "{stable:?}");

    let progress = Progress {
        weight: 25,
        ..Progress::default()
    };
    let (_, decision) = next(progress, &analysis, &policy);
    assert!(
        matches!(decision, Decision::RollBack { .. }),
        "{decision:?}"
    );
    proxy.set_weight(0);
    assert_eq!(send(&proxy, 100).await, (100, 0), "all traffic back on v1");
    assert_eq!(proxy.take(Slot::Canary).requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_fails_on_its_p99_and_a_quiet_one_is_inconclusive() {
    let policy = CanaryPolicy::for_tier(Tier::Prod);
    let proxy = WeightedProxy::start(Some(demo("v1", 0.0, 0).await))
        .await
        .unwrap();
    proxy.set_upstream(Slot::Canary, Some(demo("v2", 0.0, 600).await));
    proxy.set_weight(50);
    let quiet = analyse(50, proxy.take(Slot::Canary), &policy);
    assert_eq!(
        quiet.verdict,
        Verdict::Inconclusive,
        "no traffic is no verdict"
    );

    // 120 requests, 60 to the canary, from 12 callers at once so the test takes seconds.
    let proxy = std::sync::Arc::new(proxy);
    let callers: Vec<_> = (0..12)
        .map(|_| {
            let proxy = proxy.clone();
            tokio::spawn(async move { send(&proxy, 10).await })
        })
        .collect();
    let mut total = (0, 0);
    for caller in callers {
        let (v1, v2) = caller.await.unwrap();
        total = (total.0 + v1, total.1 + v2);
    }
    assert_eq!(total, (60, 60));
    let slow = analyse(50, proxy.take(Slot::Canary), &policy);
    assert_eq!(slow.verdict, Verdict::Fail, "{slow:?}");
    assert!(slow.reasons[1].starts_with("p99 6"), "{:?}", slow.reasons);
}
