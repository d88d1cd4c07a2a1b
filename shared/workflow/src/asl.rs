//! Amazon States Language definitions, parsed strictly: a field the executor does not
//! implement is refused when the definition is loaded, not ignored when it runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

/// Why a definition cannot be run by the local executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {detail}")]
pub struct DefinitionError {
    /// Where: `States.CreateVpc.Retry[0]`, or `definition`.
    pub location: String,
    /// What is wrong or unsupported.
    pub detail: String,
}

fn error(location: impl Into<String>, detail: impl Into<String>) -> DefinitionError {
    DefinitionError {
        location: location.into(),
        detail: detail.into(),
    }
}

/// A state machine (or a Parallel branch, or a Map item processor).
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// First state.
    pub start_at: String,
    /// States by name.
    pub states: BTreeMap<String, State>,
    /// Execution timeout.
    pub timeout_seconds: Option<u64>,
}

/// One state.
#[derive(Debug, Clone)]
pub enum State {
    /// Pass.
    Pass(Pass),
    /// Task.
    Task(Box<Task>),
    /// Choice.
    Choice(Choice),
    /// Wait.
    Wait(Wait),
    /// Parallel.
    Parallel(Box<Parallel>),
    /// Map.
    Map(Box<Map>),
    /// Succeed.
    Succeed(Succeed),
    /// Fail.
    Fail(Fail),
}

fn root() -> Option<String> {
    Some("$".to_owned())
}

/// Where a state goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// To the named state.
    Next(String),
    /// The (sub-)machine ends here.
    End,
}

/// A retrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Retrier {
    /// Error names this retrier handles.
    pub error_equals: Vec<String>,
    /// First delay, seconds (default 1).
    #[serde(default = "one")]
    pub interval_seconds: u64,
    /// Retries at most (default 3; 0 never retries).
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// Delay multiplier (default 2.0).
    #[serde(default = "two")]
    pub backoff_rate: f64,
    /// Cap on one delay, seconds.
    pub max_delay_seconds: Option<u64>,
    /// `FULL` or `NONE` (default).
    pub jitter_strategy: Option<Jitter>,
}

/// Jitter of retry delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Jitter {
    /// A random delay between 0 and the computed one.
    Full,
    /// The computed delay.
    None,
}

fn one() -> u64 {
    1
}
fn three() -> u32 {
    3
}
fn two() -> f64 {
    2.0
}

/// A catcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Catcher {
    /// Error names this catcher handles.
    pub error_equals: Vec<String>,
    /// State to go to.
    pub next: String,
    /// Where the error output goes in the input (default `$`).
    #[serde(default = "root")]
    pub result_path: Option<String>,
    /// Variables to set from the error output (`$` is `{"Error", "Cause"}`).
    pub assign: Option<Value>,
}

macro_rules! state_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "PascalCase")]
        pub struct $name {
            /// Comment.
            pub comment: Option<String>,
            /// The state's query language: only `JSONPath` runs here.
            pub query_language: Option<String>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

state_struct!(
    /// Pass: passes input to output, optionally injecting `Result`.
    Pass {
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Payload template.
        parameters: Option<Value>,
        /// Fixed result.
        result: Option<Value>,
        /// Where the result goes.
        #[serde(default = "root")] result_path: Option<String>,
        /// Next state.
        next: Option<String>,
        /// Ends the machine.
        end: Option<bool>,
    }
);

state_struct!(
    /// Task: invokes a resource.
    Task {
        /// The resource ARN (after substitutions).
        resource: String,
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Payload template.
        parameters: Option<Value>,
        /// Result template.
        result_selector: Option<Value>,
        /// Where the result goes.
        #[serde(default = "root")] result_path: Option<String>,
        /// Time limit of one attempt.
        timeout_seconds: Option<u64>,
        /// Time limit of one attempt, from the input.
        timeout_seconds_path: Option<String>,
        /// Longest silence of a `.waitForTaskToken` task (no heartbeat can arrive here, so
        /// it bounds the wait).
        heartbeat_seconds: Option<u64>,
        /// The same, from the input.
        heartbeat_seconds_path: Option<String>,
        /// The role a task runs as (`RoleArn` or `RoleArn.$`): checked, then ignored — local
        /// tasks run with the plane's own credentials.
        credentials: Option<Value>,
        /// Retriers.
        #[serde(default)] retry: Vec<Retrier>,
        /// Catchers.
        #[serde(default)] catch: Vec<Catcher>,
        /// Next state.
        next: Option<String>,
        /// Ends the machine.
        end: Option<bool>,
    }
);

state_struct!(
    /// Choice: branches on the input.
    Choice {
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Rules, tried in order.
        choices: Vec<Value>,
        /// State when no rule matches.
        default: Option<String>,
    }
);

state_struct!(
    /// Wait: pauses.
    Wait {
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Fixed delay.
        seconds: Option<u64>,
        /// Delay from the input.
        seconds_path: Option<String>,
        /// Fixed time.
        timestamp: Option<String>,
        /// Time from the input.
        timestamp_path: Option<String>,
        /// Next state.
        next: Option<String>,
        /// Ends the machine.
        end: Option<bool>,
    }
);

/// A raw sub-machine as it appears in Parallel branches and Map processors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawMachine {
    /// Comment.
    pub comment: Option<String>,
    /// First state.
    pub start_at: String,
    /// States.
    pub states: BTreeMap<String, Value>,
    /// Map processor configuration (only `{"Mode": "INLINE"}` is supported).
    pub processor_config: Option<Value>,
}

