//! The definitions of `tests/asl/` on the local executor, each against the outcome it must
//! end with (`<name>.expected.json`: status, output, error, cause), written from AWS's
//! documented rules. The same definitions run on moto's Step Functions in
//! `envplane-aws`'s `tests/asl_differential.rs`; these files pin what moto cannot check
//! (workflow variables) and keep the executor's answers from drifting without moto.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use envplane_workflow::{Executor, StateMachine, VirtualClock};
use serde_json::{Value, json};

use crate::support::NoTasks;

#[tokio::test]
async fn every_definition_ends_as_its_expected_file_says() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/asl");
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".asl.json")
            .to_owned();
        let read = |suffix: &str| -> Value {
            let file = dir.join(format!("{name}.{suffix}.json"));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            serde_json::from_str(&text).unwrap()
        };
        let machine =
            StateMachine::load(&std::fs::read_to_string(&path).unwrap(), &BTreeMap::new())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let executor = Executor::new(
            Arc::new(NoTasks),
            Arc::new(VirtualClock::new(time::OffsetDateTime::UNIX_EPOCH)),
        );
        let outcome = executor.execute(&machine, read("input"), "e").await;
        let got = json!({
            "status": outcome.status,
            "output": outcome.output,
            "error": outcome.error,
            "cause": outcome.cause,
        });
        let expected = read("expected");
        if got != expected {
            wrong.push(format!("{name}:\n  expected {expected}\n  got      {got}"));
        }
        checked += 1;
    }
    assert!(checked >= 10, "tests/asl holds the definitions");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
