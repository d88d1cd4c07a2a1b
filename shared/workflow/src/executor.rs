//! The local executor: runs a [`StateMachine`] as AWS Step Functions documents it, resolving
//! each Task resource through a [`TaskRunner`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, try_join_all};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;

use crate::asl::{Catcher, Jitter, Retrier, State, StateMachine, Transition};
use crate::choice;
use crate::paths::{self, PathError, Scope};

pub use crate::clock::{Clock, ScaledClock, VirtualClock};
pub use crate::history::{EventKind, HistoryEvent, Outcome};

/// An error a state or a task ends with, named as Step Functions names errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Error name, e.g. `Envplane.Throttled` or `States.Timeout`.
    pub error: String,
    /// What happened.
    pub cause: String,
}

impl Failure {
    /// A failure.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

impl From<PathError> for Failure {
    fn from(e: PathError) -> Self {
        Failure::new(e.error, e.cause)
    }
}

/// What a Task's resource is given besides its payload.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Execution id.
    pub execution: String,
    /// State name.
    pub state: String,
    /// Retry number of this attempt (0 first).
    pub retry: u32,
    /// The token to complete a `.waitForTaskToken` task with.
    pub token: Option<String>,
}

/// Runs Task resources.
#[async_trait]
pub trait TaskRunner: Send + Sync {
    /// Runs `resource` with `payload`; the error name is what Retry and Catch match on.
    async fn run(
        &self,
        resource: &str,
        payload: Value,
        context: &TaskContext,
    ) -> Result<Value, Failure>;
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, Failure>>>>>;

/// Runs state machines.
#[derive(Clone)]
pub struct Executor {
    runner: Arc<dyn TaskRunner>,
    clock: Arc<dyn Clock>,
    tokens: Pending,
}

/// Why a task token could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no task is waiting for this token (it finished, timed out, or never existed)")]
pub struct InvalidToken;

struct Run {
    executor: Executor,
    execution: String,
    input: Value,
    started: OffsetDateTime,
    history: Mutex<Vec<HistoryEvent>>,
    observer: Arc<dyn Observer>,
}

impl Executor {
    /// An executor over a task runner and a clock.
    pub fn new(runner: Arc<dyn TaskRunner>, clock: Arc<dyn Clock>) -> Self {
        Self {
            runner,
            clock,
            tokens: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Completes a `.waitForTaskToken` task with its output (SendTaskSuccess).
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), InvalidToken> {
        self.complete(token, Ok(output))
    }

    /// Fails a `.waitForTaskToken` task (SendTaskFailure).
    pub fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), InvalidToken> {
        self.complete(token, Err(Failure::new(error, cause)))
    }

    fn complete(&self, token: &str, result: Result<Value, Failure>) -> Result<(), InvalidToken> {
        let sender = self
            .tokens
            .lock()
            .ok()
            .and_then(|mut t| t.remove(token))
            .ok_or(InvalidToken)?;
        sender.send(result).map_err(|_| InvalidToken)
    }

    /// Runs `machine` on `input` to its end.
    pub async fn execute(&self, machine: &StateMachine, input: Value, execution: &str) -> Outcome {
        self.execute_with(
            machine,
            input,
            execution,
            None,
            Map::new(),
            Arc::new(NoObserver),
        )
        .await
    }

