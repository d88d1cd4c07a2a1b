//! What the worker's test modules share.

use std::collections::BTreeMap;

use envplane_workflow::StateMachine;
use serde_json::Value;

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

/// The Task states of a shipped flow that do its work, by name, sorted: every Task but the
/// compensation and failure paths (each name below is such a state in one flow or more).
pub fn task_states(flow: &str) -> Vec<String> {
    const COMPENSATION: [&str; 7] = [
        "Compensate",
        "Discard",
        "Fail",
        "Failing",
        "RollBack",
        "Rollback",
        "RollbackFailed",
    ];
    fn walk(states: &Value, out: &mut Vec<String>) {
        for (name, state) in states.as_object().into_iter().flatten() {
            if COMPENSATION.contains(&name.as_str()) {
                continue;
            }
            if state["Type"] == "Task" {
                out.push(name.clone());
            }
            for branch in state["Branches"].as_array().into_iter().flatten() {
                walk(&branch["States"], out);
            }
            if let Some(inner) = state.get("ItemProcessor") {
                walk(&inner["States"], out);
            }
        }
    }
    let path = format!(
        "{}/../../statemachines/{flow}.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    walk(&json["States"], &mut out);
    out.sort();
    out
}
