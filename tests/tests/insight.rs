//! Insight end to end: `lms-etl health` as a Nagios plugin against a database arranged by
//! the superuser, `status`'s checks, and a run's mail (checks, hardest problems) and
//! problems tab in the Sheets emulator.

use lms_etl_tests::fixture_api::{record, FixtureApi, Served};
use lms_etl_tests::harness::{describe, Etl, TestDb};
use lms_etl_tests::sheets_emulator::SheetsEmulator;
use lms_etl_tests::smtp_server::Mail;
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(db: &TestDb, sql: &str) -> String {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// Yesterday in the report zone (UTC by default), as health() counts days.
const YESTERDAY: &str = "((now() AT TIME ZONE 'UTC')::date - 1)";

#[test]
fn health_exits_0_1_2_3_as_a_nagios_plugin_by_the_worst_check() {
    let db = TestDb::new();
    // The loader's login, as cron or the monitor runs it; no API is contacted.
    let etl = Etl::new(&db, "http://127.0.0.1:9");

    // Nothing loaded, no run: every check unknown.
    let out = etl.run(&["health"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stdout(&out)
            .starts_with("LMS_ETL UNKNOWN - freshness: newest attempt: no attempt loaded yet; "),
        "{}",
        stdout(&out)
    );

    // Fresh data, a successful run, yesterday's volume as usual, nothing rejected.
    db.client()
        .batch_execute(&format!(
            "INSERT INTO lms_etl.attempts (user_id, attempt_type, created_at)
                  VALUES ('u1', 'run', now() - interval '1 hour');
             INSERT INTO lms_etl.runs (started_at, finished_at, window_start, window_end, status, fetched)
                  VALUES ({YESTERDAY}::timestamp AT TIME ZONE 'UTC' + interval '12 hours', now() - interval '1 hour',
                          now() - interval '2 days', now() - interval '1 day', 'succeeded', 100);
             INSERT INTO lms_etl.daily_stats (day, attempts, successful_attempts, unique_users)
                  SELECT {YESTERDAY} - w * 7, 100, 50, 10 FROM generate_series(0, 4) AS w;"
        ))
        .unwrap();
    let out = etl.run(&["health"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let ok = stdout(&out);
    assert!(ok.starts_with("LMS_ETL OK - 4 checks ok\n"), "{ok}");
    for check in [
        "freshness: newest attempt",
        "freshness: last successful run",
        "rejected share",
        "100 ± 25",
    ] {
        assert!(ok.contains(check), "{check} in the table:\n{ok}");
    }

    // Yesterday far below its usual weekday: WARNING.
    db.client()
        .batch_execute(&format!(
            "UPDATE lms_etl.daily_stats SET attempts = 10 WHERE day = {YESTERDAY}"
        ))
        .unwrap();
    let expected = text(
        &db,
        &format!(
            "SELECT format('LMS_ETL WARNING - volume %s: %s: 10 attempts, -90%% vs usual %s (median 100)',
                           d, d, trim(to_char(d, 'Day')))
               FROM (SELECT {YESTERDAY} AS d) x"
        ),
    );
    let out = etl.run(&["health"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(stdout(&out).lines().next(), Some(expected.as_str()));

    // Data older than health.max_data_age: CRITICAL, and it outranks the warning.
    db.client()
        .batch_execute("UPDATE lms_etl.attempts SET created_at = now() - interval '3 days'")
        .unwrap();
    let out = etl.run(&["health"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with(
            "LMS_ETL CRITICAL - freshness: newest attempt: the newest attempt is 3 days old (UTC); volume "
        ),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).lines().next().unwrap().contains("; volume "));

    assert!(!etl.log_dir().exists(), "health writes no log file");

    // `status` shows the same checks after its runs and days.
    let status = etl.run(&["status"]);
    assert!(status.status.success(), "{}", describe(&status));
    let shown = stdout(&status);
    let checks_at = shown
        .find("Health checks (lms_etl.health(), worst first)")
        .expect("a checks table");
    assert!(
        shown.find("Daily statistics").unwrap() < checks_at,
        "{shown}"
    );
    assert!(shown[checks_at..].contains("fail"), "{shown}");
    assert!(
        shown[checks_at..].contains("the newest attempt is 3 days"),
        "{shown}"
    );
}

#[test]
fn health_is_unknown_without_a_configuration_and_critical_without_a_database() {
    let db = TestDb::new();
    let bad = Etl::new(&db, "http://127.0.0.1:9").with_env("LMS_ETL_WINDOW_CHUNK_MINUTES", "0");
    let out = bad.run(&["health"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with(
            "LMS_ETL UNKNOWN - configuration error: config key `window.chunk_minutes`"
        ),
        "{}",
        stdout(&out)
    );

    let gone = Etl::with_database_url("postgresql://nobody@127.0.0.1:1/none", "http://127.0.0.1:9");
    let out = gone.run(&["health"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("LMS_ETL CRITICAL - cannot read lms_etl.health(): "),
        "{}",
        stdout(&out)
    );
}

fn hex(n: u32) -> String {
    format!("{n:032x}")
}

/// Submits (and runs) of 2026-11-20 on three blocks: A is hard (3 of 12 submitters right
/// first time; 2 more learners only ran code), B easy (8 of 10), C hard but with 5 submitters.
fn day_records() -> Vec<Served> {
    let block = |prefix: &str| format!("{prefix:0<32}");
    let (a, b, c) = (block("a1a1a1a1"), block("b2b2b2b2"), block("c3c3c3c3"));
    let mut out = Vec::new();
    let at = |minute: u32, second: u32| format!("2026-11-20 10:{minute:02}:{second:02}.000000");
    for u in 0..12 {
        let user = hex(100 + u);
        let first_right = u < 3;
        out.push(record(
            &user,
            &at(u, 0),
            "submit",
            if first_right { "1" } else { "0" },
            &a,
        ));
        if (3..7).contains(&u) {
            out.push(record(&user, &at(u, 30), "submit", "1", &a));
        }
    }
    for u in 12..14 {
        out.push(record(&hex(100 + u), &at(u, 0), "run", "null", &a));
    }
    for u in 0..10 {
        let right = if u < 8 { "1" } else { "0" };
        out.push(record(&hex(200 + u), &at(20 + u, 0), "submit", right, &b));
    }
    for u in 0..5 {
        out.push(record(&hex(300 + u), &at(40 + u, 0), "submit", "0", &c));
    }
    out
}

/// The problems tab as daily_problem_stats says it must be for 2026-11-14..20.
fn expected_problem_cells(db: &TestDb) -> Vec<Vec<Value>> {
    let mut cells = vec![[
        "date (UTC)",
        "course_id",
        "block_id",
        "attempts",
        "runs",
        "submits",
        "successful_submits",
        "users",
        "users_solved",
        "users_first_submit_correct",
    ]
    .iter()
    .map(|h| json!(h))
    .collect::<Vec<_>>()];
    for r in db
        .client()
        .query(
            "SELECT to_char(day, 'YYYY-MM-DD'), coalesce(course_id, ''), coalesce(block_id, ''),
                    attempts, runs, submits, successful_submits, users, users_solved,
                    users_first_submit_correct
               FROM lms_etl.daily_problem_stats
              WHERE day BETWEEN '2026-11-14' AND '2026-11-20'
              ORDER BY day, course_id NULLS LAST, block_id NULLS LAST",
            &[],
        )
        .unwrap()
    {
        let mut row = vec![
            json!(r.get::<_, String>(0)),
            json!(r.get::<_, String>(1)),
            json!(r.get::<_, String>(2)),
        ];
        row.extend((3..10).map(|i| json!(r.get::<_, i64>(i))));
        cells.push(row);
    }
    cells
}

#[test]
fn a_run_mails_checks_and_hardest_problems_and_rewrites_the_problems_tab() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sheets = rt.block_on(SheetsEmulator::start("sheet-insight"));
    let keys = tempfile::tempdir().unwrap();
    // A problems tab someone made, titled in another case, with a grid too small for the
    // run's rows and a note right of J.
    let mut old = vec![vec![json!("old"); 10]; 3];
    old[1].extend([json!(""), json!("note in L")]);
    sheets.set_cells("Problems", old);
    sheets.set_grid("Problems", 3, 12);

    let api = FixtureApi::start(day_records());
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", "sheet-insight")
        .with_env(
            "LMS_ETL_SHEETS_KEY_FILE",
            sheets.write_key_file(keys.path()).to_str().unwrap(),
        )
        .with_env("LMS_ETL_SHEETS_API_ROOT", &sheets.api_root())
        .with_env("LMS_ETL_SHEETS_RETRY_BUDGET_SECS", "1");
    let window = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-21",
        "--now",
        "2026-11-21 01:00:00",
    ];
    let out = etl.run(&window);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // The mail: the subject names the failing freshness check (the data is days old by the
    // database's clock); the body lists every check and the hardest problems.
    let eml = std::fs::read_dir(etl.outbox())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .next()
        .expect("the run's mail");
    let mail = Mail::parse(&eml);
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject
            .starts_with("[lms-etl] OK 2026-11-20: 33 attempts loaded ✗ freshness: newest attempt"),
        "{subject}"
    );
    let body = mail.text().unwrap();
    let hardest = body
        .find("Hardest problems yesterday (2026-11-20)")
        .expect("the hardest problems section");
    let a_row = body
        .find("  SF+DST+1                a1a1a1a1…             12               3                25.0 %        16\n")
        .unwrap_or_else(|| panic!("block A: 3 of 12 first right:\n{body}"));
    let b_row = body
        .find("  SF+DST+1                b2b2b2b2…             10               8                80.0 %        10\n")
        .unwrap_or_else(|| panic!("block B: 8 of 10 first right:\n{body}"));
    assert!(hardest < a_row && a_row < b_row, "hardest first:\n{body}");
    assert!(
        !body.contains("c3c3c3c3…"),
        "C has 5 submitters, under 10:\n{body}"
    );
    let checks = body.find("\nChecks\n").expect("a Checks section");
    for check in [
        "fail    freshness: newest attempt: 2026-11-20 10:44:00",
        "ok      freshness: last successful run",
        "volume ",
        "rejected share",
        "sheets pending",
    ] {
        assert!(body[checks..].contains(check), "{check}:\n{body}");
    }
    assert!(mail.html().unwrap().contains("<h3>Checks</h3>"));

    // The problems tab: header and the day's three blocks, grid grown by one row, the note
    // right of J kept.
    let cells = sheets.cells("problems");
    let expected = expected_problem_cells(&db);
    assert_eq!(expected.len(), 4, "header + blocks A, B, C");
    assert_eq!(
        cells.iter().map(|r| r[..10].to_vec()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(cells[1].get(11), Some(&json!("note in L")));
    assert_eq!(sheets.grid("problems"), Some((4, 12)));
    assert_eq!(
        sheets
            .tab_titles()
            .iter()
            .filter(|t| t.eq_ignore_ascii_case("problems"))
            .count(),
        1
    );

    // Rows below the table (left from a longer week) are cleared on the next run.
    let mut longer = sheets.cells("problems");
    longer.extend(vec![vec![json!("stale"); 10]; 3]);
    sheets.set_cells("problems", longer);
    let again = etl.run(&window);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let cells = sheets.cells("problems");
    assert_eq!(cells.len(), 4, "stale rows cleared: {cells:?}");
    assert_eq!(
        cells.iter().map(|r| r[..10].to_vec()).collect::<Vec<_>>(),
        expected_problem_cells(&db)
    );
    drop(rt);
}
