//! The local executor: runs a [`StateMachine`] as AWS Step Functions documents it, resolving
//! each Task resource through a [`TaskRunner`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, try_join_all};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;

use crate::asl::{Catcher, Jitter, Retrier, State, StateMachine, Transition};
use crate::choice;
use crate::paths::{self, PathError};

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
        self.execute_with(machine, input, execution, None, Arc::new(NoObserver))
            .await
    }

    /// Runs `machine` from `resume_at` (a top-level state; its start when `None`) with `input`,
    /// telling `observer` about every event and every top-level state entered, so that an
    /// interrupted execution can be resumed from its last checkpoint.
    pub async fn execute_with(
        &self,
        machine: &StateMachine,
        input: Value,
        execution: &str,
        resume_at: Option<&str>,
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
        let body = run_machine(run.clone(), machine.clone(), input, None, Some(start));
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
    /// A top-level state is about to run with `input`: resuming here repeats only this state.
    fn checkpoint(&self, _state: &str, _input: &Value) {}
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
async fn with_retry<F>(
    run: &Run,
    state: &str,
    retry: &[Retrier],
    catch: &[Catcher],
    raw_input: &Value,
    mut attempt: F,
) -> Result<(Value, Option<String>), Failure>
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
            let output = paths::place(catcher.result_path.as_deref(), raw_input, error_output)?;
            return Ok((output, Some(catcher.next.clone())));
        }
        return Err(failure);
    }
}

