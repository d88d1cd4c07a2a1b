//! The cold-start baseline: a bare `lambda_runtime` function answering every event with a
//! constant, built with the same profile in the same run as envplane's functions. It runs on
//! tokio's multi-threaded runtime as `#[tokio::main]` makes it (the runtime examples' choice),
//! or on the current-thread runtime envplane's functions use when `HELLO_RUNTIME` is
//! `current_thread`, so the bench can show what the runtime alone accounts for.
#![forbid(unsafe_code)]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn main() -> Result<(), Error> {
    let runtime = match std::env::var("HELLO_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    runtime.block_on(lambda_runtime::run(service_fn(
        |_: LambdaEvent<Value>| async { Ok::<_, Error>(json!({"hello": "world"})) },
    )))
}
