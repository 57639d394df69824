//! SQL functions over the Python-repr parser: `pyrepr_to_json_text` and the
//! `passback_params` composite (strict and `try_` flavours).

use lms_etl_parse::{json, parse_passback_params as parse, pyrepr, PassbackParams};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::composite;

/// 22P02 `invalid_text_representation`, the SQLSTATE of every malformed-literal error.
fn invalid_literal(what: &str, detail: impl std::fmt::Display) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        format!("invalid {what}: {detail}")
    );
}

/// Largest literal `pyrepr_to_json_text` reads: the parser needs up to ~48 bytes of memory
/// per input byte, so a cap keeps a huge value an error, not an out-of-memory.
pub const MAX_LITERAL_BYTES: usize = 16 << 20;
/// Largest `passback_params` the parse functions read (the real ones are ~300 bytes).
pub const MAX_PASSBACK_BYTES: usize = 1 << 20;

/// 54000 `program_limit_exceeded` for input over a documented cap.
pub fn over_cap(what: &str, len: usize, cap: usize) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!("{what} of {len} bytes is over the {} MiB cap", cap >> 20)
    );
}

/// Python literal (as `repr()` writes it) → JSON text (exact integer digits).
/// `pyrepr_to_jsonb` wraps it with a cast. Errors name the byte position.
#[pg_extern(immutable, strict, parallel_safe)]
fn pyrepr_to_json_text(literal: &str) -> String {
    if literal.len() > MAX_LITERAL_BYTES {
        over_cap("a Python literal", literal.len(), MAX_LITERAL_BYTES);
    }
    // A statement_timeout or a cancel stops a long parse within PROGRESS_EVERY bytes.
    let value = pyrepr::parse_with_progress(literal, &|| {
        pgrx::check_for_interrupts!();
    })
    .unwrap_or_else(|e| invalid_literal("Python literal", e));
    json::to_json(&value).unwrap_or_else(|e| invalid_literal("Python literal", e))
}

thread_local! {
    static PASSBACK_TYPE: composite::TypeCache = const { std::cell::Cell::new(None) };
}

// The macro must appear literally in each signature for pgrx's SQL generator.
fn to_row(p: PassbackParams<'_>) -> pgrx::composite_type!('static, "passback_params") {
    composite::text_row(
        composite::type_oid(&PASSBACK_TYPE, "lms_etl.passback_params"),
        [
            p.oauth_consumer_key.as_deref(),
            p.lis_result_sourcedid.as_deref(),
            p.lis_outcome_service_url.as_deref(),
        ],
    )
}

/// `passback_params` text → (oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url).
/// Missing keys are NULL, extra keys ignored; malformed input raises SQLSTATE 22P02.
#[pg_extern(immutable, strict, parallel_safe)]
fn parse_passback_params(
    passback_params: &str,
) -> pgrx::composite_type!('static, "passback_params") {
    if passback_params.len() > MAX_PASSBACK_BYTES {
        over_cap("passback_params", passback_params.len(), MAX_PASSBACK_BYTES);
    }
    to_row(
        parse_storable(passback_params).unwrap_or_else(|e| invalid_literal("passback_params", e)),
    )
}

/// Like `parse_passback_params`, but NULL for malformed input.
#[pg_extern(immutable, strict, parallel_safe)]
fn try_parse_passback_params(
    passback_params: &str,
) -> Option<pgrx::composite_type!('static, "passback_params")> {
    if passback_params.len() > MAX_PASSBACK_BYTES {
        return None;
    }
    parse_storable(passback_params).ok().map(to_row)
}

