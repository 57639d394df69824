//! Monthly partitions of `lms_etl.attempts` and retention are SQL (`sql/partitions.sql`);
//! this module holds their tests.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    fn text(sql: &str) -> String {
        Spi::get_one::<String>(sql).unwrap().unwrap_or_default()
    }

    fn insert(at: &str) {
        Spi::run_with_args(
            "INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at)
             VALUES ('u1', 'submit', true, $1::timestamptz)",
            &[at.into()],
        )
        .unwrap();
    }

    /// Partition DDL in tests running side by side would deadlock on each other's test
    /// transactions (each holds its locks to the end): one at a time.
    fn alone() {
        Spi::run("SELECT pg_advisory_xact_lock(1819112299)").unwrap();
    }

    fn partition_of(at: &str) -> String {
        text(&format!(
            "SELECT tableoid::regclass::text FROM lms_etl.attempts WHERE created_at = '{at}'"
        ))
    }

    #[pg_test]
    fn unpartitioned_months_wait_in_the_default_partition() {
        alone();
        insert("2027-05-10 12:00+00");
        assert_eq!(
            partition_of("2027-05-10 12:00+00"),
            "lms_etl.attempts_default"
        );
        let made = text(
            "SELECT string_agg(p::text, ',') FROM lms_etl.create_partitions('2027-05-01 00:00+00', '2027-06-15 00:00+00') p",
        );
        assert_eq!(made, "lms_etl.attempts_2027_05,lms_etl.attempts_2027_06");
        // The waiting row moved into its month, unchanged and once.
        assert_eq!(
            partition_of("2027-05-10 12:00+00"),
            "lms_etl.attempts_2027_05"
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE created_at >= '2027-01-01'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM ONLY lms_etl.attempts_default WHERE created_at >= '2027-01-01'"), 0);
        // Again: nothing new, nothing moved.
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.create_partitions('2027-05-01 00:00+00', '2027-06-15 00:00+00')"),
            0
        );
        // Months are UTC months: the last microsecond of May is May's.
        insert("2027-05-31 23:59:59.999999+00");
        insert("2027-06-01 00:00+00");
        assert_eq!(
            partition_of("2027-05-31 23:59:59.999999+00"),
            "lms_etl.attempts_2027_05"
        );
        assert_eq!(
            partition_of("2027-06-01 00:00+00"),
            "lms_etl.attempts_2027_06"
        );
        // The natural key holds across the partitioned table.
        let dup = text(
            "SELECT state FROM tests.capture_error(
                 'INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at)
                  VALUES (''u1'', ''submit'', true, ''2027-06-01 00:00+00'')', 'x')",
        );
        assert_eq!(dup, "23505");
    }

    #[pg_test]
    fn months_far_from_now_stay_in_the_default_partition() {
        alone();
        insert("2001-03-10 12:00+00");
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.create_partitions('2001-01-01', '2001-06-01')"),
            0,
            "more than 10 years back"
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.create_partitions(now() + interval '2 years', now() + interval '3 years')"),
            0,
            "more than a year ahead"
        );
        assert_eq!(
            partition_of("2001-03-10 12:00+00"),
            "lms_etl.attempts_default"
        );
    }

    /// A partition changed by hand: another unique index would make ON CONFLICT DO NOTHING
    /// (no target) skip a new record as a duplicate; without the key a record loads twice.
    /// Either way the load is refused, naming the partition and the problem.
    #[pg_test]
    fn a_partition_with_another_unique_index_refuses_loads() {
        alone();
        // A month ahead of now, whenever this runs (months are made up to a year ahead).
        let month = text("SELECT to_char(date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '2 months', 'YYYY-MM')");
        let part = format!("lms_etl.attempts_{}", month.replace('-', "_"));
        let _ = count(&format!(
            "SELECT count(*) FROM lms_etl.create_partitions('{month}-01 00:00+00', '{month}-02 00:00+00')"
        ));
        Spi::run(&format!("CREATE UNIQUE INDEX by_hand ON {part} (user_id)")).unwrap();
        let chunk = format!(
            r#"'[{{"lti_user_id": "u9", "passback_params": "{{''lis_result_sourcedid'': ''x''}}", "is_correct": 1, "attempt_type": "submit", "created_at": "{month}-10 10:00:00.000000"}}]'"#
        );
        let load = format!(
            "SELECT state, message FROM tests.capture_error($q$SELECT lms_etl.ingest_chunk({chunk}, NULL, 'UTC')$q$, 'x')"
        );
        let (state, message) = Spi::get_two::<String, String>(&load).unwrap();
        let message = message.unwrap_or_default();
        assert_eq!(state.as_deref(), Some("55000"), "{message}");
        assert!(
            message.contains(&part) && message.contains("by_hand"),
            "{message}"
        );
        assert_eq!(
            text("SELECT string_agg(partition::text || ': ' || problem, '; ') FROM lms_etl.unfit_partitions()"),
            format!("{part}: unique index or exclusion constraint lms_etl.by_hand besides the natural key")
        );
        Spi::run("DROP INDEX lms_etl.by_hand").unwrap();
        let key = format!("{}_natural_key", part.trim_start_matches("lms_etl."));
        Spi::run(&format!("ALTER TABLE {part} DROP CONSTRAINT {key}")).unwrap();
        let (state, message) = Spi::get_two::<String, String>(&load).unwrap();
        let message = message.unwrap_or_default();
        assert_eq!(state.as_deref(), Some("55000"), "{message}");
        assert!(message.contains("has no natural key"), "{message}");
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u9'"),
            0
        );
    }

    /// Keys that look like the natural key but compare otherwise, and a month partitioned
    /// again by hand: each would lose a record as a "duplicate" or fail late, so each is unfit.
    #[pg_test]
    fn a_key_that_compares_otherwise_or_a_sub_partition_is_unfit() {
        alone();
        let month = |ahead: i32| {
            let start = text(&format!(
                "SELECT to_char(date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '{ahead} months', 'YYYY-MM-DD')"
            ));
            let end = text(&format!(
                "SELECT to_char(date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '{} months', 'YYYY-MM-DD')",
                ahead + 1
            ));
            format!("FOR VALUES FROM ('{start} 00:00+00') TO ('{end} 00:00+00')")
        };
        let unfit = "SELECT string_agg(partition::text || ': ' || problem, '; ' ORDER BY partition::text, problem) FROM lms_etl.unfit_partitions()";
        // A key under a case-insensitive collation: "U1" would meet "u1".
        Spi::run("CREATE COLLATION IF NOT EXISTS tests.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)").unwrap();
        Spi::run(&format!(
            "CREATE TABLE lms_etl.by_hand_ci PARTITION OF lms_etl.attempts {}",
            month(4)
        ))
        .unwrap();
        Spi::run("CREATE UNIQUE INDEX by_hand_ci_key ON lms_etl.by_hand_ci (created_at, user_id COLLATE tests.ci, attempt_type, lis_result_sourcedid) NULLS NOT DISTINCT").unwrap();
        assert_eq!(
            text(unfit),
            "lms_etl.by_hand_ci: no natural key; lms_etl.by_hand_ci: unique index or exclusion constraint lms_etl.by_hand_ci_key besides the natural key"
        );
        Spi::run("DROP TABLE lms_etl.by_hand_ci").unwrap();
        // A deferred key: a record would be in twice until COMMIT fails.
        Spi::run(&format!(
            "CREATE TABLE lms_etl.by_hand_deferred PARTITION OF lms_etl.attempts {}",
            month(5)
        ))
        .unwrap();
        Spi::run("ALTER TABLE lms_etl.by_hand_deferred ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid) DEFERRABLE INITIALLY DEFERRED").unwrap();
        assert!(
            text(unfit).starts_with("lms_etl.by_hand_deferred: no natural key"),
            "{}",
            text(unfit)
        );
        Spi::run("DROP TABLE lms_etl.by_hand_deferred").unwrap();
        // A month partitioned again, with the key, whose leaf has another unique index.
        Spi::run(&format!(
            "CREATE TABLE lms_etl.by_hand_sub PARTITION OF lms_etl.attempts {} PARTITION BY LIST (attempt_type)",
            month(6)
        ))
        .unwrap();
        Spi::run("ALTER TABLE lms_etl.by_hand_sub ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid)").unwrap();
        Spi::run("CREATE TABLE lms_etl.by_hand_sub_all PARTITION OF lms_etl.by_hand_sub DEFAULT")
            .unwrap();
        assert_eq!(text(unfit), "", "the key on every level is fit");
        Spi::run("CREATE UNIQUE INDEX by_hand_sub_extra ON lms_etl.by_hand_sub_all (created_at, user_id)").unwrap();
        assert_eq!(
            text(unfit),
            "lms_etl.by_hand_sub_all: unique index or exclusion constraint lms_etl.by_hand_sub_extra besides the natural key"
        );
    }

    #[pg_test]
    fn a_span_over_ten_years_is_refused() {
        let (state, message) = Spi::get_two::<String, String>(
            "SELECT state, message FROM tests.capture_error(
                 'SELECT count(*) FROM lms_etl.create_partitions(''2000-01-01'', ''2020-01-01'')', 'x')",
        )
        .unwrap();
        assert_eq!(state.as_deref(), Some("22023"), "{message:?}");
        assert!(message.unwrap().contains("10 years"));
    }

    #[pg_test]
    fn retention_detaches_old_months_and_keeps_their_statistics() {
        alone();
        Spi::run("DELETE FROM lms_etl.attempts; DELETE FROM lms_etl.daily_stats").unwrap();
        Spi::run("SELECT count(*) FROM lms_etl.create_partitions('2020-01-01', '2020-02-15')")
            .unwrap();
        insert("2020-01-10 12:00+00");
        insert("2020-02-10 12:00+00");
        Spi::run("SELECT lms_etl.refresh_daily_stats('2020-01-10', '2020-01-10')").unwrap();
        assert_eq!(
            count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2020-01-10'"),
            1
        );

        // Not configured: nothing happens.
        assert_eq!(count("SELECT count(*) FROM lms_etl.apply_retention()"), 0);
        assert_eq!(count("SELECT count(*) FROM lms_etl.attempts"), 2);

        // Keep 12 months: both 2020 months are older and leave attempts, detached.
        Spi::run("SELECT lms_etl.set_setting('retention.months', '12')").unwrap();
        let done = text(
            "SELECT string_agg(partition_name || ':' || action, ',' ORDER BY partition_name) FROM lms_etl.apply_retention()",
        );
        assert_eq!(done, "attempts_2020_01:detached,attempts_2020_02:detached");
        assert_eq!(count("SELECT count(*) FROM lms_etl.attempts"), 0);
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts_2020_01"),
            1,
            "a detached month keeps its rows"
        );

        // Aggregating a day before the horizon keeps its statistics: no zeros.
        Spi::run("SELECT count(*) FROM lms_etl.refresh_daily_stats('2020-01-09', '2020-01-11')")
            .unwrap();
        assert_eq!(
            count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2020-01-10'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM lms_etl.daily_stats WHERE day BETWEEN '2020-01-09' AND '2020-01-11'"), 1, "no zero rows made for old days");
        Spi::run("INSERT INTO lms_etl.pending_days (day) VALUES ('2020-01-10')").unwrap();
        Spi::run("SELECT count(*) FROM lms_etl.aggregate_pending()").unwrap();
        assert_eq!(
            count("SELECT attempts FROM lms_etl.daily_stats WHERE day = '2020-01-10'"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.pending_days WHERE day = '2020-01-10'"),
            0
        );

        // Drop mode drops.
        Spi::run("SELECT count(*) FROM lms_etl.create_partitions('2020-03-01', '2020-03-02')")
            .unwrap();
        Spi::run("SELECT lms_etl.set_setting('retention.action', 'drop')").unwrap();
        assert_eq!(
            text("SELECT string_agg(partition_name || ':' || action, ',') FROM lms_etl.apply_retention()"),
            "attempts_2020_03:dropped"
        );
        assert_eq!(
            count("SELECT count(*) FROM pg_class WHERE relname = 'attempts_2020_03'"),
            0
        );
        // Months inside the horizon stay.
        Spi::run(
            "SELECT count(*) FROM lms_etl.create_partitions(now() - interval '11 months', now())",
        )
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM lms_etl.apply_retention()"), 0);
        assert!(
            count(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'lms_etl.attempts'::regclass"
            ) >= 12
        );
    }

    #[pg_test]
    fn retention_settings_are_validated() {
        for bad in [
            "('retention.months', '-1')",
            "('retention.months', 'two')",
            "('retention.action', 'truncate')",
        ] {
            let sql = format!("SELECT lms_etl.set_setting{bad}");
            let (state, _) = Spi::get_two_with_args::<String, String>(
                "SELECT state, message FROM tests.capture_error($1, 'x')",
                &[sql.clone().into()],
            )
            .unwrap();
            assert_eq!(state.as_deref(), Some("22023"), "{sql}");
        }
    }
}
