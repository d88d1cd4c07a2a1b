//! Restores and DR drills, pure: what a restore request asks for (parsed field by field),
//! where it goes (in place, a new environment, an isolated drill environment), and what a
//! drill proved — its RTO (start → checks green) and RPO (start → newest heartbeat the
//! restored database holds) against its tier's targets.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::blueprint::{Blueprint, DrTargets, Tier};
use crate::environment::Environment;
use crate::name::EnvName;
use crate::validation::{FieldError, ValidationErrors};

/// Which state of the database a restore brings back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestorePoint {
    /// A recovery point as it was taken (`snap-…`).
    Backup {
        /// Its id.
        backup_id: String,
    },
    /// A point in time: the newest backup before it, and the WAL replayed up to it.
    Time {
        /// The time.
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: OffsetDateTime,
    },
    /// Everything archived: what a drill restores (the newest recovery point).
    Latest,
}

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreInto {
    /// The environment's own database is replaced (after approval); the old host is kept
    /// stopped for a rollback window.
    InPlace,
    /// A new environment of the same spec, in its own VPC block.
    NewEnvironment {
        /// Its name.
        #[schema(value_type = String)]
        name: EnvName,
    },
    /// An isolated drill environment (its own block, no traffic), always torn down.
    Drill {
        /// Its name.
        #[schema(value_type = String)]
        name: EnvName,
    },
}

/// A restore or a drill as its operation carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Restore {
    /// The environment whose backups are restored.
    #[schema(value_type = String)]
    pub source: EnvName,
    /// What is restored.
    pub point: RestorePoint,
    /// Where to.
    pub into: RestoreInto,
    /// When the flow began (a drill's simulated disaster), on the plane's clock.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    /// The same instant on the database's own clock (wall time): what the RPO is measured
    /// against, since the heartbeats are written in it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_wall: Option<OffsetDateTime>,
    /// When the restored database passed its checks.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub healthy_at: Option<OffsetDateTime>,
    /// The newest heartbeat the restored database holds.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub newest_heartbeat: Option<OffsetDateTime>,
    /// When each milestone was reached, in order (`restored`, `provisioned` — a new
    /// environment's, provisioned at the same time —, `healthy`, `switched`, `torn_down`): the
    /// timeline of the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    /// A drill's evidence, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<DrillEvidence>,
}

/// A step's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mark {
    /// The step that ended.
    pub step: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl Restore {
    /// Records that `step` ended at `at`; false when it was already recorded (a retried step).
    pub fn mark(&mut self, step: &str, at: OffsetDateTime) -> bool {
        if self.marks.iter().any(|m| m.step == step) {
            return false;
        }
        self.marks.push(Mark {
            step: step.to_owned(),
            at,
        });
        true
    }

    /// The steps from the start, each with when it began and how long it took.
    pub fn timeline(&self) -> Vec<TimedStep> {
        let Some(start) = self.started_at else {
            return Vec::new();
        };
        let mut from = start;
        self.marks
            .iter()
            .map(|m| {
                let step = TimedStep {
                    name: m.step.clone(),
                    at_seconds: (from - start).whole_seconds(),
                    seconds: (m.at - from).whole_seconds(),
                };
                from = m.at;
                step
            })
            .collect()
    }

    /// Whether this is a drill.
    pub fn is_drill(&self) -> bool {
        matches!(self.into, RestoreInto::Drill { .. })
    }

    /// The environment the restore writes to.
    pub fn target(&self) -> &EnvName {
        match &self.into {
            RestoreInto::InPlace => &self.source,
            RestoreInto::NewEnvironment { name } | RestoreInto::Drill { name } => name,
        }
    }
}

/// What a drill proved, recorded in the source's audit chain and on the drill's operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillEvidence {
    /// The environment drilled.
    #[schema(value_type = String)]
    pub environment: EnvName,
    /// The isolated environment the drill restored into.
    #[schema(value_type = String)]
    pub drill_environment: EnvName,
    /// The recovery point used.
    pub recovery_point: RestorePoint,
    /// When the drill began.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// When the restored environment passed its checks.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub healthy_at: Option<OffsetDateTime>,
    /// Achieved recovery time, seconds: start → checks green.
    pub rto_seconds: Option<i64>,
    /// Achieved recovery point, seconds: start → newest heartbeat recovered.
    pub rpo_seconds: Option<i64>,
    /// The tier's targets.
    pub targets: Option<DrTargets>,
    /// Whether the RTO target was met (`None`: the tier has none, or no RTO was reached).
    pub rto_met: Option<bool>,
    /// Whether the RPO target was met.
    pub rpo_met: Option<bool>,
    /// `passed` (every target met), `missed` (healthy, a target missed) or `failed`.
    pub outcome: DrillOutcome,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the drill environment left behind after its teardown: empty when nothing.
    pub left: Vec<String>,
    /// The drill's steps and how long each took, seconds.
    pub timeline: Vec<TimedStep>,
}

