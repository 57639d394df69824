//! Least privilege: `CREATE EXTENSION lms_etl` creates the roles `lms_etl_loader` and
//! `lms_etl_reader`. A login role holding only `lms_etl_loader` runs the whole job; it cannot
//! drop, alter or empty a table, nor change the zones. A reader reads and cannot write.

use lms_etl_tests::harness::{describe, DemoApi, Etl, Login, TestDb};
use lms_etl_tests::sheets_emulator::SheetsEmulator;
use postgres::error::SqlState;
use postgres::{Client, NoTls};

fn refused(client: &mut Client, sql: &str) -> Option<SqlState> {
    client
        .batch_execute(sql)
        .err()
        .and_then(|e| e.code().cloned())
}

#[test]
fn a_login_with_only_the_loader_role_runs_the_job_and_cannot_drop_or_alter() {
    let db = TestDb::new();
    let login = Login::new("lms_etl_loader");
    let api = DemoApi::start(&["--records-per-hour", "100", "--malformed", "0.02"]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sheets = rt.block_on(SheetsEmulator::start("roles"));
    let keys = tempfile::tempdir().unwrap();
    let etl = Etl::new(&db, &api.url)
        .with_env("DATABASE_URL", &login.url(&db))
        .with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5")
        .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", "roles")
        .with_env("LMS_ETL_SHEETS_API_ROOT", &sheets.api_root())
        .with_env(
            "LMS_ETL_SHEETS_KEY_FILE",
            sheets.write_key_file(keys.path()).to_str().unwrap(),
        );
    let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 12:00"];
    let out = etl.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    // The Sheets bookkeeping (sheets_pending, mark_sheets_pushed) works with these grants.
    assert_eq!(sheets.cells("daily_stats").len(), 2);
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.sheets_pending()"), 0);
    assert!(db.count("SELECT count(*) FROM lms_etl.attempts") > 500);
    assert!(db.count("SELECT count(*) FROM lms_etl.rejected_attempts") > 0);
    // A re-run, status, aggregate and reprocess work with the same privileges.
    assert!(etl.run(&window).status.success());
    for args in [
        &["status"][..],
        &["aggregate", "--from", "2026-11-20", "--to", "2026-11-20"],
        &["reprocess"],
    ] {
        let out = etl.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }

    let mut loader = Client::connect(&login.url(&db), NoTls).unwrap();
    for sql in [
        "DROP TABLE lms_etl.attempts",
        "ALTER TABLE lms_etl.attempts ADD COLUMN sneaky int",
        "TRUNCATE lms_etl.attempts",
        "DELETE FROM lms_etl.attempts",
        "UPDATE lms_etl.attempts SET is_correct = true",
        "SELECT lms_etl.set_setting('report_timezone', 'Europe/Moscow')",
        "DROP EXTENSION lms_etl",
    ] {
        assert_eq!(
            refused(&mut loader, sql),
            Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "the loader role may not: {sql}"
        );
    }
}

#[test]
fn a_reader_reads_and_cannot_write() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "100"]);
    let out = Etl::new(&db, &api.url).run(&[
        "run",
        "--start",
        "2026-11-20 10:00",
        "--end",
        "2026-11-20 13:00",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let login = Login::new("lms_etl_reader");
    let mut reader = Client::connect(&login.url(&db), NoTls).unwrap();
    for table in [
        "attempts",
        "daily_stats",
        "runs",
        "run_chunks",
        "rejected_attempts",
    ] {
        let n: i64 = reader
            .query_one(&format!("SELECT count(*) FROM lms_etl.{table}"), &[])
            .unwrap()
            .get(0);
        assert!(n >= 0);
    }
    assert!(
        reader
            .query_one("SELECT count(*) FROM lms_etl.attempts", &[])
            .unwrap()
            .get::<_, i64>(0)
            > 100
    );
    for sql in [
        "INSERT INTO lms_etl.daily_stats (day, attempts, successful_attempts, unique_users) VALUES ('2000-01-01', 1, 1, 1)",
        "DELETE FROM lms_etl.attempts",
        r#"SELECT * FROM lms_etl.ingest_chunk('[{"lti_user_id": "u", "attempt_type": "run", "is_correct": null, "created_at": "2026-11-20 10:00:00"}]')"#,
        "SELECT lms_etl.aggregate_daily('2026-11-20')",
        "UPDATE lms_etl.watermark SET loaded_until = now()",
    ] {
        assert_eq!(
            refused(&mut reader, sql),
            Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "the reader may not: {sql}"
        );
    }
}