    /// Runs `machine` from `resume_at` (a top-level state; its start when `None`) with `input`
    /// and the workflow `variables` set so far, telling `observer` about every event and every
    /// top-level state entered, so that an interrupted execution can be resumed from its last
    /// checkpoint.
    pub async fn execute_with(
        &self,
        machine: &StateMachine,
        input: Value,
        execution: &str,
        resume_at: Option<&str>,
        variables: Map<String, Value>,
        observer: Arc<dyn Observer>,
    ) -> Outcome {
        let run = Arc::new(Run {
            executor: self.clone(),
            execution: execution.to_owned(),
            input: input.clone(),
            started: self.clock.now(),
            history: Mutex::new(Vec::new()),
            observer,
        });
        let start = resume_at.unwrap_or(&machine.start_at).to_owned();
        let body = run_machine(
            run.clone(),
            machine.clone(),
            input,
            None,
            Some(start),
            variables,
        );
        let result = match machine.timeout_seconds {
            Some(limit) => match tokio::time::timeout(Duration::from_secs(limit), body).await {
                Ok(result) => result,
                Err(_) => Err(Failure::new(
                    "States.Timeout",
                    format!("the execution ran longer than {limit} s"),
                )),
            },
            None => body.await,
        };
        let history = run.history.lock().map(|h| h.clone()).unwrap_or_default();
        match result {
            Ok(output) => Outcome {
                status: "SUCCEEDED",
                output: Some(output),
                error: None,
                cause: None,
                history,
            },
            Err(f) => Outcome {
                status: "FAILED",
                output: None,
                error: Some(f.error),
                cause: Some(f.cause),
                history,
            },
        }
    }
}

/// Hears what an execution does, e.g. to persist its progress.
pub trait Observer: Send + Sync {
    /// A top-level state is about to run with `input` and `variables`: resuming here repeats
    /// only this state.
    fn checkpoint(&self, _state: &str, _input: &Value, _variables: &Map<String, Value>) {}
    /// Something happened.
    fn event(&self, _event: &HistoryEvent) {}
}

struct NoObserver;

impl Observer for NoObserver {}

impl Run {
    fn record(&self, state: &str, kind: EventKind) {
        let event = HistoryEvent {
            at: self.executor.clock.now(),
            state: state.to_owned(),
            kind,
        };
        self.observer.event(&event);
        if let Ok(mut history) = self.history.lock() {
            history.push(event);
        }
    }

    fn context(
        &self,
        state: &str,
        retry: u32,
        token: Option<&str>,
        item: Option<(usize, &Value)>,
    ) -> Value {
        let now = self
            .executor
            .clock
            .now()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut context = json!({
            "Execution": {
                "Id": self.execution,
                "Name": self.execution,
                "Input": self.input,
                "StartTime": self.started.format(&Rfc3339).unwrap_or_default(),
            },
            "State": { "Name": state, "EnteredTime": now, "RetryCount": retry },
            "StateMachine": { "Id": "local", "Name": "local" },
        });
        if let Some(token) = token {
            context["Task"] = json!({ "Token": token });
        }
        if let Some((index, value)) = item {
            context["Map"] = json!({ "Item": { "Index": index, "Value": value } });
        }
        context
    }
}

fn error_matches(names: &[String], error: &str) -> bool {
    // States.Runtime ends the execution: no retrier or catcher handles it.
    if error == "States.Runtime" {
        return false;
    }
    names.iter().any(|n| {
        n == error || n == "States.ALL" || (n == "States.TaskFailed" && error != "States.Timeout")
    })
}

/// The delay before retry number `retry` (0-based) of `retrier`.
pub fn retry_delay(retrier: &Retrier, retry: u32, unit_random: f64) -> Duration {
    let base = retrier.interval_seconds as f64
        * retrier
            .backoff_rate
            .powi(i32::try_from(retry).unwrap_or(i32::MAX));
    let capped = retrier
        .max_delay_seconds
        .map_or(base, |max| base.min(max as f64));
    let seconds = match retrier.jitter_strategy {
        Some(Jitter::Full) => capped * unit_random,
        _ => capped,
    };
    Duration::from_secs_f64(seconds.max(0.0))
}

fn unit_random() -> f64 {
    (ulid::Ulid::new().random() % 1_000_000) as f64 / 1_000_000.0
}

/// Runs an attempt under a state's retriers; on a final failure a matching catcher yields
/// the error output and the state to go to instead.
/// A failure a catcher handled: where to go, and its `Assign` over the error output.
struct Caught {
    next: String,
    error_output: Value,
    assign: Option<Value>,
}

async fn with_retry<F>(
    run: &Run,
    state: &str,
    retry: &[Retrier],
    catch: &[Catcher],
    raw_input: &Value,
    mut attempt: F,
) -> Result<(Value, Option<Caught>), Failure>
where
    F: FnMut(u32) -> BoxFuture<'static, Result<Value, Failure>>,
{
    let mut counts = vec![0u32; retry.len()];
    let mut retries = 0;
    loop {
        let failure = match attempt(retries).await {
            Ok(output) => return Ok((output, None)),
            Err(failure) => failure,
        };
        run.record(
            state,
            EventKind::TaskFailed {
                error: failure.error.clone(),
                cause: failure.cause.clone(),
            },
        );
        if let Some(index) = retry
            .iter()
            .position(|r| error_matches(&r.error_equals, &failure.error))
        {
            let retrier = &retry[index];
            if counts[index] < retrier.max_attempts {
                let delay = retry_delay(retrier, counts[index], unit_random());
                counts[index] += 1;
                retries += 1;
                run.record(
                    state,
                    EventKind::Retrying {
                        retry: retries,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    },
                );
                run.executor.clock.sleep(delay).await;
                continue;
            }
        }
        if let Some(catcher) = catch
            .iter()
            .find(|c| error_matches(&c.error_equals, &failure.error))
        {
            run.record(
                state,
                EventKind::Caught {
                    error: failure.error.clone(),
                    next: catcher.next.clone(),
                },
            );
            let error_output = json!({ "Error": failure.error, "Cause": failure.cause });
            let output = paths::place(
                catcher.result_path.as_deref(),
                raw_input,
                error_output.clone(),
            )?;
            return Ok((
                output,
                Some(Caught {
                    next: catcher.next.clone(),
                    error_output,
                    assign: catcher.assign.clone(),
                }),
            ));
        }
        return Err(failure);
    }
}

/// Runs a (sub-)machine. `variables` are those in scope when it starts: a branch or an
/// iteration sees its parent's and may set its own, which end with it.
fn run_machine(
    run: Arc<Run>,
    machine: StateMachine,
    input: Value,
    item: Option<(usize, Value)>,
    top_level_start: Option<String>,
    variables: Map<String, Value>,
) -> BoxFuture<'static, Result<Value, Failure>> {
    Box::pin(async move {
        let top_level = top_level_start.is_some();
        let mut current = top_level_start.unwrap_or_else(|| machine.start_at.clone());
        let mut input = input;
        let mut variables = variables;
        loop {
            let state = machine
                .states
                .get(&current)
                .ok_or_else(|| Failure::new("States.Runtime", format!("no state {current}")))?;
            if top_level {
                run.observer.checkpoint(&current, &input, &variables);
            }
            run.record(&current, EventKind::StateEntered);
            let (output, next) = run_state(
                &run,
                &current,
                state,
                input,
                item.as_ref().map(|(i, v)| (*i, v)),
                &mut variables,
            )
            .await?;
            run.record(&current, EventKind::StateExited);
            match next {
                Transition::Next(next) => {
                    current = next;
                    input = output;
                }
                Transition::End => return Ok(output),
            }
        }
    })
}

