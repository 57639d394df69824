//! `report::sheets::push_days` against the Sheets emulator: exact cells after each push,
//! the grid, rows inserted in date order beside users' notes, retries, tab names and the chart.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::UTC;
use lms_etl_loader::config::SheetsConfig;
use lms_etl_loader::report::sheets::{push_days, spreadsheet_url, ChartChange, SheetsError, SCOPE};
use lms_etl_loader::report::DailyStats;
use lms_etl_tests::sheets_emulator::{fixture_key, SheetsEmulator};
use serde_json::{json, Value};

const SPREADSHEET: &str = "1TestSpreadsheetId_abc-XYZ";
const TAB: &str = "daily_stats";
const CHART_TAB: &str = "daily_stats chart";

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
        chart_sheet: Some(format!("{tab} chart")),
        problems_sheet: None,
        key_file: emulator.write_key_file(dir.path()),
        api_root: emulator.api_root(),
        // Small, so the tests of failures stay fast; the retry tests set their own.
        max_retries: 2,
        retry_budget: Duration::from_secs(2),
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
        submits: 0,
        submit_success_rate: None,
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

    assert_eq!((outcome.days_written, outcome.rows_inserted), (2, 2));
    assert_eq!(outcome.chart, ChartChange::Created);
    assert_eq!(
        outcome.url,
        format!("https://docs.google.com/spreadsheets/d/{SPREADSHEET}")
    );
    assert_eq!(outcome.url, spreadsheet_url(&f.cfg));
    assert_eq!(f.emulator.tab_titles(), ["Sheet1", TAB, CHART_TAB]);
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

    assert_eq!((outcome.days_written, outcome.rows_inserted), (2, 0));
    assert_eq!(outcome.chart, ChartChange::Unchanged);
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
        "the tabs and chart are created once, nothing else changes structure: {:?}",
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

    assert_eq!((outcome.days_written, outcome.rows_inserted), (1, 1));
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

/// `day` as its six cells, then `note` in column G.
fn row_with_note(d: &str, attempts: i64, note: &str) -> Vec<Value> {
    let mut row = vec![
        json!(d),
        json!(attempts),
        json!(attempts),
        json!(1),
        json!(1.0),
        json!("2026-11-21 00:05:00 UTC"),
    ];
    row.push(json!(note));
    row
}

