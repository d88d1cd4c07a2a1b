//! What the worker's test modules share.

use std::collections::BTreeMap;

use envplane_workflow::StateMachine;

/// A shipped flow (`statemachines/NAME.asl.json`), loaded as the plane loads it, its Lambda
/// tasks pointed at the local worker.
pub fn definition(name: &str) -> StateMachine {
    let path = format!(
        "{}/../../statemachines/{name}.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    StateMachine::load(
        &json,
        &BTreeMap::from([("WorkerFunctionArn".to_owned(), "local:worker".to_owned())]),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}
