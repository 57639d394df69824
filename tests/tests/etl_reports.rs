//! `lms-etl run` with its outputs: Google Sheets through the emulator and e-mail through
//! a real SMTP conversation, both started by the test; the binary runs as cron would.

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};
use lms_etl_tests::sheets_emulator::SheetsEmulator;
use lms_etl_tests::smtp_server::{SmtpAuth, SmtpOptions, SmtpServer};
use serde_json::{json, Value};

const SPREADSHEET: &str = "sheet-e2e";

struct Outputs {
    rt: tokio::runtime::Runtime,
    sheets: SheetsEmulator,
    smtp: SmtpServer,
    keys: tempfile::TempDir,
}

impl Outputs {
    fn start(smtp: SmtpOptions) -> Outputs {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sheets = rt.block_on(SheetsEmulator::start(SPREADSHEET));
        let smtp = rt.block_on(SmtpServer::start(smtp));
        Outputs {
            rt,
            sheets,
            smtp,
            keys: tempfile::tempdir().unwrap(),
        }
    }

    fn configure(&self, etl: Etl) -> Etl {
        let key_file = self.sheets.write_key_file(self.keys.path());
        etl.with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", SPREADSHEET)
            .with_env("LMS_ETL_SHEETS_SHEET", "daily")
            .with_env("LMS_ETL_SHEETS_KEY_FILE", key_file.to_str().unwrap())
            .with_env("LMS_ETL_SHEETS_API_ROOT", &self.sheets.api_root())
            // A failing emulator fails a push in about a second, not the default 30 s budget.
            .with_env("LMS_ETL_SHEETS_RETRY_BUDGET_SECS", "1")
            .with_env("LMS_ETL_EMAIL_SMTP_HOST", "127.0.0.1")
            .with_env("LMS_ETL_EMAIL_SMTP_PORT", &self.smtp.port().to_string())
            .with_env("LMS_ETL_EMAIL_SMTP_TLS", "none")
            .with_env("LMS_ETL_EMAIL_FROM", "lms-etl <etl@example.org>")
            .with_env("LMS_ETL_EMAIL_TO", "team@example.org, boss@example.org")
    }
}

/// What the sheet must hold for the days in `daily_stats`, computed from the database.
fn expected_cells(db: &TestDb) -> Vec<Vec<Value>> {
    let mut cells = vec![[
        "date (UTC)",
        "attempts",
        "successful_attempts",
        "unique_users",
        "success_rate",
        "updated_at",
    ]
    .iter()
    .map(|h| json!(h))
    .collect::<Vec<_>>()];
    for r in db
        .client()
        .query(
            "SELECT to_char(day, 'YYYY-MM-DD'), attempts, successful_attempts, unique_users,
                    to_char(computed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
               FROM lms_etl.daily_stats ORDER BY day",
            &[],
        )
        .unwrap()
    {
        let (a, s): (i64, i64) = (r.get(1), r.get(2));
        let rate = if a == 0 {
            0.0
        } else {
            (s as f64 / a as f64 * 10_000.0).round() / 10_000.0
        };
        cells.push(vec![
            json!(r.get::<_, String>(0)),
            json!(a),
            json!(s),
            json!(r.get::<_, i64>(3)),
            json!(rate),
            json!(r.get::<_, String>(4)),
        ]);
    }
    cells
}

#[test]
fn runs_push_touched_days_to_the_sheet_in_place_and_mail_each_outcome() {
    let out = Outputs::start(SmtpOptions::default());
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "100"]);
    let etl = out.configure(Etl::new(&db, &api.url));

    let first = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert!(first.status.success(), "{}", describe(&first));
    let cells = out.sheets.cells("daily");
    assert_eq!(cells, expected_cells(&db));
    assert_eq!(cells.len(), 3, "header + 2 days");
    assert_eq!(
        (cells[1][0].as_str(), cells[2][0].as_str()),
        (Some("2026-11-20"), Some("2026-11-21"))
    );

    let again = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        out.sheets.cells("daily"),
        expected_cells(&db),
        "re-run updates in place, appends nothing"
    );
    assert_eq!(out.sheets.cells("daily").len(), 3);

    let more = etl.run(&["run", "--start", "2026-11-22", "--end", "2026-11-23"]);
    assert!(more.status.success(), "{}", describe(&more));
    let cells = out.sheets.cells("daily");
    assert_eq!(cells, expected_cells(&db));
    assert_eq!(
        cells
            .iter()
            .skip(1)
            .map(|r| r[0].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["2026-11-20", "2026-11-21", "2026-11-22"]
    );

    let mails = out.smtp.messages();
    assert_eq!(mails.len(), 3, "one e-mail per run");
    let first_mail = mails[0].mail();
    let inserted = db.count("SELECT inserted FROM lms_etl.runs WHERE run_id = 1");
    let subject = first_mail.header("Subject").unwrap();
    assert!(
        subject.starts_with("[lms-etl] OK 2026-11-21: "),
        "{subject}"
    );
    let digits: String = subject
        .chars()
        .filter(char::is_ascii_digit)
        .skip(8)
        .collect();
    assert_eq!(
        digits,
        inserted.to_string(),
        "headline count is the inserted attempts: {subject}"
    );
    assert_eq!(mails[0].recipients.len(), 2);
    let text = first_mail.text().unwrap();
    assert!(
        text.contains("docs.google.com/spreadsheets/d/sheet-e2e"),
        "{text}"
    );
    assert!(text.contains(".log"), "log path in the mail: {text}");
    assert!(first_mail.html().unwrap().contains("<table"));
    assert!(!String::from_utf8_lossy(&mails[0].data).contains("client_key=demo"));
    assert!(mails[1]
        .mail()
        .header("Subject")
        .unwrap()
        .contains(": 0 attempts loaded"));
    drop(out.rt);
}

