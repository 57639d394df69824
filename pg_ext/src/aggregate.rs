//! The daily aggregation is SQL (`sql/aggregate.sql`, `sql/settings.sql`) so that psql,
//! pg_cron and the loader call the same thing; this module holds its tests.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn insert(user: &str, at: &str, kind: &str, correct: Option<bool>) {
        Spi::run_with_args(
            "INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at) VALUES ($1, $2, $3, $4::timestamp AT TIME ZONE 'UTC')",
            &[user.into(), kind.into(), correct.into(), at.into()],
        )
        .expect("insert");
    }

    fn day_row(sql: &str) -> (i64, i64, i64) {
        let (a, s, u) = Spi::get_three::<i64, i64, i64>(sql).expect("query");
        (a.unwrap(), s.unwrap(), u.unwrap())
    }

    fn known_data() {
        insert("u1", "2026-11-20 00:00:00", "run", None);
        insert("u1", "2026-11-20 12:00:00", "submit", Some(true));
        insert("u2", "2026-11-20 23:59:59.999999", "submit", Some(false));
        insert("u2", "2026-11-22 00:00:00", "submit", Some(true));
        insert("u3", "2026-11-22 08:00:00", "submit", Some(true));
    }

    #[pg_test]
    fn aggregates_one_day_by_created_at_date() {
        known_data();
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.aggregate_daily('2026-11-20')"),
            (3, 1, 2)
        );
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.daily_stats WHERE day = '2026-11-20'"),
            (3, 1, 2)
        );
    }

    #[pg_test]
    fn a_day_without_attempts_gets_zeros() {
        known_data();
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.aggregate_daily('2026-11-21')"),
            (0, 0, 0)
        );
    }

    #[pg_test]
    fn refresh_covers_the_range_inclusive_and_upserts() {
        known_data();
        let days = Spi::get_one::<String>(
            "SELECT string_agg(day || ':' || attempts || '/' || successful_attempts || '/' || unique_users, ' ' ORDER BY day)
               FROM lms_etl.refresh_daily_stats('2026-11-20', '2026-11-22')",
        );
        assert_eq!(
            days,
            Ok(Some(
                "2026-11-20:3/1/2 2026-11-21:0/0/0 2026-11-22:2/2/2".into()
            ))
        );
        insert("u9", "2026-11-21 09:00:00", "submit", Some(true));
        Spi::run("SELECT lms_etl.refresh_daily_stats('2026-11-20', '2026-11-22')").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM lms_etl.daily_stats WHERE day BETWEEN '2026-11-20' AND '2026-11-22'"),
            Ok(Some(3))
        );
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.daily_stats WHERE day = '2026-11-21'"),
            (1, 1, 1)
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM lms_etl.refresh_daily_stats('2026-11-22', '2026-11-20')"
            ),
            Ok(Some(0))
        );
    }

    #[pg_test]
    fn days_are_calendar_days_of_the_report_zone() {
        known_data();
        // In Moscow (UTC+3), 2026-11-20 23:59:59.999999 UTC is already the 21st.
        Spi::run("SELECT lms_etl.set_setting('report_timezone', 'Europe/Moscow')").unwrap();
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.aggregate_daily('2026-11-20')"),
            (2, 1, 1)
        );
        assert_eq!(
            day_row("SELECT attempts, successful_attempts, unique_users FROM lms_etl.aggregate_daily('2026-11-21')"),
            (1, 0, 1)
        );
    }

    #[pg_test]
    fn a_new_report_zone_marks_every_day_for_re_aggregation() {
        known_data();
        Spi::run("SELECT lms_etl.refresh_daily_stats('2026-11-20', '2026-11-22')").unwrap();
        Spi::run("DELETE FROM lms_etl.pending_days").unwrap();
        Spi::run("SELECT lms_etl.set_setting('report_timezone', 'America/New_York')").unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT string_agg(day::text, ',' ORDER BY day) FROM lms_etl.pending_days"
            ),
            Ok(Some("2026-11-19,2026-11-20,2026-11-21,2026-11-22".into()))
        );
        let total =
            Spi::get_one::<i64>("SELECT sum(attempts)::bigint FROM lms_etl.aggregate_pending()");
        assert_eq!(total, Ok(Some(5)));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM lms_etl.pending_days"),
            Ok(Some(0))
        );
        // Setting the same zone again changes nothing.
        Spi::run("SELECT lms_etl.set_setting('report_timezone', 'America/New_York')").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM lms_etl.pending_days"),
            Ok(Some(0))
        );
    }

    #[pg_test(
        error = "invalid value for lms_etl setting report_timezone: unknown time zone \"Mars/Olympus\""
    )]
    fn an_unknown_zone_is_refused() {
        Spi::run("SELECT lms_etl.set_setting('report_timezone', 'Mars/Olympus')").unwrap();
    }

    #[pg_test]
    fn settings_default_to_utc() {
        assert_eq!(
            Spi::get_one::<String>("SELECT lms_etl.setting('report_timezone') || ' ' || lms_etl.setting('source_timezone')"),
            Ok(Some("UTC UTC".into()))
        );
    }

    #[pg_test]
    fn attempt_type_and_run_correctness_are_enforced() {
        let bad_type = PgTryBuilder::new(|| {
            insert("u1", "2026-11-20 00:00:00", "peek", None);
            false
        })
        .catch_others(|_| true)
        .execute();
        assert!(bad_type, "attempt_type 'peek' must be refused");
    }

    /// The schedule in sql/pg_cron.sql, run for real by pg_cron's background worker. The test
    /// transaction is rolled back and invisible to pg_cron, so dblink commits on the side.
    #[pg_test]
    fn pg_cron_runs_the_daily_refresh() {
        Spi::run("CREATE EXTENSION IF NOT EXISTS dblink").unwrap();
        let conn =
            "format('dbname=%s port=%s host=%s', current_database(), current_setting('port'),
                           split_part(current_setting('unix_socket_directories'), ',', 1))";
        let side = |sql: &str| {
            Spi::run_with_args(&format!("SELECT dblink_exec({conn}, $1)"), &[sql.into()])
                .expect("dblink_exec");
        };
        side("CREATE EXTENSION IF NOT EXISTS pg_cron");
        side("DELETE FROM lms_etl.daily_stats WHERE day = '2026-01-01'");
        side("INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at) VALUES ('cron-u', 'submit', true, '2026-01-01 10:00+00') ON CONFLICT DO NOTHING");
        // Same call as sql/pg_cron.sql, every minute, on the fixed day planted above.
        let schedule = "SELECT cron.schedule('lms_etl_test', '* * * * *', $$SELECT count(*) FROM lms_etl.refresh_daily_stats('2026-01-01', '2026-01-01')$$)::text";
        Spi::run_with_args(
            &format!("SELECT * FROM dblink({conn}, $1) AS t(job text)"),
            &[schedule.into()],
        )
        .expect("schedule");
        let mut done = false;
        for _ in 0..150 {
            let n = Spi::get_one::<i64>(&format!(
                "SELECT n FROM dblink({conn}, 'SELECT count(*) FROM lms_etl.daily_stats WHERE day = ''2026-01-01'' AND attempts = 1') AS t(n bigint)"
            ));
            if n == Ok(Some(1)) {
                done = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let details = Spi::get_one::<String>(&format!(
            "SELECT d FROM dblink({conn}, 'SELECT coalesce(string_agg(status || '': '' || return_message, ''; ''), ''no runs'') FROM cron.job_run_details') AS t(d text)"
        ));
        Spi::run(&format!("SELECT * FROM dblink({conn}, 'SELECT cron.unschedule(''lms_etl_test'')::text') AS t(ok text)"))
            .expect("unschedule");
        side("DELETE FROM lms_etl.attempts WHERE user_id = 'cron-u'");
        side("DELETE FROM lms_etl.daily_stats WHERE day = '2026-01-01'");
        assert!(
            done,
            "pg_cron did not refresh daily_stats within 75 s; job runs: {details:?}"
        );
    }

    const BLOCK_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BLOCK_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// An attempt on a problem: the sourcedid names course, block and learner.
    fn attempt_on(block: &str, user: &str, at: &str, kind: &str, correct: Option<bool>) {
        let sourcedid = format!("course-v1:Org+C1+2026:lms.example.org-{block}:{user}");
        Spi::run_with_args(
            "INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, attempt_type, is_correct, created_at)
             VALUES ($1, $2, $3, $4, $5::timestamp AT TIME ZONE 'UTC')",
            &[user.into(), sourcedid.into(), kind.into(), correct.into(), at.into()],
        )
        .expect("insert");
    }

    fn problem_rows() -> String {
        Spi::get_one::<String>(
            "SELECT string_agg(coalesce(block_id, '-') || ' ' || concat_ws('/', attempts, runs, submits,
                    successful_submits, users, submitters, users_solved, users_first_submit_correct), '; '
                    ORDER BY block_id NULLS LAST)
               FROM lms_etl.daily_problem_stats WHERE day = '2026-11-20'",
        )
        .unwrap()
        .unwrap_or_default()
    }

    #[pg_test]
    fn per_problem_stats_count_learners_solutions_first_submits() {
        let (u1, u2, u3) = (
            "11111111111111111111111111111111",
            "22222222222222222222222222222222",
            "33333333333333333333333333333333",
        );
        // Block A: u1 runs, fails, then solves; u2 solves at the first submit; u3 only runs.
        attempt_on(BLOCK_A, u1, "2026-11-20 08:00:00", "run", None);
        attempt_on(BLOCK_A, u1, "2026-11-20 08:01:00", "submit", Some(false));
        attempt_on(BLOCK_A, u1, "2026-11-20 08:02:00", "submit", Some(true));
        attempt_on(BLOCK_A, u2, "2026-11-20 09:00:00", "submit", Some(true));
        attempt_on(BLOCK_A, u3, "2026-11-20 10:00:00", "run", None);
        // Block B: u1 fails twice.
        attempt_on(BLOCK_B, u1, "2026-11-20 11:00:00", "submit", Some(false));
        attempt_on(BLOCK_B, u1, "2026-11-20 11:05:00", "submit", Some(false));
        // No sourcedid, and a malformed one: one row with NULL course and block.
        insert("u9", "2026-11-20 12:00:00", "submit", Some(true));
        Spi::run(
            "INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, attempt_type, is_correct, created_at)
             VALUES ('u8', 'not-a-sourcedid', 'run', NULL, '2026-11-20 13:00:00+00')",
        )
        .unwrap();
        // The next day is another day.
        attempt_on(BLOCK_A, u3, "2026-11-21 00:00:00", "submit", Some(true));

        let day = Spi::get_one::<String>(
            "SELECT concat_ws('/', attempts, successful_attempts, unique_users, submits, submit_success_rate)
               FROM lms_etl.aggregate_daily('2026-11-20')",
        )
        .unwrap();
        // 9 attempts, 3 correct, 5 learners (u1 u2 u3 u9 u8), 6 submits, 3 of them correct.
        assert_eq!(day.as_deref(), Some("9/3/5/6/0.5"));
        assert_eq!(
            problem_rows(),
            format!("{BLOCK_A} 5/2/3/2/3/2/2/1; {BLOCK_B} 2/0/2/0/1/1/0/0; - 2/1/1/1/2/1/1/1")
        );
        // Per-day totals equal daily_stats.
        let sums = Spi::get_one::<String>(
            "SELECT concat_ws('/', sum(p.attempts), sum(p.submits), sum(p.successful_submits))
               FROM lms_etl.daily_problem_stats p WHERE p.day = '2026-11-20'",
        )
        .unwrap();
        assert_eq!(sums.as_deref(), Some("9/6/3"));
        // Recomputing replaces the day's rows, never adds to them.
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        assert_eq!(
            problem_rows(),
            format!("{BLOCK_A} 5/2/3/2/3/2/2/1; {BLOCK_B} 2/0/2/0/1/1/0/0; - 2/1/1/1/2/1/1/1")
        );
    }

    #[pg_test]
    fn a_day_without_submits_has_no_success_rate() {
        insert("u1", "2026-11-20 00:00:00", "run", None);
        let rate = Spi::get_one::<String>(
            "SELECT concat_ws('/', submits, coalesce(submit_success_rate::text, 'null'))
               FROM lms_etl.aggregate_daily('2026-11-20')",
        )
        .unwrap();
        assert_eq!(rate.as_deref(), Some("0/null"));
        assert_eq!(problem_rows(), "- 1/1/0/0/1/0/0/0");
        // An empty day: zeros and no problem rows.
        Spi::run("DELETE FROM lms_etl.attempts").unwrap();
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        assert_eq!(problem_rows(), "");
    }

    #[pg_test]
    fn only_new_numbers_make_a_day_due_for_sheets() {
        known_data();
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        let pending = || {
            Spi::get_one::<String>(
                "SELECT coalesce(string_agg(day::text, ',' ORDER BY day), '') FROM lms_etl.sheets_pending()",
            )
            .unwrap()
            .unwrap()
        };
        assert_eq!(pending(), "2026-11-20");
        let marked = Spi::get_one::<i64>(
            "SELECT lms_etl.mark_sheets_pushed(array_agg(day), array_agg(changed_at)) FROM lms_etl.daily_stats",
        )
        .unwrap();
        assert_eq!(marked, Some(1));
        assert_eq!(pending(), "");
        // Same numbers again: still pushed. A new attempt: due again.
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        assert_eq!(pending(), "");
        insert("u7", "2026-11-20 05:00:00", "run", None);
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        assert_eq!(pending(), "2026-11-20");
        // A mark for a version that is no longer current marks nothing.
        let stale = Spi::get_one::<i64>(
            "SELECT lms_etl.mark_sheets_pushed(ARRAY[date '2026-11-20'], ARRAY[timestamptz '2000-01-01'])",
        )
        .unwrap();
        assert_eq!(stale, Some(0));
        assert_eq!(pending(), "2026-11-20");
    }
}
