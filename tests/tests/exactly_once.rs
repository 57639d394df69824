//! The exactly-once contract at its edges, end to end (real binary, real PostgreSQL, the demo
//! API or a hand-written fixture API): time (settle lag, late records, DST), identity
//! (conflicts, two problems at one instant, over-precise times), truth (a rejected chunk
//! fails the run) and the run's life (lock, abandoned runs, signals, aggregation after failure).

use std::time::{Duration, Instant};

use lms_etl_tests::fixture_api::{record, FixtureApi, Served};
use lms_etl_tests::harness::{describe, lms_etl_bin, DemoApi, Etl, TestDb};

fn text(db: &TestDb, sql: &str) -> String {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// Every aggregated day equals a count over the attempts, and no day waits for aggregation.
fn assert_stats_match_attempts(db: &TestDb) {
    assert_eq!(
        db.count(
            "SELECT count(*) FROM lms_etl.daily_stats d,
                    LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE is_correct) AS ok,
                                    count(DISTINCT user_id) AS users
                               FROM lms_etl.attempts WHERE (created_at AT TIME ZONE 'UTC')::date = d.day) a
              WHERE (d.attempts, d.successful_attempts, d.unique_users) IS DISTINCT FROM (a.n, a.ok, a.users)"
        ),
        0,
        "daily_stats disagree with the attempts"
    );
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT (created_at AT TIME ZONE 'UTC')::date) FROM lms_etl.attempts a
              WHERE NOT EXISTS (SELECT 1 FROM lms_etl.daily_stats d WHERE d.day = (a.created_at AT TIME ZONE 'UTC')::date)"
        ),
        0,
        "a day with attempts was never aggregated"
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.pending_days"), 0);
}

fn fingerprint_between(db: &TestDb, from: &str, to: &str) -> String {
    text(
        db,
        &format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(
                 concat_ws('|', user_id, lis_result_sourcedid, is_correct, attempt_type,
                           to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')),
                 ',' ORDER BY created_at, user_id, attempt_type, lis_result_sourcedid)), '-')
               FROM lms_etl.attempts WHERE created_at >= '{from}+00' AND created_at < '{to}+00'"
        ),
    )
}

