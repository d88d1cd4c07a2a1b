//! The AWS adapters against moto's server, one module per service or concern.
//! One test binary per crate: each links the whole dependency graph, so separate files
//! cost a link and ~100 MB of disk apiece (CI's disk ran out on them).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod alb_metrics;
mod asl_differential;
mod images;
mod moto;
mod restore_moto;
mod sfn;
mod support;
mod traffic;
mod weights;
