//! The Step Functions adapter against moto's server: executions are named by their operation,
//! so starting one twice runs it once; it can be described and stopped.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use envplane_aws::StepFunctions;
use envplane_domain::EnvName;
use envplane_workflow::{Flow, Workflows};

use crate::support::{NoTasks, client};

#[tokio::test]
async fn an_operation_starts_one_execution_which_can_be_stopped() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let client = client(&endpoint).await;
    let definition = Flow::Provision.definition().replace(
        "${WorkerFunctionArn}",
        "arn:aws:lambda:us-east-1:123456789012:function:worker",
    );
    let machine = client
        .create_state_machine()
        .name(format!("provision-{}", ulid::Ulid::new()))
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/envplane-flows")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned();
    let flows = StepFunctions::new(
        client.clone(),
        BTreeMap::from([(Flow::Provision, machine.clone())]),
    );
    let env = EnvName::parse("dev").unwrap();
    let operation = ulid::Ulid::new().to_string();

    assert_eq!(
        flows.status(Flow::Provision, &operation).await.unwrap(),
        None
    );
    flows
        .start(Flow::Provision, &env, &operation)
        .await
        .unwrap();
    flows
        .start(Flow::Provision, &env, &operation)
        .await
        .unwrap();
    let executions = client
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(
        executions.executions().len(),
        1,
        "a retried start runs the operation once"
    );
    assert_eq!(executions.executions()[0].name(), operation);
    let input: serde_json::Value = serde_json::from_str(
        client
            .describe_execution()
            .execution_arn(executions.executions()[0].execution_arn())
            .send()
            .await
            .unwrap()
            .input()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (input["environment"].as_str(), input["operation"].as_str()),
        (Some("dev"), Some(operation.as_str()))
    );
    assert_eq!(
        flows
            .status(Flow::Provision, &operation)
            .await
            .unwrap()
            .as_deref(),
        Some("RUNNING")
    );

    flows
        .stop(Flow::Provision, &operation, "cancelled by alice")
        .await
        .unwrap();
    assert_eq!(
        flows
            .status(Flow::Provision, &operation)
            .await
            .unwrap()
            .as_deref(),
        Some("ABORTED")
    );
}

/// A flow with a sequence, parallel branches, a failing branch its Catch takes, a wait and the
/// end: the steps `ops watch` shows. (A failing branch beside a passing one would race: either
/// engine may stop the other branch before it starts.)
const WATCHED: &str = r#"{
  "StartAt": "Prepare",
  "States": {
    "Prepare": {"Type": "Pass", "Result": {"n": 1}, "Next": "Both"},
    "Both": {
      "Type": "Parallel",
      "Branches": [
        {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": true}}},
        {"StartAt": "Middle", "States": {"Middle": {"Type": "Pass", "End": true}}}
      ],
      "Next": "Risky"
    },
    "Risky": {
      "Type": "Parallel",
      "Branches": [
        {"StartAt": "Right", "States": {"Right": {"Type": "Fail", "Error": "Envplane.Conflict", "Cause": "test"}}}
      ],
      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
      "Next": "Done"
    },
    "Recover": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
}"#;

fn shown(steps: &[envplane_domain::operation::OperationStep]) -> Vec<String> {
    assert!(
        steps.iter().all(|s| s.ended_at.is_some()),
        "an ended execution has no running step: {steps:?}"
    );
    let mut shown: Vec<String> = steps
        .iter()
        .map(|s| format!("{} {:?}", s.name, s.status))
        .collect();
    // Parallel branches interleave differently from run to run.
    shown.sort();
    shown
}

#[tokio::test]
async fn steps_read_from_step_functions_history_match_the_local_executors() {
    let Some(endpoint) = envplane_store::testing::moto_sfn_endpoint() else {
        return;
    };
    let client = client(&endpoint).await;
    let machine = client
        .create_state_machine()
        .name(format!("update-{}", ulid::Ulid::new()))
        .definition(WATCHED)
        .role_arn("arn:aws:iam::123456789012:role/envplane-flows")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned();
    let flows = StepFunctions::new(client, BTreeMap::from([(Flow::Update, machine)]));
    let operation = ulid::Ulid::new().to_string();
    assert_eq!(flows.steps(Flow::Update, &operation).await.unwrap(), None);
    flows
        .start(Flow::Update, &EnvName::parse("dev").unwrap(), &operation)
        .await
        .unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = flows.status(Flow::Update, &operation).await.unwrap();
        if status.as_deref() != Some("RUNNING") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status.as_deref(), Some("SUCCEEDED"));
    let on_aws = flows
        .steps(Flow::Update, &operation)
        .await
        .unwrap()
        .unwrap();

    let local = envplane_workflow::Executor::new(
        std::sync::Arc::new(NoTasks),
        std::sync::Arc::new(envplane_workflow::VirtualClock::new(
            time::OffsetDateTime::UNIX_EPOCH,
        )),
    );
    let machine =
        envplane_workflow::StateMachine::load(WATCHED, &std::collections::BTreeMap::new()).unwrap();
    let outcome = local
        .execute(&machine, serde_json::json!({}), &operation)
        .await;
    let locally = envplane_workflow::Steps::of_outcome(&outcome).into_vec();

    assert_eq!(shown(&on_aws), shown(&locally));
    assert_eq!(
        shown(&on_aws),
        vec![
            "Both Succeeded",
            "Done Succeeded",
            "Left Succeeded",
            "Middle Succeeded",
            "Prepare Succeeded",
            "Recover Succeeded",
            "Right Succeeded",
            "Risky Failed",
        ]
    );
}
