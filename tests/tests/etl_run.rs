//! `lms-etl run` end to end: the real binary against the demo API and a real database.

use std::time::{Duration, Instant};

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};

const WINDOW: [&str; 4] = ["--start", "2026-11-20", "--end", "2026-11-22"];

fn runs_row(db: &TestDb, run_id: i64) -> (String, i64, i64, i64, i64) {
    let row = db
        .client()
        .query_one("SELECT status, fetched, inserted, duplicates, rejected FROM lms_etl.runs WHERE run_id = $1", &[&run_id])
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

#[test]
fn happy_path_loads_aggregates_and_logs_every_stage() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "200"]);
    let etl = Etl::new(&db, &api.url);
    let out = etl.run(&["run", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3]]);
    assert!(out.status.success(), "{}", describe(&out));

    let (status, fetched, inserted, duplicates, rejected) = runs_row(&db, 1);
    assert_eq!(status, "succeeded");
    assert!(
        fetched > 3000,
        "a two-day window at ~200/h has thousands of records, got {fetched}"
    );
    assert_eq!((inserted, duplicates, rejected), (fetched, 0, 0));
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.attempts"), fetched);
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.run_chunks WHERE run_id = 1"),
        48
    );
    // Daily stats of both days match the table.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM lms_etl.daily_stats WHERE day IN ('2026-11-20', '2026-11-21')"
        ),
        2
    );
    assert_eq!(
        db.count("SELECT sum(attempts)::bigint FROM lms_etl.daily_stats"),
        fetched
    );
    assert_eq!(
        db.count("SELECT successful_attempts FROM lms_etl.daily_stats WHERE day = '2026-11-20'"),
        db.count("SELECT count(*) FROM lms_etl.attempts WHERE is_correct AND created_at::date = '2026-11-20'")
    );
    assert_eq!(
        db.count("SELECT (loaded_until = '2026-11-22')::int::bigint FROM lms_etl.watermark"),
        1
    );
    // The run made its months' partitions: no row waits in the default one.
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.attempts_default"), 0);

    let log = etl.log_text();
    for line in [
        "config loaded",
        "run started",
        "download started",
        "download finished",
        "chunk loaded",
        "load finished",
        "aggregation started",
        "aggregation finished",
        "run finished",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    assert!(!log.contains("could not create"), "{log}");
    assert!(log.contains("elapsed_ms="), "stages log their durations");
    assert!(
        !log.contains("client_key=demo"),
        "the key must be redacted in logs"
    );
    assert!(log.contains("client_key=***"));
}

#[test]
fn the_same_window_twice_adds_nothing() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "100"]);
    let etl = Etl::new(&db, &api.url);
    assert!(etl
        .run(&["run", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3]])
        .status
        .success());
    let before = db.attempts_fingerprint();
    let out = etl.run(&["run", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3]]);
    assert!(out.status.success(), "{}", describe(&out));
    let (_, fetched, inserted, duplicates, _) = runs_row(&db, 2);
    assert_eq!((inserted, duplicates), (0, fetched));
    assert_eq!(db.attempts_fingerprint(), before);
}

