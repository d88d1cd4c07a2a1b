//! Cold start of envplane's Lambda functions, measured the way Lambda starts them: each binary
//! is spawned against a loopback Lambda Runtime API (this process), with the variables Lambda
//! and the template set and no `~/.aws`, and handed one event. For each function: **init**
//! (spawn → its first `GET …/invocation/next`), **first response** (spawn → its answer posted)
//! and **peak RSS** (`VmHWM` once it has answered), over `--runs` starts, interleaved so that
//! machine noise falls on every function alike.
//!
//! The baseline is a hello-world `lambda_runtime` binary built in the same run with the same
//! profile (the goals are against it on `#[tokio::main]`'s multi-threaded runtime; it runs a
//! second time on the current-thread runtime envplane's functions use), and, when a Python
//! with boto3 is at hand, a boto3 handler building the API's clients. The DynamoDB endpoint is this process too (`AWS_ENDPOINT_URL_DYNAMODB`): it answers
//! every call with an empty item, so the API's first request and the worker's first step each
//! make one real SDK call (signed, serialized, sent over loopback without TLS).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[path = "figures.rs"]
#[allow(dead_code)]
mod figures;

/// The goal for envplane's API and worker: init within this many times the hello-world's.
const INIT_GOAL_RATIO: f64 = 2.0;
/// The goal for envplane's functions' peak resident memory, MiB.
const RSS_GOAL_MIB: f64 = 16.0;

