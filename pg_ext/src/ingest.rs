//! `lms_etl.ingest_chunk`: one chunk of raw API records in, attempts and quarantined
//! records out, in two set-based statements (no per-row round trips).

use std::collections::HashSet;

use lms_etl_parse::chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use lms_etl_parse::{parse_chunk, Attempt, Rejection};
use pgrx::datum::Timestamp;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// `sql/ingest.sql`: plain INSERT first, ON CONFLICT DO NOTHING only when the chunk re-loads rows.
const INSERT_ATTEMPTS: &str = "SELECT lms_etl.insert_attempts($1, $2, $3, $4, $5, $6, $7, $8)";

const INSERT_REJECTED: &str = "
    INSERT INTO lms_etl.rejected_attempts (run_id, record_index, raw_record, reason)
    SELECT $1, i, raw, why FROM unnest($2::int[], $3::text[], $4::text[]) AS r(i, raw, why)";

/// Loads one chunk (a JSON array of API records): valid records go to `lms_etl.attempts`
/// (an exact re-load is skipped and counted as a duplicate), invalid ones to
/// `lms_etl.rejected_attempts` with the reason. One bad record never fails the chunk;
/// a chunk that is not a JSON array raises SQLSTATE 22P02.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_chunk(
    records: &str,
    run_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(inserted, i64),
        name!(duplicates, i64),
        name!(rejected, i64),
    ),
> {
    let parsed = parse_chunk(records).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            e.to_string()
        );
    });
    let (good, bad): (Vec<_>, Vec<_>) = parsed.into_iter().partition(Result::is_ok);
    let bad: Vec<Rejection<'_>> = bad.into_iter().filter_map(Result::err).collect();
    let mut good: Vec<Attempt<'_>> = good.into_iter().filter_map(Result::ok).collect();
    let valid = good.len() as i64;
    drop_repeats(&mut good);

    let inserted = if good.is_empty() {
        0
    } else {
        insert_attempts(&good, run_id)
    };
    if !bad.is_empty() {
        insert_rejected(&bad, run_id);
    }
    TableIterator::once((inserted, valid - inserted, bad.len() as i64))
}

/// Keeps the first of records sharing a natural key: a record repeated inside one chunk is a
/// duplicate like a re-load, and removing it lets the insert take its fast path (no ON CONFLICT).
fn drop_repeats(attempts: &mut Vec<Attempt<'_>>) {
    let mut seen = HashSet::with_capacity(attempts.len());
    let keep: Vec<bool> = attempts
        .iter()
        .map(|a| seen.insert((a.created_at, a.user_id.as_ref(), a.attempt_type)))
        .collect();
    drop(seen);
    let mut keep = keep.into_iter();
    attempts.retain(|_| keep.next().unwrap_or(true));
}

/// PostgreSQL's timestamp: microseconds since 2000-01-01 00:00. The parser limits years to
/// 1..=9999, well inside PostgreSQL's range, so the conversion cannot fail.
fn pg_timestamp(t: NaiveDateTime) -> Timestamp {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_time(NaiveTime::MIN);
    let micros = (t - epoch)
        .num_microseconds()
        .expect("years 1..=9999 fit in i64 microseconds");
    Timestamp::try_from(micros).expect("years 1..=9999 are valid PostgreSQL timestamps")
}

fn insert_attempts(attempts: &[Attempt<'_>], run_id: Option<i64>) -> i64 {
    let user_id: Vec<&str> = attempts.iter().map(|a| a.user_id.as_ref()).collect();
    let consumer_key: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.passback.oauth_consumer_key.as_deref())
        .collect();
    let sourcedid: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.passback.lis_result_sourcedid.as_deref())
        .collect();
    let outcome_url: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.passback.lis_outcome_service_url.as_deref())
        .collect();
    let attempt_type: Vec<&str> = attempts.iter().map(|a| a.attempt_type.as_str()).collect();
    let is_correct: Vec<Option<bool>> = attempts.iter().map(|a| a.is_correct).collect();
    let created_at: Vec<Timestamp> = attempts
        .iter()
        .map(|a| pg_timestamp(a.created_at))
        .collect();

    Spi::get_one_with_args::<i64>(
        INSERT_ATTEMPTS,
        &[
            user_id.into(),
            consumer_key.into(),
            sourcedid.into(),
            outcome_url.into(),
            is_correct.into(),
            attempt_type.into(),
            created_at.into(),
            run_id.into(),
        ],
    )
    .unwrap_or_else(|e| error!("inserting attempts: {e}"))
    .unwrap_or(0)
}