#[test]
fn a_window_split_differently_loads_the_same_rows() {
    let api = DemoApi::start(&["--records-per-hour", "150"]);
    let whole = TestDb::new();
    let etl = Etl::new(&whole, &api.url);
    assert!(etl
        .run(&[
            "run",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-21 06:00",
            "--chunk-minutes",
            "360"
        ])
        .status
        .success());

    let pieces = TestDb::new();
    let etl = Etl::new(&pieces, &api.url);
    for (start, end) in [
        ("2026-11-20", "2026-11-20 07:13:42.5"),
        ("2026-11-20 07:13:42.5", "2026-11-21 06:00"),
    ] {
        let out = etl.run(&[
            "run",
            "--start",
            start,
            "--end",
            end,
            "--chunk-minutes",
            "7",
        ]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(pieces.attempts_fingerprint(), whole.attempts_fingerprint());
    assert!(whole.count("SELECT count(*) FROM lms_etl.attempts") > 1000);
}

#[test]
fn bursts_of_5xx_and_429_are_retried_to_success() {
    let db = TestDb::new();
    let api = DemoApi::start(&[
        "--records-per-hour",
        "100",
        "--fail-first",
        "3",
        "--fail-429",
        "0.2",
        "--fail-5xx",
        "0.2",
    ]);
    let etl = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_API_MAX_RETRIES", "10")
        .with_env("LMS_ETL_API_RETRY_BUDGET", "200");
    let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 12:00"]);
    assert!(out.status.success(), "{}", describe(&out));

    let reference = TestDb::new();
    let clean_api = DemoApi::start(&["--records-per-hour", "100"]);
    assert!(Etl::new(&reference, &clean_api.url)
        .run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 12:00"])
        .status
        .success());
    assert_eq!(db.attempts_fingerprint(), reference.attempts_fingerprint());
    let log = etl.log_text();
    assert!(log.contains("download failed, retrying"), "{log}");
    assert!(
        log.contains("HTTP 429") && log.contains("HTTP 503"),
        "{log}"
    );
}

#[test]
fn api_down_fails_the_run_and_keeps_the_watermark() {
    let db = TestDb::new();
    // Load something first so there is a watermark to keep.
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    assert!(Etl::new(&db, &api.url)
        .run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 06:00"])
        .status
        .success());
    drop(api);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let etl = Etl::new(&db, &format!("http://{closed}")).with_env("LMS_ETL_API_MAX_RETRIES", "2");
    let out = etl.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (status, ..) = runs_row(&db, 2);
    assert_eq!(status, "failed");
    let error: String = db
        .client()
        .query_one("SELECT error FROM lms_etl.runs WHERE run_id = 2", &[])
        .unwrap()
        .get(0);
    assert!(
        error.contains("giving up") && error.contains("client_key=***"),
        "{error}"
    );
    assert!(!error.contains("client_key=demo"));
    assert_eq!(
        db.count("SELECT (loaded_until = '2026-11-20 06:00')::int::bigint FROM lms_etl.watermark"),
        1
    );
    let log = etl.log_text();
    assert!(
        log.contains("run failed") || log.contains("load failed"),
        "{log}"
    );
    assert!(
        log.contains("Connection refused") || log.contains("connect"),
        "cause chain is logged: {log}"
    );
}

#[test]
fn malformed_records_are_quarantined_and_every_record_is_accounted_for() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "200", "--malformed", "0.05"]);
    // The rejected-ratio judge has tests of its own (exactly_once.rs); this one counts.
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5");
    let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (_, fetched, inserted, duplicates, rejected) = runs_row(&db, 1);
    assert!(
        rejected > 50,
        "about 5% of ~4800 records are malformed, got {rejected}"
    );
    assert_eq!(fetched, inserted + duplicates + rejected);
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts WHERE run_id = 1"),
        rejected
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.attempts"), inserted);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM lms_etl.rejected_attempts WHERE reason NOT LIKE 'record %: %'"
        ),
        0
    );
    for kind in [
        "field `passback_params`",
        "field `attempt_type`",
        "field `created_at`",
        "field `lti_user_id`",
    ] {
        let n = db.count(&format!(
            "SELECT count(*) FROM lms_etl.rejected_attempts WHERE reason LIKE '%{kind}%'"
        ));
        assert!(n > 0, "no rejection for {kind}");
    }
}

#[test]
fn a_run_killed_mid_load_is_completed_by_the_next_run_without_loss_or_doubles() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "300", "--latency-ms", "150"]);
    let etl = Etl::new(&db, &slow.url);
    let mut child = etl
        .command(&[
            "run",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-22",
            "--chunk-minutes",
            "30",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count("SELECT count(*) FROM lms_etl.run_chunks") < 5 {
        assert!(Instant::now() < deadline, "the run never committed a chunk");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let committed = db.count("SELECT count(*) FROM lms_etl.run_chunks");
    assert!(committed < 96, "killed before the end");
    // Every committed chunk is whole: its rows are exactly its inserted count.
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts"),
        db.count("SELECT coalesce(sum(inserted), 0)::bigint FROM lms_etl.run_chunks")
    );

    let fast = DemoApi::start(&["--records-per-hour", "300"]);
    let out =
        Etl::new(&db, &fast.url).run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"]);
    assert!(out.status.success(), "{}", describe(&out));

    let reference = TestDb::new();
    assert!(Etl::new(&reference, &fast.url)
        .run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"])
        .status
        .success());
    assert_eq!(db.attempts_fingerprint(), reference.attempts_fingerprint());
}

#[test]
fn a_second_concurrent_run_exits_with_the_lock_code() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "50", "--latency-ms", "300"]);
    let etl = Etl::new(&db, &slow.url);
    let mut first = etl
        .command(&["run", "--start", "2026-11-20", "--end", "2026-11-21"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count("SELECT count(*) FROM lms_etl.runs") < 1 {
        assert!(Instant::now() < deadline, "first run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert_eq!(second.status.code(), Some(3), "{}", describe(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another lms-etl run holds the lock"));
    assert!(first.wait().unwrap().success());
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.runs"), 1);
}

#[test]
fn log_file_is_named_by_date_appended_and_old_files_are_pruned() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "20"]);
    let etl = Etl::new(&db, &api.url);
    std::fs::create_dir_all(etl.log_dir()).unwrap();
    let today = chrono::Utc::now().date_naive();
    let name = |days_ago: i64| {
        format!(
            "{}.log",
            (today - chrono::Duration::days(days_ago)).format("%Y-%m-%d")
        )
    };
    for f in [
        name(0),
        name(1),
        name(2),
        name(3),
        name(40),
        "notes.txt".into(),
        "lms.2020-01-01.log".into(),
    ] {
        std::fs::write(etl.log_dir().join(&f), format!("planted {f}\n")).unwrap();
    }
    let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"]);
    assert!(out.status.success(), "{}", describe(&out));

    let mut left: Vec<String> = std::fs::read_dir(etl.log_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = vec![
        name(0),
        name(1),
        name(2),
        "lms.2020-01-01.log".into(),
        "notes.txt".into(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    let todays = std::fs::read_to_string(etl.log_dir().join(name(0))).unwrap();
    assert!(
        todays.starts_with(&format!("planted {}", name(0))),
        "appended, not overwritten"
    );
    assert!(todays.contains("run finished"));
    assert!(
        todays.contains(&format!(
            "deleted old log file path={}",
            etl.log_dir().join(name(3)).display()
        )),
        "{todays}"
    );
}

#[test]
fn a_bad_setting_exits_2_naming_the_key_and_variable_not_the_value() {
    let db = TestDb::new();
    let etl = Etl::new(&db, "http://127.0.0.1:1")
        .with_env("LMS_ETL_WINDOW_CHUNK_MINUTES", "Zq8-S3cret-minutes");
    let out = etl.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Zq8-S3cret"), "{stderr}");
    assert!(
        stderr.contains("config key `window.chunk_minutes` from environment variable LMS_ETL_WINDOW_CHUNK_MINUTES: expected a positive integer"),
        "{stderr}"
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.runs"), 0);
}

#[test]
fn a_terminal_shows_a_progress_bar_and_a_pipe_does_not() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50", "--latency-ms", "150"]);
    let etl = Etl::new(&db, &api.url);
    let args = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-20 02:00",
        "--chunk-minutes",
        "10",
    ];
    let out = etl.command_in_terminal(&args).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("/12 chunks"),
        "no progress bar on a terminal:\n{screen}"
    );

    let piped = etl.run(&[
        "run",
        "--start",
        "2026-11-20 02:00",
        "--end",
        "2026-11-20 03:00",
        "--chunk-minutes",
        "10",
    ]);
    assert!(piped.status.success(), "{}", describe(&piped));
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("chunks, eta"),
        "no bar when stderr is not a terminal"
    );
}

