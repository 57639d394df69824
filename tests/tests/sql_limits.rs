//! The extension's functions under limits a server sets: `statement_timeout` stops a parse of
//! megabytes promptly (SQLSTATE 57014), and input over the documented caps is refused with
//! SQLSTATE 54000 before any parsing, never by running out of memory.

use std::time::Instant;

use lms_etl_tests::harness::TestDb;
use postgres::error::SqlState;

fn code_of(db: &TestDb, setup: &str, sql: &str) -> (Option<SqlState>, u128) {
    let mut client = db.client();
    client.batch_execute(setup).unwrap();
    let started = Instant::now();
    let result = client.query(sql, &[]);
    let ms = started.elapsed().as_millis();
    (result.err().and_then(|e| e.code().cloned()), ms)
}

#[test]
fn a_statement_timeout_cancels_a_long_parse() {
    let db = TestDb::new();
    let timeout = "SET statement_timeout = '50ms'";
    for (what, literal) in [
        ("a 10 MB string", "'''' || repeat('x', 10000000) || ''''"),
        ("a 10 MB list", "'[' || repeat('1, ', 3500000) || ']'"),
    ] {
        let (code, ms) = code_of(
            &db,
            timeout,
            &format!("SELECT length(lms_etl.pyrepr_to_json_text({literal}))"),
        );
        assert_eq!(code, Some(SqlState::QUERY_CANCELED), "{what}");
        // The figure BENCHMARKS.md quotes (the test asserts the SQLSTATE, not a time).
        eprintln!("{what}: cancelled after {ms} ms with a 50 ms statement_timeout");
    }
}

#[test]
fn input_over_the_caps_is_refused_before_parsing() {
    let db = TestDb::new();
    let cases = [
        // MAX_LITERAL_BYTES = 16 MiB
        "SELECT lms_etl.pyrepr_to_json_text('''' || repeat('x', 17 * 1024 * 1024) || '''')",
        // MAX_PASSBACK_BYTES = 1 MiB
        "SELECT lms_etl.parse_passback_params('{''lis_result_sourcedid'': ''' || repeat('x', 2 * 1024 * 1024) || '''}')",
        // MAX_CHUNK_BYTES = 64 MiB
        "SELECT * FROM lms_etl.ingest_chunk('[' || repeat(' ', 65 * 1024 * 1024) || ']')",
    ];
    for sql in cases {
        let (code, _) = code_of(&db, "SELECT 1", sql);
        assert_eq!(code, Some(SqlState::PROGRAM_LIMIT_EXCEEDED), "{sql}");
    }
    let message = db
        .client()
        .query(
            "SELECT lms_etl.parse_passback_params(repeat(' ', 2 * 1024 * 1024))",
            &[],
        )
        .unwrap_err();
    assert!(
        message
            .as_db_error()
            .unwrap()
            .message()
            .starts_with("passback_params of 2097152 bytes is over the 1 MiB cap"),
        "{message}"
    );
    // The try_ variant answers NULL, as for any input it cannot read.
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT lms_etl.try_parse_passback_params(repeat(' ', 2 * 1024 * 1024)) AS p) s WHERE p IS NULL"),
        1
    );
}
