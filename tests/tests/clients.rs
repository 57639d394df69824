//! Several platforms (`api.client`) in one database: each has its own run lock, watermark,
//! run history and holds, so their loaders run side by side without blocking or moving each
//! other; a database loaded before that carries on from its single watermark.

use lms_etl_loader::load::{RUN_LOCK_KEY_SQL, RUN_LOCK_SEED};
use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};

fn text(db: &TestDb, sql: &str) -> String {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// Every watermark row as `source loaded_until`, by source.
fn watermarks(db: &TestDb) -> String {
    text(
        db,
        "SELECT coalesce(string_agg(source || ' ' || to_char(loaded_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                                    ', ' ORDER BY source), '')
           FROM lms_etl.watermark",
    )
}

/// The demo API of one platform: its own client name and seed (so its learners are its own).
fn platform(client: &str, seed: &str, extra: &[&str]) -> DemoApi {
    let mut args = vec![
        "--client",
        client,
        "--seed",
        seed,
        "--records-per-hour",
        "200",
    ];
    args.extend_from_slice(extra);
    DemoApi::start(&args)
}

fn loader(db: &TestDb, api: &DemoApi, client: &str) -> Etl {
    Etl::new(db, &api.url).with_env("LMS_ETL_CLIENT", client)
}

#[test]
fn two_platforms_load_into_one_database_at_the_same_time_each_with_its_own_watermark() {
    let db = TestDb::new();
    // Slow answers, so each run lasts a few seconds and the two overlap.
    let alpha_api = platform("alpha", "1", &["--latency-ms", "250"]);
    let beta_api = platform("beta", "2", &["--latency-ms", "250"]);
    let (alpha, beta) = (
        loader(&db, &alpha_api, "alpha"),
        loader(&db, &beta_api, "beta"),
    );
    let window = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-20 06:00",
        "--chunk-minutes",
        "30",
    ];
    let first = alpha.command(&window).spawn().unwrap();
    db.wait_until(
        "SELECT count(*) FROM lms_etl.runs WHERE client = 'alpha'",
        "alpha's run started",
    );
    let second = beta.command(&window).spawn().unwrap();
    // Both hold their own lock at once: hashtextextended(client, seed) in the one-key form.
    db.wait_until(&format!(
            "SELECT (count(*) = 2)::int::bigint FROM pg_locks l,
                    (SELECT hashtextextended(c, {RUN_LOCK_SEED}) AS key FROM unnest(ARRAY['alpha', 'beta']) c) k
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.classid = ((k.key >> 32) & 4294967295)::oid
                AND l.objid = (k.key & 4294967295)::oid"
        ),
        "both runs hold their lock",
    );
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert!(first.status.success(), "alpha: {}", describe(&first));
    assert!(second.status.success(), "beta: {}", describe(&second));

    // Neither waited for the other: each run's chunks committed while the other was running.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM lms_etl.runs a JOIN lms_etl.runs b ON a.client <> b.client
              WHERE (SELECT min(loaded_at) FROM lms_etl.run_chunks c WHERE c.run_id = a.run_id) < b.finished_at"
        ),
        2,
        "the two runs' loads overlapped in time"
    );
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(client || ' ' || status || ' ' || (inserted = fetched AND fetched > 0 AND duplicates = 0),
                               ', ' ORDER BY client) FROM lms_etl.runs"
        ),
        "alpha succeeded true, beta succeeded true"
    );
    // One attempts table: both platforms' records, none taken for the other's.
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts"),
        db.count("SELECT sum(inserted)::bigint FROM lms_etl.runs")
    );
    assert_eq!(
        watermarks(&db),
        "statistics_api:alpha 2026-11-20 06:00, statistics_api:beta 2026-11-20 06:00"
    );

    // An incremental run of alpha continues from alpha's watermark and moves only it.
    let out = loader(&db, &alpha_api, "alpha")
        .with_env("LMS_ETL_NOW", "2026-11-20 09:15:00")
        .run(&["run", "--chunk-minutes", "60"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &db,
            "SELECT to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI') FROM lms_etl.runs
              WHERE client = 'alpha' ORDER BY run_id DESC LIMIT 1"
        ),
        "05:00",
        "alpha's watermark (06:00) minus the overlap (60 min)"
    );
    assert_eq!(
        watermarks(&db),
        "statistics_api:alpha 2026-11-20 09:00, statistics_api:beta 2026-11-20 06:00"
    );
    // `lms-etl status` shows the client's own runs.
    let out = loader(&db, &beta_api, "beta").run(&["status"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe(&out));
    let runs = shown.split("Daily statistics").next().unwrap().to_owned();
    assert!(runs.contains("Last runs of api.client \"beta\""), "{shown}");
    assert_eq!(runs.matches("succeeded").count(), 1, "{shown}");
}

