//! lms_etl on Citus (issue 11): a throwaway coordinator + 2 workers, the installed extension
//! on every node, `attempts` distributed on `user_id`, the bookkeeping on the coordinator.
//! Each test starts its own cluster (a few seconds) and compares what the loader and the SQL
//! functions do there with the same work on a single node. Needs `make citus`.

use std::process::Output;
use std::time::{Duration, Instant};

use lms_etl_tests::citus_cluster::{CitusCluster, Worker};
use lms_etl_tests::fixture_api::{record, FixtureApi};
use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};
use postgres::Client;

const WINDOW: [&str; 5] = ["run", "--start", "2026-11-20", "--end", "2026-11-22"];

/// A cluster with lms_etl laid out for Citus.
fn distributed() -> CitusCluster {
    let cluster = CitusCluster::start();
    cluster.distribute();
    cluster
}

fn text(client: &mut Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Every statistic of every day (not the computation times).
const DAILY_STATS: &str = "SELECT coalesce(string_agg(concat_ws(',', day, attempts, successful_attempts, unique_users,
                                     submits, round(submit_success_rate::numeric, 9)), ' ' ORDER BY day), '-')
                             FROM lms_etl.daily_stats";
const PROBLEM_STATS: &str = "SELECT coalesce(md5(string_agg(concat_ws(',', day, course_id, block_id, attempts, runs, submits,
                                     successful_submits, users, submitters, users_solved, users_first_submit_correct),
                                     ' ' ORDER BY day, course_id, block_id)), '-') || ':' || count(*)
                               FROM lms_etl.daily_problem_stats";
const RUNS: &str = "SELECT string_agg(concat_ws(',', run_id, status, fetched, inserted, duplicates, conflicts, rejected),
                                      ' | ' ORDER BY run_id) FROM lms_etl.runs";

fn run_ok(etl: &Etl, args: &[&str]) -> Output {
    let out = etl.run(args);
    assert!(out.status.success(), "lms-etl {args:?}: {}", describe(&out));
    out
}

/// The same window loaded into a single-node database, for comparison.
fn single_node_load(api_url: &str, runs: &[&[&str]]) -> TestDb {
    let db = TestDb::new();
    let etl = Etl::new(&db, api_url);
    for args in runs {
        run_ok(&etl, args);
    }
    db
}

fn assert_same_as(cluster: &CitusCluster, single: &TestDb) {
    let mut c = cluster.client();
    let mut s = single.client();
    assert_eq!(
        cluster.attempts_fingerprint(),
        single.attempts_fingerprint(),
        "attempts"
    );
    assert_eq!(text(&mut c, DAILY_STATS), text(&mut s, DAILY_STATS));
    assert_eq!(text(&mut c, PROBLEM_STATS), text(&mut s, PROBLEM_STATS));
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.pending_days"),
        0,
        "a day waits for aggregation"
    );
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
fn the_layout_distributes_attempts_and_keeps_the_bookkeeping_on_the_coordinator() {
    let cluster = distributed();
    // citus_tables and citus_shards leave out tables that belong to an extension, so read
    // Citus' catalog: attempts hash-distributed on user_id, settings a reference table,
    // nothing else of lms_etl known to Citus (the bookkeeping stays on the coordinator).
    // Partitions of attempts (monthly, DEFAULT) are distributed with it and left out here.
    assert_eq!(
        text(
            &mut cluster.client(),
            "SELECT string_agg(logicalrelid::text || ':' || partmethod::text || ':'
                               || coalesce(column_to_column_name(logicalrelid, partkey), '-'),
                               ' ' ORDER BY logicalrelid::text)
               FROM pg_dist_partition JOIN pg_class c ON c.oid = logicalrelid
              WHERE logicalrelid::text LIKE 'lms_etl.%' AND NOT c.relispartition"
        ),
        "lms_etl.attempts:h:user_id lms_etl.settings:n:-"
    );
    // Idempotent: a second call (as after an upgrade) changes nothing and reports the layout.
    assert_eq!(
        text(
            &mut cluster.client(),
            "SELECT string_agg(table_name || '=' || layout, ', ' ORDER BY table_name)
               FROM lms_etl.citus_distribute()
              WHERE table_name IN ('lms_etl.attempts', 'lms_etl.settings', 'lms_etl.runs')"
        ),
        "lms_etl.attempts=distributed by user_id, lms_etl.runs=coordinator, lms_etl.settings=reference table"
    );
    // The shards of attempts are spread over both workers, none on the coordinator.
    assert_eq!(
        text(
            &mut cluster.client(),
            "SELECT string_agg(DISTINCT n.nodeport::text, ' ' ORDER BY n.nodeport::text)
               FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
               JOIN pg_dist_node n USING (groupid)
              WHERE s.logicalrelid = 'lms_etl.attempts'::regclass"
        ),
        {
            let mut ports = cluster.worker_ports.map(|p| p.to_string());
            ports.sort();
            ports.join(" ")
        }
    );
    // The same extension version on every node.
    assert_eq!(
        text(
            &mut cluster.client(),
            "SELECT string_agg(DISTINCT result, ' ') FROM run_command_on_all_nodes(
                 $$SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'$$)"
        ),
        text(
            &mut cluster.client(),
            "SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'"
        )
    );
}

