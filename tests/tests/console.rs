//! What `lms-etl run` prints on stderr: one line per stage by default (as under cron, without
//! a terminal), every chunk's lines with `-v`, errors only with `-q`; at a terminal, a closing
//! summary table. The log file keeps every line whatever the console shows.

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};

const STAGES: [&str; 6] = ["plan", "fetch+load", "aggregate", "sheets", "mail", "done"];
const CHUNK_LINES: [&str; 3] = ["download started", "download finished", "chunk loaded"];

/// Three hours in 30-minute chunks: six chunks.
fn window(from_hour: u32) -> Vec<String> {
    [
        "run".to_owned(),
        "--start".to_owned(),
        format!("2026-11-20 {from_hour:02}:00"),
        "--end".to_owned(),
        format!("2026-11-20 {:02}:00", from_hour + 3),
        "--chunk-minutes".to_owned(),
        "30".to_owned(),
    ]
    .to_vec()
}

fn args(global: &[&str], window: &[String]) -> Vec<String> {
    global
        .iter()
        .map(|s| s.to_string())
        .chain(window.iter().cloned())
        .collect()
}

fn run(etl: &Etl, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    etl.run(&args)
}

/// The lines of `text` whose message is `<stage>: …` (after the time, level and span).
fn stage_lines<'a>(text: &'a str, stage: &str) -> Vec<&'a str> {
    let marker = format!(" {stage}: ");
    text.lines().filter(|l| l.contains(&marker)).collect()
}

#[test]
fn without_a_terminal_stderr_has_one_line_per_stage_and_no_chunk_lines() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::new(&db, &api.url);
    let out = run(&etl, &window(0));
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);

    for stage in STAGES {
        assert_eq!(
            stage_lines(&stderr, stage).len(),
            1,
            "one {stage:?} line:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.lines().count(),
        STAGES.len(),
        "nothing else:\n{stderr}"
    );
    let fetched = db.count("SELECT fetched FROM lms_etl.runs WHERE run_id = 1");
    assert!(fetched > 0);
    assert!(
        stage_lines(&stderr, "fetch+load")[0]
            .contains(&format!("{fetched} fetched, {fetched} inserted")),
        "{stderr}"
    );
    assert!(
        stage_lines(&stderr, "plan")[0].contains("6 chunks of 30 min"),
        "{stderr}"
    );
    assert!(
        stage_lines(&stderr, "done")[0].contains("run 1 succeeded, exit 0, log file "),
        "{stderr}"
    );
    for line in CHUNK_LINES {
        assert!(!stderr.contains(line), "{line:?} on stderr:\n{stderr}");
    }

    // The log file keeps every chunk's lines, and the stage lines too.
    let log = etl.log_text();
    for line in CHUNK_LINES {
        assert_eq!(
            log.matches(line).count(),
            6,
            "{line:?} per chunk in the log:\n{log}"
        );
    }
    for stage in STAGES {
        assert_eq!(stage_lines(&log, stage).len(), 1, "{stage:?} in the log");
    }
}

#[test]
fn verbose_shows_every_chunk_line_on_stderr() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::new(&db, &api.url);
    let out = run(&etl, &args(&["-v"], &window(0)));
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in CHUNK_LINES {
        assert_eq!(stderr.matches(line).count(), 6, "{line:?}:\n{stderr}");
    }
    for stage in STAGES {
        assert_eq!(stage_lines(&stderr, stage).len(), 1, "{stage:?}:\n{stderr}");
    }
    assert!(stderr.contains("config loaded"), "{stderr}");
}

#[test]
fn quiet_prints_nothing_on_success_and_the_error_on_failure() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::new(&db, &api.url);
    let out = run(&etl, &args(&["--quiet"], &window(0)));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.runs WHERE status = 'succeeded'"),
        1
    );

    let wrong_key = Etl::new(&db, &api.url).with_env("LMS_ETL_CLIENT_KEY", "Wr0ng-K3y");
    let out = run(&wrong_key, &args(&["-q"], &window(3)));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the API refused the credentials (HTTP 401)"),
        "{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.contains(" ERROR ")),
        "errors only:\n{stderr}"
    );
    assert!(!stderr.contains("Wr0ng-K3y"), "{stderr}");
    // The log file has the whole story all the same.
    let log = wrong_key.log_text();
    assert_eq!(stage_lines(&log, "done").len(), 1, "{log}");
    assert!(log.contains("download started"), "{log}");
}

#[test]
fn a_terminal_gets_a_summary_table_at_the_end() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::new(&db, &api.url);
    let w = window(0);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let out = etl.command_in_terminal(&w).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    let fetched = db.count("SELECT fetched FROM lms_etl.runs WHERE run_id = 1");
    let row = |key: &str| {
        screen
            .lines()
            .find(|l| l.starts_with(&format!("│ {key} ")))
            .map(|l| {
                l.split(['│', '┆'])
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_else(|| panic!("no {key:?} row:\n{screen}"))
    };
    assert_eq!(row("status"), "status | succeeded (run 1, exit 0)");
    assert_eq!(
        row("window"),
        "window | 2026-11-20 00:00:00 .. 2026-11-20 03:00:00 (UTC)"
    );
    assert_eq!(row("fetched"), format!("fetched | {fetched}"));
    assert_eq!(row("inserted"), format!("inserted | {fetched}"));
    assert_eq!(row("days"), "days | 2026-11-20 .. 2026-11-20 (1 day)");
    assert!(row("stages").starts_with("stages | plan "), "{screen}");
    assert!(row("log file").contains(&etl.log_dir().display().to_string()));

    // -q at a terminal: no bar, no table.
    let quiet = args(&["-q"], &window(3));
    let quiet: Vec<&str> = quiet.iter().map(String::as_str).collect();
    let out = etl.command_in_terminal(&quiet).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.trim().is_empty(), "{screen}");
}
