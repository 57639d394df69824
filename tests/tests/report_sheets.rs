//! `report::sheets::push_days` against the Sheets emulator: exact cells after each push.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::UTC;
use lms_etl_loader::config::SheetsConfig;
use lms_etl_loader::report::sheets::{push_days, spreadsheet_url, SheetsError, SCOPE};
use lms_etl_loader::report::DailyStats;
use lms_etl_tests::sheets_emulator::{fixture_key, SheetsEmulator};
use serde_json::{json, Value};

const SPREADSHEET: &str = "1TestSpreadsheetId_abc-XYZ";
const TAB: &str = "daily_stats";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

struct Fixture {
    emulator: SheetsEmulator,
    cfg: SheetsConfig,
    _dir: tempfile::TempDir,
}

async fn fixture(tab: &str) -> Fixture {
    init();
    let emulator = SheetsEmulator::start(SPREADSHEET).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SheetsConfig {
        spreadsheet_id: SPREADSHEET.into(),
        sheet: tab.into(),
        key_file: emulator.write_key_file(dir.path()),
        api_root: emulator.api_root(),
    };
    Fixture {
        emulator,
        cfg,
        _dir: dir,
    }
}

fn computed(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
}

fn day(date: &str, attempts: i64, successful: i64, users: i64, at: DateTime<Utc>) -> DailyStats {
    DailyStats {
        day: date.parse().unwrap(),
        attempts,
        successful_attempts: successful,
        unique_users: users,
        computed_at: at,
    }
}

fn header() -> Vec<Value> {
    [
        "date (UTC)",
        "attempts",
        "successful_attempts",
        "unique_users",
        "success_rate",
        "updated_at",
    ]
    .map(Value::from)
    .to_vec()
}

#[tokio::test]
async fn first_push_creates_the_tab_with_a_header_and_rows_sorted_by_date() {
    let f = fixture(TAB).await;
    let days = [
        day("2026-11-24", 12_345, 10_000, 1_234, computed(0, 5)),
        day("2026-11-23", 3, 2, 2, computed(0, 5)),
    ];

    let outcome = push_days(&f.cfg, &days, UTC).await.expect("push");

    assert_eq!(outcome.rows_written, 2);
    assert_eq!(
        outcome.url,
        format!("https://docs.google.com/spreadsheets/d/{SPREADSHEET}")
    );
    assert_eq!(outcome.url, spreadsheet_url(&f.cfg));
    assert_eq!(f.emulator.tab_titles(), ["Sheet1", TAB]);
    assert_eq!(
        f.emulator.cells(TAB),
        vec![
            header(),
            vec![
                json!("2026-11-23"),
                json!(3),
                json!(2),
                json!(2),
                json!(0.6667),
                json!("2026-11-25 00:05:00 UTC")
            ],
            vec![
                json!("2026-11-24"),
                json!(12_345),
                json!(10_000),
                json!(1_234),
                json!(0.81),
                json!("2026-11-25 00:05:00 UTC")
            ],
        ]
    );
    // One token, asked for with the spreadsheets scope only, by the key's service account.
    let requests = f.emulator.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].scope, SCOPE);
    assert_eq!(
        requests[0].issuer,
        fixture_key()["client_email"].as_str().unwrap()
    );
}

#[tokio::test]
async fn pushing_the_same_days_again_leaves_the_cells_unchanged() {
    let f = fixture(TAB).await;
    let days = [
        day("2026-11-23", 3, 2, 2, computed(0, 5)),
        day("2026-11-24", 10, 5, 4, computed(0, 5)),
    ];
    push_days(&f.cfg, &days, UTC).await.unwrap();
    let first = f.emulator.cells(TAB);

    let outcome = push_days(&f.cfg, &days, UTC).await.unwrap();

    assert_eq!(outcome.rows_written, 2);
    assert_eq!(f.emulator.cells(TAB), first);
    assert_eq!(
        f.emulator.cells(TAB).len(),
        3,
        "header + two days, no duplicates"
    );
    let creations = f
        .emulator
        .calls()
        .iter()
        .filter(|c| c.starts_with("spreadsheets.batchUpdate"))
        .count();
    assert_eq!(
        creations,
        1,
        "the tab is created once: {:?}",
        f.emulator.calls()
    );
}