/// The variables `assign` sets, evaluated against `dollar` (what `$` means for the state) and
/// the variables as they were before the state: all of one state's assignments see the same
/// values, as in AWS.
fn assignments(
    assign: Option<&Value>,
    dollar: &Value,
    scope: &Scope,
) -> Result<Map<String, Value>, Failure> {
    match assign {
        None => Ok(Map::new()),
        Some(template) => match paths::template(template, dollar, scope)? {
            Value::Object(set) => Ok(set),
            other => Err(Failure::new(
                "States.Runtime",
                format!("Assign evaluated to {other}, not an object"),
            )),
        },
    }
}

/// A whole number of seconds from a `…Path` field (for TimeoutSecondsPath and the like).
fn seconds_at(path: &str, input: &Value, scope: &Scope, field: &str) -> Result<u64, Failure> {
    paths::select(path, input, scope)?.as_u64().ok_or_else(|| {
        Failure::new(
            "States.Runtime",
            format!("{field} {path} is not a non-negative integer"),
        )
    })
}

async fn run_state(
    run: &Arc<Run>,
    name: &str,
    state: &State,
    raw: Value,
    item: Option<(usize, &Value)>,
    variables: &mut Map<String, Value>,
) -> Result<(Value, Transition), Failure> {
    let context = run.context(name, 0, None, item);
    let before = Arc::new(variables.clone());
    let scope = Scope {
        context: &context,
        variables: &before,
    };
    let normal = state.transition().unwrap_or(Transition::End);
    let mut assigned = Map::new();
    let finish = |output: Value,
                  output_path: Option<&str>,
                  caught: Option<&Caught>|
     -> Result<(Value, Transition), Failure> {
        match caught {
            // A catcher's output skips OutputPath, as in AWS.
            Some(c) => Ok((output, Transition::Next(c.next.clone()))),
            None => Ok((paths::filter(output_path, &output, &scope)?, normal.clone())),
        }
    };
    // Assign (over the raw result, or a catcher's over the error output), then ResultSelector,
    // ResultPath and OutputPath, in that order; a catcher's output skips the last three.
    let complete = |result: Value,
                    caught: Option<Caught>,
                    assign: Option<&Value>,
                    selector: Option<&Value>,
                    result_path: Option<&str>,
                    output_path: Option<&str>|
     -> Result<(Value, Transition, Map<String, Value>), Failure> {
        if let Some(caught) = caught {
            let set = assignments(caught.assign.as_ref(), &caught.error_output, &scope)?;
            let (output, next) = finish(result, None, Some(&caught))?;
            return Ok((output, next, set));
        }
        let set = assignments(assign, &result, &scope)?;
        let result = match selector {
            Some(t) => paths::template(t, &result, &scope)?,
            None => result,
        };
        let (output, next) = finish(paths::place(result_path, &raw, result)?, output_path, None)?;
        Ok((output, next, set))
    };
    // InputPath, then Parameters.
    let prepare =
        |input_path: Option<&str>, parameters: Option<&Value>| -> Result<Value, Failure> {
            let effective = paths::filter(input_path, &raw, &scope)?;
            match parameters {
                Some(t) => Ok(paths::template(t, &effective, &scope)?),
                None => Ok(effective),
            }
        };
    let outcome = match state {
        State::Pass(s) => {
            let effective = prepare(s.input_path.as_deref(), s.parameters.as_ref())?;
            let result = s.result.clone().unwrap_or(effective);
            assigned = assignments(s.assign.as_ref(), &result, &scope)?;
            finish(
                paths::place(s.result_path.as_deref(), &raw, result)?,
                s.output_path.as_deref(),
                None,
            )
        }
        State::Succeed(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &scope)?;
            Ok((
                paths::filter(s.output_path.as_deref(), &effective, &scope)?,
                Transition::End,
            ))
        }
        State::Fail(s) => Err(Failure::new(
            s.error.clone().unwrap_or_else(|| "States.Fail".into()),
            s.cause.clone().unwrap_or_default(),
        )),
        State::Choice(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &scope)?;
            let mut next = None;
            for rule in &s.choices {
                if choice::matches(rule, &effective, &scope)? {
                    next = rule.get("Next").and_then(Value::as_str).map(str::to_owned);
                    assigned = assignments(rule.get("Assign"), &effective, &scope)?;
                    break;
                }
            }
            let next = match next {
                Some(next) => next,
                None => {
                    // The state's own Assign applies when its Default is taken.
                    assigned = assignments(s.assign.as_ref(), &effective, &scope)?;
                    s.default.clone().ok_or_else(|| {
                        Failure::new(
                            "States.NoChoiceMatched",
                            format!("no rule of {name} matched and it has no Default"),
                        )
                    })?
                }
            };
            Ok((
                paths::filter(s.output_path.as_deref(), &effective, &scope)?,
                Transition::Next(next),
            ))
        }
        State::Wait(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &scope)?;
            let seconds = match (&s.seconds, &s.seconds_path, &s.timestamp, &s.timestamp_path) {
                (Some(n), ..) => *n as f64,
                (_, Some(path), ..) => paths::select(path, &effective, &scope)?
                    .as_f64()
                    .filter(|n| *n >= 0.0)
                    .ok_or_else(|| {
                        Failure::new(
                            "States.Runtime",
                            format!("SecondsPath {path} is not a non-negative number"),
                        )
                    })?,
                (_, _, timestamp, timestamp_path) => {
                    let text = match (timestamp, timestamp_path) {
                        (Some(t), _) => Value::String(t.clone()),
                        (_, Some(path)) => paths::select(path, &effective, &scope)?,
                        _ => Value::Null,
                    };
                    let at = text
                        .as_str()
                        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                        .ok_or_else(|| {
                            Failure::new(
                                "States.Runtime",
                                format!("{text} is not an RFC 3339 timestamp"),
                            )
                        })?;
                    (at - run.executor.clock.now()).as_seconds_f64().max(0.0)
                }
            };
            run.executor
                .clock
                .sleep(Duration::from_secs_f64(seconds))
                .await;
            assigned = assignments(s.assign.as_ref(), &effective, &scope)?;
            finish(effective, s.output_path.as_deref(), None)
        }
        State::Task(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &scope)?;
            let wait_for_token = s.resource.ends_with(".waitForTaskToken");
            let timeout = match (&s.timeout_seconds, &s.timeout_seconds_path) {
                (_, Some(path)) => {
                    Some(seconds_at(path, &effective, &scope, "TimeoutSecondsPath")?)
                }
                (limit, None) => *limit,
            };
            // No heartbeat can reach a local task: a heartbeat limit bounds the wait for its
            // token, and only that.
            let heartbeat = match (&s.heartbeat_seconds, &s.heartbeat_seconds_path) {
                (_, Some(path)) => Some(seconds_at(
                    path,
                    &effective,
                    &scope,
                    "HeartbeatSecondsPath",
                )?),
                (limit, None) => *limit,
            }
            .filter(|_| wait_for_token);
            if let Some(role) = s.credentials.as_ref().and_then(|c| c.get("RoleArn.$")) {
                let path = role.as_str().unwrap_or("$");
                paths::select(path, &effective, &scope)?;
            }
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |retry| {
                let run = run.clone();
                let (name, resource, parameters, effective, variables) = (
                    name.to_owned(),
                    s.resource.clone(),
                    s.parameters.clone(),
                    effective.clone(),
                    before.clone(),
                );
                Box::pin(async move {
                    let token = wait_for_token.then(|| ulid::Ulid::new().to_string());
                    let context = run.context(&name, retry, token.as_deref(), None);
                    let scope = Scope {
                        context: &context,
                        variables: &variables,
                    };
                    let payload = match &parameters {
                        Some(t) => paths::template(t, &effective, &scope)?,
                        None => effective,
                    };
                    let task_context = TaskContext {
                        execution: run.execution.clone(),
                        state: name.clone(),
                        retry,
                        token: token.clone(),
                    };
                    let attempt = invoke(&run, &resource, payload, &task_context);
                    let (limit, error) = match (timeout, heartbeat) {
                        (Some(t), Some(h)) if h < t => (Some(h), "States.HeartbeatTimeout"),
                        (None, Some(h)) => (Some(h), "States.HeartbeatTimeout"),
                        (t, _) => (t, "States.Timeout"),
                    };
                    match limit {
                        Some(limit) => tokio::time::timeout(Duration::from_secs(limit), attempt)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Failure::new(
                                    error,
                                    format!("{name} ran longer than {limit} s"),
                                ))
                            }),
                        None => attempt.await,
                    }
                })
            })
            .await?;
            if caught.is_none() {
                run.record(
                    name,
                    EventKind::TaskSucceeded {
                        result: result.clone(),
                    },
                );
            }
            complete(
                result,
                caught,
                s.assign.as_ref(),
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
            .map(|(output, next, set)| {
                assigned = set;
                (output, next)
            })
        }
        State::Parallel(p) => {
            let s = &p.raw;
            let effective = prepare(s.input_path.as_deref(), s.parameters.as_ref())?;
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |_| {
                let branches: Vec<_> = p
                    .branches
                    .iter()
                    .map(|b| {
                        run_machine(
                            run.clone(),
                            b.clone(),
                            effective.clone(),
                            None,
                            None,
                            (*before).clone(),
                        )
                    })
                    .collect();
                Box::pin(async move { try_join_all(branches).await.map(Value::Array) })
            })
            .await?;
            complete(
                result,
                caught,
                s.assign.as_ref(),
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
            .map(|(output, next, set)| {
                assigned = set;
                (output, next)
            })
        }
        State::Map(m) => {
            let s = &m.raw;
            let effective = paths::filter(s.input_path.as_deref(), &raw, &scope)?;
            let items = match paths::filter(s.items_path.as_deref(), &effective, &scope)? {
                Value::Array(items) => items,
                other => {
                    return Err(Failure::new(
                        "States.Runtime",
                        format!("ItemsPath of {name} selected {other}, not an array"),
                    ));
                }
            };
            let selector = s.item_selector.clone().or_else(|| s.parameters.clone());
            let concurrency = match &s.max_concurrency_path {
                Some(path) => Some(seconds_at(path, &effective, &scope, "MaxConcurrencyPath")?),
                None => s.max_concurrency.map(u64::from),
            };
            let limit = match concurrency {
                Some(0) | None => items.len().max(1),
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            };
            let tolerance = map_tolerance(s, &effective, &scope, items.len())?;
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |_| {
                let run = run.clone();
                let (items, selector, effective, processor, name, variables) = (
                    items.clone(),
                    selector.clone(),
                    effective.clone(),
                    m.processor.clone(),
                    name.to_owned(),
                    before.clone(),
                );
                Box::pin(async move {
                    let inputs = items
                        .into_iter()
                        .enumerate()
                        .map(|(index, item)| {
                            let input = match &selector {
                                Some(t) => {
                                    let context = run.context(&name, 0, None, Some((index, &item)));
                                    let scope = Scope {
                                        context: &context,
                                        variables: &variables,
                                    };
                                    paths::template(t, &effective, &scope)?
                                }
                                None => item.clone(),
                            };
                            Ok::<_, Failure>(run_machine(
                                run.clone(),
                                processor.clone(),
                                input,
                                Some((index, item)),
                                None,
                                (*variables).clone(),
                            ))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let iterations = futures::stream::iter(inputs).buffered(limit);
                    match tolerance {
                        // Without a tolerance the first failed item fails the Map at once.
                        None => iterations.try_collect::<Vec<_>>().await.map(Value::Array),
                        Some(tolerated) => tolerate(iterations.collect().await, tolerated),
                    }
                })
            })
            .await?;
            complete(
                result,
                caught,
                s.assign.as_ref(),
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
            .map(|(output, next, set)| {
                assigned = set;
                (output, next)
            })
        }
    }?;
    variables.extend(assigned);
    Ok(outcome)
}

