//! PostgreSQL timestamps on the wire: microseconds since 2000-01-01 00:00:00 UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};

/// Microseconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn to_unix_micros(pg_micros: i64) -> Option<i64> {
    pg_micros.checked_add(PG_EPOCH_UNIX_MICROS)
}

/// The instant a PostgreSQL timestamp names, or `None` if the platform cannot represent it
/// (such as PostgreSQL's `infinity`, which is `i64::MAX`).
pub fn pg_micros_to_system_time(pg_micros: i64) -> Option<SystemTime> {
    let unix = to_unix_micros(pg_micros)?;
    let magnitude = Duration::from_micros(unix.unsigned_abs());
    if unix >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// A `SystemTime` as PostgreSQL microseconds, saturating at the ends of the `i64` range.
pub fn pg_micros_from_system_time(t: SystemTime) -> i64 {
    let unix = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|m| -m)
            .unwrap_or(i64::MIN),
    };
    unix.saturating_sub(PG_EPOCH_UNIX_MICROS)
}

/// The current time as PostgreSQL microseconds, for standby status updates.
pub fn pg_micros_now() -> i64 {
    pg_micros_from_system_time(SystemTime::now())
}

/// A PostgreSQL timestamp as RFC 3339 in UTC with microseconds, e.g.
/// `2024-05-06T07:08:09.123456Z`; `None` outside chrono's range.
///
/// The fixed six fractional digits keep strings of one width, so they sort like the instants.
pub fn pg_micros_to_rfc3339(pg_micros: i64) -> Option<String> {
    let dt = DateTime::from_timestamp_micros(to_unix_micros(pg_micros)?)?;
    Some(dt.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_epoch_is_2000_01_01() {
        assert_eq!(
            pg_micros_to_system_time(0),
            Some(UNIX_EPOCH + Duration::from_secs(946_684_800))
        );
        assert_eq!(
            pg_micros_to_rfc3339(0).as_deref(),
            Some("2000-01-01T00:00:00.000000Z")
        );
    }

    #[test]
    fn converts_known_instants() {
        // 2024-05-06T07:08:09.123456Z is Unix 1714979289.123456.
        let pg = 1_714_979_289_123_456 - PG_EPOCH_UNIX_MICROS;
        assert_eq!(
            pg_micros_to_rfc3339(pg).as_deref(),
            Some("2024-05-06T07:08:09.123456Z")
        );
        let st = UNIX_EPOCH + Duration::from_micros(1_714_979_289_123_456);
        assert_eq!(pg_micros_from_system_time(st), pg);
        assert_eq!(pg_micros_to_system_time(pg), Some(st));
        // Before 2000 and before 1970 are negative and still round-trip.
        let before_unix = UNIX_EPOCH - Duration::from_micros(1_500_000);
        let pg = pg_micros_from_system_time(before_unix);
        assert_eq!(pg, -PG_EPOCH_UNIX_MICROS - 1_500_000);
        assert_eq!(pg_micros_to_system_time(pg), Some(before_unix));
        assert_eq!(
            pg_micros_to_rfc3339(pg).as_deref(),
            Some("1969-12-31T23:59:58.500000Z")
        );
    }

    #[test]
    fn infinity_is_none_not_a_panic() {
        assert_eq!(pg_micros_to_rfc3339(i64::MAX), None);
        assert_eq!(pg_micros_to_system_time(i64::MAX), None);
        assert_eq!(pg_micros_to_rfc3339(i64::MIN), None);
        let _ = pg_micros_to_system_time(i64::MIN);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(pg_micros_now() > 631_152_000_000_000);
    }
}