fn insert_rejected(rejections: &[Rejection<'_>], run_id: Option<i64>) {
    let index: Vec<i32> = rejections
        .iter()
        .map(|r| i32::try_from(r.index).unwrap_or(i32::MAX))
        .collect();
    let raw: Vec<&str> = rejections.iter().map(|r| r.raw).collect();
    let reason: Vec<String> = rejections
        .iter()
        .map(|r| format!("record {}: {}", r.index, r.reason))
        .collect();
    Spi::run_with_args(
        INSERT_REJECTED,
        &[run_id.into(), index.into(), raw.into(), reason.into()],
    )
    .unwrap_or_else(|e| error!("inserting rejected records: {e}"));
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn record(user: &str, created_at: &str, kind: &str, is_correct: &str) -> String {
        format!(
            r#"{{"lti_user_id": "{user}", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:Org+C+R:lms-b:{user}', 'lis_outcome_service_url': 'https://lms/x'}}", "is_correct": {is_correct}, "attempt_type": "{kind}", "created_at": "{created_at}"}}"#
        )
    }

    fn ingest(chunk: &str) -> (i64, i64, i64) {
        let (i, d, r) = Spi::get_three_with_args::<i64, i64, i64>(
            "SELECT inserted, duplicates, rejected FROM lms_etl.ingest_chunk($1)",
            &[chunk.into()],
        )
        .expect("ingest runs");
        (i.unwrap(), d.unwrap(), r.unwrap())
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    #[pg_test]
    fn loads_valid_records_and_skips_reloads() {
        let chunk = format!(
            "[{}, {}, {}]",
            record("u1", "2026-11-24 10:00:00.000001", "run", "null"),
            record("u1", "2026-11-24 10:00:05.5", "submit", "1"),
            record("u2", "2026-11-24 11:00:00", "submit", "false"),
        );
        assert_eq!(ingest(&chunk), (3, 0, 0));
        assert_eq!(ingest(&chunk), (0, 3, 0));
        // Only this test's users: the pg_cron test commits rows of its own on the side.
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id IN ('u1', 'u2')"),
            3
        );
        let (kind, correct) = Spi::get_two::<String, bool>(
            "SELECT attempt_type, is_correct FROM lms_etl.attempts WHERE created_at = '2026-11-24 10:00:05.5'",
        )
        .unwrap();
        assert_eq!((kind.as_deref(), correct), (Some("submit"), Some(true)));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE lis_result_sourcedid = 'course-v1:Org+C+R:lms-b:u2' AND oauth_consumer_key = ''"),
            1
        );
    }

    #[pg_test]
    fn a_chunk_mixing_new_and_loaded_records_inserts_only_the_new() {
        let old = record("u1", "2026-11-24 10:00:00", "run", "null");
        let new = record("u2", "2026-11-24 10:00:00", "submit", "0");
        assert_eq!(ingest(&format!("[{old}]")), (1, 0, 0));
        // The plain insert hits the existing row, rolls back its subtransaction and the
        // ON CONFLICT path loads the rest.
        assert_eq!(ingest(&format!("[{new}, {old}, {new}]")), (1, 2, 0));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id IN ('u1', 'u2')"),
            2
        );
    }

    #[pg_test]
    fn duplicates_inside_one_chunk_load_once() {
        let r = record("u1", "2026-11-24 10:00:00", "run", "null");
        assert_eq!(ingest(&format!("[{r}, {r}]")), (1, 1, 0));
    }

    #[pg_test]
    fn bad_records_are_quarantined_with_reason_and_index() {
        let chunk = format!(
            "[{}, {}, {}, 17, {}]",
            record("u1", "2026-11-24 10:00:00", "run", "null"),
            record("u2", "2026-11-24 10:00:00", "peek", "null"),
            r#"{"lti_user_id": null, "attempt_type": "run", "created_at": "2026-11-24 10:00:00"}"#,
            record("u3", "yesterday", "run", "null"),
        );
        assert_eq!(ingest(&chunk), (1, 0, 4));
        let reasons = Spi::get_one::<String>(
            "SELECT string_agg(reason, ' | ' ORDER BY record_index) FROM lms_etl.rejected_attempts",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            reasons,
            "record 1: field `attempt_type`: expected 'run' or 'submit', found \"peek\" | \
             record 2: field `lti_user_id`: missing or null | \
             record 3: expected a JSON object with the attempt fields: invalid type: integer `17`, expected struct WireRecord at line 1 column 2 | \
             record 4: field `created_at`: expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found \"yesterday\""
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.rejected_attempts WHERE raw_record = '17'"),
            1
        );
    }

    #[pg_test(
        error = "chunk is not a JSON array of records: EOF while parsing a list at line 1 column 1"
    )]
    fn a_truncated_chunk_is_an_error() {
        ingest("[");
    }

    #[pg_test]
    fn an_empty_chunk_is_fine() {
        assert_eq!(ingest("[]"), (0, 0, 0));
    }
}