#[test]
fn a_sheets_outage_keeps_the_data_marks_the_run_partial_and_says_so() {
    let out = Outputs::start(SmtpOptions::default());
    out.sheets.set_outage(true);
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = out.configure(Etl::new(&db, &api.url));
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert_eq!(run.status.code(), Some(4), "{}", describe(&run));
    let status: String = db
        .client()
        .query_one("SELECT status FROM lms_etl.runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "partial");
    assert!(
        db.count("SELECT count(*) FROM lms_etl.attempts") > 500,
        "data kept"
    );
    let mail = out.smtp.messages()[0].mail();
    assert!(mail
        .header("Subject")
        .unwrap()
        .starts_with("[lms-etl] PARTIAL 2026-11-20:"));
    assert!(etl.log_text().contains("sheets push failed"));
}

#[test]
fn a_failed_push_heals_on_the_next_run_without_a_manual_step() {
    let out = Outputs::start(SmtpOptions::default());
    out.sheets.set_outage(true);
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = out.configure(Etl::new(&db, &api.url));
    let first = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert_eq!(first.status.code(), Some(4), "{}", describe(&first));
    assert!(out.sheets.cells("daily").is_empty());
    let pending: Vec<String> = db
        .client()
        .query(
            "SELECT to_char(day, 'YYYY-MM-DD') FROM lms_etl.sheets_pending()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pending, ["2026-11-20", "2026-11-21"], "oldest first");

    // Healthy again; the next run's window holds none of run 1's days.
    out.sheets.set_outage(false);
    let second = etl.run(&["run", "--start", "2026-11-22", "--end", "2026-11-23"]);
    assert!(second.status.success(), "{}", describe(&second));

    let cells = out.sheets.cells("daily");
    assert_eq!(cells, expected_cells(&db));
    let dates: Vec<_> = cells.iter().skip(1).map(|r| r[0].clone()).collect();
    assert_eq!(
        dates,
        [
            json!("2026-11-20"),
            json!("2026-11-21"),
            json!("2026-11-22")
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.sheets_pending()"), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.daily_stats WHERE sheets_pushed_at = changed_at"),
        3,
        "every day marked with the version pushed"
    );
    let log = etl.log_text();
    assert!(log.contains("caught_up=2"), "{log}");

    // Nothing is pending now: a third run over the same window writes just its own day.
    let calls_before = out.sheets.calls().len();
    let third = etl.run(&["run", "--start", "2026-11-22", "--end", "2026-11-23"]);
    assert!(third.status.success(), "{}", describe(&third));
    assert_eq!(out.sheets.cells("daily"), expected_cells(&db));
    assert!(
        out.sheets.calls().len() > calls_before,
        "the touched day is pushed again"
    );

    // A mark for a version the day no longer has is refused: that day stays pending.
    let marked = db.count(
        "SELECT lms_etl.mark_sheets_pushed(ARRAY[date '2026-11-20'], ARRAY[timestamptz '2000-01-01'])",
    );
    assert_eq!(marked, 0);
}

#[test]
fn the_api_being_down_sends_a_failure_mail_without_secrets() {
    let out = Outputs::start(SmtpOptions::default());
    let db = TestDb::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let etl = out
        .configure(Etl::new(&db, &format!("http://{closed}")))
        .with_env("LMS_ETL_CLIENT_KEY", "top-secret-key")
        .with_env("LMS_ETL_API_MAX_RETRIES", "1");
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let messages = out.smtp.messages();
    assert_eq!(messages.len(), 1);
    let raw = String::from_utf8_lossy(&messages[0].data).into_owned();
    let subject = messages[0].mail().header("Subject").unwrap();
    assert!(
        subject.starts_with("[lms-etl] FAILED 2026-11-20: "),
        "{subject}"
    );
    assert!(
        !raw.contains("top-secret-key"),
        "the key leaked into the mail"
    );
    assert!(
        !etl.log_text().contains("top-secret-key"),
        "the key leaked into the log"
    );
    assert!(
        out.sheets.calls().is_empty(),
        "nothing to push after a failed load"
    );
}

#[test]
fn a_mail_failure_exits_4_and_keeps_the_data() {
    let out = Outputs::start(SmtpOptions {
        auth: Some(SmtpAuth::new("etl", "right-password")),
        ..SmtpOptions::default()
    });
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = out
        .configure(Etl::new(&db, &api.url))
        .with_env("LMS_ETL_EMAIL_SMTP_USER", "etl")
        .with_env("LMS_ETL_EMAIL_SMTP_PASSWORD", "wrong-password");
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert_eq!(run.status.code(), Some(4), "{}", describe(&run));
    let status: String = db
        .client()
        .query_one("SELECT status FROM lms_etl.runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        status, "succeeded",
        "a mail failure does not change the run"
    );
    assert!(db.count("SELECT count(*) FROM lms_etl.attempts") > 500);
    let log = etl.log_text();
    assert!(log.contains("e-mail failed"), "{log}");
    assert!(!log.contains("wrong-password"));
    assert!(out.smtp.messages().is_empty());
}

#[test]
fn without_smtp_the_mail_lands_in_the_outbox() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = Etl::new(&db, &api.url);
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert!(run.status.success(), "{}", describe(&run));
    let files: Vec<_> = std::fs::read_dir(etl.outbox())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("[lms-etl] OK 2026-11-20:"), "{eml}");
    assert!(etl.log_text().contains("Google Sheets not configured"));
}