state_struct!(
    /// Parallel: runs branches at once.
    RawParallel {
        /// Branches.
        branches: Vec<RawMachine>,
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Payload template.
        parameters: Option<Value>,
        /// Result template.
        result_selector: Option<Value>,
        /// Where the result goes.
        #[serde(default = "root")] result_path: Option<String>,
        /// Retriers.
        #[serde(default)] retry: Vec<Retrier>,
        /// Catchers.
        #[serde(default)] catch: Vec<Catcher>,
        /// Next state.
        next: Option<String>,
        /// Ends the machine.
        end: Option<bool>,
    }
);

state_struct!(
    /// Map: runs a processor per item.
    RawMap {
        /// The processor (`Iterator` is the older name).
        item_processor: Option<RawMachine>,
        /// Older name of `ItemProcessor`.
        iterator: Option<RawMachine>,
        /// Where the items are.
        #[serde(default = "root")] items_path: Option<String>,
        /// Template of each item's input (`Parameters` is the older name).
        item_selector: Option<Value>,
        /// Older name of `ItemSelector`.
        parameters: Option<Value>,
        /// Items in flight at once (0 = no limit).
        max_concurrency: Option<u32>,
        /// The same, from the input.
        max_concurrency_path: Option<String>,
        /// Share of items that may fail, 0–100, before the Map fails.
        tolerated_failure_percentage: Option<f64>,
        /// The same, from the input.
        tolerated_failure_percentage_path: Option<String>,
        /// Items that may fail before the Map fails.
        tolerated_failure_count: Option<u64>,
        /// The same, from the input.
        tolerated_failure_count_path: Option<String>,
        /// Variables to set when the state completes.
        assign: Option<Value>,
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
        /// Result template.
        result_selector: Option<Value>,
        /// Where the result goes.
        #[serde(default = "root")] result_path: Option<String>,
        /// Retriers.
        #[serde(default)] retry: Vec<Retrier>,
        /// Catchers.
        #[serde(default)] catch: Vec<Catcher>,
        /// Next state.
        next: Option<String>,
        /// Ends the machine.
        end: Option<bool>,
    }
);

state_struct!(
    /// Succeed.
    Succeed {
        /// Input selection.
        #[serde(default = "root")] input_path: Option<String>,
        /// Output selection.
        #[serde(default = "root")] output_path: Option<String>,
    }
);

state_struct!(
    /// Fail.
    Fail {
        /// Error name.
        error: Option<String>,
        /// Cause.
        cause: Option<String>,
    }
);

/// Parallel, with its branches compiled.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// The fields as written.
    pub raw: RawParallel,
    /// Compiled branches.
    pub branches: Vec<StateMachine>,
}

/// Map, with its processor compiled.
#[derive(Debug, Clone)]
pub struct Map {
    /// The fields as written.
    pub raw: RawMap,
    /// Compiled processor.
    pub processor: StateMachine,
}

/// The top level of a definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawDefinition {
    comment: Option<String>,
    start_at: String,
    states: BTreeMap<String, Value>,
    timeout_seconds: Option<u64>,
    version: Option<String>,
    query_language: Option<String>,
}

