//! The executor against AWS's documented semantics, with scripted task resources and virtual time.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use envplane_workflow::executor::EventKind;
use envplane_workflow::{Executor, Failure, StateMachine, TaskContext, TaskRunner, VirtualClock};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Each resource answers from a script, one entry per call; the last entry repeats.
#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<String, Vec<Result<Value, Failure>>>>,
    calls: Mutex<Vec<(String, Value, Option<String>)>>,
}

impl Script {
    fn on(self, resource: &str, answers: Vec<Result<Value, Failure>>) -> Self {
        self.answers
            .lock()
            .unwrap()
            .insert(resource.to_owned(), answers);
        self
    }
    fn calls(&self, resource: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, ..)| r == resource)
            .map(|(_, p, _)| p.clone())
            .collect()
    }
}

#[async_trait]
impl TaskRunner for Script {
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure> {
        self.calls.lock().unwrap().push((
            resource.to_owned(),
            payload.clone(),
            context.token.clone(),
        ));
        let mut answers = self.answers.lock().unwrap();
        let queue = answers
            .get_mut(resource)
            .ok_or_else(|| Failure::new("Envplane.Invalid", format!("no script for {resource}")))?;
        if queue.len() > 1 {
            queue.remove(0)
        } else {
            queue[0].clone()
        }
    }
}

fn machine(definition: Value) -> StateMachine {
    StateMachine::load(&definition.to_string(), &BTreeMap::new()).expect("loads")
}

async fn execute(
    script: Arc<Script>,
    definition: Value,
    input: Value,
) -> envplane_workflow::Outcome {
    let executor = Executor::new(
        script,
        Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
    );
    executor
        .execute(&machine(definition), input, "exec-1")
        .await
}

#[tokio::test]
async fn input_and_output_processing_follow_the_documented_order() {
    let script = Arc::new(Script::default().on(
        "worker",
        vec![Ok(json!({"Payload": {"vpc_id": "vpc-1", "noise": 1}}))],
    ));
    let definition = json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"cidr": "10.0.0.0/16"}, "ResultPath": "$.network", "Next": "CreateVpc"},
            "CreateVpc": {
                "Type": "Task", "Resource": "worker",
                "InputPath": "$.network",
                "Parameters": {"action": "create_vpc", "cidr.$": "$.cidr", "execution.$": "$$.Execution.Id"},
                "ResultSelector": {"vpc_id.$": "$.Payload.vpc_id"},
                "ResultPath": "$.network.vpc",
                "OutputPath": "$.network",
                "End": true
            }
        }
    });
    let outcome = execute(script.clone(), definition, json!({"environment": "dev"})).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    assert_eq!(
        outcome.output,
        Some(json!({"cidr": "10.0.0.0/16", "vpc": {"vpc_id": "vpc-1"}}))
    );
    assert_eq!(
        script.calls("worker"),
        vec![json!({"action": "create_vpc", "cidr": "10.0.0.0/16", "execution": "exec-1"})]
    );
    assert_eq!(outcome.transitions(), 2);
}

