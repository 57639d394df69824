//! The demo API's data as the insight features see it once loaded: problems of different
//! difficulty in `lms_etl.daily_problem_stats`, and a `--volume-dip` day that
//! `lms_etl.health()` flags while normal weeks raise no volume alarm.

use chrono::{Duration, NaiveDate};
use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};

/// The database's UTC date: `health()` counts its days from the database's `now()`.
fn database_today(db: &TestDb) -> NaiveDate {
    let text: String = db
        .client()
        .query_one(
            "SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
            &[],
        )
        .unwrap()
        .get(0);
    NaiveDate::parse_from_str(&text, "%Y-%m-%d").unwrap()
}

/// Loads the whole UTC days [first, end) of a demo API started with `demo_args` (one chunk a
/// day), the API's and the loader's clocks at `now`.
fn load_days(db: &TestDb, first: NaiveDate, end: NaiveDate, now: &str, demo_args: &[&str]) {
    let mut args = vec!["--now", now];
    args.extend_from_slice(demo_args);
    let api = DemoApi::start(&args);
    let etl = Etl::new(db, &api.url).with_env("LMS_ETL_NOW", now);
    let (start, end) = (first.to_string(), end.to_string());
    let out = etl.run(&[
        "run",
        "--start",
        &start,
        "--end",
        &end,
        "--chunk-minutes",
        "1440",
        "--no-sheets",
        "--no-email",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Loads the `days` whole days before `today` (UTC) of a small demo API (40 records an hour)
/// started with `demo_args` too, the clocks half an hour into `today`: every loaded day is
/// complete, and its midnight is past the settle lag.
fn load_small_days_before(db: &TestDb, today: NaiveDate, days: i64, demo_args: &[&str]) {
    let mut demo = vec!["--records-per-hour", "40"];
    demo.extend_from_slice(demo_args);
    let now = format!("{today} 00:30:00");
    load_days(db, today - Duration::days(days), today, &now, &demo);
}

/// (status, value, message) of each volume check, in day order.
fn volume_checks(db: &TestDb) -> Vec<(String, String, String)> {
    db.client()
        .query(
            "SELECT status, value, message FROM lms_etl.health()
              WHERE \"check\" LIKE 'volume%' ORDER BY \"check\"",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Per problem of one day: `course_id/block_id` and its share of correct submits, for the
/// problems with at least 50 submits, in key order.
fn problem_success(db: &TestDb, day: &str) -> Vec<(String, f64)> {
    db.client()
        .query(
            "SELECT course_id || '/' || block_id,
                    successful_submits::float8 / submits
               FROM lms_etl.daily_problem_stats
              WHERE day = $1::text::date AND block_id IS NOT NULL AND submits >= 50
              ORDER BY 1",
            &[&day],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_day_of_demo_data_has_hard_and_easy_problems_and_the_same_seed_the_same_rates() {
    let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let demo = ["--records-per-hour", "3000", "--seed", "5"];
    let mut loaded = Vec::new();
    for _ in 0..2 {
        let db = TestDb::new();
        load_days(
            &db,
            day,
            day + Duration::days(1),
            "2026-11-21 12:00:00",
            &demo,
        );
        loaded.push(problem_success(&db, "2026-11-20"));
    }
    let rates: Vec<f64> = loaded[0].iter().map(|(_, rate)| *rate).collect();
    assert!(
        rates.len() >= 40,
        "{} problems with 50 submits",
        rates.len()
    );
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(hi - lo >= 0.4, "first-day success rates from {lo} to {hi}");
    assert!(lo > 0.05 && hi < 0.98, "rates from {lo} to {hi}");
    assert_eq!(
        loaded[0], loaded[1],
        "the same seed, the same per-problem rates"
    );
}

#[test]
fn a_volume_dip_on_the_last_complete_day_makes_the_volume_check_warn() {
    let db = TestDb::new();
    let today = database_today(&db);
    let dip_day = today - Duration::days(1);
    let dip = format!("{dip_day}:0.37");
    load_small_days_before(&db, today, 35, &["--volume-dip", &dip]);

    let checks = volume_checks(&db);
    assert_eq!(checks.len(), 1, "{checks:?}");
    let (status, value, message) = &checks[0];
    assert_eq!(status, "warn", "{message}");
    // The dip day's attempts against the same weekday a week before: 0.37 of it, give or take
    // the day-to-day noise of ~960 records.
    let week_before: i64 = db
        .client()
        .query_one(
            "SELECT attempts FROM lms_etl.daily_stats WHERE day = $1::text::date",
            &[&(dip_day - Duration::days(7)).to_string()],
        )
        .unwrap()
        .get(0);
    let ratio = value.parse::<f64>().unwrap() / week_before as f64;
    assert!(
        (0.3..0.45).contains(&ratio),
        "{value} of {week_before}: {message}"
    );
    assert!(message.contains(" attempts, -"), "{message}");
}

#[test]
fn eight_normal_weeks_of_demo_data_raise_no_volume_alarm() {
    let db = TestDb::new();
    db.client()
        .batch_execute("SELECT lms_etl.set_setting('health.volume_days', '28')")
        .unwrap();
    let today = database_today(&db);
    load_small_days_before(&db, today, 56, &[]);

    let checks = volume_checks(&db);
    assert_eq!(checks.len(), 28, "{checks:?}");
    for (status, _, message) in &checks {
        assert_eq!(status, "ok", "{message}");
    }
}