/// set_setting upserts into the settings table, a reference table on Citus; the zone set on
/// the coordinator is what the workers read.
#[test]
fn set_setting_on_the_coordinator_reaches_the_workers() {
    let cluster = distributed();
    let mut client = cluster.client();
    for zone in ["Europe/Moscow", "Asia/Tokyo"] {
        client
            .execute(
                "SELECT lms_etl.set_setting('report_timezone', $1)",
                &[&zone],
            )
            .unwrap_or_else(|e| panic!("set_setting('report_timezone', {zone}): {e:?}"));
    }
    for worker in [Worker::One, Worker::Two] {
        assert_eq!(
            text(
                &mut cluster.worker_client(worker),
                "SELECT lms_etl.setting('report_timezone')"
            ),
            "Asia/Tokyo"
        );
    }
}

#[test]
fn a_load_on_citus_equals_a_single_node_load_of_the_same_window() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "200"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(&etl, &WINDOW);

    let mut client = cluster.client();
    let fetched = cluster.count("SELECT fetched FROM lms_etl.runs WHERE run_id = 1");
    assert!(fetched > 3000, "two days at ~200/h, got {fetched}");
    assert_eq!(
        text(&mut client, RUNS),
        format!("1,succeeded,{fetched},{fetched},0,0,0")
    );
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.run_chunks WHERE run_id = 1"),
        48
    );
    assert_eq!(
        text(
            &mut client,
            "SELECT loaded_until::text FROM lms_etl.watermark"
        ),
        "2026-11-22 00:00:00+00"
    );
    // The rows are on both workers.
    assert_eq!(
        cluster.count(
            "SELECT count(DISTINCT p.groupid) FROM run_command_on_shards('lms_etl.attempts',
                 $$SELECT count(*) FROM %s$$) r JOIN pg_dist_placement p USING (shardid)
              WHERE r.success AND r.result::bigint > 0"
        ),
        2
    );
    let single = single_node_load(&api.url, &[&WINDOW]);
    assert_same_as(&cluster, &single);
}

#[test]
fn the_same_window_twice_adds_nothing_and_counts_the_duplicates() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "100"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(&etl, &WINDOW);
    let before = cluster.attempts_fingerprint();
    run_ok(&etl, &WINDOW);
    let fetched = cluster.count("SELECT fetched FROM lms_etl.runs WHERE run_id = 2");
    assert!(fetched > 0);
    // Citus raises a unique violation inside a distributed INSERT as XX000: a fallback on
    // unique_violation alone never runs, and the whole chunk fails instead.
    assert_eq!(
        text(
            &mut cluster.client(),
            "SELECT concat_ws(',', status, inserted, duplicates, conflicts) FROM lms_etl.runs WHERE run_id = 2"
        ),
        format!("succeeded,0,{fetched},0")
    );
    assert_eq!(cluster.attempts_fingerprint(), before);
}

