//! `lms_etl.health()` is SQL (`sql/health.sql`) so that psql, pg_cron, monitoring and the
//! loader read the same checks; this module holds its tests.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// (status, value, message) of the checks whose name starts with `prefix`, in order.
    fn checks(prefix: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT status, value, message FROM lms_etl.health() WHERE \"check\" LIKE $1 || '%'",
                    None,
                    &[prefix.into()],
                )
                .unwrap();
            for row in rows {
                out.push((
                    row.get::<String>(1).unwrap().unwrap(),
                    row.get::<String>(2).unwrap().unwrap(),
                    row.get::<String>(3).unwrap().unwrap(),
                ));
            }
        });
        out
    }

    /// Other tests (pg_cron's) commit rows in this database: each test starts from empty
    /// tables, in its own transaction.
    fn empty_tables() {
        Spi::run(
            "DELETE FROM lms_etl.attempts; DELETE FROM lms_etl.runs; DELETE FROM lms_etl.daily_stats",
        )
        .unwrap();
    }

    fn statuses(prefix: &str) -> Vec<String> {
        checks(prefix).into_iter().map(|(s, _, _)| s).collect()
    }

    /// A daily_stats row `days_ago` report-zone days before today.
    fn day(days_ago: i32, attempts: i64) {
        Spi::run_with_args(
            "INSERT INTO lms_etl.daily_stats (day, attempts, successful_attempts, unique_users)
             VALUES ((now() AT TIME ZONE 'UTC')::date - $1, $2, 0, 0)
             ON CONFLICT (day) DO UPDATE SET attempts = EXCLUDED.attempts",
            &[days_ago.into(), attempts.into()],
        )
        .unwrap();
    }

    #[pg_test]
    fn an_empty_install_is_unknown_never_an_alarm() {
        empty_tables();
        assert_eq!(statuses("freshness"), ["unknown", "unknown"]);
        assert_eq!(statuses("volume"), ["unknown"]);
        assert_eq!(statuses("rejected"), ["unknown"]);
        assert!(checks("sheets").is_empty(), "Sheets was never configured");
    }

    #[pg_test]
    fn run_freshness_is_per_platform_when_there_are_several() {
        empty_tables();
        let run = |client: &str, hours_ago: i32| {
            Spi::run_with_args(
                "INSERT INTO lms_etl.runs (window_start, window_end, status, finished_at, client)
                 VALUES (now() - interval '2 days', now() - interval '1 day', 'succeeded',
                         now() - make_interval(hours => $2), $1)",
                &[client.into(), hours_ago.into()],
            )
            .unwrap();
        };
        run("alpha", 1);
        // One platform: one row, named as ever.
        let names = Spi::get_one::<String>(
            "SELECT string_agg(\"check\" || '=' || status, ',') FROM lms_etl.health()
              WHERE \"check\" LIKE 'freshness: last successful run%'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(names, "freshness: last successful run=ok");
        // beta went silent two days ago: alpha's runs must not hide it.
        run("beta", 48);
        let rows = Spi::get_one::<String>(
            "SELECT string_agg(\"check\" || '=' || status, ',' ORDER BY \"check\")
               FROM lms_etl.health() WHERE \"check\" LIKE 'freshness: last successful run%'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            rows,
            "freshness: last successful run (alpha)=ok,freshness: last successful run (beta)=fail"
        );
    }

    #[pg_test]
    fn a_day_far_below_its_weekday_warns_and_a_usual_one_does_not() {
        empty_tables();
        for (weeks, attempts) in [(1, 1000), (2, 1010), (3, 990), (4, 1005)] {
            day(1 + 7 * weeks, attempts);
        }
        day(1, 1000);
        assert_eq!(statuses("volume"), ["ok"]);
        day(1, 370);
        let (status, value, message) = checks("volume").remove(0);
        assert_eq!((status.as_str(), value.as_str()), ("warn", "370"));
        assert!(message.contains("370 attempts, -63% vs usual"), "{message}");
        // A day with no statistics at all counts as zero: the silent failure to catch.
        Spi::run(
            "DELETE FROM lms_etl.daily_stats WHERE day = (now() AT TIME ZONE 'UTC')::date - 1",
        )
        .unwrap();
        assert_eq!(statuses("volume"), ["warn"]);
        // Less than four weeks of history: unknown, not an alarm.
        Spi::run(
            "DELETE FROM lms_etl.daily_stats WHERE day = (now() AT TIME ZONE 'UTC')::date - 29",
        )
        .unwrap();
        assert_eq!(statuses("volume"), ["unknown"]);
    }

    #[pg_test]
    fn eight_normal_weeks_raise_no_false_alarm() {
        empty_tables();
        // A weekday pattern (quiet weekends) with up to ±10% noise, deterministic.
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for days_ago in 1..=56 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 21) as i64 - 10; // -10..=10 %
            let base = if days_ago % 7 < 2 { 3000 } else { 9000 };
            day(days_ago, base + base * noise / 100);
        }
        Spi::run("SELECT lms_etl.set_setting('health.volume_days', '28')").unwrap();
        let volume = statuses("volume");
        assert_eq!(volume.len(), 28);
        assert!(volume.iter().all(|s| s == "ok"), "{volume:?}");
        // The same data with one day dipped to 37 %: exactly that day warns.
        Spi::run(
            "UPDATE lms_etl.daily_stats SET attempts = attempts * 37 / 100
              WHERE day = (now() AT TIME ZONE 'UTC')::date - 3",
        )
        .unwrap();
        let volume = statuses("volume");
        assert_eq!(
            volume.iter().filter(|s| *s == "warn").count(),
            1,
            "{volume:?}"
        );
        assert_eq!(volume[25], "warn");
    }

    #[pg_test]
    fn stale_data_and_an_old_success_fail_freshness() {
        empty_tables();
        Spi::run(
            "INSERT INTO lms_etl.attempts (user_id, attempt_type, is_correct, created_at)
             VALUES ('u1', 'run', NULL, now() - interval '3 days')",
        )
        .unwrap();
        Spi::run(
            "INSERT INTO lms_etl.runs (window_start, window_end, status, finished_at)
             VALUES (now() - interval '4 days', now() - interval '3 days', 'succeeded', now() - interval '3 days')",
        )
        .unwrap();
        assert_eq!(statuses("freshness"), ["fail", "fail"]);
        Spi::run("SELECT lms_etl.set_setting('health.max_data_age', '4 days')").unwrap();
        Spi::run("SELECT lms_etl.set_setting('health.max_run_age', '4 days')").unwrap();
        assert_eq!(statuses("freshness"), ["ok", "ok"]);
    }

    #[pg_test]
    fn the_rejected_share_of_yesterdays_runs_is_judged() {
        empty_tables();
        Spi::run(
            "INSERT INTO lms_etl.runs (started_at, window_start, window_end, status, fetched, rejected, conflicts)
             VALUES (((now() AT TIME ZONE 'UTC')::date - 1)::timestamp AT TIME ZONE 'UTC' + interval '3 hours',
                     now() - interval '2 days', now() - interval '1 day', 'succeeded', 1000, 80, 20)",
        )
        .unwrap();
        let (status, value, _) = checks("rejected").remove(0);
        assert_eq!((status.as_str(), value.as_str()), ("warn", "0.1000"));
        Spi::run("SELECT lms_etl.set_setting('health.max_rejected_share', '0.2')").unwrap();
        assert_eq!(statuses("rejected"), ["ok"]);
    }

    #[pg_test]
    fn days_missing_from_sheets_warn_where_sheets_is_configured() {
        empty_tables();
        Spi::run(
            "INSERT INTO lms_etl.runs (window_start, window_end, sheets_configured)
             VALUES (now() - interval '1 day', now(), true)",
        )
        .unwrap();
        assert_eq!(statuses("sheets"), ["ok"]);
        day(2, 10);
        let (status, value, message) = checks("sheets").remove(0);
        assert_eq!((status.as_str(), value.as_str()), ("warn", "1"));
        assert!(message.contains("not yet in Google Sheets"), "{message}");
    }

    #[pg_test]
    fn health_settings_are_validated() {
        empty_tables();
        for (name, value) in [
            ("health.volume_k", "-1"),
            ("health.volume_pct", "101"),
            ("health.max_data_age", "soon"),
            ("health.volume_days", "0"),
            ("no.such.setting", "1"),
        ] {
            let state = Spi::get_one_with_args::<String>(
                "SELECT state FROM tests.capture_error('SELECT lms_etl.set_setting($1, ''' || $2 || ''')', $1)",
                &[name.into(), value.into()],
            )
            .unwrap();
            assert_eq!(state.as_deref(), Some("22023"), "{name} = {value}");
        }
        assert_eq!(
            Spi::get_one::<String>("SELECT lms_etl.setting('health.volume_pct')")
                .unwrap()
                .as_deref(),
            Some("25")
        );
    }
}
