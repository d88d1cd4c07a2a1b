//! The tamper-evident audit history: each event carries the SHA-256 of its predecessor.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::Role;
use crate::name::EnvName;

/// `prev_hash` of an environment's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last link of an environment's chain, kept on the environment so that removing the
/// newest events is detected too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditHead {
    /// Sequence number of the newest event; 0 before the first.
    pub seq: u64,
    /// Hash of the newest event.
    pub hash: String,
}

impl Default for AuditHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// One audited action on an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The environment acted on.
    #[schema(value_type = String)]
    pub environment: EnvName,
    /// Position in the environment's chain, from 1.
    pub seq: u64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Who acted.
    pub principal: String,
    /// The role they acted with.
    pub role: Role,
    /// What was done, e.g. `environment.create`.
    pub action: String,
    /// The operation the action started, if any.
    pub operation: Option<String>,
    /// The change itself: the request or the fields changed.
    pub change: Value,
    /// SHA-256 of the canonical JSON of `change`.
    pub change_digest: String,
    /// Hash of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 over this event's fields and `prev_hash`.
    pub hash: String,
}

/// What an audit event records, before it is linked into the chain.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who acted.
    pub principal: String,
    /// With which role.
    pub role: Role,
    /// What was done.
    pub action: String,
    /// Operation started, if any.
    pub operation: Option<String>,
    /// The change.
    pub change: Value,
}

impl AuditEvent {
    /// Links `entry` after `head`, computing digests and hashes.
    pub fn link(
        environment: &EnvName,
        head: &AuditHead,
        at: OffsetDateTime,
        entry: AuditEntry,
    ) -> AuditEvent {
        let mut event = AuditEvent {
            environment: environment.clone(),
            seq: head.seq + 1,
            at,
            principal: entry.principal,
            role: entry.role,
            action: entry.action,
            operation: entry.operation,
            change_digest: sha256_hex(canonical_json(&entry.change).as_bytes()),
            change: entry.change,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }

    /// The chain head after this event.
    pub fn head(&self) -> AuditHead {
        AuditHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    fn compute_hash(&self) -> String {
        let at = self
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let material = serde_json::json!({
            "environment": self.environment.as_str(),
            "seq": self.seq,
            "at": at,
            "principal": self.principal,
            "role": self.role,
            "action": self.action,
            "operation": self.operation,
            "change_digest": self.change_digest,
            "prev_hash": self.prev_hash,
        });
        sha256_hex(canonical_json(&material).as_bytes())
    }
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ChainVerification {
    /// True when every link holds and the newest event matches the environment's head.
    pub valid: bool,
    /// Events checked.
    pub events_checked: u64,
    /// Sequence number the environment records as its newest event.
    pub head_seq: u64,
    /// The first link that does not hold.
    pub first_broken: Option<BrokenLink>,
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// Sequence number of the first event that fails a check (or that is missing).
    pub seq: u64,
    /// What failed.
    pub reason: String,
}

/// Checks `events` (in sequence order, as stored) against each other and against `head`.
pub fn verify_chain(events: &[AuditEvent], head: &AuditHead) -> ChainVerification {
    let broken = |seq, reason: String, checked| ChainVerification {
        valid: false,
        events_checked: checked,
        head_seq: head.seq,
        first_broken: Some(BrokenLink { seq, reason }),
    };
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked = 0;
    for (expected_seq, event) in (1u64..).zip(events) {
        if event.seq != expected_seq {
            return broken(
                expected_seq,
                format!(
                    "event {expected_seq} is missing (next stored event is {})",
                    event.seq
                ),
                checked,
            );
        }
        if event.prev_hash != prev_hash {
            return broken(
                event.seq,
                "prev_hash does not match the hash of the event before it".into(),
                checked,
            );
        }
        if sha256_hex(canonical_json(&event.change).as_bytes()) != event.change_digest {
            return broken(
                event.seq,
                "the recorded change does not match its digest".into(),
                checked,
            );
        }
        if event.compute_hash() != event.hash {
            return broken(
                event.seq,
                "the event's fields do not match its hash".into(),
                checked,
            );
        }
        prev_hash = event.hash.clone();
        checked += 1;
    }
    if checked != head.seq {
        return broken(
            checked + 1,
            format!(
                "the environment records {} events but only {checked} are stored",
                head.seq
            ),
            checked,
        );
    }
    if prev_hash != head.hash {
        return broken(
            checked,
            "the newest event does not match the environment's recorded head".into(),
            checked,
        );
    }
    ChainVerification {
        valid: true,
        events_checked: checked,
        head_seq: head.seq,
        first_broken: None,
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so a hash
/// does not depend on how a map happened to be ordered.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> (Vec<AuditEvent>, AuditHead) {
        let env = EnvName::parse("dev").expect("valid");
        let mut head = AuditHead::default();
        let mut events = Vec::new();
        for i in 0..n {
            let entry = AuditEntry {
                principal: "alice".into(),
                role: Role::Operator,
                action: "environment.update".into(),
                operation: Some(format!("op{i}")),
                change: json!({"cluster.frontend.desired": [2, 3 + i]}),
            };
            let event = AuditEvent::link(&env, &head, OffsetDateTime::UNIX_EPOCH, entry);
            head = event.head();
            events.push(event);
        }
        (events, head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (events, head) = chain(5);
        let result = verify_chain(&events, &head);
        assert!(result.valid, "{result:?}");
        assert_eq!(result.events_checked, 5);
    }

    #[test]
    fn an_edited_change_breaks_at_that_event() {
        let (mut events, head) = chain(5);
        events[2].change = json!({"cluster.frontend.desired": [2, 99]});
        assert_eq!(
            verify_chain(&events, &head).first_broken.map(|b| b.seq),
            Some(3)
        );
    }

    #[test]
    fn an_edited_principal_breaks_at_that_event() {
        let (mut events, head) = chain(5);
        events[1].principal = "mallory".into();
        assert_eq!(
            verify_chain(&events, &head).first_broken.map(|b| b.seq),
            Some(2)
        );
    }

    #[test]
    fn removed_events_are_found_in_the_middle_and_at_the_end() {
        let (mut events, head) = chain(5);
        let mut middle = events.clone();
        middle.remove(1);
        assert_eq!(
            verify_chain(&middle, &head).first_broken.map(|b| b.seq),
            Some(2)
        );
        events.pop();
        assert_eq!(
            verify_chain(&events, &head).first_broken.map(|b| b.seq),
            Some(5)
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": [1, {"f": 2, "e": 1}], "c": null}})),
            r#"{"a":{"c":null,"d":[1,{"e":1,"f":2}]},"b":1}"#
        );
    }
}
