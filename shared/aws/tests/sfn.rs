//! The Step Functions adapter against moto's server: executions are named by their operation,
//! so starting one twice runs it once; it can be described and stopped.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use envplane_aws::StepFunctions;
use envplane_domain::EnvName;
use envplane_workflow::{Flow, Workflows};

#[tokio::test]
async fn an_operation_starts_one_execution_which_can_be_stopped() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let client = aws_sdk_sfn::Client::new(&config);
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
