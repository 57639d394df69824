//! Findings of the adversary review of issue 10 (per-problem aggregation, monthly partitions),
//! each kept as a test: a dump of a database with monthly partitions that did not restore
//! cleanly (fixed in 3aac659, kept as a regression test), statistics of detached months
//! zeroed once retention is switched off, a load racing `create_partitions` for its month, a
//! record whose key is too long for the natural key's index failing its whole chunk, a
//! non-UTF-8 database, and a partition made by hand without the natural key.

use std::process::Command;
use std::time::Duration;

use lms_etl_tests::harness::{admin_url, describe, pg_tool, TestDb};
use postgres::{Client, NoTls};

fn text(db: &TestDb, sql: &str) -> String {
    db.client()
        .query_one(sql, &[])
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

/// A database in use: two monthly partitions with rows, and rows waiting in the default
/// partition (a month not made yet), as a load of future-dated records leaves them.
fn partitioned_database() -> TestDb {
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "SELECT count(*) FROM lms_etl.create_partitions('2026-10-01 00:00+00', '2026-11-30 00:00+00');
             INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, attempt_type, is_correct, created_at)
             VALUES ('u1', 'course-v1:A+B+C:h-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:11111111111111111111111111111111',
                     'submit', true, '2026-10-10 12:00+00'),
                    ('u1', NULL, 'run', NULL, '2026-11-10 12:00+00'),
                    ('u2', NULL, 'run', NULL, '2031-01-10 12:00+00');",
        )
        .unwrap();
    assert_eq!(
        text(
            &db,
            "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM lms_etl.attempts"
        ),
        "lms_etl.attempts_2026_10,lms_etl.attempts_2026_11,lms_etl.attempts_default"
    );
    db
}