impl State {
    /// Where the state goes when it completes normally (Choice decides at run time).
    pub fn transition(&self) -> Option<Transition> {
        let (next, end) = match self {
            State::Pass(s) => (&s.next, s.end),
            State::Task(s) => (&s.next, s.end),
            State::Wait(s) => (&s.next, s.end),
            State::Parallel(s) => (&s.raw.next, s.raw.end),
            State::Map(s) => (&s.raw.next, s.raw.end),
            State::Choice(_) | State::Succeed(_) | State::Fail(_) => return None,
        };
        match (next, end) {
            (Some(next), _) => Some(Transition::Next(next.clone())),
            (None, _) => Some(Transition::End),
        }
    }
}

impl StateMachine {
    /// Parses and checks a definition, after `${Name}` substitutions are applied.
    pub fn load(
        json: &str,
        substitutions: &BTreeMap<String, String>,
    ) -> Result<StateMachine, DefinitionError> {
        let mut text = json.to_owned();
        for (name, value) in substitutions {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        if let Some(start) = text.find("${") {
            let name: String = text[start + 2..]
                .chars()
                .take_while(|c| *c != '}')
                .collect();
            return Err(error(
                "definition",
                format!("no substitution for ${{{name}}}"),
            ));
        }
        let raw: RawDefinition =
            serde_json::from_str(&text).map_err(|e| error("definition", e.to_string()))?;
        if let Some(language) = raw.query_language.as_deref().filter(|l| *l != "JSONPath") {
            return Err(error(
                "definition.QueryLanguage",
                format!("{language} is not supported; only JSONPath"),
            ));
        }
        let _ = (raw.comment, raw.version);
        let mut machine = compile("States", raw.start_at, raw.states)?;
        machine.timeout_seconds = raw.timeout_seconds;
        Ok(machine)
    }
}

fn compile(
    location: &str,
    start_at: String,
    raw_states: BTreeMap<String, Value>,
) -> Result<StateMachine, DefinitionError> {
    let mut states = BTreeMap::new();
    for (name, value) in raw_states {
        let at = format!("{location}.{name}");
        let Value::Object(mut fields) = value else {
            return Err(error(at, "a state must be an object"));
        };
        let kind = fields
            .remove("Type")
            .and_then(|t| t.as_str().map(str::to_owned))
            .ok_or_else(|| error(&at, "missing Type"))?;
        let rest = Value::Object(fields);
        let parse_err = |e: serde_json::Error| error(&at, format!("{kind}: {e}"));
        let state = match kind.as_str() {
            "Pass" => State::Pass(serde_json::from_value(rest).map_err(parse_err)?),
            "Task" => State::Task(Box::new(serde_json::from_value(rest).map_err(parse_err)?)),
            "Choice" => State::Choice(serde_json::from_value(rest).map_err(parse_err)?),
            "Wait" => State::Wait(serde_json::from_value(rest).map_err(parse_err)?),
            "Succeed" => State::Succeed(serde_json::from_value(rest).map_err(parse_err)?),
            "Fail" => State::Fail(serde_json::from_value(rest).map_err(parse_err)?),
            "Parallel" => {
                let raw: RawParallel = serde_json::from_value(rest).map_err(parse_err)?;
                let branches = raw
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        compile(
                            &format!("{at}.Branches[{i}]"),
                            b.start_at.clone(),
                            b.states.clone(),
                        )
                    })
                    .collect::<Result<_, _>>()?;
                State::Parallel(Box::new(Parallel { raw, branches }))
            }
            "Map" => {
                let raw: RawMap = serde_json::from_value(rest).map_err(parse_err)?;
                let processor = raw
                    .item_processor
                    .as_ref()
                    .or(raw.iterator.as_ref())
                    .ok_or_else(|| error(&at, "Map needs an ItemProcessor"))?;
                let distributed = processor_mode(processor.processor_config.as_ref(), &at)?;
                let tolerates = raw.tolerated_failure_count.is_some()
                    || raw.tolerated_failure_count_path.is_some()
                    || raw.tolerated_failure_percentage.is_some()
                    || raw.tolerated_failure_percentage_path.is_some();
                if tolerates && !distributed {
                    return Err(error(
                        &at,
                        "ToleratedFailureCount and ToleratedFailurePercentage apply to a DISTRIBUTED Map (ProcessorConfig.Mode)",
                    ));
                }
                let processor = compile(
                    &format!("{at}.ItemProcessor"),
                    processor.start_at.clone(),
                    processor.states.clone(),
                )?;
                State::Map(Box::new(Map { raw, processor }))
            }
            other => return Err(error(&at, format!("state type {other:?} is not supported"))),
        };
        states.insert(name, state);
    }
    let machine = StateMachine {
        start_at,
        states,
        timeout_seconds: None,
    };
    check(location, &machine)?;
    Ok(machine)
}