#[tokio::test]
async fn new_days_are_inserted_as_whole_rows_so_notes_stay_beside_their_day() {
    let f = fixture(TAB).await;
    // Notes in G, a blank row, a user's "Total" row below the days.
    f.emulator.set_cells(
        TAB,
        vec![
            header(),
            row_with_note("2026-11-20", 1, "quiet day"),
            row_with_note("2026-11-22", 2, "exam"),
            vec![],
            vec![
                json!("Total"),
                json!("=SUM(B2:B3)"),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!("checked"),
            ],
        ],
    );

    let outcome = push_days(
        &f.cfg,
        &[
            day("2026-11-21", 4, 1, 1, computed(1, 0)),
            day("2026-11-22", 9, 3, 2, computed(1, 0)),
            day("2026-11-23", 5, 5, 5, computed(1, 0)),
        ],
        UTC,
    )
    .await
    .unwrap();

    assert_eq!((outcome.days_written, outcome.rows_inserted), (3, 2));
    let cells = f.emulator.cells(TAB);
    assert_eq!(
        cells[1],
        row_with_note("2026-11-20", 1, "quiet day"),
        "a day not pushed is not touched"
    );
    assert_eq!(
        cells[2][..6],
        day_cells("2026-11-21", 4, 1, 1, 0.25, "01:00")
    );
    assert_eq!(cells[2].len(), 6, "a new row has nothing in G");
    assert_eq!(
        cells[3][..6],
        day_cells("2026-11-22", 9, 3, 2, 0.3333, "01:00")
    );
    assert_eq!(cells[3][6], json!("exam"), "the note stays beside its day");
    assert_eq!(
        cells[4][..6],
        day_cells("2026-11-23", 5, 5, 5, 1.0, "01:00")
    );
    assert!(cells[5].is_empty(), "the blank row stays blank");
    assert_eq!(
        cells[6][0],
        json!("Total"),
        "a row without a date in A keeps its place below the days"
    );
    assert_eq!(cells[6][1], json!("=SUM(B2:B3)"));
    assert_eq!(cells[6][6], json!("checked"));
    assert_eq!(cells.len(), 7);

    // One structural call (the inserts) and one values call, writing A..F only.
    let calls = f.emulator.calls();
    assert_eq!(
        calls.len(),
        4,
        "get, column A, rows + chart, values: {calls:?}"
    );
    let writes: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("values.batchUpdate"))
        .collect();
    assert_eq!(
        writes,
        ["values.batchUpdate 'daily_stats'!A1:F1 'daily_stats'!A3:F5"],
        "{calls:?}"
    );
    let structure: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("spreadsheets.batchUpdate"))
        .collect();
    assert_eq!(structure.len(), 1, "{calls:?}");
    assert!(
        structure[0].contains("insertDimension daily_stats 3..4")
            && structure[0].contains("insertDimension daily_stats 2..3"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_header_sorted_away_from_row_1_gets_a_new_header_row_above() {
    let f = fixture(TAB).await;
    // Someone sorted the whole tab, header included: the header went below the day.
    f.emulator
        .set_cells(TAB, vec![row_with_note("2026-11-20", 1, "n"), header()]);

    push_days(&f.cfg, &[day("2026-11-21", 4, 1, 1, computed(1, 0))], UTC)
        .await
        .unwrap();

    let cells = f.emulator.cells(TAB);
    assert_eq!(cells[0], header());
    assert_eq!(cells[1], row_with_note("2026-11-20", 1, "n"));
    assert_eq!(cells[2], day_cells("2026-11-21", 4, 1, 1, 0.25, "01:00"));
    assert_eq!(
        cells[3],
        header(),
        "the old header is a row without a date: kept"
    );
    assert_eq!(cells.len(), 4);
}

#[tokio::test]
async fn every_row_of_a_duplicated_day_is_updated_and_none_is_removed() {
    let f = fixture(TAB).await;
    f.emulator.set_cells(
        TAB,
        vec![
            header(),
            row_with_note("2026-11-24", 1, "first copy"),
            row_with_note("2026-11-24", 2, "second copy"),
        ],
    );

    push_days(&f.cfg, &[day("2026-11-24", 10, 5, 4, computed(0, 5))], UTC)
        .await
        .unwrap();

    let cells = f.emulator.cells(TAB);
    assert_eq!(cells.len(), 3);
    for (row, note) in [(1, "first copy"), (2, "second copy")] {
        assert_eq!(
            cells[row][..6],
            day_cells("2026-11-24", 10, 5, 4, 0.5, "00:05")
        );
        assert_eq!(cells[row][6], json!(note));
    }
}

fn day_cells(d: &str, attempts: i64, ok: i64, users: i64, rate: f64, at: &str) -> Vec<Value> {
    vec![
        json!(d),
        json!(attempts),
        json!(ok),
        json!(users),
        json!(rate),
        json!(format!("2026-11-25 {at}:00 UTC")),
    ]
}

#[tokio::test]
async fn a_tab_whose_grid_is_full_grows_and_a_first_push_larger_than_1000_rows_fits() {
    let f = fixture(TAB).await;
    // A user deleted the blank rows: the grid ends right below the last day.
    f.emulator
        .set_cells(TAB, vec![header(), row_with_note("2026-11-20", 1, "n")]);
    f.emulator.set_grid(TAB, 2, 7);

    push_days(
        &f.cfg,
        &[
            day("2026-11-21", 2, 1, 1, computed(0, 5)),
            day("2026-11-22", 2, 1, 1, computed(0, 5)),
        ],
        UTC,
    )
    .await
    .expect("the grid grows instead of 'exceeds grid limits'");
    assert_eq!(f.emulator.grid(TAB), Some((4, 7)));
    let dates: Vec<_> = f.emulator.cells(TAB).iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        dates,
        [
            json!("date (UTC)"),
            json!("2026-11-20"),
            json!("2026-11-21"),
            json!("2026-11-22")
        ]
    );

    // A back-fill of 1500 days into a new tab of Google's default 1000 rows.
    let g = fixture("backfill").await;
    let start: chrono::NaiveDate = "2022-01-01".parse().unwrap();
    let many: Vec<DailyStats> = (0..1500)
        .map(|i| DailyStats {
            day: start + chrono::Duration::days(i),
            attempts: i,
            successful_attempts: 0,
            unique_users: 1,
            computed_at: computed(0, 5),
            submits: 0,
            submit_success_rate: None,
        })
        .collect();
    let outcome = push_days(&g.cfg, &many, UTC).await.unwrap();
    assert_eq!(outcome.rows_inserted, 1500);
    let cells = g.emulator.cells("backfill");
    assert_eq!(cells.len(), 1501);
    assert_eq!(cells[1500][0], json!("2026-02-08"));
    assert_eq!(cells[1500][1], json!(1499));
    let chart = &g.emulator.charts("backfill chart")[0];
    assert_eq!(
        chart["spec"]["basicChart"]["domains"][0]["domain"]["sourceRange"]["sources"][0]
            ["endRowIndex"],
        1501
    );
}

#[tokio::test]
async fn a_tab_differing_only_in_case_is_the_configured_tab() {
    let f = fixture(TAB).await;
    f.emulator.set_cells(
        "Daily_Stats",
        vec![header(), row_with_note("2026-11-20", 1, "n")],
    );
    f.emulator.set_cells("DAILY_STATS Chart", vec![]);

    push_days(&f.cfg, &[day("2026-11-21", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap();

    assert_eq!(
        f.emulator.tab_titles(),
        ["Sheet1", "Daily_Stats", "DAILY_STATS Chart"]
    );
    assert_eq!(f.emulator.cells("Daily_Stats").len(), 3);
    assert_eq!(f.emulator.charts("DAILY_STATS Chart").len(), 1);
    assert!(
        f.emulator.calls().iter().all(|c| !c.contains("addSheet")),
        "{:?}",
        f.emulator.calls()
    );
}

#[tokio::test]
async fn three_runs_keep_one_chart_tab_with_one_chart_over_all_day_rows() {
    let f = fixture(TAB).await;
    let mut changes = Vec::new();
    for (i, d) in ["2026-11-22", "2026-11-23", "2026-11-20"]
        .iter()
        .enumerate()
    {
        let outcome = push_days(&f.cfg, &[day(d, 3, 2, 1, computed(0, 5))], UTC)
            .await
            .unwrap();
        changes.push(outcome.chart);
        assert_eq!(f.emulator.cells(TAB).len(), i + 2);
    }
    let again = push_days(&f.cfg, &[day("2026-11-23", 4, 2, 1, computed(0, 5))], UTC)
        .await
        .unwrap();
    changes.push(again.chart);

    assert_eq!(
        changes,
        [
            ChartChange::Created,
            ChartChange::Updated,
            ChartChange::Updated,
            ChartChange::Unchanged
        ]
    );
    let titles = f.emulator.tab_titles();
    assert_eq!(
        titles.iter().filter(|t| t.as_str() == CHART_TAB).count(),
        1,
        "{titles:?}"
    );
    assert_eq!(titles.len(), 3, "{titles:?}");
    let charts = f.emulator.charts(CHART_TAB);
    assert_eq!(charts.len(), 1);
    assert!(f.emulator.charts(TAB).is_empty());
    let spec = &charts[0]["spec"]["basicChart"];
    assert_eq!(spec["chartType"], "LINE");
    let data_tab_id = spec["domains"][0]["domain"]["sourceRange"]["sources"][0]["sheetId"].clone();
    let ranges: Vec<&Value> = std::iter::once(&spec["domains"][0]["domain"])
        .chain(
            spec["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| &s["series"]),
        )
        .map(|d| &d["sourceRange"]["sources"][0])
        .collect();
    for range in &ranges {
        assert_eq!(range["sheetId"], data_tab_id);
        assert_eq!(range["startRowIndex"], 0, "from the header");
        assert_eq!(
            range["endRowIndex"], 4,
            "through the last of three day rows"
        );
    }
    // Domain A (dates), attempts B on the left axis, success_rate E on the right axis.
    let columns: Vec<_> = ranges
        .iter()
        .map(|r| r["startColumnIndex"].clone())
        .collect();
    assert_eq!(columns, [json!(0), json!(1), json!(4)]);
    assert_eq!(spec["series"][0]["targetAxis"], "LEFT_AXIS");
    assert_eq!(spec["series"][1]["targetAxis"], "RIGHT_AXIS");
}

#[tokio::test]
async fn without_a_chart_tab_configured_no_chart_is_made() {
    let mut f = fixture(TAB).await;
    f.cfg.chart_sheet = None;

    let outcome = push_days(&f.cfg, &[day("2026-11-21", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap();

    assert_eq!(outcome.chart, ChartChange::Off);
    assert_eq!(f.emulator.tab_titles(), ["Sheet1", TAB]);
}

#[tokio::test]
async fn a_429_twice_is_retried_after_retry_after_and_then_succeeds() {
    let mut f = fixture(TAB).await;
    f.cfg.retry_budget = Duration::from_secs(10);
    f.emulator.fail_next(429, 2, Some(1));
    let started = Instant::now();

    push_days(&f.cfg, &[day("2026-11-21", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .expect("the third attempt goes through");

    assert_eq!(f.emulator.failures_served(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 honoured twice"
    );
    assert_eq!(f.emulator.cells(TAB).len(), 2);
}

#[tokio::test]
async fn a_503_that_never_ends_fails_within_the_retry_budget() {
    let mut f = fixture(TAB).await;
    f.cfg.max_retries = 10;
    f.cfg.retry_budget = Duration::from_secs(2);
    f.emulator.set_outage(true);
    let started = Instant::now();

    let err = push_days(&f.cfg, &[day("2026-11-21", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap_err();

    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let SheetsError::Api {
        status: 503,
        retries,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(
        (1..10).contains(&retries),
        "backed off, then the budget ended it: {retries}"
    );
    assert_eq!(f.emulator.failures_served(), retries as usize + 1);
    assert!(
        err.to_string().contains(&format!("after {retries} retr")),
        "{err}"
    );
}

#[tokio::test]
async fn a_4xx_other_than_429_fails_at_once() {
    let f = fixture(TAB).await;
    f.emulator.fail_next(403, 1, None);

    let err = push_days(&f.cfg, &[day("2026-11-21", 2, 1, 1, computed(0, 5))], UTC)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            SheetsError::Api {
                status: 403,
                retries: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PERMISSION_DENIED"), "{err}");
    assert_eq!(f.emulator.failures_served(), 1);
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
