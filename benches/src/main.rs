//! API benchmark: throughput and tail latency of `GET /v1/environments/{name}` on a running
//! local plane (`envplane serve`), beside `GET /health` as the baseline of the same process,
//! and the number of DynamoDB calls each API request makes, requests on the wire, counted by an SDK interceptor
//! against moto's server.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use clap::Parser;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the envplane API")]
struct Args {
    /// Base URL of a running `envplane serve --dev-auth` (the local plane).
    #[arg(long)]
    endpoint: String,
    /// moto's endpoint, for counting DynamoDB calls per request (skipped when absent).
    #[arg(long)]
    moto: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of load per measured route.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// Sends GETs to `url` from `concurrency` keep-alive connections for `seconds`.
async fn load(url: &str, concurrency: usize, seconds: u64) -> anyhow::Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = client.get(&url).send().await?;
                if !response.status().is_success() {
                    bail!("{url} answered {}", response.status());
                }
                response.bytes().await?;
                latencies.push(t.elapsed());
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run {
        requests: latencies.len(),
        elapsed,
        latencies,
    })
}

/// Counts SDK operations by name, as the client issues them (retries excluded).
#[derive(Debug, Default, Clone)]
struct CallCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl CallCounter {
    fn take(&self) -> BTreeMap<String, usize> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Every attempt that goes on the wire counts, retries included; the operation is
        // named by DynamoDB's JSON protocol header.
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown");
        let name = target.rsplit('.').next().unwrap_or(target).to_owned();
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(name).or_default() += 1;
        }
        Ok(())
    }
}

fn describe(counts: &BTreeMap<String, usize>) -> String {
    let total: usize = counts.values().sum();
    let detail: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!("{total} ({})", detail.join(", "))
}

/// Drives the API router in-process over a DynamoDB store on moto and counts the calls of
/// each request kind.
async fn count_dynamodb_calls(moto: &str) -> anyhow::Result<()> {
    let counter = CallCounter::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .interceptor(counter.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let table = format!(
        "envplane-bench-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    envplane_store::DynamoStore::create_table(&client, &table).await?;
    let store = envplane_store::DynamoStore::new(client, table);
    let auth = envplane_api::Authenticator::Dev(envplane_domain::Caller {
        principal: "bench".into(),
        role: envplane_domain::Role::Admin,
    });
    let router = envplane_api::router(envplane_api::AppState::new(Arc::new(store), auth));
    counter.take();

    let send = |request: axum::http::Request<axum::body::Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
    };
    let post = |name: &str, tier: &str, key: Option<&str>| {
        let mut builder = axum::http::Request::post("/v1/environments")
            .header("content-type", "application/json");
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        builder.body(axum::body::Body::from(format!(
            r#"{{"name":"{name}","tier":"{tier}"}}"#
        )))
    };
    let mut rows = Vec::new();
    let status = send(post("bench", "dev", None)?).await?;
    rows.push(("POST /v1/environments", status, counter.take()));
    let status =
        send(axum::http::Request::get("/v1/environments/bench").body(axum::body::Body::empty())?)
            .await?;
    rows.push(("GET /v1/environments/{name}", status, counter.take()));
    let status = send(post("bench-keyed", "qa", Some("k1"))?).await?;
    rows.push(("POST with Idempotency-Key", status, counter.take()));
    let status = send(post("bench-keyed", "qa", Some("k1"))?).await?;
    rows.push(("POST retry, same key (replay)", status, counter.take()));
    let status = send(post("bench-2", "dev", None)?).await?;
    rows.push(("POST whose default block is taken", status, counter.take()));
    let status = send(
        axum::http::Request::get("/v1/environments?limit=20").body(axum::body::Body::empty())?,
    )
    .await?;
    rows.push(("GET /v1/environments (list)", status, counter.take()));

    println!(
        "\nDynamoDB calls per request (requests on the wire, counted by an SDK interceptor, moto at {moto}):"
    );
    for (what, status, counts) in rows {
        println!(
            "  {what:<36} {:>3}  calls: {}",
            status.as_u16(),
            describe(&counts)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = args.endpoint.trim_end_matches('/');
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{endpoint}/v1/environments"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"name":"bench-{}","tier":"dev"}}"#,
            ulid::Ulid::new().to_string().to_lowercase()
        ))
        .send()
        .await
        .context("is `envplane serve --dev-auth` running at --endpoint?")?;
    if created.status().as_u16() != 202 {
        bail!(
            "creating the benchmark environment answered {}",
            created.status()
        );
    }
    let body: serde_json::Value = created.json().await?;
    let name = body["environment"]["name"]
        .as_str()
        .context("no name in the answer")?
        .to_owned();

    println!(
        "local plane at {endpoint}, {} connections, {} s per route",
        args.concurrency, args.seconds
    );
    let baseline = load(
        &format!("{endpoint}/health"),
        args.concurrency,
        args.seconds,
    )
    .await?;
    let get = load(
        &format!("{endpoint}/v1/environments/{name}"),
        args.concurrency,
        args.seconds,
    )
    .await?;
    for (what, run) in [
        ("GET /health (baseline)", &baseline),
        ("GET /v1/environments/{name}", &get),
    ] {
        println!(
            "  {what:<30} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} requests)",
            run.rps(),
            run.percentile(0.50).as_secs_f64() * 1e3,
            run.percentile(0.99).as_secs_f64() * 1e3,
            run.requests
        );
    }
    println!(
        "  GET environment / baseline: {:.2}× the throughput",
        get.rps() / baseline.rps()
    );
    match &args.moto {
        Some(moto) => count_dynamodb_calls(moto).await?,
        None => println!("\n(no --moto endpoint: DynamoDB call counts skipped)"),
    }
    Ok(())
}
