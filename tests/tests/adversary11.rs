//! Findings of the adversary review of issue 11 (Citus, per-client bookkeeping, partitions),
//! each kept as a test. Single node: health() forgetting the Sheets backlog of one platform
//! whenever another platform ran last (open: sql/health.sql), and two platforms whose names
//! collide in `hashtext` sharing one run lock (fixed in the loader: the key is now 64-bit).
//! Citus (feature `citus`): workers whose messages are not in English fail every re-read
//! (open: the XX000 fallback of insert_attempts matches the English message text); a day
//! aggregated while a chunk is still prepared on a worker stays short (open); and what held:
//! create_partitions moving the default partition's rows, a run loading into monthly
//! partitions, citus_distribute() after a single-node load.

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};
use lms_etl_tests::sheets_emulator::SheetsEmulator;

fn text(db: &TestDb, sql: &str) -> String {
    db.client()
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

/// The demo API of one platform: its own client name and seed.
fn platform(client: &str, seed: &str) -> DemoApi {
    DemoApi::start(&[
        "--client",
        client,
        "--seed",
        seed,
        "--records-per-hour",
        "100",
    ])
}

/// Two platforms in one database, README "Several platforms": push Google Sheets from one
/// configuration only. alpha pushes (and its push failed: days are due), beta does not. The
/// Sheets check of `lms_etl.health()` looks only at the very last run of any platform, so
/// each time beta runs after alpha the backlog disappears from health() (and from `lms-etl
/// health`, and from the mail of beta's run), though nothing was pushed.
#[test]
fn health_keeps_the_sheets_backlog_of_one_platform_after_another_platform_runs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sheets = rt.block_on(SheetsEmulator::start("adversary11"));
    sheets.set_outage(true);
    let keys = tempfile::tempdir().unwrap();
    let key_file = sheets.write_key_file(keys.path());
    let db = TestDb::new();
    let alpha_api = platform("alpha", "1");
    let beta_api = platform("beta", "2");
    let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"];

    let alpha = Etl::new(&db, &alpha_api.url)
        .with_env("LMS_ETL_CLIENT", "alpha")
        .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", "adversary11")
        .with_env("LMS_ETL_SHEETS_KEY_FILE", key_file.to_str().unwrap())
        .with_env("LMS_ETL_SHEETS_API_ROOT", &sheets.api_root())
        .with_env("LMS_ETL_SHEETS_MAX_RETRIES", "0")
        .with_env("LMS_ETL_SHEETS_RETRY_BUDGET_SECS", "1");
    let out = alpha.run(&window);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the push fails: {}",
        describe(&out)
    );
    let sheets_check = "SELECT coalesce(string_agg(status || ' ' || value, ','), 'absent')
                          FROM lms_etl.health() WHERE \"check\" = 'sheets pending'";
    assert_eq!(text(&db, sheets_check), "warn 1", "after alpha's run");

    // beta, the platform without Sheets, runs: nothing was pushed meanwhile.
    let beta = Etl::new(&db, &beta_api.url).with_env("LMS_ETL_CLIENT", "beta");
    let out = beta.run(&window);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.sheets_pending()"),
        1,
        "the day is still not in Google Sheets"
    );
    assert_eq!(
        text(&db, sheets_check),
        "warn 1",
        "health() must still report the day alpha could not push"
    );
}