#[test]
fn a_window_split_differently_loads_the_same_rows() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "150"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    let pieces: [&[&str]; 2] = [
        &[
            "run",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-20 07:13:42.5",
            "--chunk-minutes",
            "7",
        ],
        &[
            "run",
            "--start",
            "2026-11-20 07:13:42.5",
            "--end",
            "2026-11-21 06:00",
            "--chunk-minutes",
            "7",
        ],
    ];
    for args in pieces {
        run_ok(&etl, args);
    }
    let whole = single_node_load(
        &api.url,
        &[&[
            "run",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-21 06:00",
            "--chunk-minutes",
            "360",
        ]],
    );
    assert!(whole.count("SELECT count(*) FROM lms_etl.attempts") > 1000);
    assert_same_as(&cluster, &whole);
}

fn wait_for_chunks(cluster: &CitusCluster, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.count("SELECT count(*) FROM lms_etl.run_chunks") < n {
        assert!(
            Instant::now() < deadline,
            "the run never committed {n} chunks"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_stopped_mid_run_fails_the_run_cleanly_and_the_next_run_loads_what_is_missing() {
    let cluster = distributed();
    let slow = DemoApi::start(&["--records-per-hour", "200", "--latency-ms", "200"]);
    let window = [
        "run",
        "--start",
        "2026-11-20",
        "--end",
        "2026-11-21",
        "--chunk-minutes",
        "30",
    ];
    let etl = Etl::with_database_url(&cluster.loader_url(), &slow.url);
    let child = etl
        .command(&window)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_chunks(&cluster, 4);
    cluster.stop_worker(Worker::Two);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let mut client = cluster.client();
    assert_eq!(
        text(
            &mut client,
            "SELECT status FROM lms_etl.runs WHERE run_id = 1"
        ),
        "failed"
    );
    assert!(
        cluster.count("SELECT count(*) FROM lms_etl.run_chunks") < 48,
        "the run went on without a worker"
    );
    let mail = outbox_mails(&etl).pop().expect("a mail about the failure");
    assert!(mail.contains("FAILED"), "{mail}");

    cluster.start_worker(Worker::Two);
    // A chunk whose commit the stop cut between Citus' two phases is prepared on the worker
    // and committed by Citus' recovery (every citus.recover_2pc_interval, or now on demand):
    // its rows are not lost, and until then they hold their keys (a run waits, then counts
    // them as duplicates).
    cluster
        .client()
        .query_one("SELECT recover_prepared_transactions()", &[])
        .unwrap();
    // No partial chunk: what is stored is exactly what the committed chunks say they inserted.
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.attempts"),
        cluster.count("SELECT coalesce(sum(inserted), 0)::bigint FROM lms_etl.run_chunks")
    );
    let before = cluster.count("SELECT count(*) FROM lms_etl.attempts");

    // The next run of the window loads exactly what is missing.
    let fast = DemoApi::start(&["--records-per-hour", "200"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &fast.url);
    run_ok(&etl, &window);
    let single = single_node_load(&fast.url, &[&window]);
    assert_same_as(&cluster, &single);
    assert_eq!(
        cluster.count("SELECT inserted FROM lms_etl.runs WHERE run_id = 2"),
        single.count("SELECT count(*) FROM lms_etl.attempts") - before
    );
}

/// ingest_chunk called from SQL, as a user may: a new chunk, then the same chunk again.
#[test]
fn ingest_chunk_from_sql_counts_inserts_duplicates_and_conflicts() {
    let cluster = distributed();
    let records = [
        record("u1", "2026-11-20 10:00:00.000000", "run", "null", "p").raw,
        record("u2", "2026-11-20 10:00:01.000000", "submit", "1", "p").raw,
        record("u3", "2026-11-20 10:00:02.000000", "submit", "0", "q").raw,
    ];
    let chunk = format!("[{}]", records.join(", "));
    let changed = format!(
        "[{}, {}]",
        records[0],
        record("u2", "2026-11-20 10:00:01.000000", "submit", "0", "p").raw
    );
    let call = "SELECT concat_ws(',', inserted, duplicates, conflicts, rejected)
                  FROM lms_etl.ingest_chunk($1::text)";
    let mut client = cluster.client();
    let once: String = client.query_one(call, &[&chunk]).unwrap().get(0);
    assert_eq!(once, "3,0,0,0");
    let again: String = client
        .query_one(call, &[&chunk])
        .unwrap_or_else(|e| panic!("the same chunk again: {e:?}"))
        .get(0);
    assert_eq!(again, "0,3,0,0");
    let conflict: String = client
        .query_one(call, &[&changed])
        .unwrap_or_else(|e| panic!("a changed resend: {e:?}"))
        .get(0);
    // As on one node: the unchanged record is a duplicate, the changed one a conflict
    // (quarantined, and counted under conflicts, not rejected).
    assert_eq!(conflict, "0,1,1,0");
    assert_eq!(cluster.count("SELECT count(*) FROM lms_etl.attempts"), 3);
}

/// aggregate_daily, refresh_daily_stats and aggregate_pending recompute what a single node
/// computes, in the report zone set on the coordinator.
#[test]
fn aggregation_functions_give_the_single_node_numbers() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "120"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(&etl, &WINDOW);
    let single = single_node_load(&api.url, &[&WINDOW]);
    for db in [cluster.url(), single.url.clone()] {
        let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        client
            .batch_execute(
                // Straight into the table: set_setting has a test of its own.
                "INSERT INTO lms_etl.settings (name, value) VALUES ('report_timezone', 'Asia/Tokyo');
                 DELETE FROM lms_etl.daily_stats; DELETE FROM lms_etl.daily_problem_stats;
                 SELECT count(*) FROM lms_etl.refresh_daily_stats('2026-11-19', '2026-11-20');
                 SELECT lms_etl.aggregate_daily('2026-11-21');
                 SELECT lms_etl.mark_days('2026-11-21 15:00+00', '2026-11-21 16:00+00');
                 SELECT count(*) FROM lms_etl.aggregate_pending();",
            )
            .unwrap_or_else(|e| panic!("aggregation on {db}: {e:?}"));
    }
    assert_same_as(&cluster, &single);
    assert_eq!(cluster.count("SELECT count(*) FROM lms_etl.daily_stats"), 4);
}

#[test]
fn health_gives_the_single_node_checks() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "100"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    let window = ["run", "--start", "2026-11-20", "--end", "2026-11-20 06:00"];
    run_ok(&etl, &window);
    let single = single_node_load(&api.url, &[&window]);
    // Every check and value but the time the run finished (the two loads are seconds apart).
    let checks = "SELECT string_agg(concat_ws(',', \"check\", status,
                      CASE WHEN \"check\" NOT LIKE 'freshness: last successful run%' THEN value END), ' | ')
                    FROM lms_etl.health()";
    assert_eq!(
        text(&mut cluster.client(), checks),
        text(&mut single.client(), checks)
    );
    // The loader's own `lms-etl health` reads the same function.
    let out = etl.run(&["health"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("freshness"),
        "{}",
        describe(&out)
    );
}

#[test]
fn reprocess_loads_a_quarantined_record_a_newer_rule_accepts() {
    let cluster = distributed();
    let api = FixtureApi::start(vec![record(
        "ok",
        "2026-11-20 10:00:00.000000",
        "run",
        "null",
        "p",
    )]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(
        &etl,
        &[
            "run",
            "--start",
            "2026-11-20 10:00",
            "--end",
            "2026-11-20 11:00",
        ],
    );
    let late = record("was-bad", "2026-11-20 10:05:00.000000", "submit", "1", "p").raw;
    cluster
        .client()
        .execute(
            "INSERT INTO lms_etl.rejected_attempts (run_id, record_index, raw_record, reason, kind)
             VALUES (1, 7, $1, 'record 7: an older rule', 'old rule')",
            &[&late],
        )
        .unwrap();
    let out = run_ok(&etl, &["reprocess", "--run", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 quarantined records examined: 1 loaded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.rejected_attempts"),
        0
    );
    assert_eq!(
        cluster
            .count("SELECT successful_attempts FROM lms_etl.daily_stats WHERE day = '2026-11-20'"),
        1
    );
}

#[test]
fn a_plain_drop_extension_is_refused_while_attempts_hold_rows() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(
        &etl,
        &["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"],
    );
    let loaded = cluster.count("SELECT count(*) FROM lms_etl.attempts");
    assert!(loaded > 0);
    let refused = cluster
        .client()
        .batch_execute("DROP EXTENSION lms_etl")
        .expect_err("DROP EXTENSION lms_etl without CASCADE must be refused");
    let message = refused
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| refused.to_string());
    assert!(message.contains("lms_etl"), "{message}");
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.attempts"),
        loaded
    );
}

/// pg_cron on the coordinator (preloaded after citus) runs the aggregation of marked days.
#[test]
fn pg_cron_on_the_coordinator_aggregates_the_pending_days() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(
        &etl,
        &["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"],
    );
    let mut client = cluster.client();
    client
        .batch_execute(
            "CREATE EXTENSION pg_cron;
             DELETE FROM lms_etl.daily_stats;
             SELECT lms_etl.mark_days('2026-11-20 01:00+00', '2026-11-20 01:00+00');
             SELECT cron.schedule('lms_etl_pending_days', '* * * * *',
                                  $$SELECT count(*) FROM lms_etl.aggregate_pending()$$);",
        )
        .unwrap();
    // pg_cron's schedules have a one-minute grain.
    let deadline = Instant::now() + Duration::from_secs(130);
    loop {
        let done = cluster.count(
            "SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')",
        );
        if done > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "pg_cron never ran the job");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        text(
            &mut client,
            "SELECT status || ': ' || coalesce(return_message, '') FROM cron.job_run_details ORDER BY runid LIMIT 1"
        ),
        "succeeded: SELECT 1"
    );
    assert_eq!(
        cluster.count("SELECT count(*) FROM lms_etl.pending_days"),
        0
    );
    assert_eq!(
        cluster.count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2026-11-20'"),
        cluster.count("SELECT count(*) FROM lms_etl.attempts")
    );
}

