//! Black-box tests of the API, one module per resource: requests in, HTTP answers and store
//! contents out. Shared helpers live in `common`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod approvals;
mod audit;
mod authorization;
mod backups;
mod bad_input;
mod blueprints;
mod concurrency;
mod deployments;
mod drift;
mod environments;
mod idempotency;
mod openapi_drift;
mod operations;
mod plans;
mod releases;
mod restores;
mod roles;

/// The concurrency and tampering cases on each store.
mod embedded {
    use crate::audit::audit_verify_detects_an_edited_and_a_removed_event;
    use crate::common::Harness;
    use crate::concurrency::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_patches() {
        fifty_patches_with_one_if_match_have_one_winner(Harness::embedded()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_posts() {
        hundred_identical_posts_with_one_key_make_one_environment(Harness::embedded()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_creates() {
        twenty_concurrent_creates_of_one_tier_are_all_accepted(Harness::embedded()).await;
    }

    #[tokio::test]
    async fn audit_tampering() {
        let (dir, store) = envplane_store::testing::embedded_store();
        let h = Harness::over(std::sync::Arc::new(store.clone()), Some(dir));
        audit_verify_detects_an_edited_and_a_removed_event(h, &store).await;
    }
}

mod dynamodb {
    use crate::audit::audit_verify_detects_an_edited_and_a_removed_event;
    use crate::common::Harness;
    use crate::concurrency::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_patches() {
        let Some(h) = Harness::dynamodb().await else {
            return;
        };
        fifty_patches_with_one_if_match_have_one_winner(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_posts() {
        let Some(h) = Harness::dynamodb().await else {
            return;
        };
        hundred_identical_posts_with_one_key_make_one_environment(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_creates() {
        let Some(h) = Harness::dynamodb().await else {
            return;
        };
        twenty_concurrent_creates_of_one_tier_are_all_accepted(h).await;
    }

    #[tokio::test]
    async fn audit_tampering() {
        let Some(store) = envplane_store::testing::moto_store().await else {
            return;
        };
        let h = Harness::over(std::sync::Arc::new(store.clone()), None);
        audit_verify_detects_an_edited_and_a_removed_event(h, &store).await;
    }
}
