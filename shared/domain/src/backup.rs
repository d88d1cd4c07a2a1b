//! Backups as rules, pure: when a tier's daily backup is due, and which recovery points the
//! retention sweep may delete — past the tier's retention, but **never the newest one** (an
//! environment whose backups stopped keeps its last), and on tiers that archive yearly never
//! the first of each year.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, Time};

use crate::blueprint::BackupPolicy;

/// A recovery point as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// The cloud's id.
    pub id: String,
    /// When it was taken.
    pub taken_at: OffsetDateTime,
}

/// A recovery point as the environment records it (and `GET …/backups` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedPoint {
    /// The cloud's id (`snap-…`).
    pub id: String,
    /// envplane's name for it (`{volume}-pre-daily-YYYYMMDD`, `…-pre-{operation}`).
    pub name: String,
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub taken_at: OffsetDateTime,
}

/// The environment with `points` as its recovery points (oldest first), or `None` when it
/// already records exactly those.
pub fn recorded(
    environment: &crate::Environment,
    mut points: Vec<RecordedPoint>,
    at: OffsetDateTime,
) -> Option<crate::Environment> {
    points.sort_by_key(|p| p.taken_at);
    if points == environment.recovery_points {
        return None;
    }
    let mut next = crate::lifecycle::next(environment, at);
    next.recovery_points = points;
    Some(next)
}

/// When today's daily backup is scheduled (UTC).
fn scheduled_today(policy: &BackupPolicy, now: OffsetDateTime) -> OffsetDateTime {
    let hour = policy.daily_at_utc_hour.min(23);
    let at = Time::from_hms(hour, 0, 0).unwrap_or(Time::MIDNIGHT);
    now.to_offset(time::UtcOffset::UTC).replace_time(at)
}

/// Whether the daily backup is due at `now`, the newest point taken at `newest`: once today's
/// scheduled time has passed and nothing was taken since it.
pub fn due(policy: &BackupPolicy, newest: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    let scheduled = scheduled_today(policy, now);
    now >= scheduled && newest.is_none_or(|t| t < scheduled)
}

/// The name of the daily backup taken at `now`: one per day, so a retried job finds it.
pub fn daily_label(now: OffsetDateTime) -> String {
    let day = now.to_offset(time::UtcOffset::UTC).date();
    format!(
        "daily-{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Whether the weekly machine image of the host is due at `now`, the newest taken at
/// `newest`: on tiers whose policy takes one, once none was taken in the last seven days.
pub fn image_due(
    policy: &BackupPolicy,
    newest: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    policy.weekly_ami && newest.is_none_or(|t| now - t >= time::Duration::days(7))
}

/// The name of the weekly image taken at `now`: one per ISO week, so a retried job finds it.
pub fn weekly_label(now: OffsetDateTime) -> String {
    let (year, week, _) = now
        .to_offset(time::UtcOffset::UTC)
        .date()
        .to_iso_week_date();
    format!("weekly-{year:04}w{week:02}")
}

/// The points the sweep deletes at `now`: those older than the retention, except the newest
/// point of all and, with a yearly archive, the first point of each calendar year.
pub fn expired(
    points: &[RecoveryPoint],
    policy: &BackupPolicy,
    now: OffsetDateTime,
) -> Vec<String> {
    let keep_after = now - time::Duration::days(i64::from(policy.snapshot_retention_days));
    let newest = points.iter().max_by_key(|p| p.taken_at).map(|p| &p.id);
    let first_of_year = |p: &RecoveryPoint| {
        policy.yearly_archive
            && !points
                .iter()
                .any(|q| q.taken_at.year() == p.taken_at.year() && q.taken_at < p.taken_at)
    };
    points
        .iter()
        .filter(|p| p.taken_at < keep_after)
        .filter(|p| Some(&p.id) != newest)
        .filter(|p| !first_of_year(p))
        .map(|p| p.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Blueprint, Tier};
    use time::macros::datetime;

    fn point(id: &str, at: OffsetDateTime) -> RecoveryPoint {
        RecoveryPoint {
            id: id.into(),
            taken_at: at,
        }
    }

    #[test]
    fn the_daily_backup_is_due_once_after_its_hour() {
        let policy = Blueprint::for_tier(Tier::Prod).backups;
        assert_eq!(policy.daily_at_utc_hour, 5);
        let before = datetime!(2026-12-01 04:59 UTC);
        let after = datetime!(2026-12-01 05:01 UTC);
        assert!(!due(&policy, None, before));
        assert!(due(&policy, None, after));
        assert!(due(&policy, Some(datetime!(2026-11-30 05:00 UTC)), after));
        assert!(!due(
            &policy,
            Some(datetime!(2026-12-01 05:00:30 UTC)),
            after
        ));
        assert_eq!(daily_label(after), "daily-20261201");
    }

    #[test]
    fn the_weekly_image_is_due_once_a_week_where_the_tier_takes_one() {
        let prod = Blueprint::for_tier(Tier::Prod).backups;
        let now = datetime!(2026-12-01 06:00 UTC);
        if prod.weekly_ami {
            assert!(image_due(&prod, None, now));
            assert!(!image_due(
                &prod,
                Some(datetime!(2026-11-26 06:00 UTC)),
                now
            ));
            assert!(image_due(&prod, Some(datetime!(2026-11-24 06:00 UTC)), now));
        }
        let never = BackupPolicy {
            weekly_ami: false,
            ..prod
        };
        assert!(!image_due(&never, None, now));
        assert_eq!(weekly_label(now), "weekly-2026w49");
    }

    #[test]
    fn the_sweep_keeps_the_retention_the_newest_point_and_the_yearly_archive() {
        let now = datetime!(2026-12-01 06:00 UTC);
        let dev = Blueprint::for_tier(Tier::Dev).backups;
        let old = [
            point("a", datetime!(2026-11-01 05:00 UTC)),
            point("b", datetime!(2026-11-20 05:00 UTC)),
            point("c", datetime!(2026-11-30 05:00 UTC)),
        ];
        assert_eq!(expired(&old, &dev, now), ["a", "b"]);
        // Backups stopped a month ago: the newest is kept whatever its age.
        assert_eq!(expired(&old[..2], &dev, now), ["a"]);
        // Production archives the first point of each year.
        let prod = Blueprint::for_tier(Tier::Prod).backups;
        let years = [
            point("y25", datetime!(2025-01-01 05:00 UTC)),
            point("y25b", datetime!(2025-01-02 05:00 UTC)),
            point("y26", datetime!(2026-01-01 05:00 UTC)),
            point("recent", datetime!(2026-11-30 05:00 UTC)),
        ];
        assert_eq!(expired(&years, &prod, now), ["y25b"]);
    }
}