fn outbox_mails(etl: &Etl) -> Vec<String> {
    let mut paths: Vec<_> = std::fs::read_dir(etl.outbox())
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    paths.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn an_end_past_the_settle_lag_is_clamped_and_the_rest_is_loaded_later() {
    let db = TestDb::new();
    let now = "2026-11-21 12:00:00";
    let api = DemoApi::start(&["--records-per-hour", "200", "--now", now]);
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_NOW", now);
    let out = etl.run(&["run", "--start", "2026-11-21", "--end", "2026-11-22"]);
    assert!(out.status.success(), "{}", describe(&out));
    let log = etl.log_text();
    assert!(
        log.contains("the requested end 2026-11-22 00:00:00 (UTC) is past now minus the settle lag (15 min); loading up to 2026-11-21 11:45:00 (UTC)"),
        "{log}"
    );
    assert_eq!(
        text(
            &db,
            "SELECT requested_end::text || ' ' || window_end::text FROM lms_etl.runs"
        ),
        "2026-11-22 00:00:00+00 2026-11-21 11:45:00+00"
    );
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-21 11:45:00+00"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts WHERE created_at >= '2026-11-21 11:45+00'"),
        0
    );
    assert!(outbox_mails(&etl)[0].contains("clamped"));

    // Later, an incremental run loads the rest of the day: nothing lost at the seam.
    drop(api);
    let later = "2026-11-22 01:00:00";
    let api = DemoApi::start(&["--records-per-hour", "200", "--now", later]);
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_NOW", later);
    let out = etl.run(&["run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let reference = TestDb::new();
    let out = Etl::new(&reference, &api.url)
        .with_env("LMS_ETL_NOW", later)
        .run(&["run", "--start", "2026-11-21", "--end", "2026-11-22"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        fingerprint_between(&db, "2026-11-21", "2026-11-22"),
        fingerprint_between(&reference, "2026-11-21", "2026-11-22")
    );
    assert_stats_match_attempts(&db);
}

/// Two incremental runs against a source that shows 30% of its records 30 minutes late.
fn late_arrival_runs(db: &TestDb, overlap_minutes: &str) {
    let at = |now: &str| {
        let api = DemoApi::start(&[
            "--records-per-hour",
            "300",
            "--late-share",
            "0.3",
            "--late-minutes",
            "30",
            "--now",
            now,
        ]);
        let out = Etl::new(db, &api.url)
            .with_env("LMS_ETL_NOW", now)
            .with_env("LMS_ETL_WINDOW_SETTLE_LAG_MINUTES", "5")
            .with_env("LMS_ETL_WINDOW_OVERLAP_MINUTES", overlap_minutes)
            .with_env("LMS_ETL_WINDOW_FIRST_RUN_LOOKBACK_HOURS", "6")
            .run(&["run"]);
        assert!(out.status.success(), "{}", describe(&out));
    };
    at("2026-11-21 12:00:00");
    at("2026-11-21 14:00:00");
}

#[test]
fn late_records_are_loaded_by_the_next_runs_overlap() {
    let db = TestDb::new();
    late_arrival_runs(&db, "60");
    // The API's full content at the second run's clock, loaded in one back-fill.
    let now = "2026-11-21 14:00:00";
    let api = DemoApi::start(&[
        "--records-per-hour",
        "300",
        "--late-share",
        "0.3",
        "--late-minutes",
        "30",
        "--now",
        now,
    ]);
    let reference = TestDb::new();
    let out = Etl::new(&reference, &api.url)
        .with_env("LMS_ETL_NOW", now)
        .with_env("LMS_ETL_WINDOW_SETTLE_LAG_MINUTES", "5")
        .run(&[
            "run",
            "--start",
            "2026-11-21 05:55",
            "--end",
            "2026-11-21 13:55",
        ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(db.attempts_fingerprint(), reference.attempts_fingerprint());
    // The first run really missed records that were not visible yet (the test has teeth).
    let missed_then = db.count(
        "SELECT count(*) FROM lms_etl.attempts WHERE run_id = 2 AND created_at < '2026-11-21 11:55+00'",
    );
    assert!(
        missed_then > 10,
        "the second run loaded {missed_then} late records"
    );
    assert_stats_match_attempts(&db);

    // Without the overlap, the same two runs lose those records for good.
    let no_overlap = TestDb::new();
    late_arrival_runs(&no_overlap, "0");
    assert!(
        no_overlap.count("SELECT count(*) FROM lms_etl.attempts")
            < reference.count("SELECT count(*) FROM lms_etl.attempts")
    );
}

#[test]
fn an_autumn_dst_night_loses_and_doubles_nothing_whatever_the_chunks() {
    let args = [
        "--records-per-hour",
        "400",
        "--timezone",
        "Europe/Berlin",
        "--now",
        "2026-11-01 00:00:00",
    ];
    let api = DemoApi::start(&args);
    // The API's full content for the naive window, as the demo API itself lists it.
    let export = std::process::Command::new(lms_etl_bin())
        .args([
            "export-demo-copy",
            "--start",
            "2026-10-24 22:00",
            "--end",
            "2026-10-25 06:00",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(export.status.success());
    let expected = String::from_utf8_lossy(&export.stdout).lines().count() as i64;
    assert!(expected > 1000, "{expected}");

    let mut fingerprints = Vec::new();
    for chunk in ["20", "30", "60"] {
        let db = TestDb::new();
        let etl = Etl::new(&db, &api.url)
            .with_env("LMS_ETL_API_SOURCE_TIMEZONE", "Europe/Berlin")
            .with_env("LMS_ETL_WINDOW_CHUNK_MINUTES", chunk);
        let window = [
            "run",
            "--start",
            "2026-10-24 22:00",
            "--end",
            "2026-10-25 06:00",
        ];
        let out = etl.run(&window);
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(
            db.count("SELECT count(*) FROM lms_etl.attempts"),
            expected,
            "{chunk}-minute chunks"
        );
        // Both passes of the repeated hour are in, read with the earlier offset.
        assert!(
            db.count("SELECT count(*) FROM lms_etl.attempts WHERE created_at >= '2026-10-25 00:00+00' AND created_at < '2026-10-25 01:00+00'")
                > db.count("SELECT count(*) FROM lms_etl.attempts WHERE created_at >= '2026-10-25 04:00+00' AND created_at < '2026-10-25 05:00+00'"),
        );
        let again = etl.run(&window);
        assert!(again.status.success(), "{}", describe(&again));
        assert_eq!(
            db.count("SELECT inserted FROM lms_etl.runs WHERE run_id = 2"),
            0
        );
        fingerprints.push(db.attempts_fingerprint());
    }
    assert!(fingerprints.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn two_problems_at_one_instant_are_two_attempts_and_a_changed_resend_is_a_conflict() {
    let t = "2026-11-20 10:00:00.250000";
    let first = vec![
        record("u1", t, "submit", "1", "p1"),
        record("u1", t, "submit", "0", "p2"),
        record("u2", "2026-11-20 10:30:00.000000", "run", "null", "p1"),
    ];
    let api = FixtureApi::start(first.clone());
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url);
    let window = [
        "run",
        "--start",
        "2026-11-20 10:00",
        "--end",
        "2026-11-20 11:00",
    ];
    assert!(etl.run(&window).status.success());
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.attempts"), 3);

    // The source now says p1 was wrong: a conflict, kept apart; the loaded row stays.
    let mut changed = first.clone();
    changed[0] = record("u1", t, "submit", "0", "p1");
    api.replace(changed);
    let out = etl.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT concat_ws(',', fetched, inserted, duplicates, conflicts, rejected) FROM lms_etl.runs WHERE run_id = 2"),
        "3,0,2,1,0"
    );
    assert_eq!(
        text(&db, "SELECT is_correct::text FROM lms_etl.attempts WHERE user_id = 'u1' AND lis_result_sourcedid LIKE '%-p1:u1'"),
        "true"
    );
    assert_eq!(
        text(&db, "SELECT kind FROM lms_etl.rejected_attempts"),
        "conflict: same key, different content"
    );
    let mail = outbox_mails(&etl).pop().unwrap();
    assert!(mail.contains("1 conflict"), "{mail}");
    // `lms-etl status` counts it apart too.
    let status = etl.run(&["status", "--runs", "1", "--days", "1"]);
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(table.contains("conflicts"), "{table}");
    let row: Vec<String> = table
        .lines()
        .find(|l| l.contains("succeeded"))
        .unwrap_or_else(|| panic!("{table}"))
        .split(['│', '┆'])
        .map(|c| c.trim().to_owned())
        .collect();
    // run, started, window, status, then fetched, inserted, dupes, conflicts, rejected
    assert!(row.len() > 9, "{table}");
    assert_eq!(row[5..10], ["3", "0", "2", "1", "0"], "{table}");

    // Fetched again: stored and counted once.
    let out = etl.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT concat_ws(',', inserted, duplicates, conflicts) FROM lms_etl.runs WHERE run_id = 3"),
        "0,3,0"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        1
    );
}

#[test]
fn timestamps_finer_than_microseconds_are_rejected_never_merged() {
    let mut records: Vec<Served> = (0..60)
        .map(|i| {
            record(
                &format!("v{i}"),
                &format!("2026-11-20 10:{:02}:00.000000", i % 60),
                "run",
                "null",
                "p",
            )
        })
        .collect();
    records.push(record(
        "u1",
        "2026-11-20 10:00:00.1234561",
        "run",
        "null",
        "p",
    ));
    records.push(record(
        "u1",
        "2026-11-20 10:00:00.1234569",
        "run",
        "null",
        "p",
    ));
    let api = FixtureApi::start(records);
    let db = TestDb::new();
    let out = Etl::new(&db, &api.url).run(&[
        "run",
        "--start",
        "2026-11-20 10:00",
        "--end",
        "2026-11-20 11:00",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u1'"),
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts WHERE kind = 'created_at: finer than microseconds'"),
        2
    );
}

/// 60 valid records at 09:xx, and at 10:xx `bad` records with an ISO `T…Z` created_at.
fn valid_then_iso(bad: usize, good_at_ten: usize) -> Vec<Served> {
    let mut records: Vec<Served> = (0..60)
        .map(|i| {
            record(
                &format!("g{i}"),
                &format!("2026-11-20 09:{i:02}:00.000000"),
                "run",
                "null",
                "p",
            )
        })
        .collect();
    records.extend((0..bad).map(|i| {
        record(
            &format!("b{i}"),
            &format!("2026-11-20T10:{:02}:{:02}Z", i / 60, i % 60),
            "run",
            "null",
            "p",
        )
    }));
    records.extend((0..good_at_ten).map(|i| {
        record(
            &format!("h{i}"),
            &format!("2026-11-20 10:{:02}:30.000000", i % 60),
            "run",
            "null",
            "p",
        )
    }));
    records
}

#[test]
fn a_chunk_of_rejected_records_fails_the_run_and_holds_the_watermark() {
    let api = FixtureApi::start(valid_then_iso(150, 0));
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_WINDOW_PARALLEL_LOADS", "1");
    let window = [
        "run",
        "--start",
        "2026-11-20 09:00",
        "--end",
        "2026-11-20 11:00",
    ];
    let out = etl.run(&window);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT status FROM lms_etl.runs WHERE run_id = 1"),
        "failed"
    );
    let error = text(&db, "SELECT error FROM lms_etl.runs WHERE run_id = 1");
    assert!(
        error.contains(
            "has 150 invalid records of 150 (100.0%), above load.max_rejected_ratio 5.0%"
        ),
        "{error}"
    );
    // The good chunk before it counts; the watermark stays before the bad one.
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 10:00:00+00"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        150
    );
    assert_stats_match_attempts(&db);
    let mail = outbox_mails(&etl).pop().unwrap();
    assert!(mail.contains("FAILED"), "{mail}");
    assert!(mail.contains("created_at: not a timestamp"), "{mail}");

    // Run again: still refused (the records are still bad), still stored once.
    let out = etl.run(&window);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        150
    );
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 10:00:00+00"
    );

    // An operator who has looked passes the run.
    let out = etl.run(&[
        "run",
        "--start",
        "2026-11-20 09:00",
        "--end",
        "2026-11-20 11:00",
        "--max-rejected-ratio",
        "1",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 11:00:00+00"
    );
}

#[test]
fn a_quiet_hour_with_one_bad_record_in_ten_passes() {
    let mut records: Vec<Served> = (0..9)
        .map(|i| {
            record(
                &format!("q{i}"),
                &format!("2026-11-20 03:{i:02}:00.000000"),
                "run",
                "null",
                "p",
            )
        })
        .collect();
    records.push(record("bad", "2026-11-20T03:30:00Z", "run", "null", "p"));
    let api = FixtureApi::start(records);
    let db = TestDb::new();
    let out = Etl::new(&db, &api.url).run(&[
        "run",
        "--start",
        "2026-11-20 03:00",
        "--end",
        "2026-11-20 04:00",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &db,
            "SELECT concat_ws(',', status, inserted, rejected) FROM lms_etl.runs"
        ),
        "succeeded,9,1"
    );
}

#[test]
fn the_quarantine_keeps_a_record_read_again_once() {
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "200", "--malformed", "0.03"]);
    // 3% on average is more than 5% in some hours: this test is about storing, not judging.
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5");
    let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 12:00"];
    assert!(etl.run(&window).status.success());
    let quarantined = db.count("SELECT count(*) FROM lms_etl.rejected_attempts");
    assert!(quarantined > 10, "{quarantined}");
    assert!(etl.run(&window).status.success());
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        quarantined
    );
    assert_eq!(
        text(&db, "SELECT string_agg(concat_ws(',', run_id, rejected, fetched = inserted + duplicates + conflicts + rejected), ' ' ORDER BY run_id) FROM lms_etl.runs"),
        format!("1,{quarantined},t 2,0,t")
    );
}

