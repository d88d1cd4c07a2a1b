//! The local ASL executor, black box: shipped and test definitions, executor behaviour, fuzzing.
//! One test binary per crate: each links the whole dependency graph, so separate files
//! cost a link and ~100 MB of disk apiece (CI's disk ran out on them).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod definitions;
mod executor;
mod fuzz;
mod support;
