//! The pure domain of envplane: what an environment is, what each tier's blueprint holds,
//! how specs are validated, what they cost, who may change them and how the audit chain is kept.
//!
//! Nothing here performs I/O or knows about AWS SDK types; time is passed in by callers.
#![forbid(unsafe_code)]

pub mod approval;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod blueprint;
pub mod canary;
pub mod cidr;
pub mod commands;
pub mod cost;
pub mod deployment;
pub mod drift;
pub mod environment;
pub mod events;
pub mod lifecycle;
pub mod merge_patch;
pub mod name;
pub mod names;
pub mod operation;
pub mod plan;
pub mod promotion;
pub mod release_plan;
pub mod resources;
pub mod restore;
pub mod restore_plan;
pub mod spec;
pub mod validation;

pub use audit::{AuditEvent, AuditHead, ChainVerification};
pub use auth::{Action, Caller, Role};
pub use blueprint::{Blueprint, Tier};
pub use cidr::VpcCidr;
pub use cost::{CostBreakdown, MonthlyCost};
pub use environment::{Condition, Environment, EnvironmentStatus, Phase};
pub use name::EnvName;
pub use operation::{Operation, OperationKind, OperationStatus};
pub use spec::EnvironmentSpec;
pub use validation::{FieldError, ValidationErrors};