/// `lms-etl run` from 2026-11-20 to `end`, for a test to spawn and then stop or wait for.
fn slow_run(etl: &Etl, end: &str, chunk_minutes: &str) -> std::process::Command {
    etl.command(&[
        "run",
        "--start",
        "2026-11-20",
        "--end",
        end,
        "--chunk-minutes",
        chunk_minutes,
    ])
}

fn wait_for_chunks(db: &TestDb, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count("SELECT count(*) FROM lms_etl.run_chunks") < n {
        assert!(
            Instant::now() < deadline,
            "the run never committed {n} chunks"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_killed_outright_is_closed_as_abandoned_and_its_days_aggregated_by_the_next() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "200", "--latency-ms", "200"]);
    let etl = Etl::new(&db, &slow.url);
    let mut child = slow_run(&etl, "2026-11-21", "30").spawn().unwrap();
    wait_for_chunks(&db, 4);
    child.kill().unwrap(); // SIGKILL: no aggregation, no closing of the row
    child.wait().unwrap();
    assert_eq!(
        text(&db, "SELECT status FROM lms_etl.runs WHERE run_id = 1"),
        "running"
    );
    assert!(
        db.count("SELECT count(*) FROM lms_etl.pending_days") > 0,
        "the dead run's days are marked"
    );

    // A later run (of another window, even) closes it and aggregates its days.
    let fast = DemoApi::start(&["--records-per-hour", "200"]);
    let etl = Etl::new(&db, &fast.url);
    let out = etl.run(&["run", "--start", "2026-11-22", "--end", "2026-11-22 01:00"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT status FROM lms_etl.runs WHERE run_id = 1"),
        "abandoned"
    );
    assert!(etl.log_text().contains("closed it as abandoned"));
    assert_stats_match_attempts(&db);
}

#[test]
fn a_chunk_commits_only_while_its_run_holds_the_lock() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "200", "--latency-ms", "300"]);
    let etl = Etl::new(&db, &slow.url);
    let child = slow_run(&etl, "2026-11-21", "20")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_chunks(&db, 2);
    // The lock-holding connection dies (a network cut, a restart, an operator's kill).
    let killed_at: String = text(
        &db,
        "SELECT now()::text FROM (SELECT pg_terminate_backend(lock_pid) FROM lms_etl.runs WHERE run_id = 1) t",
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // At most the chunks already past their lock check commit after the cut; none starts later.
    assert!(
        db.count(&format!("SELECT count(*) FROM lms_etl.run_chunks WHERE loaded_at > '{killed_at}'::timestamptz + interval '2 seconds'")) == 0,
        "a chunk committed long after the run lost its lock"
    );
    let log = etl.log_text();
    assert!(
        log.contains("no longer holds the run lock") || log.contains("closed"),
        "{log}"
    );
    assert!(outbox_mails(&etl).pop().unwrap().contains("FAILED"));
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts"),
        db.count("SELECT coalesce(sum(inserted), 0)::bigint FROM lms_etl.run_chunks")
    );
}

