//! What SSM Run Command runs on a database host, as text: the replay of a restore and the
//! checks after it. Pure, so that what a host is told is tested here even though moto's SSM
//! never runs a command.

use envplane_cloud::RecoveryTarget;
use time::OffsetDateTime;

/// The comment that marks a command as one step of one restore: a retried step finds it.
pub(crate) fn comment(step: &str, restore: &str) -> String {
    // SSM keeps at most 100 characters of a comment.
    format!("envplane {step} {restore}")
        .chars()
        .take(100)
        .collect()
}

fn postgres_time(at: OffsetDateTime) -> Result<String, String> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .map_err(|e| e.to_string())
}

/// The replay on a new host whose data volume was made from the snapshot: PostgreSQL started
/// on it in recovery, fetching WAL from the stack's repository (`pgbackrest archive-get`) up
/// to `target`, then promoted. Waits until it answers as a primary.
pub(crate) fn replay(target: &RecoveryTarget) -> Result<Vec<String>, String> {
    let stop_at = match target {
        RecoveryTarget::Time(at) => format!("recovery_target_time = '{}'", postgres_time(*at)?),
        RecoveryTarget::Backup(_) => "recovery_target = 'immediate'".to_owned(),
        RecoveryTarget::Latest => String::new(),
    };
    Ok(vec![
        "set -euo pipefail".into(),
        "device=/dev/sdf; [ -e /dev/nvme1n1 ] && device=/dev/nvme1n1".into(),
        "until [ -e \"$device\" ]; do sleep 2; done".into(),
        "systemctl stop postgresql || true".into(),
        "mkdir -p /var/lib/pgsql".into(),
        "mountpoint -q /var/lib/pgsql || mount \"$device\" /var/lib/pgsql".into(),
        "data=/var/lib/pgsql/data".into(),
        "printf '%s\\n' \"restore_command = 'pgbackrest --stanza=main archive-get %f \\\"%p\\\"'\" \"recovery_target_action = 'promote'\" >> \"$data/postgresql.auto.conf\"".into(),
        format!("[ -z \"{stop_at}\" ] || echo \"{stop_at}\" >> \"$data/postgresql.auto.conf\""),
        "touch \"$data/recovery.signal\" && chown -R postgres:postgres \"$data\"".into(),
        "systemctl start postgresql".into(),
        "for _ in $(seq 1 1800); do sudo -u postgres psql -tAc 'SELECT NOT pg_is_in_recovery()' | grep -q t && exit 0; sleep 2; done; exit 1".into(),
    ])
}

/// The checks of a restored database: it answers, and its newest heartbeat (RFC 3339, UTC).
pub(crate) fn check() -> Vec<String> {
    vec![
        "set -euo pipefail".into(),
        "sudo -u postgres psql -tAc \"SELECT to_char(max(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\\\"T\\\"HH24:MI:SS.US\\\"Z\\\"') FROM envplane.heartbeat\"".into(),
    ]
}

/// The newest heartbeat a check printed; `None` when it printed none (an empty table).
pub(crate) fn heartbeat_of(output: &str) -> Result<Option<OffsetDateTime>, String> {
    let line = output.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => Ok(None),
        Some(text) => OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|e| format!("the check printed {text:?}, not a time: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_stops_where_its_target_says() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a time");
        let to_time = replay(&RecoveryTarget::Time(at))
            .expect("a script")
            .join("\n");
        assert!(
            to_time.contains("recovery_target_time = '2023-11-14 22:13:20.000000+00'"),
            "{to_time}"
        );
        assert!(to_time.contains("archive-get"));
        let as_taken = replay(&RecoveryTarget::Backup("snap-1".into()))
            .expect("a script")
            .join("\n");
        assert!(as_taken.contains("recovery_target = 'immediate'"));
        let latest = replay(&RecoveryTarget::Latest)
            .expect("a script")
            .join("\n");
        assert!(
            !latest.contains("recovery_target_time") && !latest.contains("recovery_target ="),
            "{latest}"
        );
        assert!(latest.contains("recovery_target_action = 'promote'"));
    }

    #[test]
    fn a_check_reads_the_newest_heartbeat() {
        assert_eq!(heartbeat_of("\n").expect("empty"), None);
        let at = heartbeat_of(" 2026-12-01T05:00:01.250000Z\n")
            .expect("a time")
            .expect("some");
        assert_eq!(at.unix_timestamp(), 1_796_101_201);
        assert!(heartbeat_of("ERROR: relation does not exist").is_err());
        assert_eq!(
            comment("replay", "restore-01j"),
            "envplane replay restore-01j"
        );
    }
}
