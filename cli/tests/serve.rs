//! `envplane serve` as a user runs it: a real process on a real port, killed and restarted.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Plane {
    child: Child,
    endpoint: String,
}

impl Plane {
    /// Starts `envplane serve` on a free port and waits for its "listening" line.
    fn start(data_dir: &Path) -> Plane {
        Plane::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, extra: &[&str]) -> Plane {
        Plane::start_env(data_dir, extra, &[])
    }

    fn start_env(data_dir: &Path, extra: &[&str], vars: &[(&str, String)]) -> Plane {
        Plane::spawn(data_dir, &["--dev-auth"], extra, vars)
    }

    /// Starts a plane whose callers are the tokens of `DATA_DIR/tokens.json`.
    fn start_with_tokens(data_dir: &Path, tokens: &[(&str, envplane_domain::Role, &str)]) -> Plane {
        let entries: Vec<Value> = tokens
            .iter()
            .map(|(principal, role, token)| {
                envplane_api::Authenticator::token_entry(principal, *role, token)
            })
            .collect();
        std::fs::write(
            data_dir.join("tokens.json"),
            json!({ "tokens": entries }).to_string(),
        )
        .unwrap();
        Plane::spawn(data_dir, &[], &[], &[])
    }

    fn spawn(data_dir: &Path, auth: &[&str], extra: &[&str], vars: &[(&str, String)]) -> Plane {
        let mut child = Command::new(env!("CARGO_BIN_EXE_envplane"))
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("serve")
            .args(auth)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn envplane serve");
        // The first line that says where it listens (log lines may come first).
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            if reader.read_line(&mut line).expect("read") == 0 {
                break;
            }
        }
        // Keep reading in the background, so that later output never blocks the plane.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let endpoint = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("listening line")
            .to_owned();
        Plane { child, endpoint }
    }

    fn kill_9(mut self) {
        // SIGKILL: no graceful shutdown, no chance to flush anything.
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(args)
        .args(["--endpoint", endpoint])
        .output()
        .expect("run cli");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_environment_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let http = http();
    let created = http
        .post(format!("{}/v1/environments", plane.endpoint))
        .json(&json!({"name": "dev", "tier": "dev"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let created: Value = created.json().await.unwrap();
    plane.kill_9();

    let plane = Plane::start(dir.path());
    let env: Value = http
        .get(format!("{}/v1/environments/dev", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(env["spec"]["network"]["vpc_cidr"], "10.0.0.0/16");
    assert_eq!(env["created_by"], "local-dev");
    let op = created["operation"]["id"].as_str().unwrap();
    // The provision was interrupted by the kill too; the restarted plane finishes it.
    let finished = wait_for_operation(&http, &plane.endpoint, op, Duration::from_secs(30)).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let verify: Value = http
        .get(format!(
            "{}/v1/environments/dev/audit/verify",
            plane.endpoint
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["valid"], true);
}

#[test]
fn the_cli_creates_lists_and_explains_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "create",
            "qa",
            "--tier",
            "qa",
            "--set",
            "cluster.frontend.desired=3",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("create of qa accepted (202)"), "{out}");
    assert!(out.contains("t3.medium ×3 (2–4)"), "{out}");

    let (ok, out, _) = cli(&plane.endpoint, &["env", "list"]);
    assert!(
        ok && out
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("qa ") && l.contains("10.1.0.0/16")),
        "{out}"
    );

    let (ok, out, _) = cli(&plane.endpoint, &["env", "get", "qa", "--output", "json"]);
    assert!(ok);
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env["spec"]["cluster"]["frontend"]["desired"], 3);

    let (ok, _, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "create",
            "bad",
            "--tier",
            "qa",
            "--set",
            "cluster.backend.min=9",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("(422)") && err.contains("cluster.backend.min: min 9 is greater than max 4"),
        "{err}"
    );

    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "plan",
            "qa",
            "--set",
            "cluster.backend.instance_type=t3.xlarge",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("replace")
            && out.contains("qa-backend")
            && out.contains("$402.09 → $523.56 (+121.47)"),
        "{out}"
    );

    let (ok, out, _) = cli(&plane.endpoint, &["blueprints"]);
    assert!(
        ok && out.contains("prod") && out.contains("$869.07"),
        "{out}"
    );
}

#[test]
fn dev_auth_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["serve", "--dev-auth", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_an_auth_choice() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dev-auth"));
}

/// An HTTP client for the plane's API.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A GET answered as JSON.
async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Records a create (`body` as POST takes it) and answers its operation's id.
async fn create(http: &reqwest::Client, endpoint: &str, body: Value) -> String {
    let created: Value = http
        .post(format!("{endpoint}/v1/environments"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["operation"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned()
}

async fn wait_for_operation(
    http: &reqwest::Client,
    endpoint: &str,
    op: &str,
    limit: Duration,
) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let body = get_json(http, format!("{endpoint}/v1/operations/{op}")).await;
        if ["succeeded", "failed"].contains(&body["status"].as_str().unwrap_or(""))
            || std::time::Instant::now() > deadline
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_provision_interrupted_by_kill_9_goes_on_to_ready_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Realistic latencies 600 times faster: EKS takes a second, the whole provision about two.
    let fast = ["--latency", "realistic", "--time-scale", "600"];
    let plane = Plane::start_with(dir.path(), &fast);
    let http = http();
    let op = create(
        &http,
        &plane.endpoint,
        json!({"name": "prod", "tier": "prod"}),
    )
    .await;
    // Kill once the flow is well under way (past the network), and before it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let midway = loop {
        let body = get_json(&http, format!("{}/v1/operations/{op}", plane.endpoint)).await;
        let steps = body["steps"].as_array().map_or(0, Vec::len);
        if (body["status"] == "running" && steps >= 4)
            || body["status"] == "succeeded"
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        midway["status"], "running",
        "killed too late to prove anything: {midway}"
    );
    let steps_before = midway["steps"].as_array().map_or(0, Vec::len);
    plane.kill_9();

    let plane = Plane::start_with(dir.path(), &fast);
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["steps"].as_array().map_or(0, Vec::len) > steps_before);
    let env: Value = http
        .get(format!("{}/v1/environments/prod", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(env["status"]["phase"], "ready");
    assert_eq!(env["active_operation"], Value::Null);
    // The simulated cloud holds exactly one of each planned resource: nothing was created twice.
    let cloud: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cloud.json")).unwrap()).unwrap();
    let names: Vec<&str> = cloud["resources"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["resource"]["name"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "{names:?}");
    assert!(
        unique.contains("prod-nat-3")
            && unique.contains("prod-backend")
            && unique.contains("prod-db-data")
    );
}

#[test]
fn flow_run_executes_a_definition_and_reports_like_describe_execution() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pure.asl.json");
    let definition = json!({
        "StartAt": "Double",
        "States": {
            "Double": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, $.n)"}, "Next": "Big?"},
            "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Done"}], "Default": "Double"},
            "Done": {"Type": "Succeed"}
        }
    });
    std::fs::write(&path, definition.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["flow", "run"])
        .arg(&path)
        .args(["--input", r#"{"n": 3}"#])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        outcome,
        json!({"status": "SUCCEEDED", "output": {"n": 12}, "error": null, "cause": null})
    );

    std::fs::write(&path, json!({"StartAt": "A", "States": {"A": {"Type": "Fail", "Error": "Boom", "Cause": "on purpose"}}}).to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["flow", "run"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            outcome["status"].as_str(),
            outcome["error"].as_str(),
            outcome["cause"].as_str()
        ),
        (Some("FAILED"), Some("Boom"), Some("on purpose"))
    );

    std::fs::write(&path, json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "x", "HeartbeatSeconds": 3, "HeartbeatSecondsPath": "$.h", "End": true}}}).to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["flow", "run"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HeartbeatSeconds"));
}

