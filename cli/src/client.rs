//! Client commands: call the API and print the answer for people or scripts.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{ClientArgs, Output};

/// `envplane env …`
#[derive(Debug, clap::Subcommand)]
pub enum EnvCommand {
    /// Create an environment from its tier's blueprint.
    Create {
        /// Name: a lowercase DNS label of at most 40 characters.
        name: String,
        /// dev, qa, staging, prod or preview.
        #[arg(long)]
        tier: String,
        /// Override a blueprint default, e.g. --set cluster.frontend.desired=3 (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Idempotency key (default: a fresh one, reused by this command's own retries).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the provisioning until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one environment.
    Get {
        /// Environment name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List environments.
    List {
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Only this phase.
        #[arg(long)]
        phase: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Follow every page.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the desired spec, e.g. --set cluster.frontend.desired=3.
    Update {
        /// Environment name.
        name: String,
        /// Field to change (repeatable); `null` removes an optional field.
        #[arg(long = "set", value_name = "PATH=VALUE", required = true)]
        set: Vec<String>,
        /// Allow changes that replace a resource (a node group's instance type).
        #[arg(long)]
        allow_replacement: bool,
        /// Follow the update until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the last drift check: what differs between the cloud and the spec.
    Drift {
        /// Environment name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put the cloud back to the environment's spec (after drift).
    Reconcile {
        /// Environment name.
        name: String,
        /// Follow the reconcile until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What a change would do (resources, monthly cost, time, approvals), without doing it.
    Plan {
        /// Environment name.
        name: String,
        /// Field to change (repeatable), as with `update`.
        #[arg(long = "set", value_name = "PATH=VALUE", required = true)]
        set: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Destroy an environment.
    Delete {
        /// Environment name.
        name: String,
        /// Only if the environment is still at this ETag.
        #[arg(long)]
        if_match: Option<String>,
        /// Follow the teardown until it ends.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `envplane ops …`
#[derive(Debug, clap::Subcommand)]
pub enum OpsCommand {
    /// Follow an operation's steps until it ends; fails when the operation fails.
    Watch {
        /// Operation id.
        id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one operation.
    Get {
        /// Operation id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

struct Api<'a> {
    http: reqwest::Client,
    args: &'a ClientArgs,
}

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Value,
}

impl<'a> Api<'a> {
    fn new(args: &'a ClientArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(35))
            .build()?;
        Ok(Self { http, args })
    }

    /// Sends a request; mutations carry an idempotency key and are retried on transport
    /// errors and 5xx, which the key makes safe.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.args.endpoint.trim_end_matches('/'));
        let retries =
            if method == Method::GET || headers.iter().any(|(h, _)| *h == "idempotency-key") {
                3
            } else {
                1
            };
        let mut last_error = None;
        for attempt in 0..retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * 2u64.pow(attempt))).await;
            }
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = &self.args.token {
                request = request.bearer_auth(token);
            }
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            if let Some(body) = body {
                let content_type = if method == Method::PATCH {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                request = request
                    .header("content-type", content_type)
                    .body(body.to_string());
            }
            match request.send().await {
                Ok(response) if response.status().is_server_error() && attempt + 1 < retries => {
                    last_error = Some(anyhow!("{} answered {}", url, response.status()));
                }
                Ok(response) => {
                    let status = response.status();
                    let etag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = response.text().await?;
                    let body = if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    };
                    if !status.is_success() {
                        bail!(describe_problem(status, &body));
                    }
                    return Ok(Answer { status, etag, body });
                }
                Err(e) => last_error = Some(anyhow!(e).context(format!("calling {url}"))),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no attempt made")))
    }
}

fn describe_problem(status: StatusCode, body: &Value) -> String {
    let mut text = format!(
        "{} ({}): {}",
        body["title"].as_str().unwrap_or("request failed"),
        status.as_u16(),
        body["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string())
    );
    for error in body["errors"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  {}: {}",
            error["field"].as_str().unwrap_or(""),
            error["detail"].as_str().unwrap_or("")
        ));
    }
    text
}

/// Builds a JSON object from `path=value` pairs; values parse as JSON when they can.
fn overrides(pairs: &[String]) -> anyhow::Result<Value> {
    let mut root = json!({});
    for pair in pairs {
        let (path, raw) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected PATH=VALUE"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        let keys: Vec<&str> = path.split('.').collect();
        insert(&mut root, &keys, value)
            .with_context(|| format!("--set {pair:?}: {path} crosses a value"))?;
    }
    Ok(root)
}

fn insert(node: &mut Value, keys: &[&str], value: Value) -> Option<()> {
    let map = node.as_object_mut()?;
    match keys {
        [] => None,
        [last] => {
            map.insert((*last).to_owned(), value);
            Some(())
        }
        [first, rest @ ..] => insert(map.entry(*first).or_insert_with(|| json!({})), rest, value),
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn group(value: &Value) -> String {
    format!(
        "{} ×{} ({}–{})",
        value["instance_type"].as_str().unwrap_or("?"),
        value["desired"],
        value["min"],
        value["max"]
    )
}

fn print_environment(env: &Value) {
    let spec = &env["spec"];
    let rows = [
        ("name", env["name"].as_str().unwrap_or("").to_owned()),
        ("tier", env["tier"].as_str().unwrap_or("").to_owned()),
        (
            "phase",
            env["status"]["phase"].as_str().unwrap_or("").to_owned(),
        ),
        ("version", env["version"].to_string()),
        (
            "operation",
            env["active_operation"].as_str().unwrap_or("-").to_owned(),
        ),
        (
            "vpc",
            format!(
                "{} across {} AZs, NAT {}",
                spec["network"]["vpc_cidr"].as_str().unwrap_or(""),
                spec["network"]["az_count"],
                spec["network"]["nat_gateways"].as_str().unwrap_or("")
            ),
        ),
        (
            "eks",
            spec["cluster"]["version"].as_str().unwrap_or("").to_owned(),
        ),
        ("frontend", group(&spec["cluster"]["frontend"])),
        ("backend", group(&spec["cluster"]["backend"])),
        (
            "database",
            format!(
                "{} PostgreSQL {}, gp3 {} GiB {} IOPS {} MiB/s",
                spec["database"]["instance_type"].as_str().unwrap_or(""),
                spec["database"]["engine_version"].as_str().unwrap_or(""),
                spec["database"]["volume"]["size_gb"],
                spec["database"]["volume"]["iops"],
                spec["database"]["volume"]["throughput_mibps"]
            ),
        ),
        (
            "cost",
            format!(
                "${:.2}/month",
                env["cost"]["monthly_usd"].as_f64().unwrap_or(0.0)
            ),
        ),
        (
            "created",
            format!(
                "{} by {}",
                env["created_at"].as_str().unwrap_or(""),
                env["created_by"].as_str().unwrap_or("")
            ),
        ),
    ];
    for (key, value) in rows {
        println!("{key:<10} {value}");
    }
    let resources = env["resources"].as_array().cloned().unwrap_or_default();
    if !resources.is_empty() {
        let mut kinds: std::collections::BTreeMap<String, usize> =
            std::collections::BTreeMap::new();
        for r in &resources {
            *kinds
                .entry(r["kind"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{:<10} {} ({})",
            "resources",
            resources.len(),
            summary.join(", ")
        );
    }
    if let Some(status) = env["drift"]["status"].as_str() {
        println!(
            "{:<10} {status} (checked {}; details: envplane env drift {})",
            "drift",
            env["drift"]["checked_at"].as_str().unwrap_or(""),
            env["name"].as_str().unwrap_or("")
        );
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

pub async fn blueprints(args: &ClientArgs) -> anyhow::Result<()> {
    let answer = Api::new(args)?
        .call(Method::GET, "/v1/blueprints", None, &[])
        .await?;
    if args.output == Output::Json {
        print_json(&answer.body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .body
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            vec![
                b["tier"].as_str().unwrap_or("").to_owned(),
                b["default_vpc_cidr"]
                    .as_str()
                    .unwrap_or("from pool")
                    .to_owned(),
                b["az_count"].to_string(),
                group(&b["cluster"]["frontend"]),
                group(&b["cluster"]["backend"]),
                format!(
                    "{} gp3 {} GiB",
                    b["database"]["instance_type"].as_str().unwrap_or(""),
                    b["database"]["volume"]["size_gb"]
                ),
                b["cluster"]["version"].as_str().unwrap_or("").to_owned(),
                format!("${:.2}", b["cost"]["monthly_usd"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    print_table(
        &[
            "TIER",
            "VPC",
            "AZS",
            "FRONTEND",
            "BACKEND",
            "DATABASE",
            "EKS",
            "COST/MONTH",
        ],
        &rows,
    );
    Ok(())
}

pub async fn env(command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Create {
            name,
            tier,
            set,
            idempotency_key,
            wait,
            client,
        } => {
            let mut body = overrides(&set)?;
            body["name"] = json!(name);
            body["tier"] = json!(tier);
            let key = idempotency_key.unwrap_or_else(|| ulid::Ulid::new().to_string());
            let answer = Api::new(&client)?
                .call(
                    Method::POST,
                    "/v1/environments",
                    Some(&body),
                    &[("idempotency-key", key)],
                )
                .await?;
            mutation_result(&client, &answer, "create")?;
            match answer.body["operation"]["id"].as_str() {
                Some(id) if wait => watch(&client, id, Duration::from_secs(1)).await,
                _ => Ok(()),
            }
        }
        EnvCommand::Get { name, client } => {
            let answer = Api::new(&client)?
                .call(Method::GET, &format!("/v1/environments/{name}"), None, &[])
                .await?;
            if client.output == Output::Json {
                print_json(&answer.body)
            } else {
                print_environment(&answer.body)
            }
            Ok(())
        }
        EnvCommand::List {
            tier,
            phase,
            limit,
            all,
            client,
        } => {
            let api = Api::new(&client)?;
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![format!("limit={limit}")];
                query.extend(tier.as_ref().map(|t| format!("tier={t}")));
                query.extend(phase.as_ref().map(|p| format!("phase={p}")));
                query.extend(cursor.as_ref().map(|c| format!("cursor={c}")));
                let answer = api
                    .call(
                        Method::GET,
                        &format!("/v1/environments?{}", query.join("&")),
                        None,
                        &[],
                    )
                    .await?;
                items.extend(answer.body["items"].as_array().cloned().unwrap_or_default());
                cursor = answer.body["next_cursor"].as_str().map(str::to_owned);
                if !all || cursor.is_none() {
                    break;
                }
            }
            if client.output == Output::Json {
                print_json(&json!({ "items": items, "next_cursor": cursor }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|e| {
                    vec![
                        e["name"].as_str().unwrap_or("").to_owned(),
                        e["tier"].as_str().unwrap_or("").to_owned(),
                        e["status"]["phase"].as_str().unwrap_or("").to_owned(),
                        e["spec"]["network"]["vpc_cidr"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        e["spec"]["cluster"]["version"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        format!("${:.2}", e["cost"]["monthly_usd"].as_f64().unwrap_or(0.0)),
                        e["active_operation"].as_str().unwrap_or("-").to_owned(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "TIER",
                    "PHASE",
                    "VPC",
                    "EKS",
                    "COST/MONTH",
                    "OPERATION",
                ],
                &rows,
            );
            if let Some(cursor) = cursor {
                println!("(more: --all, or the API with cursor={cursor})");
            }
            Ok(())
        }
        EnvCommand::Plan { name, set, client } => {
            let patch = overrides(&set)?;
            let answer = Api::new(&client)?
                .call(
                    Method::POST,
                    &format!("/v1/environments/{name}/plan"),
                    Some(&patch),
                    &[],
                )
                .await?;
            let plan = &answer.body;
            if client.output == Output::Json {
                print_json(plan);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = plan["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let changes: Vec<String> = r["changes"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}: {} → {}", v[0], v[1]))
                        .collect();
                    vec![
                        r["action"].as_str().unwrap_or("").to_owned(),
                        r["kind"].as_str().unwrap_or("").to_owned(),
                        r["name"].as_str().unwrap_or("").to_owned(),
                        changes.join(", "),
                    ]
                })
                .collect();
            print_table(&["ACTION", "KIND", "NAME", "CHANGES"], &rows);
            println!(
                "monthly cost: ${:.2} → ${:.2} ({:+.2}); about {} s and {} state transitions to apply; approvals: {}",
                plan["monthly_cost_before"].as_f64().unwrap_or(0.0),
                plan["monthly_cost_after"].as_f64().unwrap_or(0.0),
                plan["monthly_cost_delta_usd"].as_f64().unwrap_or(0.0),
                plan["estimated_seconds"],
                plan["estimated_transitions"],
                plan["approvals"]
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .map_or("none".to_owned(), |a| a
                        .iter()
                        .filter_map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
            );
            Ok(())
        }
        EnvCommand::Update {
            name,
            set,
            allow_replacement,
            wait,
            client,
        } => {
            let api = Api::new(&client)?;
            let current = api
                .call(Method::GET, &format!("/v1/environments/{name}"), None, &[])
                .await?;
            let etag = current.etag.context("the API sent no ETag")?;
            let patch = overrides(&set)?;
            let key = ulid::Ulid::new().to_string();
            let answer = api
                .call(
                    Method::PATCH,
                    &format!("/v1/environments/{name}?allow_replacement={allow_replacement}"),
                    Some(&patch),
                    &[("if-match", etag), ("idempotency-key", key)],
                )
                .await?;
            mutation_result(&client, &answer, "update")?;
            match answer.body["operation"]["id"].as_str() {
                Some(id) if wait => watch(&client, id, Duration::from_secs(1)).await,
                _ => Ok(()),
            }
        }
        EnvCommand::Drift { name, client } => {
            let answer = Api::new(&client)?
                .call(
                    Method::GET,
                    &format!("/v1/environments/{name}/drift"),
                    None,
                    &[],
                )
                .await?;
            let report = &answer.body;
            if client.output == Output::Json {
                print_json(report);
                return Ok(());
            }
            println!(
                "{name}: {} (checked {}, {} AWS calls){}",
                report["status"].as_str().unwrap_or(""),
                report["checked_at"].as_str().unwrap_or(""),
                report["api_calls"],
                report["note"]
                    .as_str()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
            let mut rows: Vec<Vec<String>> = Vec::new();
            for (what, list) in [("missing", "missing"), ("not in spec", "unexpected")] {
                for r in report[list].as_array().into_iter().flatten() {
                    rows.push(vec![
                        what.to_owned(),
                        r["kind"].as_str().unwrap_or("").to_owned(),
                        r["resource"].as_str().unwrap_or("").to_owned(),
                        String::new(),
                    ]);
                }
            }
            for d in report["changed"].as_array().into_iter().flatten() {
                rows.push(vec![
                    "changed".to_owned(),
                    d["kind"].as_str().unwrap_or("").to_owned(),
                    d["resource"].as_str().unwrap_or("").to_owned(),
                    format!(
                        "{}: {} (spec {})",
                        d["attribute"].as_str().unwrap_or(""),
                        d["actual"],
                        d["expected"]
                    ),
                ]);
            }
            if !rows.is_empty() {
                print_table(&["DRIFT", "KIND", "RESOURCE", "DETAIL"], &rows);
                println!("to put it back: envplane env reconcile {name} --wait");
            }
            Ok(())
        }
        EnvCommand::Reconcile { name, wait, client } => {
            let answer = Api::new(&client)?
                .call(
                    Method::POST,
                    &format!("/v1/environments/{name}/reconcile"),
                    None,
                    &[("idempotency-key", ulid::Ulid::new().to_string())],
                )
                .await?;
            mutation_result(&client, &answer, "reconcile")?;
            match answer.body["operation"]["id"].as_str() {
                Some(id) if wait => watch(&client, id, Duration::from_secs(1)).await,
                _ => Ok(()),
            }
        }
        EnvCommand::Delete {
            name,
            if_match,
            wait,
            client,
        } => {
            let mut headers = vec![("idempotency-key", ulid::Ulid::new().to_string())];
            headers.extend(if_match.map(|etag| ("if-match", etag)));
            let answer = Api::new(&client)?
                .call(
                    Method::DELETE,
                    &format!("/v1/environments/{name}"),
                    None,
                    &headers,
                )
                .await?;
            mutation_result(&client, &answer, "delete")?;
            match answer.body["operation"]["id"].as_str() {
                Some(id) if wait => watch(&client, id, Duration::from_secs(1)).await,
                _ => Ok(()),
            }
        }
    }
}

fn mutation_result(client: &ClientArgs, answer: &Answer, verb: &str) -> anyhow::Result<()> {
    if client.output == Output::Json {
        print_json(&answer.body);
    } else {
        let env = &answer.body["environment"];
        let op = &answer.body["operation"];
        println!(
            "{verb} of {} accepted ({}): operation {} is {}",
            env["name"].as_str().unwrap_or(""),
            answer.status.as_u16(),
            op["id"].as_str().unwrap_or(""),
            op["status"].as_str().unwrap_or("")
        );
        print_environment(env);
    }
    Ok(())
}

/// Polls an operation, printing each step as it starts and ends, until the operation ends.
async fn watch(client: &ClientArgs, id: &str, interval: Duration) -> anyhow::Result<()> {
    let api = Api::new(client)?;
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut changes_seen = 0;
    let started = std::time::Instant::now();
    loop {
        let op = api
            .call(Method::GET, &format!("/v1/operations/{id}"), None, &[])
            .await?
            .body;
        let steps = op["steps"].as_array().cloned().unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            let entry = (
                step["name"].as_str().unwrap_or("").to_owned(),
                step["status"].as_str().unwrap_or("").to_owned(),
            );
            if seen.get(i) != Some(&entry) {
                if client.output == Output::Json {
                    println!("{step}");
                } else {
                    println!(
                        "[{:>6.1}s] {:<20} {}",
                        started.elapsed().as_secs_f64(),
                        entry.0,
                        entry.1
                    );
                }
                if i < seen.len() {
                    seen[i] = entry;
                } else {
                    seen.push(entry);
                }
            }
        }
        let changes = op["changes"].as_array().cloned().unwrap_or_default();
        for change in changes.iter().skip(changes_seen) {
            if client.output == Output::Json {
                println!("{change}");
            } else {
                println!(
                    "[{:>6.1}s]   ↳ {}: {}",
                    started.elapsed().as_secs_f64(),
                    change["resource"].as_str().unwrap_or(""),
                    change["change"].as_str().unwrap_or("")
                );
            }
        }
        changes_seen = changes.len();
        match op["status"].as_str() {
            Some("succeeded") => {
                println!(
                    "operation {id} succeeded after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(status @ ("failed" | "cancelled")) => {
                bail!(
                    "operation {id} {status}: {}: {}",
                    op["error"]["error"].as_str().unwrap_or("unknown error"),
                    op["error"]["cause"].as_str().unwrap_or("no cause recorded")
                );
            }
            _ => tokio::time::sleep(interval).await,
        }
    }
}

pub async fn ops(command: OpsCommand) -> anyhow::Result<()> {
    match command {
        OpsCommand::Watch {
            id,
            interval,
            client,
        } => watch(&client, &id, Duration::from_secs_f64(interval.max(0.05))).await,
        OpsCommand::Get { id, client } => {
            let answer = Api::new(&client)?
                .call(Method::GET, &format!("/v1/operations/{id}"), None, &[])
                .await?;
            if client.output == Output::Json {
                print_json(&answer.body);
            } else {
                let op = &answer.body;
                for key in [
                    "id",
                    "environment",
                    "kind",
                    "status",
                    "requested_by",
                    "requested_at",
                    "updated_at",
                ] {
                    println!("{key:<13} {}", op[key].as_str().unwrap_or(""));
                }
                if let Some(error) = op["error"].as_object() {
                    println!(
                        "{:<13} {}: {}",
                        "error",
                        error["error"].as_str().unwrap_or(""),
                        error["cause"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_pairs_nest_and_parse_json() {
        let value = overrides(&[
            "cluster.frontend.desired=3".into(),
            "network.vpc_cidr=10.9.0.0/16".into(),
            "ttl_hours=null".into(),
        ])
        .expect("valid");
        assert_eq!(
            value,
            json!({"cluster": {"frontend": {"desired": 3}}, "network": {"vpc_cidr": "10.9.0.0/16"}, "ttl_hours": null})
        );
        assert!(overrides(&["novalue".into()]).is_err());
    }
}
