//! `split_sourcedid` / `try_split_sourcedid`: `lis_result_sourcedid` → the composite
//! `lms_etl.sourcedid` (course, problem block, learner), for per-problem statistics and
//! ad-hoc SQL.

use lms_etl_parse::{split_sourcedid as split, Sourcedid};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::composite;

/// Longest sourcedid read: real ones are ~130 bytes; a cap keeps a huge value cheap to refuse.
pub const MAX_SOURCEDID_BYTES: usize = 4096;

thread_local! {
    static SOURCEDID_TYPE: composite::TypeCache = const { std::cell::Cell::new(None) };
}

// The macro must appear literally in each signature for pgrx's SQL generator.
fn to_row(s: Sourcedid<'_>) -> pgrx::composite_type!('static, "sourcedid") {
    composite::text_row(
        composite::type_oid(&SOURCEDID_TYPE, "lms_etl.sourcedid"),
        [
            Some(s.course_id),
            Some(s.org),
            Some(s.course),
            Some(s.course_run),
            Some(s.block_id),
            Some(s.user_id),
        ],
    )
}

/// `course-v1:<Org>+<Course>+<Run>:<host>-<block>:<user>` → (course_id, org, course,
/// course_run, block_id, user_id). Malformed input raises SQLSTATE 22P02 with the byte position.
#[pg_extern(immutable, strict, parallel_safe)]
fn split_sourcedid(sourcedid: &str) -> pgrx::composite_type!('static, "sourcedid") {
    if sourcedid.len() > MAX_SOURCEDID_BYTES {
        crate::passback::over_cap(
            "a lis_result_sourcedid",
            sourcedid.len(),
            MAX_SOURCEDID_BYTES,
        );
    }
    to_row(split(sourcedid).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid lis_result_sourcedid: {e}")
        );
    }))
}

/// Like `split_sourcedid`, but NULL for malformed input.
#[pg_extern(immutable, strict, parallel_safe)]
fn try_split_sourcedid(sourcedid: &str) -> Option<pgrx::composite_type!('static, "sourcedid")> {
    if sourcedid.len() > MAX_SOURCEDID_BYTES {
        return None;
    }
    split(sourcedid).ok().map(to_row)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const REAL: &str = "course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52";

    #[pg_test]
    fn splits_a_real_sourcedid_into_its_six_parts() {
        let row = Spi::get_one_with_args::<String>(
            "SELECT s::text FROM lms_etl.split_sourcedid($1) s",
            &[REAL.into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            row,
            "(course-v1:SkillFactory+DST-3.0+28FEB2021,SkillFactory,DST-3.0,28FEB2021,\
             ca3ecf8e5f284c329eb7bd529e1a9f7e,3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52)"
        );
        let block = Spi::get_one_with_args::<String>(
            "SELECT (lms_etl.split_sourcedid($1)).block_id",
            &[REAL.into()],
        )
        .unwrap();
        assert_eq!(block.as_deref(), Some("ca3ecf8e5f284c329eb7bd529e1a9f7e"));
    }

    #[pg_test]
    fn malformed_input_raises_22p02_naming_the_byte() {
        let (state, message) = Spi::get_two_with_args::<String, String>(
            "SELECT state, message FROM tests.capture_error('SELECT lms_etl.split_sourcedid($1)', $1)",
            &["course-v1:A+B+C:lms-ca3e:0".into()],
        )
        .unwrap();
        assert_eq!(state.as_deref(), Some("22P02"));
        assert_eq!(
            message.as_deref(),
            Some("invalid lis_result_sourcedid: at byte 24: a block id of 32 hex digits")
        );
    }

    #[pg_test]
    fn try_split_is_null_for_malformed_and_null_input() {
        let nulls = Spi::get_one::<i64>(
            "SELECT count(*) FROM (VALUES ('x'), (NULL), ('course-v1:A+B+C'), (repeat('a', 5000))) v(t)
              WHERE lms_etl.try_split_sourcedid(t) IS NULL",
        )
        .unwrap();
        assert_eq!(nulls, Some(4));
    }

    #[pg_test]
    fn is_immutable_strict_and_parallel_safe() {
        let flags = Spi::get_one::<String>(
            "SELECT string_agg(p.proname || ':' || p.provolatile::text || p.proisstrict::text || p.proparallel::text, ',' ORDER BY p.proname)
               FROM pg_proc p WHERE p.proname IN ('split_sourcedid', 'try_split_sourcedid')
                AND p.pronamespace = 'lms_etl'::regnamespace",
        )
        .unwrap();
        assert_eq!(
            flags.as_deref(),
            Some("split_sourcedid:itrues,try_split_sourcedid:itrues")
        );
    }
}