/// pg_dump keeps run-time partitions (they are not extension members) with their unique
/// index; restoring, CREATE EXTENSION has already given the parent its natural key, so the
/// dump's ATTACH PARTITION makes the partition's index, and the dump's own
/// `ADD CONSTRAINT attempts_YYYY_MM_..._key` then fails: "relation ... already exists".
/// `pg_restore --exit-on-error` stops there (leaving out everything after it), a plain
/// pg_restore exits 1, `psql -v ON_ERROR_STOP=1` of a plain dump exits 3.
#[test]
fn a_dump_of_a_database_with_monthly_partitions_restores_without_errors() {
    let source = partitioned_database();
    let before = source.attempts_fingerprint();

    // Custom format, restored as the harness does (any error output fails it).
    let restored = TestDb::restored_from(&source);
    assert_eq!(restored.attempts_fingerprint(), before);

    // Plain format through psql, stopping at the first error, as the manual restores one.
    let dump = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(pg_tool("pg_dump"))
        .args(["--format=plain", "--file"])
        .arg(dump.path())
        .arg("--dbname")
        .arg(&source.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let target = TestDb::empty();
    let out = Command::new(pg_tool("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(dump.path())
        .arg(&target.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(target.attempts_fingerprint(), before);
    assert_eq!(
        target.count(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'lms_etl.attempts'::regclass"
        ),
        3,
        "two months and the default partition"
    );
}

/// aggregate_daily keeps a day's statistics only while the day is before the *current*
/// retention horizon. Once months were detached, switching retention off (or keeping more
/// months) moves the horizon, and a refresh over those days writes zeros (and bumps
/// changed_at, so the zeros go to Sheets) although their attempts sit in the detached tables.
#[test]
fn statistics_of_detached_months_survive_retention_being_switched_off() {
    let db = TestDb::new();
    let mut c = db.client();
    c.batch_execute(
        "SELECT count(*) FROM lms_etl.create_partitions('2020-01-01 00:00+00', '2020-01-02 00:00+00');
         INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at)
              VALUES ('u1', 'submit', true, '2020-01-10 12:00+00');
         SELECT count(*) FROM lms_etl.refresh_daily_stats('2020-01-10', '2020-01-10');
         SELECT lms_etl.set_setting('retention.months', '12');
         SELECT count(*) FROM lms_etl.apply_retention();",
    )
    .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts_2020_01"),
        1,
        "detached, kept"
    );
    // The operator keeps everything from now on, then refreshes history (after an upgrade,
    // say, to fill daily_problem_stats).
    c.batch_execute(
        "SELECT lms_etl.set_setting('retention.months', '0');
         SELECT count(*) FROM lms_etl.refresh_daily_stats('2020-01-01', '2020-01-31');",
    )
    .unwrap();
    assert_eq!(
        db.count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2020-01-10'"),
        1,
        "the day's statistics were zeroed although its attempts are only detached"
    );
}

/// A chunk whose month `create_partitions` is making at that moment (the nightly pg_cron job,
/// or another platform's loader): the INSERT routes the row to the default partition with the
/// partition map it read before the ATTACH committed, and PostgreSQL refuses it once the
/// lock is granted: "new row for relation attempts_default violates partition constraint"
/// (23514). The chunk fails, and with it the run.
#[test]
fn a_load_racing_create_partitions_for_its_month_is_not_refused() {
    let db = TestDb::new();
    // A month create_partitions makes (it makes none more than a year ahead), not made yet.
    let month = text(
        &db,
        "SELECT to_char((date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC') + interval '2 months', 'YYYY-MM-DD')",
    );
    let mut maker = db.client();
    maker.batch_execute("BEGIN").unwrap();
    let made: i64 = maker
        .query_one(
            "SELECT count(*) FROM lms_etl.create_partitions(($1::text::date)::timestamp AT TIME ZONE 'UTC',
                                                            ($1::text::date)::timestamp AT TIME ZONE 'UTC')",
            &[&month],
        )
        .unwrap()
        .get(0);
    assert_eq!(made, 1, "the month {month} is made in the open transaction");
    let url = db.url.clone();
    let at = format!("{}{}", &month[..8], "10 10:11:12.123456");
    let load = std::thread::spawn(move || {
        let mut loader = Client::connect(&url, NoTls).unwrap();
        let chunk = format!(
            r#"[{{"lti_user_id": "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': 'x', 'lis_outcome_service_url': ''}}", "is_correct": 1, "attempt_type": "submit", "created_at": "{at}"}}]"#
        );
        loader
            .query_one(
                "SELECT inserted FROM lms_etl.ingest_chunk($1, NULL, 'UTC')",
                &[&chunk],
            )
            .map(|row| row.get::<_, i64>(0))
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })
    });
    std::thread::sleep(Duration::from_millis(700));
    maker.batch_execute("COMMIT").unwrap();
    let inserted = load.join().unwrap();
    assert_eq!(inserted, Ok(1));
    assert_eq!(
        text(&db, "SELECT tableoid::regclass::text FROM lms_etl.attempts"),
        format!("lms_etl.attempts_{}_{}", &month[..4], &month[5..7])
    );
}

/// The natural key includes lis_result_sourcedid; its btree rows are capped at 2704 bytes.
/// One record whose sourcedid does not fit (3.2 KB of hex, which does not compress) failed
/// the INSERT of its whole chunk with 54000 "index row size exceeds btree maximum", every
/// run again: the watermark never passed it. It must be quarantined like any invalid record.
#[test]
fn a_record_whose_key_is_too_long_for_the_index_is_quarantined_and_its_chunk_loads() {
    let db = TestDb::new();
    // Hex of a xorshift stream: it does not compress, so the index row holds all of it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let long: String = (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect();
    let record = |sourcedid: &str, at: &str| {
        format!(
            r#"{{"lti_user_id": "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': '{sourcedid}', 'lis_outcome_service_url': ''}}", "is_correct": 1, "attempt_type": "submit", "created_at": "{at}"}}"#
        )
    };
    let chunk = format!(
        "[{}, {}]",
        record(&long, "2026-11-24 10:11:12.123456"),
        record("course-v1:A+B+C:h-x:y", "2026-11-24 10:11:13.123456")
    );
    let row = db.client().query_one(
        "SELECT inserted, rejected FROM lms_etl.ingest_chunk($1, NULL, 'UTC')",
        &[&chunk],
    );
    let row = row.unwrap_or_else(|e| panic!("the chunk failed as a whole: {:?}", e.as_db_error()));
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    assert_eq!(
        text(&db, "SELECT kind FROM lms_etl.rejected_attempts"),
        "key: too long"
    );
}