/// One step of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimedStep {
    /// The step.
    pub name: String,
    /// Seconds from the drill's start to the step's start.
    pub at_seconds: i64,
    /// Seconds it took.
    pub seconds: i64,
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillOutcome {
    /// Healthy, every target met.
    Passed,
    /// Healthy, a target missed.
    Missed,
    /// Never healthy.
    Failed,
}

/// What a drill measured, judged: RTO from the plane's clock, RPO from the database's.
pub fn evidence(
    restore: &Restore,
    tier: Tier,
    error: Option<String>,
    left: Vec<String>,
) -> Option<DrillEvidence> {
    let timeline = restore.timeline();
    let RestoreInto::Drill { name } = &restore.into else {
        return None;
    };
    let started_at = restore.started_at?;
    let rto = restore.healthy_at.map(|h| (h - started_at).whole_seconds());
    let rpo = match (restore.started_wall, restore.newest_heartbeat) {
        (Some(start), Some(beat)) => Some((start - beat).whole_seconds().max(0)),
        _ => None,
    };
    let targets = Blueprint::for_tier(tier).dr;
    let judge = |achieved: Option<i64>, minutes: Option<u32>| match (achieved, minutes) {
        (Some(a), Some(m)) => Some(a <= i64::from(m) * 60),
        _ => None,
    };
    let rto_met = judge(rto, targets.map(|t| t.rto_minutes));
    let rpo_met = judge(rpo, targets.map(|t| t.rpo_minutes));
    let healthy = restore.healthy_at.is_some() && error.is_none();
    let outcome = if !healthy {
        DrillOutcome::Failed
    } else if rto_met == Some(false) || rpo_met == Some(false) || rpo.is_none() {
        DrillOutcome::Missed
    } else {
        DrillOutcome::Passed
    };
    Some(DrillEvidence {
        environment: restore.source.clone(),
        drill_environment: name.clone(),
        recovery_point: restore.point.clone(),
        started_at,
        healthy_at: restore.healthy_at,
        rto_seconds: rto,
        rpo_seconds: rpo,
        targets,
        rto_met,
        rpo_met,
        outcome,
        error,
        left,
        timeline,
    })
}

/// The name of the drill environment of `source` for the operation `operation`: short enough
/// for AWS's names, unique per drill.
pub fn drill_name(source: &EnvName, operation: &str) -> Result<EnvName, String> {
    let stem: String = source.as_str().chars().take(26).collect();
    let stem = stem.trim_end_matches('-');
    let tail: String = operation
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_ascii_lowercase();
    EnvName::parse(&format!("dr-{stem}-{tail}"))
}

