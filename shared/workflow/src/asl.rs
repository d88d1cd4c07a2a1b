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
    Task(Task),
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
}

macro_rules! state_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "PascalCase")]
        pub struct $name {
            /// Comment.
            pub comment: Option<String>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

state_struct!(
    /// Pass: passes input to output, optionally injecting `Result`.
    Pass {
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
            "Task" => State::Task(serde_json::from_value(rest).map_err(parse_err)?),
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
                if let Some(config) = &processor.processor_config
                    && config
                        .get("Mode")
                        .and_then(Value::as_str)
                        .is_some_and(|m| m != "INLINE")
                {
                    return Err(error(&at, "only INLINE Map processing is supported"));
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
            known(&catcher.next, &format!("{at}.Catch[{i}]"))?;
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