#[test]
fn sigterm_lets_the_chunks_in_flight_end_aggregates_and_closes_the_run_interrupted() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "200", "--latency-ms", "300"]);
    let etl = Etl::new(&db, &slow.url);
    let child = slow_run(&etl, "2026-11-22", "30").spawn().unwrap();
    wait_for_chunks(&db, 3);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT status FROM lms_etl.runs WHERE run_id = 1"),
        "interrupted"
    );
    assert!(db.count("SELECT count(*) FROM lms_etl.run_chunks") < 96);
    // Every committed chunk is whole, and what committed is aggregated.
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts"),
        db.count("SELECT coalesce(sum(inserted), 0)::bigint FROM lms_etl.run_chunks")
    );
    assert_stats_match_attempts(&db);
    let mail = outbox_mails(&etl).pop().unwrap();
    assert!(mail.contains("INTERRUPTED"), "{mail}");
    assert!(etl.log_text().contains("signal received"));
}

#[test]
fn reprocess_moves_records_a_newer_rule_accepts_and_re_aggregates_their_days() {
    let api = FixtureApi::start(vec![record(
        "ok",
        "2026-11-20 10:00:00.000000",
        "run",
        "null",
        "p",
    )]);
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url);
    assert!(etl
        .run(&[
            "run",
            "--start",
            "2026-11-20 10:00",
            "--end",
            "2026-11-20 11:00"
        ])
        .status
        .success());
    // As if an older release had refused a record that today's rules accept.
    let late = record("was-bad", "2026-11-20 10:05:00.000000", "submit", "1", "p").raw;
    db.client()
        .execute(
            "INSERT INTO lms_etl.rejected_attempts (run_id, record_index, raw_record, reason, kind)
             VALUES (1, 7, $1, 'record 7: an older rule', 'old rule')",
            &[&late],
        )
        .unwrap();
    let out = etl.run(&["reprocess", "--run", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 quarantined records examined: 1 loaded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        0
    );
    assert_eq!(
        db.count("SELECT successful_attempts FROM lms_etl.daily_stats WHERE day = '2026-11-20'"),
        1
    );
    assert_stats_match_attempts(&db);
}