#[test]
fn a_platform_whose_run_holds_the_lock_blocks_only_its_own_commands() {
    let db = TestDb::new();
    let alpha_api = platform("alpha", "1", &[]);
    let beta_api = platform("beta", "2", &[]);
    // alpha's run in flight: a session holding alpha's lock, and its row still running.
    let mut in_flight = db.client();
    let pid: i32 = in_flight
        .query_one(
            &format!("SELECT pg_backend_pid() FROM pg_advisory_lock({RUN_LOCK_KEY_SQL})"),
            &[&"alpha", &RUN_LOCK_SEED],
        )
        .unwrap()
        .get(0);
    in_flight
        .execute(
            "INSERT INTO lms_etl.runs (window_start, window_end, client, lock_pid)
             VALUES ('2026-11-19', '2026-11-20', 'alpha', $1)",
            &[&pid],
        )
        .unwrap();
    let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"];

    let alpha = loader(&db, &alpha_api, "alpha");
    let out = alpha.run(&window);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another lms-etl run holds the lock"),
        "{}",
        describe(&out)
    );
    // reprocess takes the same lock (sheets-sync too: tests/adversary9.rs).
    let out = alpha.run(&["reprocess"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(alpha
        .log_text()
        .contains("another lms-etl run holds the lock of api.client \"alpha\"; reprocess"));

    // beta goes on: it loads, and leaves alpha's live run alone (no "abandoned").
    let beta = loader(&db, &beta_api, "beta");
    let out = beta.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    let out = beta.run(&["reprocess"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(client || ' ' || status, ', ' ORDER BY run_id) FROM lms_etl.runs"
        ),
        "alpha running, beta succeeded"
    );
    assert_eq!(watermarks(&db), "statistics_api:beta 2026-11-20 03:00");

    // Once alpha's process is gone, alpha's next run closes its row and loads.
    drop(in_flight);
    let out = alpha.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(client || ' ' || status, ', ' ORDER BY run_id) FROM lms_etl.runs"
        ),
        "alpha abandoned, beta succeeded, alpha succeeded"
    );
}

#[test]
fn a_database_with_only_the_legacy_watermark_continues_exactly_from_it() {
    let api = platform("demo", "1", &[]);
    let db = TestDb::new();
    let out = loader(&db, &api, "demo").run(&[
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-20 03:00",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    // As a database loaded before the watermark was kept per client: one row
    // 'statistics_api', runs without a client, holds of client ''.
    db.client()
        .batch_execute(
            "UPDATE lms_etl.watermark SET source = 'statistics_api';
             UPDATE lms_etl.runs SET client = NULL;
             INSERT INTO lms_etl.held_chunks (chunk_start, chunk_end, run_id, fetched, invalid)
                  VALUES ('2026-11-19 10:00', '2026-11-19 11:00', 1, 10, 5);",
        )
        .unwrap();
    assert_eq!(watermarks(&db), "statistics_api 2026-11-20 03:00");

    // The platform's next incremental run carries on from it and takes it over, with the
    // history and the holds.
    let later = "2026-11-20 06:15:00";
    let out = loader(&db, &api, "demo")
        .with_env("LMS_ETL_NOW", later)
        .run(&["run"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &db,
            "SELECT to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI') || ' ' || client FROM lms_etl.runs WHERE run_id = 2"
        ),
        "02:00 demo",
        "the legacy watermark (03:00) minus the overlap (60 min)"
    );
    assert_eq!(watermarks(&db), "statistics_api:demo 2026-11-20 06:00");
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(coalesce(client, '-'), ',' ORDER BY run_id) FROM lms_etl.runs"
        ),
        "demo,demo"
    );
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(client, ',') FROM lms_etl.held_chunks"
        ),
        "demo"
    );
    // Exactly what one run over the whole span loads.
    let reference = TestDb::new();
    let out = loader(&reference, &api, "demo").run(&[
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-20 06:00",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(db.attempts_fingerprint(), reference.attempts_fingerprint());

    // A platform added later starts a watermark of its own.
    let beta_api = platform("beta", "2", &[]);
    let out = loader(&db, &beta_api, "beta")
        .with_env("LMS_ETL_NOW", later)
        .run(&["run"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        watermarks(&db),
        "statistics_api:beta 2026-11-20 06:00, statistics_api:demo 2026-11-20 06:00"
    );
    assert_eq!(
        text(
            &db,
            "SELECT to_char(window_start AT TIME ZONE 'UTC', 'MM-DD HH24:MI') FROM lms_etl.runs WHERE client = 'beta'"
        ),
        "11-19 06:00",
        "a first run: window.first_run_lookback_hours (24) before the settled end"
    );
}