#[tokio::test]
async fn a_new_day_is_inserted_in_date_order() {
    let f = fixture(TAB).await;
    push_days(
        &f.cfg,
        &[
            day("2026-11-23", 3, 2, 2, computed(0, 5)),
            day("2026-11-25", 8, 8, 3, computed(0, 5)),
        ],
        UTC,
    )
    .await
    .unwrap();

    let outcome = push_days(&f.cfg, &[day("2026-11-24", 4, 1, 1, computed(1, 0))], UTC)
        .await
        .unwrap();

    assert_eq!(outcome.rows_written, 3);
    assert_eq!(
        f.emulator.cells(TAB),
        vec![
            header(),
            vec![
                json!("2026-11-23"),
                json!(3),
                json!(2),
                json!(2),
                json!(0.6667),
                json!("2026-11-25 00:05:00 UTC")
            ],
            vec![
                json!("2026-11-24"),
                json!(4),
                json!(1),
                json!(1),
                json!(0.25),
                json!("2026-11-25 01:00:00 UTC")
            ],
            vec![
                json!("2026-11-25"),
                json!(8),
                json!(8),
                json!(3),
                json!(1.0),
                json!("2026-11-25 00:05:00 UTC")
            ],
        ]
    );
}

#[tokio::test]
async fn an_existing_day_is_updated_in_place() {
    let f = fixture(TAB).await;
    push_days(
        &f.cfg,
        &[
            day("2026-11-23", 3, 2, 2, computed(0, 5)),
            day("2026-11-24", 10, 5, 4, computed(0, 5)),
        ],
        UTC,
    )
    .await
    .unwrap();

    // A later run re-aggregated 2026-11-24 after late records arrived.
    push_days(&f.cfg, &[day("2026-11-24", 12, 9, 5, computed(1, 0))], UTC)
        .await
        .unwrap();

    assert_eq!(
        f.emulator.cells(TAB),
        vec![
            header(),
            vec![
                json!("2026-11-23"),
                json!(3),
                json!(2),
                json!(2),
                json!(0.6667),
                json!("2026-11-25 00:05:00 UTC")
            ],
            vec![
                json!("2026-11-24"),
                json!(12),
                json!(9),
                json!(5),
                json!(0.75),
                json!("2026-11-25 01:00:00 UTC")
            ],
        ]
    );
}

#[tokio::test]
async fn rows_of_an_existing_tab_are_kept_and_stale_rows_below_are_cleared() {
    let f = fixture(TAB).await;
    // A tab written earlier: a day this push does not touch, a duplicate of one it does,
    // and a blank row someone left behind.
    f.emulator.set_cells(
        TAB,
        vec![
            header(),
            vec![
                json!("2026-11-20"),
                json!(1),
                json!(1),
                json!(1),
                json!(1.0),
                json!("2026-11-21 00:05:00 UTC"),
            ],
            vec![
                json!("2026-11-24"),
                json!(1),
                json!(0),
                json!(1),
                json!(0.0),
                json!("2026-11-24 12:00:00 UTC"),
            ],
            vec![],
            vec![
                json!("2026-11-24"),
                json!(2),
                json!(0),
                json!(1),
                json!(0.0),
                json!("2026-11-24 13:00:00 UTC"),
            ],
        ],
    );

    push_days(&f.cfg, &[day("2026-11-24", 10, 5, 4, computed(0, 5))], UTC)
        .await
        .unwrap();

    assert_eq!(
        f.emulator.cells(TAB),
        vec![
            header(),
            vec![
                json!("2026-11-20"),
                json!(1),
                json!(1),
                json!(1),
                json!(1.0),
                json!("2026-11-21 00:05:00 UTC")
            ],
            vec![
                json!("2026-11-24"),
                json!(10),
                json!(5),
                json!(4),
                json!(0.5),
                json!("2026-11-25 00:05:00 UTC")
            ],
        ]
    );
    assert!(
        !f.emulator
            .calls()
            .iter()
            .any(|c| c.starts_with("spreadsheets.batchUpdate")),
        "existing tab reused"
    );
}