#[test]
fn sheets_sync_repushes_a_range_after_an_outage() {
    let out = Outputs::start(SmtpOptions::default());
    out.sheets.set_outage(true);
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = out.configure(Etl::new(&db, &api.url));
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert_eq!(run.status.code(), Some(4), "{}", describe(&run));
    assert!(out.sheets.cells("daily").is_empty());

    out.sheets.set_outage(false);
    let sync = etl.run(&["sheets-sync", "--from", "2026-11-20", "--to", "2026-11-21"]);
    assert!(sync.status.success(), "{}", describe(&sync));
    assert_eq!(out.sheets.cells("daily"), expected_cells(&db));
    assert_eq!(out.sheets.cells("daily").len(), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.sheets_pending()"),
        0,
        "sheets-sync marks what it pushed"
    );
}

/// The `Stages (wall clock)` lines of a text body: (stage, milliseconds), in order.
fn stage_lines(text: &str) -> Vec<(String, u64)> {
    let start = text
        .find("Stages (wall clock)\n")
        .unwrap_or_else(|| panic!("no stages in:\n{text}"));
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, ms) = l.trim().split_once(' ').expect("stage and time");
            let ms: String = ms.trim().strip_suffix(" ms").expect(l).replace(' ', "");
            (name.to_owned(), ms.parse().expect(l))
        })
        .collect()
}