/// Whether a Map's processor runs in DISTRIBUTED mode: `INLINE` (the default) or
/// `DISTRIBUTED` with an `ExecutionType`, its items read from the state's input (no
/// `ItemReader`, `ItemBatcher` or `ResultWriter`: the Map refuses those fields). Locally both run
/// in this process; DISTRIBUTED adds the tolerated-failure thresholds.
fn processor_mode(config: Option<&Value>, at: &str) -> Result<bool, DefinitionError> {
    let Some(config) = config else {
        return Ok(false);
    };
    let fields = config
        .as_object()
        .ok_or_else(|| error(at, "ProcessorConfig must be an object"))?;
    for key in fields.keys() {
        if key != "Mode" && key != "ExecutionType" {
            return Err(error(at, format!("ProcessorConfig.{key} is not supported")));
        }
    }
    match fields
        .get("Mode")
        .and_then(Value::as_str)
        .unwrap_or("INLINE")
    {
        "INLINE" if !fields.contains_key("ExecutionType") => Ok(false),
        "DISTRIBUTED" => match fields.get("ExecutionType").and_then(Value::as_str) {
            Some("STANDARD" | "EXPRESS") => Ok(true),
            _ => Err(error(
                at,
                "a DISTRIBUTED Map needs ExecutionType STANDARD or EXPRESS",
            )),
        },
        "INLINE" => Err(error(at, "ExecutionType is for a DISTRIBUTED Map")),
        other => Err(error(at, format!("Map mode {other:?} is not supported"))),
    }
}

/// Every transition must name a state of this machine; error lists must be well formed.
fn check(location: &str, machine: &StateMachine) -> Result<(), DefinitionError> {
    let names: BTreeSet<&String> = machine.states.keys().collect();
    let known = |target: &String, at: &str| {
        if names.contains(target) {
            Ok(())
        } else {
            Err(error(at, format!("transition to unknown state {target:?}")))
        }
    };
    known(&machine.start_at, &format!("{location}.StartAt"))?;
    for (name, state) in &machine.states {
        let at = format!("{location}.{name}");
        check_fields(state, &at)?;
        let (next, end, retry, catch): (Option<&String>, Option<bool>, &[Retrier], &[Catcher]) =
            match state {
                State::Pass(s) => (s.next.as_ref(), s.end, &[], &[]),
                State::Task(s) => (s.next.as_ref(), s.end, &s.retry, &s.catch),
                State::Wait(s) => {
                    let set = [
                        s.seconds.is_some(),
                        s.seconds_path.is_some(),
                        s.timestamp.is_some(),
                        s.timestamp_path.is_some(),
                    ];
                    if set.iter().filter(|b| **b).count() != 1 {
                        return Err(error(
                            &at,
                            "a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
                        ));
                    }
                    (s.next.as_ref(), s.end, &[], &[])
                }
                State::Parallel(s) => (s.raw.next.as_ref(), s.raw.end, &s.raw.retry, &s.raw.catch),
                State::Map(s) => (s.raw.next.as_ref(), s.raw.end, &s.raw.retry, &s.raw.catch),
                State::Choice(s) => {
                    if s.choices.is_empty() {
                        return Err(error(&at, "a Choice needs at least one rule"));
                    }
                    for (i, rule) in s.choices.iter().enumerate() {
                        let next = rule.get("Next").and_then(Value::as_str).ok_or_else(|| {
                            error(format!("{at}.Choices[{i}]"), "a top-level rule needs Next")
                        })?;
                        known(&next.to_owned(), &format!("{at}.Choices[{i}]"))?;
                        crate::choice::check_rule(rule)
                            .map_err(|d| error(format!("{at}.Choices[{i}]"), d))?;
                        check_assign(rule.get("Assign"), &format!("{at}.Choices[{i}].Assign"))?;
                    }
                    if let Some(default) = &s.default {
                        known(default, &at)?;
                    }
                    continue;
                }
                State::Succeed(_) | State::Fail(_) => continue,
            };
        match (next, end) {
            (Some(next), None | Some(false)) => known(next, &at)?,
            (None, Some(true)) => {}
            _ => return Err(error(&at, "needs exactly one of Next and End: true")),
        }
        for (i, retrier) in retry.iter().enumerate() {
            check_errors(&retrier.error_equals, &format!("{at}.Retry[{i}]"))?;
            if retrier.backoff_rate < 1.0 {
                return Err(error(
                    format!("{at}.Retry[{i}]"),
                    "BackoffRate must be at least 1.0",
                ));
            }
        }
        for (i, catcher) in catch.iter().enumerate() {
            check_errors(&catcher.error_equals, &format!("{at}.Catch[{i}]"))?;
            check_assign(catcher.assign.as_ref(), &format!("{at}.Catch[{i}].Assign"))?;
            known(&catcher.next, &format!("{at}.Catch[{i}]"))?;
        }
    }
    Ok(())
}

