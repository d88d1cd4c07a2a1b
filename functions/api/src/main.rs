//! Lambda entry point: builds the DynamoDB and Step Functions clients once and serves API
//! Gateway events.
#![forbid(unsafe_code)]

use std::sync::Arc;

use envplane_aws::{OnFirstUse, StepFunctions};
use envplane_lambda::{Role, optional, required};
use envplane_store::DynamoStore;

// One thread: Lambda hands an instance one event at a time and its work waits on the network;
// the multi-threaded runtime's workers took about 1 ms of a 6 ms init (`coldstart-bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    envplane_lambda::init_logging();
    let config = envplane_lambda::sdk_config(Role::Api).await;
    let iam_roles = envplane_fn_api::iam_roles(optional(envplane_fn_api::IAM_ROLES_VAR).as_deref())
        .map_err(anyhow::Error::msg)?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        required("TABLE_NAME")?,
    );
    let machines = envplane_aws::state_machines_from_env().map_err(anyhow::Error::msg)?;
    // Made when a mutation first starts a flow (see `OnFirstUse`); every request reads the
    // store, so its client is made now.
    let workflows = StepFunctions::new(
        OnFirstUse::client(&config, aws_sdk_sfn::Client::new),
        machines,
    );
    let app = envplane_fn_api::app(
        Arc::new(store),
        iam_roles,
        optional(envplane_fn_api::GROUP_PREFIX_VAR),
        Some(Arc::new(workflows)),
    );
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}
