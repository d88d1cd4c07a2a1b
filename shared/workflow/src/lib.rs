//! The workflow port of envplane and its local adapter: an executor of Amazon States Language
//! that runs the very definitions shipped in `statemachines/`, resolving Task resources to
//! in-process handlers.
#![forbid(unsafe_code)]

pub mod asl;
pub mod choice;
pub mod executor;
pub mod paths;

pub use asl::{DefinitionError, StateMachine};
pub use executor::{
    Clock, Executor, Failure, Outcome, ScaledClock, TaskContext, TaskRunner, VirtualClock,
};
