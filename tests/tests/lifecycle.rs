//! The database's own lifecycle, end to end: a `pg_dump -Fc` of a database the loader has
//! used, restored with `pg_restore` into a new database, holds the same rows in every
//! extension table and sequence, and the loader carries on there exactly once.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};

fn text(db: &TestDb, sql: &str) -> String {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// Every table and sequence of the schema `lms_etl` by name: a table as its row count and an
/// md5 of its rows as text (times in UTC, in byte order), a sequence as its state.
fn fingerprints(db: &TestDb) -> BTreeMap<String, String> {
    let mut client = db.client();
    client.batch_execute("SET TimeZone = 'UTC'").unwrap();
    let relations = client
        .query(
            "SELECT c.relname::text, c.relkind::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'lms_etl' AND c.relkind IN ('r', 'p', 'S') ORDER BY 1",
            &[],
        )
        .unwrap();
    relations
        .iter()
        .map(|row| {
            let (name, kind): (String, String) = (row.get(0), row.get(1));
            let (label, sql) = if kind == "S" {
                (
                    "sequence",
                    format!("SELECT last_value || ':' || is_called FROM lms_etl.{name}"),
                )
            } else {
                (
                    "table",
                    format!(
                        "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n'
                                ORDER BY t::text COLLATE \"C\")), '-')
                           FROM lms_etl.{name} t"
                    ),
                )
            };
            let value: String = client.query_one(&sql, &[]).unwrap().get(0);
            (format!("{label} {name}"), value)
        })
        .collect()
}

/// (status, fetched, inserted, duplicates, rejected) of one run.
fn runs_row(db: &TestDb, run_id: i64) -> (String, i64, i64, i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT status, fetched, inserted, duplicates, rejected FROM lms_etl.runs WHERE run_id = $1",
            &[&run_id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// Every report-zone day equals a count over the attempts, and no day waits for aggregation.
fn assert_stats_match_attempts(db: &TestDb) {
    assert_eq!(
        db.count(
            "SELECT count(*) FROM lms_etl.daily_stats d,
                    LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE is_correct) AS ok,
                                    count(DISTINCT user_id) AS users
                               FROM lms_etl.attempts
                              WHERE (created_at AT TIME ZONE lms_etl.setting('report_timezone'))::date = d.day) a
              WHERE (d.attempts, d.successful_attempts, d.unique_users) IS DISTINCT FROM (a.n, a.ok, a.users)"
        ),
        0,
        "daily_stats disagree with the attempts"
    );
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT (created_at AT TIME ZONE lms_etl.setting('report_timezone'))::date)
               FROM lms_etl.attempts a
              WHERE NOT EXISTS (SELECT 1 FROM lms_etl.daily_stats d
                                 WHERE d.day = (a.created_at AT TIME ZONE lms_etl.setting('report_timezone'))::date)"
        ),
        0,
        "a day with attempts was never aggregated"
    );
    assert_eq!(db.count("SELECT count(*) FROM lms_etl.pending_days"), 0);
}

const DAY_ONE: [&str; 5] = ["run", "--start", "2026-11-20", "--end", "2026-11-21"];
const FURTHER: [&str; 5] = [
    "run",
    "--start",
    "2026-11-21 06:00",
    "--end",
    "2026-11-21 12:00",
];