// Found by an adversarial review of this change (each asserted the correct behaviour and
// failed before the fix): a failed overlap chunk, a refused chunk read again by a smaller run,
// and a small run whose every record is invalid.

fn runs(db: &TestDb) -> String {
    text(
        db,
        "SELECT string_agg(concat_ws(',', run_id, status, fetched, inserted, rejected), ' | ' ORDER BY run_id) FROM lms_etl.runs",
    )
}

#[test]
fn a_failed_overlap_chunk_is_read_again_by_the_next_run() {
    let on_time = record("g1", "2026-11-20 10:30:00.000000", "run", "null", "p");
    let late = record("late", "2026-11-20 09:55:00.000000", "run", "null", "p");
    let api = FixtureApi::start(vec![on_time.clone()]);
    let db = TestDb::new();
    let etl = |now: &str| {
        Etl::new(&db, &api.url)
            .with_env("LMS_ETL_NOW", now)
            .with_env("LMS_ETL_WINDOW_FIRST_RUN_LOOKBACK_HOURS", "2")
    };
    // Run 1 at 11:05 loads up to 10:50; the late record is not visible yet.
    let out = etl("2026-11-20 11:05:00").run(&["run"]);
    assert!(out.status.success(), "{}", describe(&out));
    // Now it is. Run 2 at 12:05 reads [09:50, 11:50): its overlap chunk [09:50, 10:00) is
    // refused by the API while [10:00, 11:00) loads on the other connection.
    api.replace(vec![on_time.clone(), late.clone()]);
    api.refuse(&["2026-11-20 09:50"]);
    let out = etl("2026-11-20 12:05:00").run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // The watermark never passes the failed chunk, so the next runs read it again.
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 10:50:00+00"
    );
    api.refuse(&[]);
    for now in ["2026-11-20 13:05:00", "2026-11-20 14:05:00"] {
        let out = etl(now).run(&["run"]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'late'"),
        1,
        "runs: {}",
        runs(&db)
    );
}

