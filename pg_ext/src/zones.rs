//! `lms_etl.source_instant`: the one rule for reading a naive source time as an instant
//! (shared with `ingest_chunk` and the loader's windows), callable from SQL so upgrades and
//! ad-hoc queries convert exactly as loading does.

use lms_etl_parse::chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use lms_etl_parse::source_time;
use pgrx::datum::{Timestamp, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

fn epoch_2000() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("a valid time")
}

/// The instant a naive time of `zone` stands for: a time the autumn change repeats is the
/// earlier instant, a time the spring change skips is the instant of the change (unlike
/// `timestamp AT TIME ZONE`, which takes the later and the old offset).
#[pg_extern(immutable, strict, parallel_safe)]
fn source_instant(naive: Timestamp, zone: &str) -> TimestampWithTimeZone {
    let tz = source_time::parse_zone(zone).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string()
        );
    });
    if !naive.is_finite() {
        let micros: i64 = naive.into_inner();
        return TimestampWithTimeZone::try_from(micros).expect("infinity is a timestamptz");
    }
    let micros: i64 = naive.into_inner();
    let at: DateTime<Utc> =
        source_time::to_instant(tz, epoch_2000() + Duration::microseconds(micros));
    let out = (at.naive_utc() - epoch_2000())
        .num_microseconds()
        .expect("a finite timestamp fits in i64 microseconds");
    TimestampWithTimeZone::try_from(out).unwrap_or_else(|_| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            "timestamp out of range"
        );
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn text(sql: &str) -> String {
        Spi::get_one::<String>(sql).unwrap().unwrap()
    }

    #[pg_test]
    fn reads_like_ingest_chunk_not_like_at_time_zone() {
        Spi::run("SET TimeZone = 'UTC'").unwrap();
        // Europe/Berlin 2026-10-25: 02:30 happens twice; the earlier instant.
        assert_eq!(
            text("SELECT lms_etl.source_instant('2026-10-25 02:30', 'Europe/Berlin')::text"),
            "2026-10-25 00:30:00+00"
        );
        // 2026-03-29: 02:30 does not exist; the instant of the change.
        assert_eq!(
            text("SELECT lms_etl.source_instant('2026-03-29 02:30', 'Europe/Berlin')::text"),
            "2026-03-29 01:00:00+00"
        );
        assert_eq!(
            text("SELECT lms_etl.source_instant('2026-11-24 03:00:00.5', 'Europe/Moscow')::text"),
            "2026-11-24 00:00:00.5+00"
        );
        // And ingest_chunk reads a record the same way.
        Spi::run(
            r#"SELECT * FROM lms_etl.ingest_chunk('[{"lti_user_id": "u", "attempt_type": "run", "is_correct": null, "created_at": "2026-10-25 02:30:00"}]', source_timezone => 'Europe/Berlin')"#,
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u' AND created_at = lms_etl.source_instant('2026-10-25 02:30', 'Europe/Berlin')"),
            Ok(Some(1))
        );
        assert_eq!(
            text("SELECT lms_etl.source_instant('infinity', 'UTC')::text"),
            "infinity"
        );
    }

    #[pg_test(
        error = "unknown time zone \"Mars/Olympus\": expected an IANA name such as UTC or Europe/Moscow"
    )]
    fn source_instant_names_an_unknown_zone() {
        Spi::run("SELECT lms_etl.source_instant('2026-01-01', 'Mars/Olympus')").unwrap();
    }
}
