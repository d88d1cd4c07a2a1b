//! Property-based fuzzing of what a definition or an execution's input can put in front of the
//! executor: paths (`InputPath`, `.$` selections, `ResultPath`), intrinsic function calls,
//! Choice rules and whole small machines, built from the grammar's own tokens mixed with
//! arbitrary and multibyte characters, over arbitrary JSON documents (long strings included,
//! so an error message's 200-byte cut lands inside multibyte characters). The property is that
//! nothing panics — every bad input is a `States.Runtime`-style error (with `panic = "abort"` a
//! panic would end `envplane serve`) — and that a machine that loads runs to an end.
//!
//! Cases per property: `ENVPLANE_FUZZ_CASES` (1,000 by default, what the test command runs);
//! raise it for a long run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use envplane_workflow::{Executor, StateMachine, VirtualClock, choice, paths};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

use crate::support::NoTasks;

fn cases() -> u32 {
    std::env::var("ENVPLANE_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
}

/// Pieces of the path and intrinsic grammars, and characters that break naive slicing.
const TOKENS: &[&str] = &[
    "$",
    "$$",
    ".",
    "..",
    "[",
    "]",
    "*",
    "?(",
    "@",
    ")",
    "(",
    ",",
    "'",
    "\\",
    "\"",
    ":",
    "0",
    "1",
    "-1",
    "99999999999999999999",
    "a",
    "name",
    "Execution",
    "Id",
    "é",
    "€",
    "😀",
    "\u{3000}",
    "\u{a0}",
    " ",
    "\t",
    "States.",
    "Format",
    "StringToJson",
    "JsonToString",
    "Array",
    "ArrayLength",
    "ArrayGetItem",
    "MathAdd",
    "JsonMerge",
    "Hash",
    "{}",
    "\\{",
    "\\'",
    "true",
    "null",
    "1.5",
    "1e400",
    "'x'",
    "'{}'",
    "$.a",
    "$.list[0]",
    "$$.Execution.Id",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[a-z]{1,12}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..14).prop_map(|parts| parts.concat())
}

/// An intrinsic call: a known or unknown name, arguments that are literals, paths, junk or
/// nested calls.
fn intrinsic() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        text(),
        "'[^']{0,20}'",
        "\\$(\\.[a-z]{1,3}){0,3}",
        proptest::sample::select(&["1", "-2", "1.5", "true", "null", "{}", "[1]"][..])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            proptest::sample::select(
                &[
                    "Format",
                    "StringToJson",
                    "JsonToString",
                    "Array",
                    "ArrayLength",
                    "ArrayGetItem",
                    "MathAdd",
                    "JsonMerge",
                    "ArrayPartition",
                    "ArrayContains",
                    "ArrayRange",
                    "ArrayUnique",
                    "Base64Encode",
                    "Base64Decode",
                    "Hash",
                    "MathRandom",
                    "StringSplit",
                    "UUID",
                    "Nope",
                ][..],
            ),
            proptest::collection::vec(inner, 0..4),
            any::<bool>(),
        )
            .prop_map(|(name, args, closed)| {
                format!(
                    "States.{name}({}{}",
                    args.join(", "),
                    if closed { ")" } else { "" }
                )
            })
    })
}

/// JSON documents with long, multibyte strings.
fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zé€😀 ]{0,300}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}|list|a", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn context() -> Value {
    json!({"Execution": {"Id": "arn:aws:states:local:execution:m:é"}, "State": {"Name": "P"}})
}

fn variables() -> serde_json::Map<String, Value> {
    serde_json::Map::from_iter([("order".to_owned(), json!({"items": [1, "é"]}))])
}

proptest! {
    #![proptest_config(Config { cases: cases(), ..Config::default() })]

    #[test]
    fn paths_never_panic(path in text(), input in document(), result in document()) {
        let (context, variables) = (context(), variables());
        let scope = paths::Scope { context: &context, variables: &variables };
        let _ = paths::select(&path, &input, &scope);
        let _ = paths::filter(Some(&path), &input, &scope);
        let _ = paths::place(Some(&path), &input, result);
    }

    #[test]
    fn intrinsic_calls_never_panic(call in intrinsic(), input in document()) {
        let template = json!({"value.$": call, "path.$": "$", "plain": "x"});
        let (context, variables) = (context(), variables());
        let scope = paths::Scope { context: &context, variables: &variables };
        if let Err(e) = paths::template(&template, &input, &scope) {
            prop_assert!(e.error.starts_with("States."), "{e:?}");
        }
    }

    #[test]
    fn choice_rules_never_panic(
        variable in text(),
        operator in proptest::sample::select(&[
            "StringEquals", "StringMatches", "NumericLessThan", "BooleanEquals", "IsPresent",
            "StringEqualsPath", "TimestampLessThan", "Nope",
        ][..]),
        expected in document(),
        input in document(),
    ) {
        let rule = json!({"Variable": variable, operator: expected, "Next": "D"});
        if choice::check_rule(&rule).is_ok() {
            let (context, variables) = (context(), variables());
            let scope = paths::Scope { context: &context, variables: &variables };
            let _ = choice::matches(&rule, &input, &scope);
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(), ..Config::default() })]

    #[test]
    fn small_machines_load_or_are_refused_and_run_to_an_end(
        input_path in text(),
        call in intrinsic(),
        result_path in text(),
        variable in text(),
        input in document(),
    ) {
        let definition = json!({
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Pass",
                    "InputPath": input_path,
                    "Parameters": {"x.$": call, "y": "é"},
                    "ResultPath": result_path,
                    "Next": "C"
                },
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": variable, "IsPresent": true, "Next": "D"}],
                    "Default": "D"
                },
                "D": {"Type": "Succeed"}
            }
        });
        let Ok(machine) = StateMachine::load(&definition.to_string(), &BTreeMap::new()) else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let executor = Executor::new(
            Arc::new(NoTasks),
            Arc::new(VirtualClock::new(time::OffsetDateTime::UNIX_EPOCH)),
        );
        let outcome = runtime.block_on(executor.execute(&machine, input, "fuzz"));
        prop_assert!(matches!(outcome.status, "SUCCEEDED" | "FAILED"), "{outcome:?}");
    }
}