/// `n` records in hour `h`, the first `bad` of them with an ISO `T…Z` created_at.
fn hour(prefix: &str, h: u32, n: usize, bad: usize) -> Vec<Served> {
    (0..n)
        .map(|i| {
            let at = format!("2026-11-20 {h:02}:{:02}:{:02}.000000", i / 60, i % 60);
            if i < bad {
                let iso = format!("2026-11-20T{h:02}:{:02}:{:02}Z", i / 60, i % 60);
                let mut r = record(&format!("{prefix}{i}"), &iso, "run", "null", "p");
                r.at = at;
                r
            } else {
                record(&format!("{prefix}{i}"), &at, "run", "null", "p")
            }
        })
        .collect()
}

#[test]
fn a_chunk_refused_for_its_rejected_ratio_is_refused_again_by_a_smaller_run() {
    let mut records = Vec::new();
    for h in [7, 8, 9] {
        records.extend(hour("g", h, 40, 0));
    }
    records.extend(hour("b", 10, 40, 20));
    let api = FixtureApi::start(records.clone());
    let db = TestDb::new();
    // 160 records, 20 invalid (12.5%): refused, judged by the run's running total.
    let out = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_NOW", "2026-11-20 11:15:00")
        .with_env("LMS_ETL_WINDOW_PARALLEL_LOADS", "1")
        .run(&[
            "run",
            "--start",
            "2026-11-20 07:00",
            "--end",
            "2026-11-20 11:00",
        ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 10:00:00+00"
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.held_chunks"), 1);
    // An incremental run with every default reads 80 records: too few to be judged by size,
    // but the held chunk is refused again while it holds an invalid record.
    let incremental = || {
        Etl::new(&db, &api.url)
            .with_env("LMS_ETL_NOW", "2026-11-20 11:16:00")
            .run(&["run"])
    };
    let out = incremental();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\nruns: {}",
        describe(&out),
        runs(&db)
    );
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 10:00:00+00"
    );
    // The source fixes its records: the hold is lifted and the watermark moves on.
    let mut fixed = records;
    fixed.truncate(120);
    fixed.extend(hour("b", 10, 40, 0));
    api.replace(fixed);
    let out = incremental();
    assert!(
        out.status.success(),
        "{}\nruns: {}",
        describe(&out),
        runs(&db)
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.held_chunks"), 0);
    assert_eq!(
        text(&db, "SELECT loaded_until::text FROM lms_etl.watermark"),
        "2026-11-20 11:01:00+00"
    );
}

#[test]
fn a_run_whose_every_record_is_invalid_is_not_ok() {
    let api = FixtureApi::start(hour("x", 10, 60, 60));
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_NOW", "2026-11-20 11:15:00");
    let out = etl.run(&[
        "run",
        "--start",
        "2026-11-20 10:00",
        "--end",
        "2026-11-20 11:00",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\nruns: {}",
        describe(&out),
        runs(&db)
    );
    assert_eq!(text(&db, "SELECT status FROM lms_etl.runs"), "failed");
    let mail = outbox_mails(&etl).pop().unwrap();
    assert!(
        mail.contains("FAILED") && mail.contains("every one of the 60 records"),
        "{mail}"
    );
}

#[test]
fn a_change_of_source_zone_neither_doubles_nor_skips_naive_times() {
    for (zone, second_run_at) in [
        ("Atlantic/Azores", "2026-11-20 13:05:00"),
        ("Europe/Moscow", "2026-11-20 12:05:00"),
    ] {
        let first = record("r1", "2026-11-20 10:30:00.000000", "run", "null", "p");
        let later = record("r2", "2026-11-20 11:30:00.000000", "run", "null", "p");
        let api = FixtureApi::start(vec![first.clone()]);
        let db = TestDb::new();
        let etl = |now: &str| {
            Etl::new(&db, &api.url)
                .with_env("LMS_ETL_NOW", now)
                .with_env("LMS_ETL_WINDOW_FIRST_RUN_LOOKBACK_HOURS", "2")
        };
        // Loaded in UTC up to 10:50 (naive 10:50).
        assert!(etl("2026-11-20 11:05:00").run(&["run"]).status.success());
        api.replace(vec![first, later]);
        // The operator corrects the zone. Further west (Azores, UTC-1), the old watermark's
        // naive time is an hour later as an instant: without care r1 would load twice;
        // further east (Moscow, UTC+3), naive 10:50..13:50 would never be asked for.
        let out = etl(second_run_at)
            .with_env("LMS_ETL_API_SOURCE_TIMEZONE", zone)
            .run(&["run"]);
        assert!(out.status.success(), "{zone}: {}", describe(&out));
        assert_eq!(
            text(
                &db,
                "SELECT string_agg(user_id, ',' ORDER BY user_id) FROM lms_etl.attempts"
            ),
            "r1,r2",
            "{zone}: runs {}",
            runs(&db)
        );
    }
}

#[test]
fn a_redirect_is_not_followed_and_the_key_stays_secret_in_every_form() {
    let key = "Sup3r/S3cr+t&k=ey %x";
    let encoded: String = url_encode(key);
    let api = FixtureApi::start(Vec::new());
    api.redirect("http://127.0.0.1:1/api/statistics");
    let db = TestDb::new();
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_CLIENT_KEY", key);
    let out = etl.run(&[
        "run",
        "--start",
        "2026-11-20 10:00",
        "--end",
        "2026-11-20 11:00",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let everything = format!("{stderr}{}{}", etl.log_text(), outbox_mails(&etl).join(""));
    assert!(
        everything.contains(
            "redirect (HTTP 302) to http://127.0.0.1:1/api/statistics?client=demo&client_key=***"
        ),
        "{stderr}"
    );
    for form in [key, encoded.as_str(), "S3cr"] {
        assert!(!everything.contains(form), "{form:?} leaked:\n{everything}");
    }
}

/// application/x-www-form-urlencoded, as reqwest writes a query value.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
