//! The intrinsic functions beyond the first eight (`paths.rs` has those): arrays, Base64,
//! hashes, random numbers, string splitting and UUIDs, with AWS's argument checks. Each error
//! is the cause of a `States.Runtime` failure, as on AWS.

use serde_json::{Value, json};

/// AWS's bound on a string an intrinsic encodes, decodes or hashes.
const MAX_TEXT: usize = 10_000;
/// AWS's bound on the items `States.ArrayRange` makes.
const MAX_RANGE_ITEMS: i64 = 1_000;

fn integer(name: &str, what: &str, v: &Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{name}: {what} must be an integer, got {v}"))
}

fn text<'a>(name: &str, what: &str, v: &'a Value) -> Result<&'a str, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{name}: {what} must be a string, got {v}"))?;
    if s.chars().count() > MAX_TEXT {
        return Err(format!(
            "{name}: {what} is longer than {MAX_TEXT} characters"
        ));
    }
    Ok(s)
}

/// Applies one of this module's functions to evaluated arguments.
pub(crate) fn apply(name: &str, args: &[Value]) -> Result<Value, String> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{name} takes {n} arguments, got {}", args.len()))
        }
    };
    match name {
        "States.ArrayPartition" => {
            arity(2)?;
            let items = args[0]
                .as_array()
                .ok_or_else(|| format!("{name}: the first argument must be an array"))?;
            let size = integer(name, "the chunk size", &args[1])?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("{name}: the chunk size must be positive, got {size}"))?;
            Ok(Value::Array(
                items
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            arity(2)?;
            let items = args[0]
                .as_array()
                .ok_or_else(|| format!("{name}: the first argument must be an array"))?;
            Ok(Value::Bool(items.contains(&args[1])))
        }
        "States.ArrayRange" => {
            arity(3)?;
            let start = integer(name, "the start", &args[0])?;
            let end = integer(name, "the end", &args[1])?;
            let step = integer(name, "the step", &args[2])?;
            if step == 0 {
                return Err(format!("{name}: the step must not be 0"));
            }
            // In 128 bits: the extremes of i64 neither overflow nor panic.
            let (start, end, step) = (i128::from(start), i128::from(end), i128::from(step));
            let count = if (end - start).signum() * step.signum() < 0 {
                0
            } else {
                (end - start) / step + 1
            };
            if count > i128::from(MAX_RANGE_ITEMS) {
                return Err(format!(
                    "{name}: {count} items, more than {MAX_RANGE_ITEMS}"
                ));
            }
            Ok(Value::Array(
                (0..count).map(|i| json!(start + i * step)).collect(),
            ))
        }
        "States.ArrayUnique" => {
            arity(1)?;
            let items = args[0]
                .as_array()
                .ok_or_else(|| format!("{name}: the argument must be an array"))?;
            let mut seen: Vec<Value> = Vec::new();
            for item in items {
                if !seen.contains(item) {
                    seen.push(item.clone());
                }
            }
            Ok(Value::Array(seen))
        }
        "States.Base64Encode" => {
            use base64::Engine;
            arity(1)?;
            let s = text(name, "the argument", &args[0])?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }
        "States.Base64Decode" => {
            use base64::Engine;
            arity(1)?;
            let s = text(name, "the argument", &args[0])?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("{name}: not Base64: {e}"))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| format!("{name}: the decoded bytes are not UTF-8"))
        }
        "States.Hash" => {
            arity(2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_TEXT {
                return Err(format!(
                    "{name}: the data is longer than {MAX_TEXT} characters"
                ));
            }
            let algorithm = text(name, "the algorithm", &args[1])?;
            hash(algorithm, data.as_bytes())
                .map(Value::String)
                .ok_or_else(|| {
                    format!("{name}: unknown algorithm {algorithm:?}; MD5, SHA-1, SHA-256, SHA-384 or SHA-512")
                })
        }
        "States.MathRandom" => {
            use rand::{Rng, SeedableRng};
            if !(2..=3).contains(&args.len()) {
                return Err(format!("{name} takes 2 or 3 arguments, got {}", args.len()));
            }
            let start = integer(name, "the start", &args[0])?;
            let end = integer(name, "the end", &args[1])?;
            if end <= start {
                return Err(format!(
                    "{name}: the end {end} must be above the start {start}"
                ));
            }
            // The start is included, the end is not; a seed makes the draw repeatable.
            let drawn = match args.get(2) {
                Some(seed) => {
                    let seed = integer(name, "the seed", seed)?;
                    rand::rngs::StdRng::seed_from_u64(seed.unsigned_abs()).random_range(start..end)
                }
                None => rand::rng().random_range(start..end),
            };
            Ok(json!(drawn))
        }
        "States.StringSplit" => {
            arity(2)?;
            let s = text(name, "the string", &args[0])?;
            let splitters = text(name, "the delimiters", &args[1])?;
            // Each character of the second argument delimits; empty pieces are dropped.
            let pieces = s
                .split(|c| splitters.contains(c))
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_owned()))
                .collect();
            Ok(Value::Array(pieces))
        }
        "States.UUID" => {
            arity(0)?;
            Ok(Value::String(uuid::Uuid::new_v4().to_string()))
        }
        other => Err(format!("intrinsic function {other} is not supported")),
    }
}

