//! What the Step Functions tests share: a client of moto's server and a task runner with no
//! tasks (the definitions they run on both sides are pure states).

/// A Step Functions client for a moto server.
pub async fn client(endpoint: &str) -> aws_sdk_sfn::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sfn::Client::new(&config)
}

/// Runs no task: any Task state fails with `Envplane.Invalid`.
pub struct NoTasks;

#[async_trait::async_trait]
impl envplane_workflow::TaskRunner for NoTasks {
    async fn run(
        &self,
        resource: &str,
        _payload: serde_json::Value,
        _context: &envplane_workflow::TaskContext,
    ) -> Result<serde_json::Value, envplane_workflow::Failure> {
        Err(envplane_workflow::Failure::new(
            "Envplane.Invalid",
            format!("no task {resource}"),
        ))
    }
}