/// How many of a Map's `items` may fail, when the Map says (the smaller of its count and its
/// percentage); `None` when it tolerates nothing.
fn map_tolerance(
    s: &crate::asl::RawMap,
    input: &Value,
    scope: &Scope,
    items: usize,
) -> Result<Option<usize>, Failure> {
    let count = match &s.tolerated_failure_count_path {
        Some(path) => Some(seconds_at(path, input, scope, "ToleratedFailureCountPath")?),
        None => s.tolerated_failure_count,
    };
    let percentage = match &s.tolerated_failure_percentage_path {
        Some(path) => Some(
            paths::select(path, input, scope)?
                .as_f64()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    Failure::new(
                        "States.Runtime",
                        format!(
                            "ToleratedFailurePercentagePath {path} is not a number from 0 to 100"
                        ),
                    )
                })?,
        ),
        None => s.tolerated_failure_percentage,
    };
    let by_count = count.map(|c| usize::try_from(c).unwrap_or(usize::MAX));
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let by_share = percentage.map(|p| ((p / 100.0) * items as f64).floor() as usize);
    Ok(match (by_count, by_share) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (one, other) => one.or(other),
    })
}

/// A Map's items once all have run: a failed one stands as `null`, and more failures than
/// `tolerated` fail the Map with `States.ExceedToleratedFailureThreshold`.
fn tolerate(results: Vec<Result<Value, Failure>>, tolerated: usize) -> Result<Value, Failure> {
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > tolerated {
        return Err(Failure::new(
            "States.ExceedToleratedFailureThreshold",
            format!(
                "{failed} of {} items failed; {tolerated} tolerated",
                results.len()
            ),
        ));
    }
    Ok(Value::Array(
        results
            .into_iter()
            .map(|r| r.unwrap_or(Value::Null))
            .collect(),
    ))
}

/// Invokes a task; a `.waitForTaskToken` task then waits for its token to be completed.
async fn invoke(
    run: &Run,
    resource: &str,
    payload: Value,
    context: &TaskContext,
) -> Result<Value, Failure> {
    let Some(token) = &context.token else {
        return run.executor.runner.run(resource, payload, context).await;
    };
    let (sender, receiver) = oneshot::channel();
    if let Ok(mut tokens) = run.executor.tokens.lock() {
        tokens.insert(token.clone(), sender);
    }
    let base = resource.trim_end_matches(".waitForTaskToken");
    if let Err(failure) = run.executor.runner.run(base, payload, context).await {
        if let Ok(mut tokens) = run.executor.tokens.lock() {
            tokens.remove(token);
        }
        return Err(failure);
    }
    receiver
        .await
        .unwrap_or_else(|_| Err(Failure::new("States.Runtime", "the task token was dropped")))
}
