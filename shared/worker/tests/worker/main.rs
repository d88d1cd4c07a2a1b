//! The worker's flows, jobs and leases on the shipped state machines, one module per concern.
//! One test binary per crate: each links the whole dependency graph, so separate files
//! cost a link and ~100 MB of disk apiece (CI's disk ran out on them).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fail_every_step;
mod flows;
mod jobs;
mod leases;
mod restores;
mod stale_reads;
mod support;
