//! The Kubernetes adapter of envplane's workloads port ([`KubeWorkloads`]): each track of a
//! service is a Deployment, a Service and a `TargetGroupBinding`, server-side-applied with
//! envplane as the field manager (so a person's `kubectl` edits of other fields survive, and
//! envplane's own fields always win). Clusters are reached through [`Clusters`]: on AWS,
//! `DescribeCluster` for the endpoint and CA, and a presigned STS token ([`token`]).
#![forbid(unsafe_code)]

mod adapter;
pub mod objects;
pub mod token;

pub use adapter::{Cluster, Clusters, EksClusters, KubeWorkloads, NAMESPACE};