fn hash(algorithm: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    Some(match algorithm {
        "MD5" => {
            use md5::Digest as _;
            hex::encode(md5::Md5::digest(data))
        }
        "SHA-1" => hex::encode(sha1::Sha1::digest(data)),
        "SHA-256" => hex::encode(sha2::Sha256::digest(data)),
        "SHA-384" => hex::encode(sha2::Sha384::digest(data)),
        "SHA-512" => hex::encode(sha2::Sha512::digest(data)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Value) -> Result<Value, String> {
        apply(name, args.as_array().expect("an array of arguments"))
    }

    #[test]
    fn arrays_partition_contain_range_and_unique() {
        assert_eq!(
            call("States.ArrayPartition", json!([[1, 2, 3, 4, 5], 2])),
            Ok(json!([[1, 2], [3, 4], [5]]))
        );
        assert!(call("States.ArrayPartition", json!([[1], 0])).is_err());
        assert_eq!(
            call(
                "States.ArrayContains",
                json!([[1, "a", {"k": 1}], {"k": 1}])
            ),
            Ok(json!(true))
        );
        assert_eq!(
            call("States.ArrayContains", json!([[1, 2], 3])),
            Ok(json!(false))
        );
        assert_eq!(
            call("States.ArrayRange", json!([1, 9, 2])),
            Ok(json!([1, 3, 5, 7, 9]))
        );
        assert_eq!(
            call("States.ArrayRange", json!([5, 1, -2])),
            Ok(json!([5, 3, 1]))
        );
        assert_eq!(call("States.ArrayRange", json!([1, 5, -1])), Ok(json!([])));
        assert!(call("States.ArrayRange", json!([1, 5, 0])).is_err());
        assert!(
            call("States.ArrayRange", json!([0, 1000, 1])).is_err(),
            "1,001 items"
        );
        assert_eq!(
            call("States.ArrayRange", json!([0, 999, 1])).map(|v| v.as_array().map(Vec::len)),
            Ok(Some(1000))
        );
        assert!(call("States.ArrayRange", json!([i64::MIN, i64::MAX, 1])).is_err());
        assert_eq!(
            call("States.ArrayUnique", json!([[1, 2, 1, "1", 2]])),
            Ok(json!([1, 2, "1"]))
        );
    }

    #[test]
    fn base64_hashes_and_splits_as_aws_documents_them() {
        assert_eq!(
            call("States.Base64Encode", json!(["Data to encode"])),
            Ok(json!("RGF0YSB0byBlbmNvZGU="))
        );
        assert_eq!(
            call("States.Base64Decode", json!(["RGF0YSB0byBlbmNvZGU="])),
            Ok(json!("Data to encode"))
        );
        assert!(call("States.Base64Decode", json!(["not base64!"])).is_err());
        assert!(call("States.Base64Encode", json!([1])).is_err());
        assert!(call("States.Base64Encode", json!(["x".repeat(10_001)])).is_err());
        assert_eq!(
            call("States.Hash", json!(["input data", "SHA-1"])),
            Ok(json!("aaff4a450a104cd177d28d18d74485e8cae074b7"))
        );
        assert_eq!(
            call("States.Hash", json!(["", "MD5"])),
            Ok(json!("d41d8cd98f00b204e9800998ecf8427e"))
        );
        assert_eq!(
            call("States.Hash", json!(["abc", "SHA-256"])),
            Ok(json!(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert!(call("States.Hash", json!(["abc", "SHA-3"])).is_err());
        assert_eq!(
            call(
                "States.StringSplit",
                json!(["This.is+a,test=string", ".+,="])
            ),
            Ok(json!(["This", "is", "a", "test", "string"]))
        );
        assert_eq!(
            call("States.StringSplit", json!(["1,,2", ","])),
            Ok(json!(["1", "2"]))
        );
    }

    #[test]
    fn random_numbers_and_uuids() {
        let seeded = call("States.MathRandom", json!([1, 1000, 7])).expect("a number");
        assert_eq!(
            call("States.MathRandom", json!([1, 1000, 7])),
            Ok(seeded.clone()),
            "a seed repeats"
        );
        let n = seeded.as_i64().expect("an integer");
        assert!((1..1000).contains(&n));
        for _ in 0..200 {
            let n = call("States.MathRandom", json!([0, 3]))
                .expect("a number")
                .as_i64()
                .expect("int");
            assert!((0..3).contains(&n), "the end is excluded: {n}");
        }
        assert!(call("States.MathRandom", json!([5, 5])).is_err());
        let uuid = call("States.UUID", json!([])).expect("a uuid");
        let text = uuid.as_str().expect("a string");
        assert_eq!((text.len(), &text[14..15]), (36, "4"), "{text}");
        assert_ne!(call("States.UUID", json!([])), Ok(uuid));
        assert!(call("States.UUID", json!([1])).is_err());
    }
}