/// Two clients whose names have the same `hashtext` shared one run lock (class, hashtext).
/// README: "two platforms' runs load at the same time; a second run of the same platform
/// still exits 3". The second platform's run exited 3 (which systemd counts as success,
/// `SuccessExitStatus=3`, and which sends no mail) saying "another lms-etl run holds the lock
/// of this api.client": a platform silently skipped every night its run overlaps the other's,
/// blamed on itself. api.client is the platform's name at the API, so the operator cannot
/// rename it away. Fixed here: the lock's key is `hashtextextended(client, seed)`, 64 bits.
#[test]
fn two_platforms_whose_names_hash_alike_still_load_at_the_same_time() {
    let db = TestDb::new();
    let (alpha, beta) = ("platform-12428", "platform-99873");
    assert_eq!(
        db.count(&format!(
            "SELECT (hashtext('{alpha}') = hashtext('{beta}'))::int::bigint"
        )),
        1,
        "the two names collide in hashtext"
    );
    // alpha's run in flight: slow answers keep it going for a while.
    let alpha_api = DemoApi::start(&[
        "--client",
        alpha,
        "--seed",
        "1",
        "--records-per-hour",
        "100",
        "--latency-ms",
        "400",
    ]);
    let alpha_etl = Etl::new(&db, &alpha_api.url).with_env("LMS_ETL_CLIENT", alpha);
    let window = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-20 06:00",
        "--chunk-minutes",
        "30",
        "--no-email",
    ];
    let alpha_run = alpha_etl.command(&window).spawn().unwrap();
    db.wait_until(
        &format!(
            "SELECT count(*) FROM lms_etl.runs WHERE client = '{alpha}' AND status = 'running'"
        ),
        "alpha's run started",
    );
    let beta_api = platform(beta, "2");
    let beta_etl = Etl::new(&db, &beta_api.url).with_env("LMS_ETL_CLIENT", beta);
    let out = beta_etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"]);
    let alpha_still_running = db.count(&format!(
        "SELECT count(*) FROM lms_etl.runs WHERE client = '{alpha}' AND status = 'running'"
    ));
    let alpha_out = alpha_run.wait_with_output().unwrap();
    assert!(
        alpha_out.status.success(),
        "alpha: {}",
        describe(&alpha_out)
    );
    assert_eq!(alpha_still_running, 1, "the two runs overlapped");
    assert!(
        out.status.success(),
        "beta is another platform and must load while alpha runs: {}",
        describe(&out)
    );
    assert_eq!(
        text(
            &db,
            &format!("SELECT string_agg(status, ',') FROM lms_etl.runs WHERE client = '{beta}'")
        ),
        "succeeded"
    );
}

#[cfg(feature = "citus")]
mod citus {
    use super::*;
    use lms_etl_tests::citus_cluster::{CitusCluster, Worker};
    use postgres::Client;

    fn distributed() -> CitusCluster {
        let cluster = CitusCluster::start();
        cluster.distribute();
        cluster
    }

    fn ctext(client: &mut Client, sql: &str) -> String {
        client
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
    }

    /// Citus reports a shard's unique violation inside the distributed INSERT ... SELECT as
    /// XX000 carrying the worker's message (ReportCopyError: errmsg("%s", remote message), no
    /// errcode). insert_attempts takes the fallback only when that message is the English
    /// "duplicate key value violates unique constraint ...". A worker whose lc_messages is
    /// German (or any translated language; here LANGUAGE=de selects it, as a de_DE
    /// lc_messages does) answers "doppelter Schlüsselwert verletzt Unique-Constraint ...": the
    /// error is re-raised, and every run that re-reads loaded records (every incremental run:
    /// the overlap) fails. On one node the same workers' language is harmless (SQLSTATE 23505).
    #[test]
    fn a_re_run_on_workers_that_speak_german_counts_the_duplicates() {
        let cluster = distributed();
        for worker in [Worker::One, Worker::Two] {
            cluster.stop_worker_cleanly(worker);
            cluster.start_worker_with_env(worker, &[("LANGUAGE", "de")]);
        }
        let api = DemoApi::start(&["--records-per-hour", "100"]);
        let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
        // Chunks of two days: a chunk read again whose records span more than a day takes
        // the general path (plain INSERT, then the XX000 fallback), also in the working
        // tree's insert_attempts that compares a day's chunk with the loaded rows first.
        let window = [
            "run",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-22",
            "--chunk-minutes",
            "2880",
        ];
        let out = etl.run(&window);
        assert!(out.status.success(), "first load: {}", describe(&out));
        let before = cluster.attempts_fingerprint();
        let out = etl.run(&window);
        let mut client = cluster.client();
        assert_eq!(
            ctext(
                &mut client,
                "SELECT concat_ws(',', status, inserted, duplicates = fetched, conflicts, error)
                   FROM lms_etl.runs WHERE run_id = 2"
            ),
            "succeeded,0,t,0",
            "the same window again: {}",
            describe(&out)
        );
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(cluster.attempts_fingerprint(), before);
    }

