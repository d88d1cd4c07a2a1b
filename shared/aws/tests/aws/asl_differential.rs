//! Differential test of the local ASL executor: every definition in `tests/asl/` (pure states:
//! paths, Choice, intrinsics, Map, Parallel, Catch, workflow variables) runs on moto's Step
//! Functions — whose ASL interpreter is LocalStack's — and on the local executor with the same
//! input; status, output, error and cause must agree. Where moto departs from AWS, the
//! departure is listed in `MOTO_DEPARTURES` with what AWS does, and that field is not compared.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{NoTasks, client};

/// Definitions moto cannot run as AWS does: (definition, what moto's answer says, why). The
/// test checks that moto still answers that way (a fixed moto shows up here) and compares
/// nothing else; the local executor's answer for these is pinned by
/// `envplane-workflow`'s `tests/workflow/definitions.rs` against `tests/asl/*.expected.json`.
const MOTO_DEPARTURES: &[(&str, &str, &str)] = &[
    (
        "variables",
        "'NoneType' object is not callable",
        "moto 5.2.5 fails every state that has an Assign",
    ),
    (
        "variable_choice",
        "'NoneType' object is not callable",
        "moto 5.2.5 fails every state that has an Assign",
    ),
    (
        "variable_scopes",
        "Custom Error Names MUST NOT begin with the prefix 'States.'",
        "moto 5.2.5 fails every state that has an Assign (inside a Map it reports States.Runtime as a custom error)",
    ),
    (
        "map_intolerance",
        "SUCCEEDED",
        "moto's DISTRIBUTED Map never fails for failed items (a failed item is null) whatever ToleratedFailureCount says; AWS fails it with States.ExceedToleratedFailureThreshold",
    ),
];

/// What an execution ended with, as compared.
#[derive(Debug, PartialEq)]
struct Ended {
    status: String,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
}

fn definitions() -> Vec<(String, String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/asl");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".asl.json"))
        else {
            continue;
        };
        let definition = std::fs::read_to_string(&path).unwrap();
        let input_path = dir.join(format!("{name}.input.json"));
        let input = std::fs::read_to_string(&input_path)
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_else(|_| serde_json::json!({}));
        found.push((name.to_owned(), definition, input));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

async fn on_moto(
    client: &aws_sdk_sfn::Client,
    name: &str,
    definition: &str,
    input: &Value,
) -> Ended {
    let created = client
        .create_state_machine()
        .name(format!("{name}-{}", ulid::Ulid::new()))
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/envplane-flows")
        .send()
        .await;
    let machine = match created {
        Ok(created) => created.state_machine_arn().to_owned(),
        Err(e) => {
            return Ended {
                status: "REFUSED".into(),
                output: None,
                error: Some(format!(
                    "{:?}",
                    e.as_service_error().map(ToString::to_string)
                )),
                cause: None,
            };
        }
    };
    let execution = client
        .start_execution()
        .state_machine_arn(machine)
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_owned();
    for _ in 0..200 {
        let described = client
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap();
        let status = described.status().as_str().to_owned();
        if status != "RUNNING" {
            return Ended {
                status,
                output: described.output().map(|o| serde_json::from_str(o).unwrap()),
                error: described.error().map(str::to_owned),
                cause: described.cause().map(str::to_owned),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name}: the execution on moto never ended");
}

async fn locally(name: &str, definition: &str, input: &Value) -> Ended {
    let machine = envplane_workflow::StateMachine::load(definition, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{name}: the local executor refused the definition: {e}"));
    let executor = envplane_workflow::Executor::new(
        Arc::new(NoTasks),
        Arc::new(envplane_workflow::VirtualClock::new(
            time::OffsetDateTime::UNIX_EPOCH,
        )),
    );
    let outcome = executor
        .execute(&machine, input.clone(), &ulid::Ulid::new().to_string())
        .await;
    Ended {
        status: outcome.status.to_owned(),
        output: outcome.output,
        error: outcome.error,
        cause: outcome.cause,
    }
}

#[tokio::test]
async fn the_local_executor_ends_every_definition_as_moto_step_functions_does() {
    let Some(endpoint) = envplane_store::testing::moto_sfn_endpoint() else {
        return;
    };
    let client = client(&endpoint).await;
    let definitions = definitions();
    assert!(definitions.len() >= 10, "tests/asl holds the definitions");
    let mut differ = Vec::new();
    for (name, definition, input) in &definitions {
        let (moto, local) = (
            on_moto(&client, name, definition, input).await,
            locally(name, definition, input).await,
        );
        match MOTO_DEPARTURES.iter().find(|(d, ..)| d == name) {
            Some((_, says, why)) => {
                let as_listed = format!("{moto:?}").contains(says);
                if !as_listed {
                    differ.push(format!(
                        "{name}: listed as a moto departure ({why}) but moto ended {moto:?}"
                    ));
                }
            }
            None if moto != local => {
                differ.push(format!("{name}:\n  moto:  {moto:?}\n  local: {local:?}"));
            }
            None => {}
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    println!(
        "{} definitions run on both: {} compared in full, {} moto departures checked as listed",
        definitions.len(),
        definitions.len() - MOTO_DEPARTURES.len(),
        MOTO_DEPARTURES.len()
    );
}
