//! Ways around the drop guard that say no CASCADE (adversary review of issue 8): the README
//! promises a plain drop never deletes loaded data. Each test loads rows, tries one way, and
//! expects the data still there, or a refusal.

use std::time::{Duration, Instant};

use lms_etl_tests::harness::TestDb;
use postgres::{Client, NoTls};

/// One run and two attempts, as a load leaves them (the guard looks at attempts and runs).
const LOAD: &str = "
    INSERT INTO lms_etl.runs (window_start, window_end, status)
         VALUES ('2026-01-01 00:00+00', '2026-01-02 00:00+00', 'succeeded');
    INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at)
         VALUES ('u1', 'run', NULL, '2026-01-01 10:00+00'),
                ('u2', 'submit', true, '2026-01-01 11:00+00');";

fn rows_left(db: &TestDb) -> i64 {
    if db.count("SELECT count(to_regclass('lms_etl.attempts'))") == 0 {
        return -1;
    }
    db.count("SELECT count(*) FROM lms_etl.attempts")
}

/// Ok when the statement was refused with 2BP01, or ran and left the data; else the loss.
fn assert_kept(db: &TestDb, what: &str, result: Result<(), postgres::Error>) {
    if let Err(e) = &result {
        let code = e.code().map(|c| c.code().to_owned());
        assert_eq!(
            code.as_deref(),
            Some("2BP01"),
            "{what}: refused otherwise: {e}"
        );
    }
    assert_eq!(
        rows_left(db),
        2,
        "{what}: {} without CASCADE deleted the loaded data (-1: the tables are gone)",
        if result.is_ok() {
            "ran and"
        } else {
            "was refused but"
        }
    );
}

/// `DROP OWNED BY` a role: the usual step before `DROP ROLE`. When that role created the
/// extension (a superuser other than `postgres`), PostgreSQL drops the extension, and the
/// tables with it, though the statement names no extension and says no CASCADE.
/// A cluster-wide role for one test, removed (with what it owns in `db`) however the test ends.
struct OwnerRole<'a> {
    name: String,
    db: &'a TestDb,
}

impl Drop for OwnerRole<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = self.db.client().batch_execute(&format!(
            "DROP EXTENSION IF EXISTS lms_etl CASCADE; DROP OWNED BY {name}; DROP ROLE {name}"
        ));
    }
}

#[test]
fn drop_owned_by_the_extensions_owner_never_deletes_loaded_data() {
    let db = TestDb::new();
    let owner = OwnerRole {
        name: format!("lms_etl_test_owner_{}", std::process::id()),
        db: &db,
    };
    let name = &owner.name;
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "DROP EXTENSION lms_etl;
             CREATE ROLE {name} SUPERUSER NOLOGIN;
             SET ROLE {name};
             CREATE EXTENSION lms_etl;
             {LOAD}
             RESET ROLE;"
        ))
        .unwrap();
    let result = admin.batch_execute(&format!("DROP OWNED BY {name}"));
    assert_kept(&db, "DROP OWNED BY", result);
}

/// A drop whose snapshot predates the rows: in a REPEATABLE READ transaction the guard's
/// look finds the tables empty, while a load committed rows since.
#[test]
fn a_drop_in_an_older_snapshot_never_deletes_rows_committed_since() {
    let db = TestDb::new();
    let mut dropper = db.client();
    let mut tx = dropper
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    tx.query_one("SELECT 1", &[]).unwrap(); // the snapshot is taken here
    db.client().batch_execute(LOAD).unwrap();
    let result = tx.batch_execute("DROP EXTENSION lms_etl");
    let result = result.and_then(|()| tx.commit());
    assert_kept(&db, "DROP EXTENSION in REPEATABLE READ", result);
}

/// A drop while the first load is in flight: the guard looks before PostgreSQL locks the
/// tables, sees nothing committed, then waits for the load's lock and drops what it committed.
#[test]
fn a_drop_racing_a_load_in_flight_never_deletes_its_rows() {
    let db = TestDb::new();
    let mut loader = db.client();
    let mut load = loader.transaction().unwrap();
    load.batch_execute(LOAD).unwrap();

    let url = db.url.clone();
    let dropper = std::thread::spawn(move || {
        let mut client = Client::connect(&url, NoTls).unwrap();
        client.batch_execute("DROP EXTENSION lms_etl")
    });
    // Commit only once the drop waits for a lock, i.e. after its guard has looked.
    let mut watch = db.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND query = 'DROP EXTENSION lms_etl'
                    AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0);
        if waiting > 0 {
            break;
        }
        assert!(
            !dropper.is_finished(),
            "the drop finished before the load committed"
        );
        assert!(
            Instant::now() < deadline,
            "the drop never waited for the load"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    load.commit().unwrap();
    let result = dropper.join().unwrap();
    assert_kept(&db, "DROP EXTENSION racing a load", result);
}

/// `session_replication_role = replica` (set by replication tools and bulk loaders) turns
/// off every event trigger not marked ENABLE ALWAYS, the guard's included.
#[test]
fn a_drop_in_a_replica_session_never_deletes_loaded_data() {
    let db = TestDb::new();
    db.client().batch_execute(LOAD).unwrap();
    let mut client = db.client();
    let result =
        client.batch_execute("SET session_replication_role = replica; DROP EXTENSION lms_etl");
    assert_kept(
        &db,
        "DROP EXTENSION with session_replication_role = replica",
        result,
    );
}