#[test]
fn the_cli_follows_a_create_and_a_delete_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let (ok, out, err) = cli(
        &plane.endpoint,
        &["env", "create", "dev", "--tier", "dev", "--wait"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("Network") && out.contains("succeeded after"),
        "{out}"
    );
    let (ok, out, _) = cli(&plane.endpoint, &["env", "get", "dev"]);
    assert!(ok && out.contains("ready"), "{out}");
    assert!(
        out.contains("resources  25 (")
            && out.contains("4 subnet")
            && out.contains("1 nat_gateway"),
        "{out}"
    );
    let (ok, out, err) = cli(&plane.endpoint, &["env", "delete", "dev", "--wait"]);
    assert!(ok && out.contains("Teardown"), "{out}{err}");
    let (ok, _, err) = cli(&plane.endpoint, &["env", "get", "dev"]);
    assert!(!ok && err.contains("404"), "{err}");
    let cloud: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cloud.json")).unwrap()).unwrap();
    assert_eq!(cloud["resources"], json!({}), "delete leaves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_a_first_version_behind_its_load_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let (ok, _, err) = cli(
        &plane.endpoint,
        &["env", "create", "dev", "--tier", "dev", "--wait"],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "deploy",
            "dev",
            "--service",
            "frontend",
            "--version",
            "1.0.0",
            "--wait",
        ],
    );
    assert!(ok && out.contains("succeeded"), "{out}{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (ok, out, err) = cli(&plane.endpoint, &["deployments", "get", &id]);
    assert!(
        ok && out.contains("frontend 1.0.0 to dev: succeeded"),
        "{out}{err}"
    );
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("load balancer  "))
        .unwrap()
        .to_owned();
    let answer: Value = http().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["version"], "1.0.0");
    let (ok, _, err) = cli(&plane.endpoint, &["deployments", "promote", &id]);
    assert!(!ok && err.contains("409"), "nothing to promote: {err}");

    // The next version, rolled back within its window: the first serves again.
    let deploy = [
        "deploy",
        "dev",
        "--service",
        "frontend",
        "--version",
        "1.1.0",
        "--wait",
    ];
    let (ok, out, err) = cli(&plane.endpoint, &deploy);
    assert!(ok && out.contains("1.1.0 is stable"), "{out}{err}");
    let next = out.split_whitespace().nth(1).unwrap().to_owned();
    let rollback = ["deployments", "rollback", &next, "--wait"];
    let (ok, out, err) = cli(&plane.endpoint, &rollback);
    assert!(ok && out.contains("1.0.0 is stable"), "{out}{err}");
    let answer: Value = http().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["version"], "1.0.0");

    // A plan first: the canary's transitions and what it adds, nothing deployed.
    let plan = [
        "deploy",
        "dev",
        "--service",
        "frontend",
        "--version",
        "1.2.0",
        "--strategy",
        "canary",
        "--plan",
    ];
    let (ok, out, err) = cli(&plane.endpoint, &plan);
    assert!(
        ok && out.contains("replacing 1.0.0")
            && out.contains("  25 %")
            && out.contains("extra capacity"),
        "{out}{err}"
    );

    // Promoted to another environment as one operation.
    let (ok, _, err) = cli(
        &plane.endpoint,
        &["env", "create", "dev2", "--tier", "dev", "--wait"],
    );
    assert!(ok, "{err}");
    let promote = ["promote", "--from", "dev", "--to", "dev2", "--wait"];
    let (ok, out, err) = cli(&plane.endpoint, &promote);
    assert!(
        ok && out.contains("frontend 1.0.0 is stable on dev2"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn the_demo_app_behaves_as_its_environment_says() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["demo-app", "--listen", "127.0.0.1:0"])
        .env("DEMO_VERSION", "v7")
        .env("DEMO_ERROR_RATE", "0.5")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the demo app");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().last().unwrap().to_owned();
    let client = http();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let answer = client.get(&url).send().await.unwrap();
        statuses.push(answer.status().as_u16());
        assert_eq!(answer.json::<Value>().await.unwrap()["version"], "v7");
    }
    assert_eq!(statuses, [200, 500, 200, 500], "half of them fail, evenly");
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_cli_destroys_production_only_with_two_approvers_other_than_the_requester() {
    use envplane_domain::Role;
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start_with_tokens(
        dir.path(),
        &[
            ("ada", Role::Approver, "ada-secret"),
            ("bea", Role::Approver, "bea-secret"),
            ("root", Role::Admin, "root-secret"),
        ],
    );
    let as_user = |token: &str, args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--token", token]);
        cli(&plane.endpoint, &all)
    };
    let (ok, _, err) = as_user(
        "ada-secret",
        &["env", "create", "prod", "--tier", "prod", "--wait"],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = as_user("ada-secret", &["env", "delete", "prod", "-o", "json"]);
    assert!(ok, "{err}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    let op = accepted["operation"]["id"].as_str().unwrap().to_owned();
    let mut listed = String::new();
    for _ in 0..200 {
        let (_, out, _) = as_user("root-secret", &["approvals"]);
        if out.contains(&op) {
            listed = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(listed.contains("0 of 2 approvers"), "{listed}");

    let (ok, _, err) = as_user("ada-secret", &["approve", &op]);
    assert!(!ok && err.contains("403"), "the requester approved: {err}");
    let (ok, out, err) = as_user("root-secret", &["approve", &op, "--comment", "planned"]);
    assert!(
        ok && out.contains("pending (1 of 2 approvers)"),
        "{out}{err}"
    );
    let (ok, out, err) = as_user("bea-secret", &["approve", &op]);
    assert!(
        ok && out.contains("approved (2 of 2 approvers)"),
        "{out}{err}"
    );
    let (ok, out, err) = as_user("root-secret", &["ops", "watch", &op, "--interval", "0.05"]);
    assert!(ok && out.contains("succeeded"), "{out}{err}");
    let cloud: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cloud.json")).unwrap()).unwrap();
    assert_eq!(cloud["resources"], json!({}), "destroyed once approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_aws_creates_and_deletes_on_moto() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let image = ec2
        .describe_images()
        .send()
        .await
        .unwrap()
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .unwrap()
        .to_owned();
    let vars = [
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        (
            "ENVPLANE_CLUSTER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/eks-cluster".to_owned(),
        ),
        (
            "ENVPLANE_NODE_ROLE_ARN",
            "arn:aws:iam::123456789012:role/eks-node".to_owned(),
        ),
        ("ENVPLANE_DB_IMAGE_ID", image),
    ];
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        "envplane-serve-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let plane = Plane::start_env(dir.path(), &["--aws", "--table", &table], &vars);
    let http = http();
    let name = format!("q{}", &ulid::Ulid::new().to_string().to_lowercase()[20..]);
    let op = create(
        &http,
        &plane.endpoint,
        json!({"name": name, "tier": "qa", "network": {"vpc_cidr": "10.77.0.0/16"}}),
    )
    .await;
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("tag:envplane:environment")
        .values(&name)
        .build();
    let vpcs = ec2
        .describe_vpcs()
        .filters(filter.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        vpcs.vpcs()
            .iter()
            .map(|v| v.cidr_block().unwrap())
            .collect::<Vec<_>>(),
        vec!["10.77.0.0/16"]
    );
    let eks = aws_sdk_eks::Client::new(&config);
    let ng = eks
        .describe_nodegroup()
        .cluster_name(format!("{name}-eks"))
        .nodegroup_name(format!("{name}-frontend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ng.nodegroup()
            .unwrap()
            .scaling_config()
            .unwrap()
            .desired_size(),
        Some(2)
    );
    // The state is in DynamoDB: the table holds the environment's record.
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let meta = dynamo
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ENV#{name}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("META".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        meta.item().unwrap()["phase"],
        aws_sdk_dynamodb::types::AttributeValue::S("ready".into())
    );

    let deleted: Value = http
        .delete(format!("{}/v1/environments/{name}", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = deleted["operation"]["id"].as_str().unwrap().to_owned();
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        ec2.describe_vpcs()
            .filters(filter.clone())
            .send()
            .await
            .unwrap()
            .vpcs()
            .is_empty()
    );
    assert!(
        ec2.describe_subnets()
            .filters(filter.clone())
            .send()
            .await
            .unwrap()
            .subnets()
            .is_empty()
    );
    assert!(
        ec2.describe_security_groups()
            .filters(filter)
            .send()
            .await
            .unwrap()
            .security_groups()
            .is_empty()
    );
}

/// A local Slack: the JSON of every message posted, kept by a thread.
fn slack_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buffer.extend_from_slice(&chunk[..n]);
                let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buffer.len() >= end + 4 + length {
                    break Some(buffer[end + 4..end + 4 + length].to_vec());
                }
            };
            if let Some(body) = body {
                keep.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, received)
}

#[test]
fn the_cli_upgrades_1_29_to_1_31_through_1_30_and_slack_hears_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, received) = slack_receiver();
    let plane = Plane::start_with(
        dir.path(),
        &["--slack-webhook", &hook, "--drift-interval", "0"],
    );
    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "create",
            "dev",
            "--tier",
            "dev",
            "--set",
            "cluster.version=\"1.29\"",
            "--wait",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "update",
            "dev",
            "--set",
            "cluster.version=\"1.31\"",
            "--wait",
        ],
    );
    assert!(ok, "{out}{err}");
    let upgrades: Vec<&str> = out.lines().filter(|l| l.contains("↳")).collect();
    let steps: Vec<String> = upgrades
        .iter()
        .map(|l| l.split("↳ ").nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        steps,
        vec![
            "dev-eks: version 1.29 → 1.30",
            "dev-eks: version 1.30 → 1.31",
            "dev-frontend: version 1.29 → 1.30",
            "dev-backend: version 1.29 → 1.30",
            "dev-frontend: version 1.30 → 1.31",
            "dev-backend: version 1.30 → 1.31",
        ],
        "{out}"
    );
    // A downgrade is refused, naming the field.
    let (ok, _, err) = cli(
        &plane.endpoint,
        &["env", "update", "dev", "--set", "cluster.version=\"1.30\""],
    );
    assert!(!ok);
    assert!(
        err.contains("cluster.version") && err.contains("downgraded"),
        "{err}"
    );
    // Slack heard of both operations starting and ending, as Block Kit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let headers = loop {
        let headers: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                m["attachments"][0]["blocks"][0]["text"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        if headers.len() >= 4 || std::time::Instant::now() > deadline {
            break headers;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        headers,
        vec![
            "Operation started: dev",
            "Operation succeeded: dev",
            "Operation started: dev",
            "Operation succeeded: dev"
        ]
    );
    let last = received.lock().unwrap()[3].clone();
    assert!(
        last.to_string()
            .contains(&format!("{}/v1/operations/", plane.endpoint)),
        "{last}"
    );
}