/// The fields beyond transitions: query language, `Assign`, and the pairs of a field and its
/// `…Path` of which at most one may be given.
fn check_fields(state: &State, at: &str) -> Result<(), DefinitionError> {
    let (language, assign) = match state {
        State::Pass(s) => (&s.query_language, s.assign.as_ref()),
        State::Task(s) => (&s.query_language, s.assign.as_ref()),
        State::Choice(s) => (&s.query_language, s.assign.as_ref()),
        State::Wait(s) => (&s.query_language, s.assign.as_ref()),
        State::Parallel(s) => (&s.raw.query_language, s.raw.assign.as_ref()),
        State::Map(s) => (&s.raw.query_language, s.raw.assign.as_ref()),
        State::Succeed(s) => (&s.query_language, None),
        State::Fail(s) => (&s.query_language, None),
    };
    if let Some(language) = language.as_deref().filter(|l| *l != "JSONPath") {
        return Err(error(
            format!("{at}.QueryLanguage"),
            format!("{language} is not supported; only JSONPath"),
        ));
    }
    check_assign(assign, &format!("{at}.Assign"))?;
    let one_of = |pairs: &[(&str, bool, bool)]| {
        for (field, plain, path) in pairs {
            if *plain && *path {
                return Err(error(at, format!("give {field} or {field}Path, not both")));
            }
        }
        Ok(())
    };
    match state {
        State::Task(s) => {
            one_of(&[
                (
                    "TimeoutSeconds",
                    s.timeout_seconds.is_some(),
                    s.timeout_seconds_path.is_some(),
                ),
                (
                    "HeartbeatSeconds",
                    s.heartbeat_seconds.is_some(),
                    s.heartbeat_seconds_path.is_some(),
                ),
            ])?;
            if let Some(credentials) = &s.credentials {
                let fields = credentials.as_object().filter(|f| {
                    f.len() == 1 && (f.contains_key("RoleArn") || f.contains_key("RoleArn.$"))
                });
                if fields.is_none() {
                    return Err(error(
                        format!("{at}.Credentials"),
                        "needs exactly RoleArn or RoleArn.$",
                    ));
                }
            }
        }
        State::Map(m) => {
            let s = &m.raw;
            one_of(&[
                (
                    "MaxConcurrency",
                    s.max_concurrency.is_some(),
                    s.max_concurrency_path.is_some(),
                ),
                (
                    "ToleratedFailurePercentage",
                    s.tolerated_failure_percentage.is_some(),
                    s.tolerated_failure_percentage_path.is_some(),
                ),
                (
                    "ToleratedFailureCount",
                    s.tolerated_failure_count.is_some(),
                    s.tolerated_failure_count_path.is_some(),
                ),
            ])?;
            if s.tolerated_failure_percentage
                .is_some_and(|p| !(0.0..=100.0).contains(&p))
            {
                return Err(error(
                    at,
                    "ToleratedFailurePercentage must be from 0 to 100",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `Assign`: an object whose keys name variables (a letter or `_`, then letters, digits and
/// `_`; `states` is reserved).
fn check_assign(assign: Option<&Value>, at: &str) -> Result<(), DefinitionError> {
    let Some(assign) = assign else {
        return Ok(());
    };
    let fields = assign
        .as_object()
        .ok_or_else(|| error(at, "Assign must be an object"))?;
    for key in fields.keys() {
        let name = key.strip_suffix(".$").unwrap_or(key);
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name == "states" {
            return Err(error(at, format!("{key:?} is not a variable name")));
        }
    }
    Ok(())
}

fn check_errors(names: &[String], at: &str) -> Result<(), DefinitionError> {
    if names.is_empty() {
        return Err(error(at, "ErrorEquals must not be empty"));
    }
    if names
        .iter()
        .position(|n| n == "States.ALL")
        .is_some_and(|i| names.len() != 1 || i != 0)
    {
        return Err(error(at, "States.ALL must stand alone in its ErrorEquals"));
    }
    Ok(())
}