#[derive(Debug, Parser)]
#[command(about = "Cold start of the Lambda binaries against a loopback Runtime API")]
struct Args {
    /// Starts per function.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Use the release binaries already in the target directory instead of building them.
    #[arg(long)]
    no_build: bool,
    /// A Python with boto3 for the Python comparison (default: the project's moto venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// What the loopback Runtime API saw of one start.
#[derive(Debug)]
enum Signal {
    Next(Instant),
    Answered(Instant, &'static str, String),
}

struct Runtime {
    event: Mutex<Value>,
    served: AtomicBool,
    signals: mpsc::UnboundedSender<Signal>,
}

type Shared = Arc<Runtime>;

async fn next(State(rt): State<Shared>) -> axum::response::Response {
    let at = Instant::now();
    if rt.served.swap(true, Ordering::SeqCst) {
        // One event per start: the function waits here until it is killed.
        std::future::pending::<()>().await;
    }
    let _ = rt.signals.send(Signal::Next(at));
    let event = rt.event.lock().map(|e| e.clone()).unwrap_or(Value::Null);
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30_000;
    (
        [
            ("lambda-runtime-aws-request-id", "cold-start-1".to_owned()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        event.to_string(),
    )
        .into_response()
}

async fn answered(rt: &Shared, kind: &'static str, body: String) -> StatusCode {
    let _ = rt
        .signals
        .send(Signal::Answered(Instant::now(), kind, body));
    StatusCode::ACCEPTED
}

async fn response(State(rt): State<Shared>, body: String) -> StatusCode {
    answered(&rt, "response", body).await
}

async fn error(State(rt): State<Shared>, body: String) -> StatusCode {
    answered(&rt, "error", body).await
}

/// DynamoDB as the functions see it here: every call finds nothing.
async fn dynamodb(_: HeaderMap) -> impl IntoResponse {
    ([("content-type", "application/x-amz-json-1.0")], "{}")
}

/// One function under test: how to start it and what to hand it.
struct Function {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    event: Value,
}

/// What one start measured.
#[derive(Debug, Clone, Copy)]
struct Start {
    init: Duration,
    first: Duration,
    rss_kib: u64,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("release")
}

fn build() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building api, worker and hello-lambda (release) …");
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "--locked", "-p", "envplane-fn-api"])
        .args(["-p", "envplane-fn-worker", "-p", "envplane-bench"])
        .args(["--bin", "api", "--bin", "worker", "--bin", "hello-lambda"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed: {status}");
    }
    Ok(())
}

fn fixture(name: &str) -> anyhow::Result<Value> {
    let path = workspace().join("tests/fixtures/apigw").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

fn python_with_boto3(given: Option<PathBuf>) -> Option<PathBuf> {
    let python = given.unwrap_or_else(|| workspace().join(".tools/moto/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import boto3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

fn functions(python: Option<PathBuf>) -> anyhow::Result<Vec<Function>> {
    let bin = release_dir();
    let machines: Vec<(&'static str, String)> = [
        ("PROVISION_STATE_MACHINE_ARN", "provision"),
        ("DESTROY_STATE_MACHINE_ARN", "destroy"),
        ("UPDATE_STATE_MACHINE_ARN", "update"),
        ("DEPLOY_STATE_MACHINE_ARN", "deploy"),
        ("RESTORE_STATE_MACHINE_ARN", "restore"),
    ]
    .into_iter()
    .map(|(variable, flow)| {
        (
            variable,
            format!("arn:aws:states:us-east-1:123456789012:stateMachine:envplane-{flow}"),
        )
    })
    .collect();
    let api_event = fixture("get-dev-viewer.json")?;
    let mut list = vec![
        Function {
            name: "hello-world",
            program: bin.join("hello-lambda"),
            args: vec![],
            env: vec![],
            event: json!({"hello": "?"}),
        },
        Function {
            name: "hello-1-thread",
            program: bin.join("hello-lambda"),
            args: vec![],
            env: vec![("HELLO_RUNTIME", "current_thread".to_owned())],
            event: json!({"hello": "?"}),
        },
        Function {
            name: "api",
            program: bin.join("api"),
            args: vec![],
            env: machines,
            event: api_event.clone(),
        },
        Function {
            name: "worker",
            program: bin.join("worker"),
            args: vec![],
            env: vec![
                ("ENVPLANE_STACK", "envplane-bench".to_owned()),
                (
                    "ENVPLANE_CLUSTER_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/eks".to_owned(),
                ),
                (
                    "ENVPLANE_NODE_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/nodes".to_owned(),
                ),
                ("ENVPLANE_DB_IMAGE_ID", "ami-0123456789abcdef0".to_owned()),
                (
                    "EVENTS_TOPIC_ARN",
                    "arn:aws:sns:us-east-1:123456789012:events".to_owned(),
                ),
            ],
            event: json!({"action": "operation.start", "environment": "dev", "operation": "01JBENCH00000000000000000"}),
        },
    ];
    if let Some(python) = python {
        list.push(Function {
            name: "python-boto3",
            program: python,
            args: vec![
                workspace()
                    .join("benches/python/boto3_handler.py")
                    .display()
                    .to_string(),
            ],
            env: vec![],
            event: api_event,
        });
    }
    Ok(list)
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

async fn start_once(
    f: &Function,
    rt: &Shared,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
    address: &str,
    home: &Path,
) -> anyhow::Result<(Start, &'static str, String)> {
    while signals.try_recv().is_ok() {}
    *rt.event.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = f.event.clone();
    rt.served.store(false, Ordering::SeqCst);
    let spawned = Instant::now();
    let mut child = Command::new(&f.program)
        .args(&f.args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("LANG", "en_US.UTF-8")
        .env("TZ", ":UTC")
        .env("AWS_LAMBDA_RUNTIME_API", address)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("envplane-{}", f.name))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_SESSION_TOKEN", "bench")
        .env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{address}"))
        .env("TABLE_NAME", "envplane")
        .envs(f.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", f.program.display()))?;
    let outcome = async {
        let Some(Signal::Next(next_at)) = wait(signals).await else {
            bail!("{} never asked for an event", f.name);
        };
        let Some(Signal::Answered(at, kind, body)) = wait(signals).await else {
            bail!("{} never answered", f.name);
        };
        let rss_kib = peak_rss_kib(child.id())?;
        Ok((
            Start {
                init: next_at - spawned,
                first: at - spawned,
                rss_kib,
            },
            kind,
            body,
        ))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// The next signal, or `None` after 20 s without one.
async fn wait(signals: &mut mpsc::UnboundedReceiver<Signal>) -> Option<Signal> {
    tokio::time::timeout(Duration::from_secs(20), signals.recv())
        .await
        .ok()
        .flatten()
}

fn median(mut values: Vec<f64>) -> f64 {
    figures::summary(&mut values).0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !args.no_build {
        build()?;
    }
    let (tx, mut signals) = mpsc::unbounded_channel();
    let rt: Shared = Arc::new(Runtime {
        event: Mutex::new(Value::Null),
        served: AtomicBool::new(false),
        signals: tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .route("/", post(dynamodb))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let home = tempfile::tempdir()?;

    let functions = functions(python_with_boto3(args.python))?;
    let mut starts: BTreeMap<&str, Vec<Start>> = BTreeMap::new();
    let mut answers: BTreeMap<&str, String> = BTreeMap::new();
    for round in 0..=args.runs {
        for f in &functions {
            let (start, kind, body) =
                start_once(f, &rt, &mut signals, &address, home.path()).await?;
            // Round 0 warms the page cache, as Lambda's own cache of a deployed package does.
            if round > 0 {
                starts.entry(f.name).or_default().push(start);
            }
            answers.insert(
                f.name,
                format!("{kind}: {}", body.chars().take(90).collect::<String>()),
            );
        }
    }

    println!(
        "cold start over {} starts each (medians; peak RSS median / max)",
        args.runs
    );
    println!(
        "{:<14} {:>9} {:>11} {:>16}  answer",
        "function", "init ms", "first ms", "peak RSS MiB"
    );
    let mut init = BTreeMap::new();
    for f in &functions {
        let runs = &starts[f.name];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let i = median(runs.iter().map(|s| ms(s.init)).collect());
        let first = median(runs.iter().map(|s| ms(s.first)).collect());
        let rss: Vec<f64> = runs.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
        let rss_max = rss.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<14} {:>9.2} {:>11.2} {:>8.1} / {:<5.1}  {}",
            f.name,
            i,
            first,
            median(rss.clone()),
            rss_max,
            answers[f.name]
        );
        init.insert(f.name, (i, rss_max));
    }
    let (hello, _) = init["hello-world"];
    // The same baseline on the current-thread runtime envplane's functions use: what is left
    // of a ratio once the runtime is alike.
    let (hello_one_thread, _) = init["hello-1-thread"];
    for name in ["api", "worker", "python-boto3"] {
        if let Some((i, rss)) = init.get(name) {
            let ratio = i / hello;
            let goal = if name == "python-boto3" {
                String::new()
            } else {
                format!(
                    " (goal ≤ {INIT_GOAL_RATIO}×: {}; RSS ≤ {RSS_GOAL_MIB} MiB: {})",
                    if ratio <= INIT_GOAL_RATIO {
                        "met"
                    } else {
                        "missed"
                    },
                    if *rss <= RSS_GOAL_MIB {
                        "met"
                    } else {
                        "missed"
                    }
                )
            };
            println!(
                "init {name} / hello-world: {ratio:.2}× (/ hello-1-thread: {:.2}×){goal}",
                i / hello_one_thread
            );
        }
    }
    Ok(())
}