fn run_machine(
    run: Arc<Run>,
    machine: StateMachine,
    input: Value,
    item: Option<(usize, Value)>,
    top_level_start: Option<String>,
) -> BoxFuture<'static, Result<Value, Failure>> {
    Box::pin(async move {
        let top_level = top_level_start.is_some();
        let mut current = top_level_start.unwrap_or_else(|| machine.start_at.clone());
        let mut input = input;
        loop {
            let state = machine
                .states
                .get(&current)
                .ok_or_else(|| Failure::new("States.Runtime", format!("no state {current}")))?;
            if top_level {
                run.observer.checkpoint(&current, &input);
            }
            run.record(&current, EventKind::StateEntered);
            let (output, next) = run_state(
                &run,
                &current,
                state,
                input,
                item.as_ref().map(|(i, v)| (*i, v)),
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

async fn run_state(
    run: &Arc<Run>,
    name: &str,
    state: &State,
    raw: Value,
    item: Option<(usize, &Value)>,
) -> Result<(Value, Transition), Failure> {
    let context = run.context(name, 0, None, item);
    let normal = state.transition().unwrap_or(Transition::End);
    let finish = |output: Value,
                  output_path: Option<&str>,
                  caught: Option<String>|
     -> Result<(Value, Transition), Failure> {
        match caught {
            // A catcher's output skips OutputPath, as in AWS.
            Some(next) => Ok((output, Transition::Next(next))),
            None => Ok((
                paths::filter(output_path, &output, &context)?,
                normal.clone(),
            )),
        }
    };
    // ResultSelector, ResultPath and OutputPath, in that order; a catcher's output skips them.
    let complete = |result: Value,
                    caught: Option<String>,
                    selector: Option<&Value>,
                    result_path: Option<&str>,
                    output_path: Option<&str>| {
        if caught.is_some() {
            return finish(result, None, caught);
        }
        let result = match selector {
            Some(t) => paths::template(t, &result, &context)?,
            None => result,
        };
        finish(paths::place(result_path, &raw, result)?, output_path, None)
    };
    // InputPath, then Parameters.
    let prepare =
        |input_path: Option<&str>, parameters: Option<&Value>| -> Result<Value, Failure> {
            let effective = paths::filter(input_path, &raw, &context)?;
            match parameters {
                Some(t) => Ok(paths::template(t, &effective, &context)?),
                None => Ok(effective),
            }
        };
    match state {
        State::Pass(s) => {
            let effective = prepare(s.input_path.as_deref(), s.parameters.as_ref())?;
            let result = s.result.clone().unwrap_or(effective);
            finish(
                paths::place(s.result_path.as_deref(), &raw, result)?,
                s.output_path.as_deref(),
                None,
            )
        }
        State::Succeed(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &context)?;
            Ok((
                paths::filter(s.output_path.as_deref(), &effective, &context)?,
                Transition::End,
            ))
        }
        State::Fail(s) => Err(Failure::new(
            s.error.clone().unwrap_or_else(|| "States.Fail".into()),
            s.cause.clone().unwrap_or_default(),
        )),
        State::Choice(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &context)?;
            let mut next = None;
            for rule in &s.choices {
                if choice::matches(rule, &effective, &context)? {
                    next = rule.get("Next").and_then(Value::as_str).map(str::to_owned);
                    break;
                }
            }
            let next = next.or_else(|| s.default.clone()).ok_or_else(|| {
                Failure::new(
                    "States.NoChoiceMatched",
                    format!("no rule of {name} matched and it has no Default"),
                )
            })?;
            Ok((
                paths::filter(s.output_path.as_deref(), &effective, &context)?,
                Transition::Next(next),
            ))
        }
        State::Wait(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &context)?;
            let seconds = match (&s.seconds, &s.seconds_path, &s.timestamp, &s.timestamp_path) {
                (Some(n), ..) => *n as f64,
                (_, Some(path), ..) => paths::select(path, &effective, &context)?
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
                        (_, Some(path)) => paths::select(path, &effective, &context)?,
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
            finish(effective, s.output_path.as_deref(), None)
        }
        State::Task(s) => {
            let effective = paths::filter(s.input_path.as_deref(), &raw, &context)?;
            let wait_for_token = s.resource.ends_with(".waitForTaskToken");
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |retry| {
                let run = run.clone();
                let (name, resource, parameters, effective) = (
                    name.to_owned(),
                    s.resource.clone(),
                    s.parameters.clone(),
                    effective.clone(),
                );
                let timeout = s.timeout_seconds;
                Box::pin(async move {
                    let token = wait_for_token.then(|| ulid::Ulid::new().to_string());
                    let context = run.context(&name, retry, token.as_deref(), None);
                    let payload = match &parameters {
                        Some(t) => paths::template(t, &effective, &context)?,
                        None => effective,
                    };
                    let task_context = TaskContext {
                        execution: run.execution.clone(),
                        state: name.clone(),
                        retry,
                        token: token.clone(),
                    };
                    let attempt = invoke(&run, &resource, payload, &task_context);
                    match timeout {
                        Some(limit) => tokio::time::timeout(Duration::from_secs(limit), attempt)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Failure::new(
                                    "States.Timeout",
                                    format!("{name} ran longer than {limit} s"),
                                ))
                            }),
                        None => attempt.await,
                    }
                })
            })
            .await?;
            complete(
                result,
                caught,
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
        }
        State::Parallel(p) => {
            let s = &p.raw;
            let effective = prepare(s.input_path.as_deref(), s.parameters.as_ref())?;
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |_| {
                let branches: Vec<_> = p
                    .branches
                    .iter()
                    .map(|b| run_machine(run.clone(), b.clone(), effective.clone(), None, None))
                    .collect();
                Box::pin(async move { try_join_all(branches).await.map(Value::Array) })
            })
            .await?;
            complete(
                result,
                caught,
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
        }
        State::Map(m) => {
            let s = &m.raw;
            let effective = paths::filter(s.input_path.as_deref(), &raw, &context)?;
            let items = match paths::filter(s.items_path.as_deref(), &effective, &context)? {
                Value::Array(items) => items,
                other => {
                    return Err(Failure::new(
                        "States.Runtime",
                        format!("ItemsPath of {name} selected {other}, not an array"),
                    ));
                }
            };
            let selector = s.item_selector.clone().or_else(|| s.parameters.clone());
            let limit = match s.max_concurrency {
                Some(0) | None => items.len().max(1),
                Some(n) => n as usize,
            };
            let (result, caught) = with_retry(run, name, &s.retry, &s.catch, &raw, |_| {
                let run = run.clone();
                let (items, selector, effective, processor, name) = (
                    items.clone(),
                    selector.clone(),
                    effective.clone(),
                    m.processor.clone(),
                    name.to_owned(),
                );
                Box::pin(async move {
                    let inputs = items
                        .into_iter()
                        .enumerate()
                        .map(|(index, item)| {
                            let input = match &selector {
                                Some(t) => paths::template(
                                    t,
                                    &effective,
                                    &run.context(&name, 0, None, Some((index, &item))),
                                )?,
                                None => item.clone(),
                            };
                            Ok::<_, Failure>(run_machine(
                                run.clone(),
                                processor.clone(),
                                input,
                                Some((index, item)),
                                None,
                            ))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    futures::stream::iter(inputs)
                        .buffered(limit)
                        .try_collect::<Vec<_>>()
                        .await
                        .map(Value::Array)
                })
            })
            .await?;
            complete(
                result,
                caught,
                s.result_selector.as_ref(),
                s.result_path.as_deref(),
                s.output_path.as_deref(),
            )
        }
    }
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