#[test]
fn the_mails_stage_times_are_wall_clock_and_add_up_to_the_total() {
    let out = Outputs::start(SmtpOptions::default());
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "200"]);
    // Many chunks on several connections: their own times overlap and add up to more
    // than the run took.
    let etl = out
        .configure(Etl::new(&db, &api.url))
        .with_env("LMS_ETL_WINDOW_CHUNK_MINUTES", "60")
        .with_env("LMS_ETL_WINDOW_PARALLEL_LOADS", "4");
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert!(run.status.success(), "{}", describe(&run));

    let mail = out.smtp.messages()[0].mail();
    let text = mail.text().unwrap();
    let stages = stage_lines(text);
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    let expected: &[&str] = if names.contains(&"other") {
        &[
            "plan",
            "fetch+load",
            "aggregate",
            "sheets",
            "problems",
            "other",
            "total",
        ]
    } else {
        &[
            "plan",
            "fetch+load",
            "aggregate",
            "sheets",
            "problems",
            "total",
        ]
    };
    assert_eq!(names, expected, "{text}");
    let (_, total) = stages.last().unwrap().clone();
    let sum: u64 = stages[..stages.len() - 1].iter().map(|(_, ms)| ms).sum();
    assert_eq!(sum, total, "the stages add up to the total:\n{text}");
    let fetch_load = stages.iter().find(|(n, _)| n == "fetch+load").unwrap().1;
    assert!(fetch_load <= total, "{text}");
    assert!(total > 0, "{text}");

    // The HTML shows the same lines; the run row keeps the same total.
    let html = mail.html().unwrap();
    for (name, ms) in &stages {
        let ms = lms_etl_loader::report::email::thousands(*ms as i64);
        let row =
            format!("<tr><th align=\"left\">{name}</th><td align=\"right\">{ms} ms</td></tr>");
        assert!(html.contains(&row), "no {row:?} in:\n{html}");
    }
    let row_total = db.count("SELECT (stage_ms->>'total')::bigint FROM lms_etl.runs");
    assert_eq!(row_total as u64, total);

    // The per-chunk times stay in the log, one line per chunk.
    let log = etl.log_text();
    let chunk_lines = log
        .lines()
        .filter(|l| l.contains("download finished") && l.contains("elapsed_ms="))
        .count();
    assert_eq!(chunk_lines, 48, "{log}");
    drop(out.rt);
}

#[test]
fn each_day_is_compared_with_the_same_weekday_a_week_before_from_daily_stats() {
    let out = Outputs::start(SmtpOptions::default());
    let db = TestDb::new();
    // The week before 2026-11-20 as if loaded long ago; 11-14 (before 11-21) has no row.
    db.client()
        .batch_execute(
            "INSERT INTO lms_etl.daily_stats
                    (day, attempts, successful_attempts, unique_users, computed_at, changed_at)
             VALUES ('2026-11-13', 1000, 800, 90, now(), now()),
                    ('2026-10-01', 5, 5, 1, now(), now())",
        )
        .unwrap();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = out.configure(Etl::new(&db, &api.url));
    let run = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert!(run.status.success(), "{}", describe(&run));

    let attempts = |day: &str| {
        db.client()
            .query_one(
                "SELECT attempts FROM lms_etl.daily_stats WHERE day = $1::text::date",
                &[&day],
            )
            .unwrap()
            .get::<_, i64>(0)
    };
    let (nov20, nov21) = (attempts("2026-11-20"), attempts("2026-11-21"));
    let percent = ((nov20 - 1000) as f64 / 1000.0 * 100.0).round() as i64;
    let trend = match percent.signum() {
        1 => format!("+{percent}%"),
        -1 => format!("\u{2212}{}%", -percent),
        _ => "0%".to_owned(),
    };

    let mail = out.smtp.messages()[0].mail();
    let text = mail.text().unwrap();
    let row = |day: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(day))
            .unwrap_or_else(|| panic!("no {day} row in:\n{text}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert_eq!(row("2026-11-20"), trend, "{text}");
    assert_eq!(row("2026-11-21"), "n/a", "{text}");
    let html = mail.html().unwrap();
    assert!(
        html.contains(&format!("<td align=\"right\">{trend}</td></tr>")),
        "{html}"
    );

    // The chart's 30 days end with the window's last day: 10-23 .. 11-21, so 10-01 is out.
    let sum = lms_etl_loader::report::email::thousands(nov20 + nov21 + 1000);
    let expected = format!("Last 30 days (2026-10-23 – 2026-11-21): {sum} attempts, ");
    assert!(text.contains(&expected), "{expected:?} in:\n{text}");
    assert!(text.contains("; 27 days without data."), "{text}");
    let raw = &out.smtp.messages()[0].data;
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    assert_eq!(message.attachment_count(), 1, "the chart");
    drop(out.rt);
}