/// `CREATE EXTENSION citus` turns `ssl` on with a self-signed X.509 v1 certificate (Citus'
/// own, for the connections between nodes). A loader URL without `sslmode` (libpq's
/// `prefer`: TLS, any certificate) must connect to such a coordinator as libpq does.
#[test]
fn the_loader_connects_to_a_coordinator_with_citus_own_certificate() {
    let cluster = CitusCluster::start();
    assert_eq!(
        text(&mut cluster.client(), "SHOW ssl"),
        "on",
        "Citus turned TLS on"
    );
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    for url in [
        cluster.default_loader_url(),
        format!("{}?sslmode=require", cluster.default_loader_url()),
    ] {
        let etl = Etl::with_database_url(&url, &api.url);
        let out = etl.run(&["status"]);
        assert!(
            out.status.success(),
            "lms-etl status at {url}: {}",
            describe(&out)
        );
    }
}

/// The README's uninstall on Citus deletes the data on every node. Citus' own drop trigger
/// skips extension members, and undistribute_table refuses them ("cannot alter table because
/// an extension depends on it"): a bare DROP EXTENSION lms_etl CASCADE leaves the shards (or,
/// with partitions, fails). So the README's way takes the distributed tables out of the
/// extension and drops them as Citus tables first.
/// README, "Scaling": uninstalling a distributed install.
const UNINSTALL_ON_CITUS: &str = "
    ALTER EXTENSION lms_etl DROP TABLE lms_etl.attempts;
    ALTER EXTENSION lms_etl DROP TABLE lms_etl.attempts_default;
    ALTER EXTENSION lms_etl DROP TABLE lms_etl.settings;
    DROP TABLE lms_etl.attempts, lms_etl.settings;
    DROP EXTENSION lms_etl CASCADE;";

#[test]
fn uninstall_on_citus_leaves_no_shard_behind() {
    let cluster = distributed();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::with_database_url(&cluster.loader_url(), &api.url);
    run_ok(
        &etl,
        &["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"],
    );
    let mut client = cluster.client();
    client.batch_execute(UNINSTALL_ON_CITUS).unwrap();
    assert_eq!(
        text(
            &mut client,
            "SELECT string_agg(DISTINCT result, ' ') FROM run_command_on_all_nodes(
                 $$SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), 'none')
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'lms_etl'$$)"
        ),
        "none"
    );
}