/// A restore request, parsed against the source environment: exactly one of `backup_id` (one
/// of its recovery points) or `point_in_time` (inside its restorable window, not in the
/// future), and a `target` (`"in_place"` or `{"new_environment": NAME}`).
pub fn parse(
    body: &Value,
    source: &Environment,
    now: OffsetDateTime,
) -> Result<(RestorePoint, RestoreInto), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let Some(fields) = body.as_object() else {
        return Err(FieldError::new("body", "must be a JSON object").into());
    };
    for key in fields.keys() {
        if !["backup_id", "point_in_time", "target"].contains(&key.as_str()) {
            errors.push(
                key,
                "unknown field; expected backup_id or point_in_time, and target",
            );
        }
    }
    let point = match (fields.get("backup_id"), fields.get("point_in_time")) {
        (Some(_), Some(_)) => {
            errors.push("point_in_time", "give backup_id or point_in_time, not both");
            None
        }
        (None, None) => {
            errors.push("backup_id", "give backup_id or point_in_time");
            None
        }
        (Some(id), None) => match id.as_str() {
            Some(id) if source.recovery_points.iter().any(|p| p.id == id) => {
                Some(RestorePoint::Backup {
                    backup_id: id.to_owned(),
                })
            }
            Some(id) => {
                errors.push(
                    "backup_id",
                    format!(
                        "{id:?} is not a recovery point of {} (GET /v1/environments/{}/backups lists them)",
                        source.name, source.name
                    ),
                );
                None
            }
            None => {
                errors.push("backup_id", "must be a string");
                None
            }
        },
        (None, Some(at)) => parse_time(at, source, now)
            .map_err(|e| errors.0.push(e))
            .ok(),
    };
    let into = match fields.get("target") {
        None => {
            errors.push(
                "target",
                "required: \"in_place\" or {\"new_environment\": NAME}",
            );
            None
        }
        Some(Value::String(s)) if s == "in_place" => Some(RestoreInto::InPlace),
        Some(Value::Object(t)) if t.len() == 1 && t.contains_key("new_environment") => {
            match t["new_environment"]
                .as_str()
                .map(|n| EnvName::parse_field(n, "target.new_environment"))
            {
                Some(Ok(name)) if name == source.name => {
                    errors.push(
                        "target.new_environment",
                        "names the source: use \"in_place\"",
                    );
                    None
                }
                Some(Ok(name)) => Some(RestoreInto::NewEnvironment { name }),
                Some(Err(e)) => {
                    errors.0.push(e);
                    None
                }
                None => {
                    errors.push("target.new_environment", "must be a string");
                    None
                }
            }
        }
        Some(_) => {
            errors.push(
                "target",
                "must be \"in_place\" or {\"new_environment\": NAME}",
            );
            None
        }
    };
    match (point, into) {
        (Some(p), Some(i)) if errors.0.is_empty() => Ok((p, i)),
        _ => Err(errors),
    }
}

fn parse_time(
    raw: &Value,
    source: &Environment,
    now: OffsetDateTime,
) -> Result<RestorePoint, FieldError> {
    let field = "point_in_time";
    let text = raw
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be an RFC 3339 time"))?;
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| FieldError::new(field, format!("{text:?} is not an RFC 3339 time: {e}")))?;
    if at > now {
        return Err(FieldError::new(field, format!("{text} is in the future")));
    }
    let Some(earliest) = source.recovery_points.iter().map(|p| p.taken_at).min() else {
        return Err(FieldError::new(
            field,
            format!(
                "{} has no recovery point yet: take a backup first",
                source.name
            ),
        ));
    };
    if at < earliest {
        return Err(FieldError::new(
            field,
            format!("{text} is before the earliest restorable time {earliest}"),
        ));
    }
    Ok(RestorePoint::Time { at })
}

/// How many approvers, other than the requester, a restore in place needs: it replaces the
/// database, so always one, and two on production (four eyes).
pub fn approvers_in_place(tier: Tier) -> u8 {
    if tier == Tier::Prod { 2 } else { 1 }
}

/// The audit action of a drill's evidence, in the drilled environment's chain.
pub const DRILL_EVIDENCE: &str = "environment.drill_evidence";

/// A restore step recorded what it found: the operation carries `restore` now.
pub fn progressed(
    environment: &Environment,
    operation: &crate::Operation,
    restore: Restore,
    at: OffsetDateTime,
) -> crate::lifecycle::Transition {
    let mut op = crate::lifecycle::next_operation(operation, at);
    op.restore = Some(restore);
    crate::lifecycle::Transition {
        environment: crate::lifecycle::next(environment, at),
        operation: op,
        audit: None,
        release_cidr: false,
    }
}

/// The drilled environment with a drill's evidence linked into its audit chain (by the
/// system, naming the drill's operation and who asked for it): the record auditors read.
pub fn attested(
    source: &Environment,
    drill: &crate::Operation,
    evidence: &DrillEvidence,
    at: OffsetDateTime,
) -> (Environment, crate::AuditEvent) {
    let entry = crate::audit::AuditEntry {
        principal: crate::lifecycle::SYSTEM_PRINCIPAL.into(),
        role: crate::Role::Admin,
        action: DRILL_EVIDENCE.into(),
        operation: Some(drill.id.clone()),
        change: serde_json::json!({ "requested_by": drill.requested_by, "evidence": evidence }),
    };
    let event = crate::AuditEvent::link(&source.name, &source.audit_head, at, entry);
    let mut next = crate::lifecycle::next(source, at);
    next.audit_head = event.head();
    (next, event)
}
