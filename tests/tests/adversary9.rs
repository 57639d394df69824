//! Findings of the adversary review of issue 9 (reports and operations), each kept as a test:
//! a forced Sheets push racing a run, a doctor that took a web page for the API, and health's
//! freshness fooled by an attempt dated in the future.

use std::io::{Read, Write};
use std::net::TcpListener;

use lms_etl_loader::load::{RUN_LOCK_KEY_SQL, RUN_LOCK_SEED};
use lms_etl_tests::harness::{describe, Etl, TestDb};
use lms_etl_tests::sheets_emulator::SheetsEmulator;

const SPREADSHEET: &str = "adversary9";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sheets-sync` while a run holds the lock would race that run's push: both see a day
/// missing and insert it (a doubled row), and the one writing older numbers last leaves them
/// in the sheet while the other has marked the newer version pushed. It must wait its turn.
#[test]
fn sheets_sync_refuses_while_a_run_holds_the_lock_and_pushes_once_it_is_free() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sheets = rt.block_on(SheetsEmulator::start(SPREADSHEET));
    let keys = tempfile::tempdir().unwrap();
    let key_file = sheets.write_key_file(keys.path());
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "INSERT INTO lms_etl.daily_stats (day, attempts, successful_attempts, unique_users)
                  VALUES ('2026-11-20', 100, 50, 10)",
        )
        .unwrap();
    let etl = Etl::new(&db, "http://127.0.0.1:9")
        .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", SPREADSHEET)
        .with_env("LMS_ETL_SHEETS_SHEET", "daily")
        .with_env("LMS_ETL_SHEETS_KEY_FILE", key_file.to_str().unwrap())
        .with_env("LMS_ETL_SHEETS_API_ROOT", &sheets.api_root());
    let sync = ["sheets-sync", "--from", "2026-11-20", "--to", "2026-11-20"];

    // A run in flight: its session holds the run lock of the harness's client, "demo".
    let mut run = db.client();
    run.execute(
        &format!("SELECT pg_advisory_lock({RUN_LOCK_KEY_SQL})"),
        &[&"demo", &RUN_LOCK_SEED],
    )
    .unwrap();
    let out = etl.run(&sync);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        etl.log_text()
            .contains("another lms-etl run holds the lock"),
        "{}",
        etl.log_text()
    );
    assert!(sheets.cells("daily").is_empty(), "nothing pushed");
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.sheets_pending()"),
        1,
        "nothing marked"
    );

    drop(run);
    let out = etl.run(&sync);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(sheets.cells("daily").len(), 2, "header and the day");
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.sheets_pending()"), 0);
}

/// An HTTP server that answers every request `200 text/html` with a login page, as a site's
/// catch-all or a proxy does for a URL that misses the API. Serves until the test ends.
fn web_page_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<!doctype html><html><body>Please sign in</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// Every run against such a URL fails (the extension refuses a body that is not a JSON
/// array), so the doctor must not pass it for "key accepted".
#[test]
fn doctor_fails_an_api_url_that_answers_200_with_a_web_page() {
    let db = TestDb::new();
    let etl = Etl::new(&db, &web_page_server());
    let out = etl.run(&["doctor"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let api_row = text
        .lines()
        .find(|l| l.contains(" API "))
        .unwrap_or_else(|| panic!("an API row in:\n{text}"));
    assert!(api_row.contains('✗'), "{text}");
    assert!(
        api_row.contains("answered 200, but not with a JSON array of attempts (Content-Type: text/html; charset=utf-8)"),
        "{text}"
    );
    assert!(api_row.contains("point api.url"), "{text}");
    assert!(
        text.ends_with("1 check failed\n"),
        "only the API fails:\n{text}"
    );
}

/// One attempt dated in the future (a source clock or zone gone wrong, a typo in a year; the
/// loader takes it, as it takes any well-formed record) keeps `freshness: newest attempt` ok
/// for as long as the date stays ahead, however old the real data grows: `max(created_at)`
/// alone cannot see that the feed stopped. So freshness ignores them, and a check warns.
#[test]
fn an_attempt_dated_in_the_future_does_not_keep_stale_data_fresh() {
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "INSERT INTO lms_etl.attempts (user_id, attempt_type, created_at)
                  VALUES ('u1', 'run', now() - interval '3 days'),
                         ('u2', 'run', now() + interval '5 years');",
        )
        .unwrap();
    let row = db
        .client()
        .query_one(
            "SELECT status, message FROM lms_etl.health() WHERE \"check\" = 'freshness: newest attempt'",
            &[],
        )
        .unwrap();
    let (status, message): (String, String) = (row.get(0), row.get(1));
    assert_eq!(
        status, "fail",
        "the newest attempt not in the future is 3 days old; health says: {message}"
    );
    let future: String = db
        .client()
        .query_one(
            "SELECT status || ' ' || value FROM lms_etl.health() WHERE \"check\" = 'attempts dated in the future'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(future, "warn 1");
}