    /// create_partitions on Citus when the default partition holds rows of the month it
    /// makes (records far ahead, or loaded while their month had no partition): the rows
    /// must move into the new month, once, none lost, and the new month must be distributed
    /// with its natural key, so reloading them adds nothing.
    #[test]
    fn create_partitions_on_citus_moves_the_default_partitions_rows_into_the_new_month() {
        let cluster = distributed();
        let mut client = cluster.client();
        client
            .batch_execute(
                "INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, attempt_type, is_correct, created_at)
                 SELECT 'u' || i, 'course-v1:A+B+C:h-' || (i % 7), 'submit', i % 2 = 0,
                        '2027-03-01 00:00+00'::timestamptz + i * interval '37 minutes'
                   FROM generate_series(1, 500) i",
            )
            .unwrap();
        let before = cluster.attempts_fingerprint();
        assert_eq!(
            cluster.count("SELECT count(*) FROM lms_etl.attempts_default"),
            500
        );
        let made = client
            .query_one(
                "SELECT string_agg(p::text, ',' ORDER BY p::text)
                   FROM lms_etl.create_partitions('2027-03-01 00:00+00', '2027-03-31 00:00+00') p",
                &[],
            )
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .unwrap_or_else(|e| format!("error: {e:?}"));
        assert_eq!(made, "lms_etl.attempts_2027_03");
        assert_eq!(
            cluster.attempts_fingerprint(),
            before,
            "every row, once, after the move"
        );
        assert_eq!(
            cluster.count(
                // (tableoid is a shard's on Citus: count the partition itself)
                "SELECT count(*) FROM lms_etl.attempts_2027_03"
            ),
            500
        );
        assert_eq!(
            cluster.count("SELECT count(*) FROM lms_etl.attempts_default"),
            0
        );
        // The new month is a distributed partition, with the key on its shards.
        assert_eq!(
            ctext(
                &mut client,
                "SELECT partmethod::text FROM pg_dist_partition
                  WHERE logicalrelid = 'lms_etl.attempts_2027_03'::regclass"
            ),
            "h"
        );
        let count_before = cluster.count("SELECT count(*) FROM lms_etl.attempts");
        client
            .batch_execute(
                "INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, attempt_type, is_correct, created_at)
                 SELECT 'u' || i, 'course-v1:A+B+C:h-' || (i % 7), 'submit', i % 2 = 0,
                        '2027-03-01 00:00+00'::timestamptz + i * interval '37 minutes'
                   FROM generate_series(1, 500) i
                 ON CONFLICT DO NOTHING",
            )
            .unwrap();
        assert_eq!(
            cluster.count("SELECT count(*) FROM lms_etl.attempts"),
            count_before,
            "the natural key holds in the new month"
        );
    }