#[tokio::test]
async fn a_tab_name_with_spaces_and_quotes_works() {
    let tab = "LMS stats 'daily' #1";
    let f = fixture(tab).await;

    push_days(&f.cfg, &[day("2026-11-24", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap();
    push_days(&f.cfg, &[day("2026-11-24", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap();

    assert_eq!(
        f.emulator.cells(tab),
        vec![
            header(),
            vec![
                json!("2026-11-24"),
                json!(2),
                json!(1),
                json!(1),
                json!(0.5),
                json!("2026-11-25 00:05:00 UTC")
            ]
        ]
    );
}

#[tokio::test]
async fn the_header_names_the_report_zone() {
    let f = fixture(TAB).await;

    push_days(
        &f.cfg,
        &[day("2026-11-24", 2, 1, 1, computed(0, 5))],
        chrono_tz::Europe::Moscow,
    )
    .await
    .unwrap();

    let cells = f.emulator.cells(TAB);
    assert_eq!(cells[0][0], json!("date (Europe/Moscow)"));
    assert_eq!(cells[0][1..], header()[1..]);
    assert_eq!(cells[1][0], json!("2026-11-24"));
}

#[tokio::test]
async fn a_tab_with_the_0_1_header_gets_the_zoned_header_and_keeps_its_days() {
    let f = fixture(TAB).await;
    let old_day = vec![
        json!("2026-11-20"),
        json!(1),
        json!(1),
        json!(1),
        json!(1.0),
        json!("2026-11-21 00:05:00 UTC"),
    ];
    let mut old_header = header();
    old_header[0] = json!("date");
    f.emulator.set_cells(TAB, vec![old_header, old_day.clone()]);

    push_days(&f.cfg, &[day("2026-11-24", 10, 5, 4, computed(0, 5))], UTC)
        .await
        .unwrap();

    assert_eq!(
        f.emulator.cells(TAB),
        vec![
            header(),
            old_day,
            vec![
                json!("2026-11-24"),
                json!(10),
                json!(5),
                json!(4),
                json!(0.5),
                json!("2026-11-25 00:05:00 UTC")
            ],
        ]
    );
}

fn assert_no_secret(text: &str, emulator: &SheetsEmulator) {
    let key = fixture_key();
    let private_key = key["private_key"].as_str().unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    for line in private_key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "private key material in: {text}");
    }
    for token in emulator.issued_tokens() {
        assert!(!text.contains(&token), "access token in: {text}");
    }
}

#[tokio::test]
async fn an_outage_is_an_error_naming_the_call_and_status_without_secrets() {
    let f = fixture(TAB).await;
    f.emulator.set_outage(true);

    let err = push_days(&f.cfg, &[day("2026-11-24", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap_err();

    assert!(
        matches!(err, SheetsError::Api { status: 503, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("spreadsheets.get") && text.contains(SPREADSHEET),
        "{text}"
    );
    assert!(
        text.contains("503") && text.contains("UNAVAILABLE"),
        "{text}"
    );
    assert_no_secret(&text, &f.emulator);
    assert_no_secret(&format!("{err:?}"), &f.emulator);
    assert!(f.emulator.cells(TAB).is_empty());

    // Once the service is back, the same push goes through.
    f.emulator.set_outage(false);
    push_days(&f.cfg, &[day("2026-11-24", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap();
    assert_eq!(f.emulator.cells(TAB).len(), 2);
}

#[tokio::test]
async fn a_rejected_grant_is_an_auth_error_without_secrets() {
    let f = fixture(TAB).await;
    f.emulator.set_reject_grants(true);

    let err = push_days(&f.cfg, &[day("2026-11-24", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap_err();

    assert!(matches!(err, SheetsError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("invalid_grant") && text.contains(&f.emulator.token_uri()),
        "{text}"
    );
    assert_no_secret(&text, &f.emulator);
    assert!(
        f.emulator.calls().is_empty(),
        "no Sheets call without a token"
    );
}

#[tokio::test]
async fn a_missing_key_file_is_an_error_naming_the_file() {
    let mut f = fixture(TAB).await;
    f.cfg.key_file = f._dir.path().join("no-such-key.json");

    let err = push_days(&f.cfg, &[], UTC).await.unwrap_err();

    assert!(matches!(err, SheetsError::KeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-key.json"), "{err}");
}

#[tokio::test]
async fn a_key_file_that_is_not_json_is_an_error_that_does_not_quote_it() {
    let mut f = fixture(TAB).await;
    let path = f._dir.path().join("broken.json");
    let private_key = fixture_key()["private_key"].as_str().unwrap().to_owned();
    std::fs::write(
        &path,
        format!("{{\"private_key\": {private_key:?}, \"client_email\": 5}}"),
    )
    .unwrap();
    f.cfg.key_file = path;

    let err = push_days(&f.cfg, &[], UTC).await.unwrap_err();

    assert!(matches!(err, SheetsError::KeyInvalid { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.json"), "{err}");
    assert_no_secret(&err.to_string(), &f.emulator);
}
