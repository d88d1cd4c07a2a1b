//! Client commands, one module per command group: call the API through the typed client and
//! print the answer for people or scripts.

pub mod approvals;
pub mod blueprints;
pub mod deploy;
pub mod env;
pub mod flow;
pub mod ops;
pub mod recovery;
pub mod watch;

use anyhow::Context;
use envplane_client::{Accepted, Client};
use serde_json::{Value, json};

use crate::output::{print_environment, print_json};
use crate::{ClientArgs, Output};

/// The typed client for these arguments.
fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    Ok(Client::new(&args.endpoint, args.token.clone())?)
}

/// A fresh idempotency key, reused by the client's own retries of one command.
fn new_key() -> String {
    ulid::Ulid::new().to_string()
}

/// Builds a JSON object from `path=value` pairs; values parse as JSON when they can.
fn overrides(pairs: &[String]) -> anyhow::Result<Value> {
    let mut root = json!({});
    for pair in pairs {
        let (path, raw) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected PATH=VALUE"))?;
        let value = set_value(path, raw);
        let keys: Vec<&str> = path.split('.').collect();
        insert(&mut root, &keys, value)
            .with_context(|| format!("--set {pair:?}: {path} crosses a value"))?;
    }
    Ok(root)
}

/// A `--set` value: JSON when it parses, a string otherwise — and always a string for a version
/// (`cluster.version=1.30` is the version "1.30", not the number 1.3).
fn set_value(path: &str, raw: &str) -> Value {
    if path.ends_with("version") && !raw.starts_with('"') {
        return Value::String(raw.to_owned());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
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

/// Prints what a mutation's acceptance says: the operation started and the environment.
fn print_accepted(args: &ClientArgs, accepted: &Accepted, verb: &str) {
    let response = &accepted.response;
    if args.output == Output::Json {
        print_json(response);
        return;
    }
    let env = &response.environment;
    let op = &response.operation;
    println!(
        "{verb} of {} accepted ({}): operation {} is {}",
        env.environment.name,
        accepted.status,
        op.id,
        crate::output::word(&op.status)
    );
    print_environment(env);
}

/// Prints an acceptance, then follows the operation when asked to.
async fn accepted_then_watch(
    args: &ClientArgs,
    accepted: Accepted,
    verb: &str,
    wait: bool,
) -> anyhow::Result<()> {
    print_accepted(args, &accepted, verb);
    if wait {
        ops::watch(
            args,
            &accepted.response.operation.id,
            std::time::Duration::from_secs(1),
        )
        .await
    } else {
        Ok(())
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
        let versions = overrides(&[
            "cluster.version=1.30".into(),
            "database.engine_version=\"16\"".into(),
        ])
        .expect("valid");
        assert_eq!(
            versions,
            json!({"cluster": {"version": "1.30"}, "database": {"engine_version": "16"}})
        );
    }
}
