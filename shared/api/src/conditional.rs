//! Conditional requests and contention: `If-Match` against the environment's version, and the
//! short randomized retries every mutation (create included) makes when a concurrent change
//! won the race, before it answers 409.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use envplane_store::CommitError;

use crate::problem::ApiError;

/// Tries of a mutation whose commit met a concurrent one, before answering 409.
const COMMIT_ATTEMPTS: u32 = 6;

/// What an `If-Match` header asks (RFC 9110 §13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// `*`: any current representation.
    Any,
    /// One of these entity-tags, as given; the header's text for the answer.
    Tags(Vec<EntityTag>, String),
}

/// One entity-tag of an `If-Match` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityTag {
    weak: bool,
    opaque: String,
}

/// Parses `"3"`, `W/"3"` or `"a", "b"` (RFC 9110 §8.8.3: a comma may stand inside the
/// quotes); `None` when it is not entity-tag syntax.
fn entity_tags(text: &str) -> Option<Vec<EntityTag>> {
    let mut tags = Vec::new();
    let mut rest = text.trim_matches([' ', '\t']);
    // An empty list: no current representation matches it (RFC 9110 §13.1.1), so 412.
    if rest.is_empty() {
        return Some(tags);
    }
    loop {
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let inner = quoted.strip_prefix('"')?;
        let end = inner.find('"')?;
        let opaque = &inner[..end];
        // etagc: visible ASCII but the double quote, or obs-text.
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return None;
        }
        tags.push(EntityTag {
            weak,
            opaque: opaque.to_owned(),
        });
        rest = inner[end + 1..].trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(tags);
        }
        rest = rest.strip_prefix(',')?.trim_start_matches([' ', '\t']);
    }
}

/// The `If-Match` header, parsed. `Ok(None)` without it; a value that is not entity-tag
/// syntax is a 400 naming the header.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match", "must be visible ASCII: entity-tags, or *"))?
        .trim();
    if text == "*" {
        return Ok(Some(Precondition::Any));
    }
    let tags = entity_tags(text).ok_or_else(|| {
        ApiError::bad_request(
            "If-Match",
            format!("{text:?} is not an entity-tag (a quoted version, e.g. \"3\", or *)"),
        )
    })?;
    Ok(Some(Precondition::Tags(tags, text.to_owned())))
}

/// Refuses a change based on a version other than the current one. If-Match compares
/// strongly: a weak tag never matches, and neither does a tag this API never issued.
pub(crate) fn check(
    precondition: Option<&Precondition>,
    current: u64,
    etag: String,
) -> Result<(), ApiError> {
    match precondition {
        None | Some(Precondition::Any) => Ok(()),
        Some(Precondition::Tags(tags, given)) => {
            let matches = tags
                .iter()
                .any(|t| !t.weak && t.opaque.parse::<u64>().ok() == Some(current));
            if matches {
                Ok(())
            } else {
                Err(ApiError::PreconditionFailed {
                    given: given.clone(),
                    current: etag,
                })
            }
        }
    }
}

/// Counts a mutation's attempts against concurrent changes.
pub(crate) struct Contention {
    attempt: u32,
}

impl Contention {
    /// A mutation's first attempt.
    pub(crate) fn new() -> Self {
        Self { attempt: 0 }
    }

    /// After a lost race: pauses a short randomized time, so that retries spread out, and lets
    /// the mutation read and try again; after the last attempt, 409.
    pub(crate) async fn again(&mut self) -> Result<(), ApiError> {
        self.attempt += 1;
        if self.attempt >= COMMIT_ATTEMPTS {
            return Err(CommitError::Contended.into());
        }
        let jitter = u64::from(ulid::Ulid::new().random() as u16 % 20);
        tokio::time::sleep(Duration::from_millis(5 * u64::from(self.attempt) + jitter)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value.parse().expect("header"));
        headers
    }

    #[test]
    fn if_match_follows_rfc_9110() {
        let check_at = |value: &str, version: u64| {
            let precondition = if_match(&header(value)).expect("well-formed");
            check(precondition.as_ref(), version, format!("\"{version}\"")).is_ok()
        };
        assert!(check_at("\"3\"", 3));
        assert!(!check_at("\"2\"", 3));
        assert!(check_at("*", 3));
        assert!(check_at("\"1\", \"3\"", 3));
        assert!(!check_at("W/\"3\"", 3), "weak tags never match");
        assert!(
            !check_at("\"abc\"", 3),
            "a tag this API never issued: 412, not 400"
        );
        assert!(
            check_at("\",x\" , \"3\"", 3),
            "a comma inside the quotes is the tag's"
        );
        assert!(check_at("\"3\",W/\"\"", 3));
        assert!(!check_at("", 3), "an empty list matches nothing: 412");
        for malformed in [
            "v2",
            "3",
            "\"unterminated",
            "W/3",
            "\"a\"b\"",
            "\"a\",",
            ",\"a\"",
        ] {
            assert!(if_match(&header(malformed)).is_err(), "{malformed}");
        }
    }
}