/// A database that is not UTF-8. pgrx reads text as UTF-8: in LATIN1, split_sourcedid and
/// try_split_sourcedid fail with XX000 (a Rust panic, its backtrace in DETAIL) on any
/// non-ASCII sourcedid, learner_day files a well-formed sourcedid of a course 'École' under
/// the malformed (NULL) problem while one whose Latin-1 bytes happen to be valid UTF-8
/// ('Ã©cole') counts, and ingest_chunk fails on any non-ASCII chunk. CREATE EXTENSION
/// should refuse such a database, saying why.
#[test]
fn create_extension_refuses_a_database_that_is_not_utf8() {
    let name = format!("lms_etl_test_latin1_{}", std::process::id());
    let mut admin = Client::connect(&admin_url(), NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .unwrap();
    struct Dropped<'a>(&'a mut Client, &'a str);
    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.1));
        }
    }
    let _guard = Dropped(&mut admin, &name);
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    let mut db = Client::connect(&url, NoTls).unwrap();
    let created = db.batch_execute("CREATE EXTENSION lms_etl");
    let err = created.expect_err("lms_etl installed into a LATIN1 database");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("UTF8"), "{message}");
}

/// Since the natural key moved from the parent to each partition (3aac659), only partitions
/// made by create_partitions (and the default one) have it. A month or a quarter made by
/// hand (`CREATE TABLE ... PARTITION OF lms_etl.attempts`, as PostgreSQL's manual shows and
/// create_partitions itself allows for "a partition of another name") has no unique index,
/// and insert_attempts' ON CONFLICT DO NOTHING has no target: a re-fetched record is
/// inserted again, doubled. Either such a partition is refused or the key still holds.
#[test]
fn a_partition_made_by_hand_does_not_let_a_reloaded_record_in_twice() {
    let db = TestDb::new();
    let mut c = db.client();
    let quarter = text(
        &db,
        "SELECT to_char(date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '3 months', 'YYYY-MM-DD')",
    );
    let made = c.execute(
        "DO $$ BEGIN EXECUTE format(
             'CREATE TABLE lms_etl.attempts_by_hand PARTITION OF lms_etl.attempts FOR VALUES FROM (%L) TO (%L)',
             $1::date::timestamp AT TIME ZONE 'UTC', ($1::date + 90)::timestamp AT TIME ZONE 'UTC'); END $$"
            .replace("$1", &format!("'{quarter}'"))
            .as_str(),
        &[],
    );
    if let Err(e) = made {
        // Refused: the key cannot be left out.
        eprintln!("a partition made by hand was refused: {e}");
        return;
    }
    let at = format!("{}{}", &quarter[..8], "10 10:11:12.123456");
    let chunk = format!(
        r#"[{{"lti_user_id": "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': 'x', 'lis_outcome_service_url': ''}}", "is_correct": 1, "attempt_type": "submit", "created_at": "{at}"}}]"#
    );
    for _ in 0..2 {
        let loaded = c.query_one(
            "SELECT inserted FROM lms_etl.ingest_chunk($1, NULL, 'UTC')",
            &[&chunk],
        );
        if let Err(e) = loaded {
            // Refused at load time, naming the partition without the key: also safe.
            eprintln!("the load refused: {:?}", e.as_db_error());
            return;
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM lms_etl.attempts"),
        1,
        "the record fetched twice was loaded twice"
    );
}