#[tokio::test]
async fn cancel_of_a_running_provision_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Realistic latencies 60 times faster: the EKS cluster alone takes ten seconds.
    let plane = Plane::start_with(
        dir.path(),
        &["--latency", "realistic", "--time-scale", "60"],
    );
    let http = http();
    let op = create(
        &http,
        &plane.endpoint,
        json!({"name": "dev", "tier": "dev"}),
    )
    .await;
    // Cancel once the flow has made the network and is building the rest.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = get_json(&http, format!("{}/v1/operations/{op}", plane.endpoint)).await;
        let built = body["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "NetworkReady?" && s["status"] == "succeeded");
        assert!(
            std::time::Instant::now() < deadline,
            "never got past the network: {body}"
        );
        assert!(
            body["status"] == "running" || body["status"] == "pending",
            "{body}"
        );
        if built {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, out, err) = cli(&plane.endpoint, &["ops", "cancel", &op, "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("operation {op} on dev is cancelled")),
        "{out}"
    );
    assert!(out.contains("rolling back what it made"), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    // The cancelled flow made no call after the cancel: after the rollback, the cloud holds
    // nothing that is not on its way out, and stays so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cloud: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cloud.json")).unwrap()).unwrap();
    let left: Vec<&str> = cloud["resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["gone_at"].is_null())
        .map(|r| r["resource"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(left, Vec::<&str>::new());
    let cancelled = get_json(&http, format!("{}/v1/operations/{op}", plane.endpoint)).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"]["error"], "Envplane.Cancelled");
}

#[tokio::test]
async fn an_operation_accepted_but_never_started_runs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // What a kill -9 between the store write and the flow start leaves: the environment and
    // its pending operation recorded, no execution.
    let op = {
        let store = envplane_store::EmbeddedStore::open(&dir.path().join("state.redb")).unwrap();
        let env = envplane_domain::EnvName::parse("dev").unwrap();
        envplane_store::testing::mutations::create(
            &store,
            &env,
            envplane_domain::Tier::Dev,
            0,
            |_| {},
        )
        .await
    };
    let plane = Plane::start(dir.path());
    let http = http();
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_restart_after_a_time_scaled_run_goes_on_from_the_planes_latest_time() {
    let dir = tempfile::tempdir().unwrap();
    let fast = ["--latency", "realistic", "--time-scale", "600"];
    let plane = Plane::start_with(dir.path(), &fast);
    let http = http();
    let op = create(
        &http,
        &plane.endpoint,
        json!({"name": "dev", "tier": "dev"}),
    )
    .await;
    let ready = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(60)).await;
    assert_eq!(ready["status"], "succeeded", "{ready}");
    let deleting: Value = http
        .delete(format!("{}/v1/environments/dev", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = deleting["operation"]["id"].as_str().unwrap().to_owned();
    // Stop once the teardown has asked for the slow deletions (the cluster's ends minutes
    // later on this plane's clock).
    let cloud_file = dir.path().join("cloud.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cloud: Value = serde_json::from_slice(&std::fs::read(&cloud_file).unwrap()).unwrap();
        let cluster_going = cloud["resources"]
            .as_object()
            .unwrap()
            .values()
            .any(|r| r["resource"]["name"] == "dev-eks" && !r["gone_at"].is_null());
        if cluster_going {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    plane.kill_9();
    // In the default (instant, real-time) mode on the same data: the plane's time starts where
    // the last run's left off, so the deletions under way are over, not minutes away.
    let plane = Plane::start(dir.path());
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

/// Whether any PostgreSQL process runs on a data directory under `dir`.
fn postgres_runs_under(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let needle = dir.display().to_string();
    entries.filter_map(Result::ok).any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let line = String::from_utf8_lossy(&c).replace('\0', " ");
            line.contains("postgres") && line.contains(&needle)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_drill_on_a_real_postgresql_proves_its_rto_and_rpo_and_leaves_nothing() {
    if envplane_postgres_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let http = http();
    let created: Value = http
        .post(format!("{}/v1/environments", plane.endpoint))
        .json(&json!({"name": "shop", "tier": "prod"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = created["operation"]["id"].as_str().unwrap();
    let done = wait_for_operation(&http, &plane.endpoint, op, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Its database is a real PostgreSQL a user can connect to.
    let env: Value = http
        .get(format!("{}/v1/environments/shop", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint = env["database"].as_str().expect("a connection string");
    let (client, connection) = tokio_postgres::connect(endpoint, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);")
        .await
        .unwrap();

    let (ok, out, err) = cli(&plane.endpoint, &["backup", "shop"]);
    assert!(ok, "{err}");
    assert!(out.contains("backup snap-"), "{out}");
    let (ok, out, err) = cli(&plane.endpoint, &["drill", "shop", "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("outcome: Passed"), "{out}");
    assert!(out.contains("nothing left"), "{out}");

    // The evidence, from the drill and from the audit chain.
    let history: Value = http
        .get(format!("{}/v1/environments/shop/dr-drills", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = &history["items"][0];
    let id = record["id"].as_str().expect("a drill in the history");
    let drill: Value = http
        .get(format!("{}/v1/dr-drills/{id}", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let evidence = &drill["drill"]["evidence"];
    assert_eq!(evidence, &record["evidence"]);
    assert_eq!(evidence["outcome"], "passed");
    assert_eq!(evidence["rto_met"], true);
    assert_eq!(evidence["rpo_met"], true);
    assert_eq!(
        evidence["targets"],
        json!({"rto_minutes": 60, "rpo_minutes": 5})
    );
    assert_eq!(evidence["left"], json!([]));
    println!(
        "drill {id}: RTO {} s, RPO {} s, timeline {}",
        evidence["rto_seconds"], evidence["rpo_seconds"], evidence["timeline"]
    );
    let audit: Value = http
        .get(format!("{}/v1/environments/shop/audit", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"environment.backup"), "{actions:?}");
    assert!(
        actions.contains(&"environment.drill_evidence"),
        "{actions:?}"
    );

    // The drill environment is gone: a tombstone, no simulated resource, no PostgreSQL.
    let drill_env = evidence["drill_environment"].as_str().unwrap();
    let gone = http
        .get(format!("{}/v1/environments/{drill_env}", plane.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    let cloud = std::fs::read_to_string(dir.path().join("cloud.json")).unwrap();
    let cloud: Value = serde_json::from_str(&cloud).unwrap();
    let left = cloud["resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| {
            r["gone_at"].is_null() && r["resource"]["tags"]["envplane:environment"] == drill_env
        })
        .count();
    assert_eq!(left, 0, "simulated resources of {drill_env} left");
    let databases = dir.path().join("databases").join(drill_env);
    assert!(!databases.exists(), "{} left", databases.display());
    assert!(!postgres_runs_under(&databases));
    assert!(postgres_runs_under(
        &dir.path().join("databases").join("shop")
    ));
}

fn envplane_postgres_missing() -> bool {
    let found = ["/usr/lib/postgresql"]
        .iter()
        .any(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()))
        || std::env::var_os("ENVPLANE_PG_BIN").is_some();
    if !found && std::env::var_os("ENVPLANE_REQUIRE_POSTGRES").is_some() {
        panic!("PostgreSQL is required (ENVPLANE_REQUIRE_POSTGRES) and not installed");
    }
    !found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_aws_starts_with_no_role_or_image_variables() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let vars = [
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    // Twice on the same account: the first start makes the roles, the second finds them.
    let dir = tempfile::tempdir().unwrap();
    drop(Plane::start_env(dir.path(), &["--aws"], &vars));
    let again = tempfile::tempdir().unwrap();
    let plane = Plane::start_env(again.path(), &["--aws"], &vars);

    let iam = aws_sdk_iam::Client::new(&config);
    let mut arns = Vec::new();
    for (role, service, policies) in [
        (
            "envplane-eks-cluster",
            "eks.amazonaws.com",
            vec!["AmazonEKSClusterPolicy"],
        ),
        (
            "envplane-eks-nodes",
            "ec2.amazonaws.com",
            vec![
                "AmazonEC2ContainerRegistryReadOnly",
                "AmazonEKSWorkerNodePolicy",
                "AmazonEKS_CNI_Policy",
            ],
        ),
    ] {
        let found = iam.get_role().role_name(role).send().await.unwrap();
        let found = found.role().unwrap();
        let trust = urlencoding_free(found.assume_role_policy_document().unwrap());
        assert!(trust.contains(service), "{role} trusts {service}: {trust}");
        let mut attached: Vec<String> = iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_owned))
            .collect();
        attached.sort();
        assert_eq!(attached, policies, "{role}");
        arns.push(found.arn().to_owned());
    }
    let image = aws_sdk_ssm::Client::new(&config)
        .get_parameter()
        .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
        .send()
        .await
        .unwrap()
        .parameter()
        .unwrap()
        .value()
        .unwrap()
        .to_owned();

    // What it found is what it provisions with.
    let http = http();
    let name = format!("r{}", &ulid::Ulid::new().to_string().to_lowercase()[20..]);
    let op = create(
        &http,
        &plane.endpoint,
        json!({"name": name, "tier": "qa", "network": {"vpc_cidr": "10.78.0.0/16"}}),
    )
    .await;
    let done = wait_for_operation(&http, &plane.endpoint, &op, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let eks = aws_sdk_eks::Client::new(&config);
    let cluster = eks
        .describe_cluster()
        .name(format!("{name}-eks"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        cluster.cluster().unwrap().role_arn(),
        Some(arns[0].as_str())
    );
    let nodes = eks
        .describe_nodegroup()
        .cluster_name(format!("{name}-eks"))
        .nodegroup_name(format!("{name}-backend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        nodes.nodegroup().unwrap().node_role(),
        Some(arns[1].as_str())
    );
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("tag:envplane:environment")
        .values(&name)
        .build();
    let hosts = aws_sdk_ec2::Client::new(&config)
        .describe_instances()
        .filters(filter)
        .send()
        .await
        .unwrap();
    let images: Vec<_> = hosts
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.image_id())
        .collect();
    assert_eq!(
        images,
        vec![image.as_str()],
        "the database host runs Amazon Linux 2023"
    );
}

/// IAM answers policy documents URL-encoded.
fn urlencoding_free(text: &str) -> String {
    text.replace("%22", "\"")
        .replace("%3A", ":")
        .replace("%2F", "/")
}