fn retrying_task(next_on_error: &str) -> Value {
    json!({
        "Type": "Task", "Resource": "worker", "End": true,
        "Retry": [
            {"ErrorEquals": ["Envplane.Throttled", "Envplane.Transient"], "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 3, "MaxDelaySeconds": 5},
            {"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": next_on_error}]
    })
}

#[tokio::test]
async fn retries_back_off_then_succeed() {
    let throttled = Err(Failure::new("Envplane.Throttled", "RequestLimitExceeded"));
    let script = Arc::new(Script::default().on(
        "worker",
        vec![
            throttled.clone(),
            throttled.clone(),
            throttled,
            Ok(json!("done")),
        ],
    ));
    let definition = json!({"StartAt": "Step", "States": {"Step": retrying_task("Compensate"), "Compensate": {"Type": "Fail", "Error": "X"}}});
    let outcome = execute(script.clone(), definition, json!({})).await;
    assert_eq!(outcome.output, Some(json!("done")));
    let delays: Vec<u64> = outcome
        .history
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Retrying { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        vec![2000, 4000, 5000],
        "interval 2 s, rate 2, capped at 5 s"
    );
    assert_eq!(script.calls("worker").len(), 4);
}

#[tokio::test]
async fn exhausted_retries_are_caught_and_compensated() {
    let script = Arc::new(
        Script::default()
            .on(
                "worker",
                vec![Err(Failure::new("Envplane.Transient", "connection reset"))],
            )
            .on("undo", vec![Ok(json!({"deleted": true}))]),
    );
    let definition = json!({
        "StartAt": "Step",
        "States": {
            "Step": retrying_task("Compensate"),
            "Compensate": {"Type": "Task", "Resource": "undo", "ResultPath": null, "Next": "Failed"},
            "Failed": {"Type": "Fail", "Error": "Envplane.ProvisionFailed", "Cause": "see the operation"}
        }
    });
    let outcome = execute(script.clone(), definition, json!({"env": "dev"})).await;
    assert_eq!(
        (outcome.status, outcome.error.as_deref()),
        ("FAILED", Some("Envplane.ProvisionFailed"))
    );
    assert_eq!(script.calls("worker").len(), 4, "one try and three retries");
    assert_eq!(
        script.calls("undo"),
        vec![
            json!({"env": "dev", "error": {"Error": "Envplane.Transient", "Cause": "connection reset"}})
        ]
    );
}

#[tokio::test]
async fn errors_without_a_retrier_fail_at_once_and_runtime_errors_are_never_caught() {
    let script = Arc::new(Script::default().on(
        "worker",
        vec![Err(Failure::new("Envplane.Invalid", "bad CIDR"))],
    ));
    let definition = json!({"StartAt": "Step", "States": {"Step": retrying_task("Caught"), "Caught": {"Type": "Pass", "End": true}}});
    let outcome = execute(script.clone(), definition, json!({})).await;
    assert_eq!(
        outcome.output,
        Some(json!({"error": {"Error": "Envplane.Invalid", "Cause": "bad CIDR"}}))
    );
    assert_eq!(script.calls("worker").len(), 1);

    let definition = json!({
        "StartAt": "Step",
        "States": {
            "Step": {"Type": "Pass", "InputPath": "$.missing", "Next": "End"},
            "End": {"Type": "Succeed"}
        }
    });
    let outcome = execute(Arc::new(Script::default()), definition, json!({})).await;
    assert_eq!(outcome.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn choice_and_wait_poll_with_growing_intervals() {
    let script = Arc::new(Script::default().on(
        "describe",
        vec![
            Ok(json!("CREATING")),
            Ok(json!("CREATING")),
            Ok(json!("CREATING")),
            Ok(json!("ACTIVE")),
        ],
    ));
    let definition = json!({
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": 15, "ResultPath": "$.wait", "Next": "Describe"},
            "Describe": {"Type": "Task", "Resource": "describe", "ResultPath": "$.status", "Next": "Ready?"},
            "Ready?": {"Type": "Choice", "Choices": [
                {"Variable": "$.status", "StringEquals": "ACTIVE", "Next": "Done"},
                {"And": [{"Variable": "$.status", "StringEquals": "CREATING"}, {"Variable": "$.wait", "NumericLessThan": 120}], "Next": "Grow"}
            ], "Default": "Hold"},
            "Grow": {"Type": "Pass", "Parameters": {"status.$": "$.status", "wait.$": "States.MathAdd($.wait, $.wait)"}, "Next": "Hold"},
            "Hold": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Describe"},
            "Done": {"Type": "Succeed"}
        }
    });
    let outcome = execute(script, definition, json!({})).await;
    assert_eq!(
        outcome.output,
        Some(json!({"status": "ACTIVE", "wait": 120}))
    );
    let waited = outcome.history.last().unwrap().at - OffsetDateTime::UNIX_EPOCH;
    assert_eq!(waited.whole_seconds(), 30 + 60 + 120);
}

#[tokio::test]
async fn parallel_branches_and_map_items() {
    let script = Arc::new(
        Script::default()
            .on("cluster", vec![Ok(json!("eks-1"))])
            .on("db", vec![Ok(json!("i-1"))])
            .on("tg", vec![Ok(json!("tg"))]),
    );
    let definition = json!({
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Cluster", "States": {"Cluster": {"Type": "Task", "Resource": "cluster", "End": true}}},
                    {"StartAt": "Db", "States": {"Db": {"Type": "Task", "Resource": "db", "End": true}}}
                ],
                "ResultSelector": {"cluster.$": "$[0]", "db.$": "$[1]"},
                "ResultPath": "$.built",
                "Next": "Groups"
            },
            "Groups": {
                "Type": "Map",
                "ItemsPath": "$.groups",
                "MaxConcurrency": 1,
                "ItemSelector": {"group.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "cluster.$": "$.built.cluster"},
                "ItemProcessor": {"StartAt": "Tg", "States": {"Tg": {"Type": "Task", "Resource": "tg", "ResultPath": "$.tg", "End": true}}},
                "End": true
            }
        }
    });
    let outcome = execute(
        script.clone(),
        definition,
        json!({"groups": ["frontend", "backend"]}),
    )
    .await;
    assert_eq!(
        outcome.output,
        Some(json!([
            {"group": "frontend", "index": 0, "cluster": "eks-1", "tg": "tg"},
            {"group": "backend", "index": 1, "cluster": "eks-1", "tg": "tg"}
        ]))
    );
}