    /// README "Scaling": on Citus "attempts (and its monthly partitions)" are distributed;
    /// the loader makes the months of every window it loads. A run on the cluster must leave
    /// its rows in their months, not in the default partition (where retention never reaches
    /// them and every month's scan reads them all).
    #[test]
    fn a_run_on_citus_loads_into_monthly_partitions_not_the_default_one() {
        let cluster = distributed();
        let api = DemoApi::start(&["--records-per-hour", "60"]);
        let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
        let out = etl.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"]);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            !etl.log_text()
                .contains("could not create the window's monthly partitions"),
            "{}",
            etl.log_text()
        );
        assert!(cluster.count("SELECT count(*) FROM lms_etl.attempts") > 0);
        assert_eq!(
            cluster.count("SELECT count(*) FROM lms_etl.attempts_default"),
            0
        );
    }

    /// An install that grew on one node, then moved to Citus as the README says: the data
    /// is loaded first, then citus_distribute(). Everything loaded stays once, and a re-run
    /// of the window adds nothing.
    #[test]
    fn citus_distribute_after_loading_keeps_every_row_once() {
        let cluster = CitusCluster::start();
        let api = DemoApi::start(&["--records-per-hour", "100"]);
        let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
        let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 06:00"];
        let out = etl.run(&window);
        assert!(out.status.success(), "{}", describe(&out));
        let before = cluster.attempts_fingerprint();
        let stats_before = ctext(
            &mut cluster.client(),
            "SELECT string_agg(concat_ws(',', day, attempts, unique_users), ' ') FROM lms_etl.daily_stats",
        );
        cluster.distribute();
        cluster.distribute();
        assert_eq!(cluster.attempts_fingerprint(), before);
        let out = etl.run(&window);
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(cluster.attempts_fingerprint(), before);
        assert_eq!(
            ctext(
                &mut cluster.client(),
                "SELECT concat_ws(',', inserted, duplicates = fetched) FROM lms_etl.runs WHERE run_id = 2"
            ),
            "0,t"
        );
        assert_eq!(
            ctext(
                &mut cluster.client(),
                "SELECT string_agg(concat_ws(',', day, attempts, unique_users), ' ') FROM lms_etl.daily_stats"
            ),
            stats_before
        );
    }

    /// A chunk's commit spans the coordinator and the workers. A worker lost during it can
    /// leave rows that show up with no mark for their day: committed on one worker while the
    /// coordinator's half rolled back (a one-phase commit, which Citus uses when the chunk
    /// read attempts before writing), or prepared on the worker and committed by Citus'
    /// recovery after an aggregation already took the day's mark (two phases). Either way the
    /// rows are there once and the next run reads the chunk again (it was not recorded, or it
    /// is in the overlap): a chunk found already loaded marks the days of its records, so
    /// they are counted. Here such rows are put on a worker by hand.
    #[test]
    fn rows_a_chunk_left_on_one_worker_are_counted_once_the_chunk_is_read_again() {
        let cluster = distributed();
        let api = DemoApi::start(&["--records-per-hour", "60"]);
        let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
        let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"];
        let out = etl.run(&window);
        assert!(out.status.success(), "{}", describe(&out));
        let mut client = cluster.client();
        // A shard of November's partition on worker 1.
        let shard: i64 = client
            .query_one(
                "SELECT s.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
                   JOIN pg_dist_node n USING (groupid)
                  WHERE s.logicalrelid = 'lms_etl.attempts_2026_11'::regclass AND n.nodeport = $1
                  ORDER BY 1 LIMIT 1",
                &[&i32::from(cluster.worker_ports[0])],
            )
            .unwrap()
            .get(0);
        // Worker 1's half of a chunk whose coordinator half was lost: rows, no mark.
        cluster
            .worker_client(Worker::One)
            .batch_execute(&format!(
                "INSERT INTO lms_etl.attempts_2026_11_{shard} (user_id, attempt_type, is_correct, created_at)
                 SELECT 'orphan-' || i, 'submit', true, '2026-11-20 01:00+00'::timestamptz + i * interval '1 second'
                   FROM generate_series(1, 25) i"
            ))
            .unwrap();
        let day_count = "SELECT count(*) FROM lms_etl.attempts
                          WHERE created_at >= '2026-11-20' AND created_at < '2026-11-21'";
        let stats = "SELECT attempts FROM lms_etl.daily_stats WHERE day = '2026-11-20'";
        client
            .batch_execute("SELECT count(*) FROM lms_etl.aggregate_pending()")
            .unwrap();
        assert_eq!(
            cluster.count(stats) + 25,
            cluster.count(day_count),
            "the premise"
        );
        // The next run reads the window again: everything is a duplicate, and the days of
        // the chunks it found loaded are aggregated again.
        let out = etl.run(&window);
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(
            cluster.count(stats),
            cluster.count(day_count),
            "daily_stats of 2026-11-20 against its attempts"
        );
    }
}