/// A database as production leaves it: a report zone set, a day loaded with 2% of its records
/// quarantined, a second run failed on a chunk it held for its invalid share, and a later change
/// of report zone whose days still wait for aggregation. Every extension table holds rows.
fn a_database_in_use(api: &DemoApi, broken_api: &DemoApi) -> TestDb {
    let db = TestDb::new();
    db.client()
        .batch_execute("SELECT lms_etl.set_setting('report_timezone', 'Europe/Moscow')")
        .unwrap();
    let out = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5")
        .run(&DAY_ONE);
    assert!(out.status.success(), "{}", describe(&out));
    let out = Etl::new(&db, &broken_api.url).run(&[
        "run",
        "--start",
        "2026-11-21",
        "--end",
        "2026-11-21 03:00",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    db.client()
        .batch_execute("SELECT lms_etl.set_setting('report_timezone', 'Asia/Tokyo')")
        .unwrap();

    assert_eq!(
        text(
            &db,
            "SELECT string_agg(run_id || ' ' || status, ', ' ORDER BY run_id) FROM lms_etl.runs"
        ),
        "1 succeeded, 2 failed"
    );
    for (table, at_least) in [
        ("attempts", 4000),
        ("runs", 2),
        ("run_chunks", 24),
        ("rejected_attempts", 50),
        ("watermark", 1),
        ("daily_stats", 2),
        ("daily_problem_stats", 2),
        ("settings", 1),
        ("pending_days", 2),
        ("held_chunks", 1),
    ] {
        let n = db.count(&format!("SELECT count(*) FROM lms_etl.{table}"));
        assert!(
            n >= at_least,
            "lms_etl.{table} holds {n} rows before the dump, expected at least {at_least}"
        );
    }
    db
}

#[test]
fn a_restored_database_holds_every_row_and_sequence_and_the_loader_continues_exactly_once() {
    let api = DemoApi::start(&["--records-per-hour", "200", "--malformed", "0.02"]);
    // The same seed with more of the same records broken: chunks refused for their share.
    let broken_api = DemoApi::start(&["--records-per-hour", "200", "--malformed", "0.3"]);
    let source = a_database_in_use(&api, &broken_api);
    let before = fingerprints(&source);
    assert_eq!(
        before.keys().cloned().collect::<Vec<_>>(),
        [
            "sequence rejected_attempts_rejected_id_seq",
            "sequence runs_run_id_seq",
            "table attempts",
            // The window's month and the next, made by the run (not extension members:
            // pg_dump keeps them as it keeps any table), and the default partition.
            "table attempts_2026_11",
            "table attempts_2026_12",
            "table attempts_default",
            "table daily_problem_stats",
            "table daily_stats",
            "table held_chunks",
            "table pending_days",
            "table rejected_attempts",
            "table run_chunks",
            "table runs",
            "table settings",
            "table watermark",
        ]
    );

    let restored = TestDb::restored_from(&source);
    assert_eq!(
        text(
            &restored,
            "SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'"
        ),
        "0.2.0"
    );
    assert_eq!(fingerprints(&restored), before);
    assert_eq!(fingerprints(&source), before, "the dump changed its source");

    // The loader carries on in the restored database over a further window, and in the source
    // too, to show the restored one continues exactly as the original would have.
    let last_run = restored.count("SELECT max(run_id) FROM lms_etl.runs");
    let last_rejected = restored.count("SELECT max(rejected_id) FROM lms_etl.rejected_attempts");
    assert_eq!(last_run, 2);
    for db in [&restored, &source] {
        let out = Etl::new(db, &api.url)
            .with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5")
            .run(&FURTHER);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let new_run = restored.count("SELECT max(run_id) FROM lms_etl.runs");
    assert!(
        new_run > last_run,
        "the restored runs_run_id_seq restarted: new run {new_run}"
    );
    assert_eq!(
        new_run,
        source.count("SELECT max(run_id) FROM lms_etl.runs")
    );
    let (status, fetched, inserted, duplicates, rejected) = runs_row(&restored, new_run);
    assert_eq!(status, "succeeded");
    assert!(
        inserted > 1000,
        "six hours at ~200/h are over a thousand new attempts, got {inserted}"
    );
    assert!(
        rejected > 5,
        "about 2% of ~1200 records are malformed, got {rejected}"
    );
    assert_eq!(
        (duplicates, fetched),
        (0, inserted + rejected),
        "nothing of the further window was loaded before"
    );
    assert_eq!(
        restored.count(&format!(
            "SELECT count(*) FROM lms_etl.rejected_attempts WHERE run_id = {new_run} AND rejected_id > {last_rejected}"
        )),
        rejected,
        "every newly quarantined record has a fresh rejected_id"
    );
    assert_eq!(
        restored.attempts_fingerprint(),
        source.attempts_fingerprint()
    );
    // The same records quarantined (ids aside: chunks on parallel connections take them in
    // any order).
    let quarantined = |db: &TestDb| {
        text(
            db,
            "SELECT count(*) || ':' || md5(string_agg(md5(raw_record), ',' ORDER BY md5(raw_record)))
               FROM lms_etl.rejected_attempts",
        )
    };
    assert_eq!(quarantined(&restored), quarantined(&source));
    // The restored zone change was aggregated by that run: Tokyo days, none left pending.
    assert_stats_match_attempts(&restored);

    // Exactly once survives the restore: the first day again inserts and quarantines nothing.
    let attempts = restored.attempts_fingerprint();
    let quarantined_rows = restored.count("SELECT count(*) FROM lms_etl.rejected_attempts");
    let out = Etl::new(&restored, &api.url)
        .with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5")
        .run(&DAY_ONE);
    assert!(out.status.success(), "{}", describe(&out));
    let (status, fetched, inserted, duplicates, rejected) = runs_row(&restored, new_run + 1);
    assert_eq!(status, "succeeded");
    assert!(fetched > 4000, "a day at ~200/h, got {fetched}");
    assert_eq!((inserted, duplicates, rejected), (0, fetched, 0));
    assert_eq!(restored.attempts_fingerprint(), attempts);
    assert_eq!(
        restored.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        quarantined_rows
    );

    // A hold survives the restore too: read again with its invalid records, the chunk refused
    // before the dump is refused again, though its share is within this run's ratio (only an
    // operator's --max-rejected-ratio passes a held chunk).
    let watermark = text(
        &restored,
        "SELECT loaded_until::text FROM lms_etl.watermark",
    );
    let held = |db: &TestDb| {
        text(
            db,
            "SELECT string_agg(chunk_start::text || ' ' || invalid, ',' ORDER BY chunk_start)
               FROM lms_etl.held_chunks",
        )
    };
    let held_before = held(&restored);
    let out = Etl::new(&restored, &broken_api.url)
        .with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5")
        .run(&["run", "--start", "2026-11-21", "--end", "2026-11-21 03:00"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the chunk, refused before and read again,"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        text(
            &restored,
            "SELECT status FROM lms_etl.runs ORDER BY run_id DESC LIMIT 1"
        ),
        "failed"
    );
    assert_eq!(
        text(
            &restored,
            "SELECT loaded_until::text FROM lms_etl.watermark"
        ),
        watermark
    );
    assert_eq!(held(&restored), held_before);
}

#[test]
fn a_dump_taken_mid_run_restores_whole_chunks_and_the_next_run_completes_the_window() {
    let db = TestDb::new();
    let slow = DemoApi::start(&["--records-per-hour", "300", "--latency-ms", "250"]);
    let window = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-21",
        "--chunk-minutes",
        "30",
    ];
    let mut child = Etl::new(&db, &slow.url)
        .command(&window)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count("SELECT count(*) FROM lms_etl.run_chunks") < 3 {
        assert!(Instant::now() < deadline, "the run never committed a chunk");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The nightly backup runs while the loader is still loading.
    let restored = TestDb::restored_from(&db);
    let out = child.wait().unwrap();
    assert!(out.success(), "the run the dump ran beside: {out:?}");

    assert_eq!(
        text(&restored, "SELECT status FROM lms_etl.runs"),
        "running"
    );
    let chunks = restored.count("SELECT count(*) FROM lms_etl.run_chunks");
    assert!(
        (3..48).contains(&chunks),
        "the dump saw the run mid-way, got {chunks} of 48 chunks"
    );
    // A consistent snapshot: each chunk in the dump is whole.
    assert_eq!(
        restored.count("SELECT count(*) FROM lms_etl.attempts"),
        restored.count("SELECT sum(inserted)::bigint FROM lms_etl.run_chunks")
    );

    // The run the restored database remembers as running is closed, and the window completed.
    let fast = DemoApi::start(&["--records-per-hour", "300"]);
    let etl = Etl::new(&restored, &fast.url);
    let out = etl.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(
            &restored,
            "SELECT string_agg(run_id || ' ' || status, ', ' ORDER BY run_id) FROM lms_etl.runs"
        ),
        "1 abandoned, 2 succeeded"
    );
    assert!(etl.log_text().contains("closed it as abandoned"));
    assert_eq!(restored.attempts_fingerprint(), db.attempts_fingerprint());
    let committed_before_the_dump =
        restored.count("SELECT sum(inserted)::bigint FROM lms_etl.run_chunks WHERE run_id = 1");
    let (_, fetched, inserted, duplicates, rejected) = runs_row(&restored, 2);
    assert_eq!((duplicates, rejected), (committed_before_the_dump, 0));
    assert_eq!(fetched, inserted + duplicates);
    assert_stats_match_attempts(&restored);
}

/// SQLSTATE and message of a statement that must fail.
fn refusal(db: &TestDb, sql: &str) -> (String, String) {
    let err = db
        .client()
        .batch_execute(sql)
        .expect_err("the statement should have been refused");
    let db_err = err.as_db_error().expect("a database error");
    (
        db_err.code().code().to_owned(),
        format!(
            "{} | {} | {}",
            db_err.message(),
            db_err.detail().unwrap_or_default(),
            db_err.hint().unwrap_or_default()
        ),
    )
}

#[test]
fn a_plain_drop_extension_never_deletes_loaded_data_and_the_loader_carries_on() {
    let api = DemoApi::start(&["--records-per-hour", "200", "--malformed", "0.02"]);
    let db = TestDb::new();
    // An install that holds nothing yet drops like any extension.
    db.client()
        .batch_execute("DROP EXTENSION lms_etl; CREATE EXTENSION lms_etl")
        .unwrap();

    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "0.5");
    let out = etl.run(&DAY_ONE);
    assert!(out.status.success(), "{}", describe(&out));
    let before = fingerprints(&db);
    assert!(db.count("SELECT count(*) FROM lms_etl.attempts") > 4000);

    db.client()
        .batch_execute("CREATE EXTENSION hstore")
        .unwrap();
    for drop in [
        "DROP EXTENSION lms_etl",
        "DROP EXTENSION IF EXISTS lms_etl RESTRICT",
        // Named among others: the whole statement is refused.
        "DROP EXTENSION hstore, lms_etl",
    ] {
        let (code, message) = refusal(&db, drop);
        assert_eq!(code, "2BP01", "{drop}: {message}");
        assert!(
            message.contains("holds loaded data")
                && message.contains("lms_etl.attempts")
                && message.contains("DROP EXTENSION lms_etl CASCADE"),
            "{drop}: {message}"
        );
    }
    // Other extensions still drop freely.
    db.client().batch_execute("DROP EXTENSION hstore").unwrap();
    assert_eq!(fingerprints(&db), before, "a refused drop changed the data");

    // What an operator types next: the extension is still there, the data intact and loadable.
    db.client()
        .batch_execute("CREATE EXTENSION IF NOT EXISTS lms_etl")
        .unwrap();
    assert_eq!(fingerprints(&db), before);
    let out = etl.run(&FURTHER);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        db.count("SELECT count(*) FROM lms_etl.attempts")
            > before["table attempts"]
                .split(':')
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap()
    );
    assert_stats_match_attempts(&db);
    // The loader's role cannot drop it either way.
    let mut loader = postgres::Client::connect(&db.loader_url(), postgres::NoTls).unwrap();
    assert!(loader
        .batch_execute("DROP EXTENSION lms_etl CASCADE")
        .is_err());

    // The documented uninstall: CASCADE deletes everything, on purpose.
    db.client()
        .batch_execute("DROP EXTENSION lms_etl CASCADE")
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lms_etl'"),
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname = 'lms_etl_keep_data'"
        ),
        0
    );
    // The roles are the cluster's, used by other databases: they stay.
    assert_eq!(
        db.count("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname IN ('lms_etl_loader', 'lms_etl_reader')"),
        2
    );
}