#[tokio::test]
async fn a_failing_branch_fails_the_parallel_state() {
    let script = Arc::new(
        Script::default()
            .on("ok", vec![Ok(json!(1))])
            .on("bad", vec![Err(Failure::new("Envplane.Conflict", "quota"))]),
    );
    let definition = json!({
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "ok", "End": true}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "bad", "End": true}}}
                ],
                "Catch": [{"ErrorEquals": ["Envplane.Conflict"], "Next": "Undo"}],
                "End": true
            },
            "Undo": {"Type": "Pass", "End": true}
        }
    });
    let outcome = execute(script, definition, json!({})).await;
    assert_eq!(
        outcome.output,
        Some(json!({"Error": "Envplane.Conflict", "Cause": "quota"}))
    );
}

struct Approver(Arc<Mutex<Option<Executor>>>);

#[async_trait]
impl TaskRunner for Approver {
    async fn run(
        &self,
        _resource: &str,
        _payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure> {
        let token = context.token.clone().expect("a token");
        let executor = self.0.lock().unwrap().clone().expect("executor");
        // Someone approves a moment later, from elsewhere.
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            executor
                .send_task_success(&token, json!({"approved_by": "ada"}))
                .expect("waiting");
        });
        Ok(json!(null))
    }
}

#[tokio::test]
async fn wait_for_task_token_pauses_until_the_token_is_completed() {
    let slot = Arc::new(Mutex::new(None));
    let executor = Executor::new(
        Arc::new(Approver(slot.clone())),
        Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
    );
    *slot.lock().unwrap() = Some(executor.clone());
    let definition = json!({"StartAt": "Gate", "States": {"Gate": {
        "Type": "Task", "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token"}, "End": true
    }}});
    let outcome = executor.execute(&machine(definition), json!({}), "e").await;
    assert_eq!(outcome.output, Some(json!({"approved_by": "ada"})));
    assert!(executor.send_task_success("nope", json!(1)).is_err());
}

#[test]
fn definitions_with_unsupported_or_broken_parts_are_refused_at_load() {
    let load = |d: Value| {
        StateMachine::load(
            &d.to_string(),
            &BTreeMap::from([("WorkerArn".to_owned(), "worker".to_owned())]),
        )
    };
    let cases = [
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "w", "HeartbeatSeconds": 5, "HeartbeatSecondsPath": "$.h", "End": true}}}),
            "HeartbeatSeconds or HeartbeatSecondsPath",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "w", "Credentials": {"Role": "r"}, "End": true}}}),
            "RoleArn",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {"9lives": 1}, "End": true}}}),
            "not a variable name",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {"states": 1}, "End": true}}}),
            "not a variable name",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "QueryLanguage": "JSONata", "End": true}}}),
            "JSONata",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Map", "ToleratedFailurePercentage": 150, "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "B", "States": {"B": {"Type": "Succeed"}}}, "End": true}}}),
            "from 0 to 100",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Map", "ToleratedFailureCount": 1, "ItemProcessor": {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}, "End": true}}}),
            "apply to a DISTRIBUTED Map",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD", "ItemReader": {}}, "StartAt": "B", "States": {"B": {"Type": "Succeed"}}}, "End": true}}}),
            "ItemReader",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}),
            "unknown state \"B\"",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}),
            "Next and End",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Missing}", "End": true}}}),
            "${Missing}",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "w", "End": true, "Catch": [{"ErrorEquals": ["X", "States.ALL"], "Next": "A"}]}}}),
            "States.ALL",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": true}}}),
            "exactly one of Seconds",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringSoundsLike": "y", "Next": "A"}]}}}),
            "StringSoundsLike",
        ),
        (
            json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Succeed"}}}),
            "JSONata",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Teleport", "End": true}}}),
            "Teleport",
        ),
    ];
    for (definition, expected) in cases {
        let message = load(definition.clone()).expect_err("refused").to_string();
        assert!(message.contains(expected), "{definition}: {message}");
    }
    assert!(load(json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${WorkerArn}", "End": true}}})).is_ok());
}