#[test]
fn status_prints_the_last_runs_and_days() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "50"]);
    let etl = Etl::new(&db, &api.url);
    assert!(etl
        .run(&["run", "--start", "2026-11-20", "--end", "2026-11-22"])
        .status
        .success());
    let out = etl.run(&["status", "--runs", "5", "--days", "5"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let fetched = db.count("SELECT fetched FROM lms_etl.runs WHERE run_id = 1");
    let day = db.count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2026-11-21'");
    assert!(
        text.contains("Last runs") && text.contains("Daily statistics"),
        "{text}"
    );
    assert!(
        text.contains("succeeded") && text.contains(&fetched.to_string()),
        "{text}"
    );
    assert!(
        text.contains("2026-11-21") && text.contains(&day.to_string()),
        "{text}"
    );
}

#[test]
fn database_down_exits_1_and_still_reports_the_failure() {
    let db = TestDb::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let etl = Etl::new(&db, "http://127.0.0.1:1").with_env(
        "DATABASE_URL",
        &format!("postgresql://postgres@{closed}/lms_etl"),
    );
    let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-21"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        etl.log_text().contains("cannot connect to PostgreSQL"),
        "{}",
        etl.log_text()
    );
    let mails: Vec<_> = std::fs::read_dir(etl.outbox())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(mails.len(), 1);
    let eml = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(
        eml.contains("[lms-etl] FAILED 2026-11-20: cannot connect to PostgreSQL"),
        "{eml}"
    );
}

#[test]
fn a_mismatched_extension_version_stops_the_run_with_exit_2_naming_the_fix() {
    let db = TestDb::new();
    // As if the database still ran an older release than the binary.
    db.client()
        .batch_execute("UPDATE pg_extension SET extversion = '0.1.9' WHERE extname = 'lms_etl'")
        .unwrap();
    let api = DemoApi::start(&["--records-per-hour", "10"]);
    let etl = Etl::new(&db, &api.url);
    let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 01:00"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the lms_etl extension in this database is version 0.1.9 and this lms-etl is {}",
            env!("CARGO_PKG_VERSION")
        )) && stderr.contains("ALTER EXTENSION lms_etl UPDATE"),
        "{stderr}"
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.runs"), 0);
}

#[test]
fn a_broken_config_file_exits_2_naming_the_place_not_the_text() {
    let db = TestDb::new();
    let etl = Etl::new(&db, "http://127.0.0.1:1");
    let file = etl.dir.path().join("broken.toml");
    std::fs::write(
        &file,
        "[api]\nclient = \"demo\"\nclient_key = \"Sup3r-S3cret\n",
    )
    .unwrap();
    let out = etl.run(&["--config", &file.to_string_lossy(), "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Sup3r-S3cret"), "{stderr}");
    assert!(
        stderr.contains("is not valid TOML at line 3, column"),
        "{stderr}"
    );
}
