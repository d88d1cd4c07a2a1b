//! The flows' actions, one module per flow: `provision` (ensure), `update` (converge, also run
//! by reconcile), `destroy` (teardown), and the operation's own start, finish and failure that
//! every flow shares.

mod deploy;
mod destroy;
mod operation;
pub(crate) mod poll;
mod provision;
pub(crate) mod restore;
mod update;