/// Parses, and refuses values PostgreSQL text cannot hold (a NUL would cut them short).
fn parse_storable(input: &str) -> Result<PassbackParams<'_>, String> {
    let p = parse(input).map_err(|e| e.to_string())?;
    if p.key_with_nul().is_some() {
        return Err(
            "a value contains a NUL character (\\x00), which PostgreSQL text cannot store".into(),
        );
    }
    Ok(p)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn jsonb(literal: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT lms_etl.pyrepr_to_jsonb($1)::text",
            &[literal.into()],
        )
        .expect("query runs")
        .expect("not null")
    }

    fn fields(literal: &str) -> (Option<String>, Option<String>, Option<String>) {
        Spi::get_three_with_args(
            "SELECT (p).oauth_consumer_key, (p).lis_result_sourcedid, (p).lis_outcome_service_url
               FROM (SELECT lms_etl.parse_passback_params($1) AS p) s",
            &[literal.into()],
        )
        .expect("query runs")
    }

    /// The SQLSTATE and message of the error `sql` raises, caught in a subtransaction.
    fn error_of(sql: &str, arg: &str) -> (String, String) {
        Spi::get_two_with_args::<String, String>(
            "SELECT state, message FROM tests.capture_error($1, $2)",
            &[sql.into(), arg.into()],
        )
        .map(|(s, m)| (s.unwrap_or_default(), m.unwrap_or_default()))
        .expect("capture_error runs")
    }

    extension_sql!(
        r#"
        CREATE FUNCTION tests.capture_error(sql text, arg text, OUT state text, OUT message text)
        LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE sql USING arg;
            state := 'none';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        END $$;
        "#,
        name = "capture_error",
        requires = ["aggregate"]
    );

    const SEED: &str = "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52', 'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/course-v1:SkillFactory+DST-3.0+28FEB2021/xblock/block-v1:SkillFactory+DST-3.0+28FEB2021+type@lti+block@ca3ecf8e5f284c329eb7bd529e1a9f7e/handler_noauth/grade_handler'}";

    #[pg_test]
    fn parses_the_seed_example() {
        let (key, sourcedid, url) = fields(SEED);
        assert_eq!(key.as_deref(), Some(""));
        assert!(sourcedid
            .unwrap()
            .ends_with(":3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52"));
        assert!(url.unwrap().ends_with("/handler_noauth/grade_handler"));
    }

    #[pg_test]
    fn handles_apostrophes_and_both_quote_kinds() {
        let (key, sourcedid, url) = fields(
            r#"{"oauth_consumer_key": "it's", 'lis_result_sourcedid': 'say \'hi\'', 'lis_outcome_service_url': "a\"b"}"#,
        );
        assert_eq!(key.as_deref(), Some("it's"));
        assert_eq!(sourcedid.as_deref(), Some("say 'hi'"));
        assert_eq!(url.as_deref(), Some("a\"b"));
    }

    #[pg_test]
    fn decodes_every_escape_and_unicode() {
        assert_eq!(
            jsonb(r#"'\\ \' \" \n \r \t \x41 \u00e9 \U0001F600 ü'"#),
            r#""\\ ' \" \n \r \t A é 😀 ü""#
        );
    }

    #[pg_test]
    fn converts_scalars_numbers_and_nesting() {
        assert_eq!(
            jsonb("{'a': None, 'b': True, 'c': False}"),
            r#"{"a": null, "b": true, "c": false}"#
        );
        assert_eq!(
            jsonb("[1, -2, 3.5, 1e-05, 123456789012345678901234567890]"),
            "[1, -2, 3.5, 0.00001, 123456789012345678901234567890]"
        );
        assert_eq!(
            jsonb("[inf, -inf, nan]"),
            r#"["Infinity", "-Infinity", "NaN"]"#
        );
        assert_eq!(
            jsonb("{'x': [(1, 2,), {'y': ['z',]}],}"),
            r#"{"x": [[1, 2], {"y": ["z"]}]}"#
        );
    }

    #[pg_test]
    fn missing_keys_are_null_and_extra_keys_ignored() {
        assert_eq!(
            fields("{'lis_result_sourcedid': 's', 'other': [1, 2]}"),
            (None, Some("s".into()), None)
        );
        assert_eq!(fields("{}"), (None, None, None));
    }

    #[pg_test]
    fn malformed_input_is_22p02_with_the_byte_position() {
        let sql = "SELECT lms_etl.parse_passback_params($1)";
        assert_eq!(
            error_of(sql, "{'oauth_consumer_key' 1}"),
            (
                "22P02".into(),
                "invalid passback_params: at byte 22: expected ':', ',' or '}', found '1'".into()
            )
        );
        assert_eq!(
            error_of(sql, "").1,
            "invalid passback_params: at byte 0: expected a value, found end of input"
        );
        assert_eq!(
            error_of(sql, "{'a': 'b").1,
            "invalid passback_params: at byte 6: unterminated string literal"
        );
        assert_eq!(
            error_of(sql, "[1]").1,
            "invalid passback_params: at byte 0: expected a dict, found list"
        );
    }

    #[pg_test]
    fn a_nul_character_is_refused_not_truncated() {
        let nul = r"{'lis_result_sourcedid': 'a\x00b'}";
        let (state, message) = error_of("SELECT lms_etl.parse_passback_params($1)", nul);
        assert_eq!(state, "22P02");
        assert_eq!(
            message,
            r"invalid passback_params: a value contains a NUL character (\x00), which PostgreSQL text cannot store"
        );
        let null = Spi::get_one_with_args::<bool>(
            "SELECT lms_etl.try_parse_passback_params($1) IS NULL",
            &[nul.into()],
        );
        assert_eq!(null, Ok(Some(true)));
    }

    #[pg_test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        let (state, message) = error_of("SELECT lms_etl.pyrepr_to_jsonb($1)", &deep);
        assert_eq!(state, "22P02");
        assert_eq!(
            message,
            "invalid Python literal: at byte 256: nesting deeper than 256 levels"
        );
    }

    #[pg_test]
    fn code_is_refused_not_evaluated() {
        let (state, message) = error_of(
            "SELECT lms_etl.pyrepr_to_jsonb($1)",
            "__import__('os').system('touch /tmp/pwned')",
        );
        assert_eq!(state, "22P02");
        assert!(
            message.contains("`__import__` is not a literal"),
            "{message}"
        );
        assert!(!std::path::Path::new("/tmp/pwned").exists());
    }

    #[pg_test]
    fn try_variant_returns_null_for_malformed_input() {
        let row = Spi::get_one_with_args::<bool>(
            "SELECT lms_etl.try_parse_passback_params($1) IS NULL",
            &["{'oauth_consumer_key': ".into()],
        );
        assert_eq!(row, Ok(Some(true)));
        let ok = Spi::get_one_with_args::<String>(
            "SELECT (lms_etl.try_parse_passback_params($1)).lis_result_sourcedid",
            &[SEED.into()],
        );
        assert!(ok.unwrap().unwrap().starts_with("course-v1:"));
        assert_eq!(
            Spi::get_one::<bool>("SELECT lms_etl.try_parse_passback_params(NULL) IS NULL"),
            Ok(Some(true))
        );
    }
}
