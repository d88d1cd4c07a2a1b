//! Types shared by the port and its adapters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envplane_domain::commands::Mutation;
use envplane_domain::environment::Phase;
use envplane_domain::lifecycle::Transition;
use envplane_domain::{AuditEvent, Environment, Operation, Tier, VpcCidr};
use serde::{Deserialize, Serialize};

/// A failure of the store itself: the caller cannot fix it by changing the request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend refused for load; try again later.
    #[error("the state store is throttling requests: {0}")]
    Throttled(String),
    /// The backend failed or could not be reached.
    #[error("the state store failed: {0}")]
    Backend(String),
    /// A stored item could not be decoded.
    #[error("a stored item is corrupt: {0}")]
    Corrupt(String),
    /// A pagination cursor was not issued by this store.
    #[error("invalid cursor")]
    InvalidCursor,
}

/// Why a [`Change`] was not written. Nothing of it was written in every case.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The change creates an environment whose name is taken.
    #[error("an environment with this name already exists")]
    AlreadyExists,
    /// The environment is not at the expected version (changed or gone meanwhile).
    #[error("the environment changed meanwhile")]
    VersionConflict,
    /// The VPC block is held by another environment.
    #[error("VPC block {0} is already in use")]
    CidrTaken(VpcCidr),
    /// Another change used this idempotency key first.
    #[error("the idempotency key was used by another request")]
    IdempotencyKeyUsed,
    /// A concurrent transaction touched the same items; retrying may succeed.
    #[error("a concurrent change touched the same items")]
    Contended,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the environment's record must look like for a change to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No environment of that name exists.
    Absent,
    /// The environment exists at this version.
    Version(u64),
}

/// Everything one mutation writes, atomically.
#[derive(Debug, Clone)]
pub struct Change {
    /// The environment's new record (its version already bumped).
    pub environment: Environment,
    /// Condition on the stored record.
    pub expected: Expected,
    /// An operation to store (new or updated).
    pub operation: Option<Operation>,
    /// The audit event of the change; it must follow the stored record's audit head.
    pub audit: Option<AuditEvent>,
    /// The response to replay for the same idempotency key; must not exist yet.
    pub idempotency: Option<IdempotencyRecord>,
    /// A VPC block to reserve for this environment; must be free.
    pub claim_cidr: Option<VpcCidr>,
    /// A VPC block this environment gives back.
    pub release_cidr: Option<VpcCidr>,
}

impl Change {
    /// A change of `before` under its version: the new record and nothing else (observed
    /// state, such as a drift report).
    pub fn of(before: &Environment, environment: Environment) -> Self {
        Self {
            environment,
            expected: Expected::Version(before.version),
            operation: None,
            audit: None,
            idempotency: None,
            claim_cidr: None,
            release_cidr: None,
        }
    }

    /// A flow's or a job's transition of `before` (see `envplane_domain::lifecycle`), under its
    /// version, giving its VPC block back when the transition says so.
    pub fn transition(before: &Environment, t: Transition) -> Self {
        Self {
            operation: Some(t.operation),
            audit: t.audit,
            release_cidr: t.release_cidr.then_some(before.spec.network.vpc_cidr),
            ..Self::of(before, t.environment)
        }
    }

    /// A mutation of the existing `before` made on no request of its own (housekeeping's),
    /// under its version.
    pub fn mutation(before: &Environment, m: Mutation) -> Self {
        Self {
            operation: Some(m.operation),
            audit: Some(m.audit),
            ..Self::of(before, m.environment)
        }
    }
}

/// A stored response of a mutation, replayed for retries with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Storage key (derived from the caller and their key).
    pub key: String,
    /// Digest of the request the response answers; a different request with the same key is refused.
    pub fingerprint: String,
    /// HTTP status.
    pub status: u16,
    /// Response headers worth replaying (Location, ETag).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
    /// Expiry in seconds since the Unix epoch (the table's TTL attribute).
    pub expires_at: i64,
}

/// Filter and position of an environment listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentQuery {
    /// Only this tier.
    pub tier: Option<Tier>,
    /// Only this phase.
    pub phase: Option<Phase>,
    /// Page size, at least 1.
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

impl EnvironmentQuery {
    /// Whether an environment passes the filter.
    pub fn matches(&self, env: &Environment) -> bool {
        // Tombstones of destroyed environments are listed only when asked for.
        let phase = match self.phase {
            Some(p) => p == env.status.phase,
            None => env.status.phase != Phase::Deleted,
        };
        self.tier.is_none_or(|t| t == env.tier) && phase
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Filter and position of an environment's operations, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationQuery {
    /// Only this status.
    pub status: Option<envplane_domain::OperationStatus>,
    /// Only this kind.
    pub kind: Option<envplane_domain::OperationKind>,
    /// Page size, at least 1.
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

impl OperationQuery {
    /// Whether an operation passes the filter.
    pub fn matches(&self, op: &envplane_domain::Operation) -> bool {
        self.status.is_none_or(|s| op.status == s) && self.kind.is_none_or(|k| op.kind == k)
    }
}

/// The position after an environment name, as an opaque cursor.
pub fn cursor_after(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name.as_bytes())
}

/// Reads cursors as their documented pattern admits them: any unpadded base64url text, its
/// unused trailing bits ignored.
const CURSOR_DECODING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The name a cursor points after. Text that is not base64url is refused; any that is points
/// somewhere (a cursor is only a position: one this API did not issue pages from wherever it
/// falls, never past what the caller may read).
pub fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    // The shortest cursor encodes one byte in two characters.
    if cursor.len() < 2 {
        return Err(StoreError::InvalidCursor);
    }
    let bytes = CURSOR_DECODING
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
}
