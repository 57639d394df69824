//! Behaviour of the demo API as a whole: the data set through the JSON and COPY writers,
//! its clock and time zone, and the HTTP contract against a server bound to 127.0.0.1:0.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone as _, Timelike};
use clap::Parser;
use lms_etl_parse::{parse_chunk, parse_passback_params};

use super::render::JsonChunks;
use super::*;

fn at(day: u32, hour: u32, minute: u32) -> NaiveDateTime {
    naive(2026, 11, day, hour, minute)
}

fn naive(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(year, month, day)
        .unwrap()
        .and_hms_opt(hour, minute, 0)
        .unwrap()
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// A clock so late that everything generated so far is visible.
const FAR_FUTURE: i64 = i64::MAX / 2;

/// What the API answers for the naive [start, end) in the args' zone when its clock reads
/// `now` (microseconds, UTC), without HTTP.
fn window_json_at(
    args: &DemoApiArgs,
    start: NaiveDateTime,
    end: NaiveDateTime,
    now: i64,
) -> String {
    let data = Arc::new(args.data_set());
    let chunks = JsonChunks::new(data, Selection::new(args.timezone, start, end, now));
    let mut bytes = Vec::new();
    for chunk in chunks {
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).unwrap()
}

/// As `window_json_at`, at the start of the args' clock (`--now`, or the real time).
fn window_json(args: &DemoApiArgs, start: NaiveDateTime, end: NaiveDateTime) -> String {
    window_json_at(args, start, end, args.clock().start().timestamp_micros())
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

/// The records of an answer written in UTC as they read in `zone`: JSON texts with
/// `created_at` moved to the naive local time, sorted, for multiset comparisons.
fn utc_records_in_zone(json: &str, zone: Tz) -> Vec<String> {
    let values: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    let mut records: Vec<String> = values
        .into_iter()
        .map(|mut v| {
            let parsed = v["created_at"]
                .as_str()
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok());
            if let Some(t) = parsed {
                let local = zone.from_utc_datetime(&t).naive_local();
                v["created_at"] = local.format("%Y-%m-%d %H:%M:%S%.6f").to_string().into();
            }
            v.to_string()
        })
        .collect();
    records.sort_unstable();
    records
}

/// The records of an answer as re-serialized JSON, sorted: comparable with `utc_records_in_zone`.
fn normalized_records(json: &str) -> Vec<String> {
    utc_records_in_zone(json, Tz::UTC)
}

/// `created_at` of every record of an answer, in answer order.
fn created_ats(json: &str) -> Vec<NaiveDateTime> {
    parse_chunk(json)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().created_at)
        .collect()
}

/// The records of an answer as their raw JSON texts, sorted, for multiset comparisons.
fn sorted_records(json: &str) -> Vec<String> {
    let mut records: Vec<String> = lms_etl_parse::split_records(json)
        .unwrap()
        .into_iter()
        .map(|r| r.get().to_owned())
        .collect();
    records.sort_unstable();
    records
}

fn args(records_per_hour: u32, malformed: f64) -> DemoApiArgs {
    DemoApiArgs {
        records_per_hour,
        malformed,
        // After every window below, whatever the machine's clock says.
        now: Some(at(27, 0, 0).and_utc()),
        ..DemoApiArgs::default()
    }
}

#[test]
fn the_same_window_gives_the_same_bytes_every_time() {
    let a = args(360, 0.1);
    let (start, end) = (at(24, 9, 17), at(24, 15, 3));
    let first = window_json(&a, start, end);
    assert_eq!(first, window_json(&a, start, end));
    assert!(sorted_records(&first).len() > 1_000);
}

#[test]
fn a_window_split_anywhere_holds_the_same_records_as_the_whole() {
    let a = args(2_000, 0.05);
    let start = at(24, 10, 0);
    let end = at(24, 13, 0);
    let whole = sorted_records(&window_json(&a, start, end));
    // Cuts inside minutes, on minute edges and one microsecond apart.
    let micro = chrono::Duration::microseconds(1);
    let cuts = [
        start,
        at(24, 10, 0) + chrono::Duration::microseconds(1_234_567),
        at(24, 11, 0) - micro,
        at(24, 11, 0),
        at(24, 11, 0) + micro,
        at(24, 12, 37) + chrono::Duration::microseconds(333_333),
        end,
    ];
    let mut pieces: Vec<String> = cuts
        .windows(2)
        .flat_map(|w| sorted_records(&window_json(&a, w[0], w[1])))
        .collect();
    pieces.sort_unstable();
    assert_eq!(pieces, whole);
}

#[test]
fn the_answer_is_not_sorted_by_time() {
    let json = window_json(&args(3_600, 0.0), at(24, 18, 0), at(24, 18, 10));
    let times: Vec<NaiveDateTime> = parse_chunk(&json)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().created_at)
        .collect();
    assert!(times.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn created_at_lies_in_the_half_open_window_and_is_unique() {
    let start = at(24, 17, 59) + chrono::Duration::microseconds(500_001);
    let end = at(24, 19, 0) + chrono::Duration::microseconds(17);
    let json = window_json(&args(20_000, 0.0), start, end);
    let times: Vec<NaiveDateTime> = parse_chunk(&json)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().created_at)
        .collect();
    assert!(times.len() > 10_000);
    assert!(times.iter().all(|t| (start..end).contains(t)));
    assert_eq!(times.iter().collect::<HashSet<_>>().len(), times.len());
}

#[test]
fn valid_records_parse_and_their_user_is_the_sourcedids_last_segment() {
    let json = window_json(&args(3_000, 0.0), at(24, 0, 0), at(24, 6, 0));
    let raw = serde_json::from_str::<Vec<serde_json::Value>>(&json).unwrap();
    let mut empty_urls = 0;
    for (record, value) in parse_chunk(&json).unwrap().into_iter().zip(&raw) {
        let record = record.unwrap();
        let passback_text = value["passback_params"].as_str().unwrap();
        let passback = parse_passback_params(passback_text).unwrap();
        assert_eq!(passback, record.passback);
        assert_eq!(passback.oauth_consumer_key.as_deref(), Some(""));
        let sourcedid = passback.lis_result_sourcedid.as_deref().unwrap();
        let segments: Vec<&str> = sourcedid.split(':').collect();
        assert_eq!(segments.len(), 4, "{sourcedid}");
        assert_eq!(segments[0], "course-v1");
        assert_eq!(segments[3], record.user_id);
        assert!(
            record.user_id.len() == 32
                && record
                    .user_id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let block = segments[2].strip_prefix("lms.skillfactory.ru-").unwrap();
        let url = passback.lis_outcome_service_url.as_deref().unwrap();
        if url.is_empty() {
            empty_urls += 1;
        } else {
            let course = segments[1];
            assert_eq!(
                url,
                format!("https://lms.skillfactory.ru/courses/course-v1:{course}/xblock/block-v1:{course}+type@lti+block@{block}/handler_noauth/grade_handler")
            );
        }
        // Exactly Python's repr() of the dict, keys in the real API's order.
        assert_eq!(
            passback_text,
            format!("{{'oauth_consumer_key': '', 'lis_result_sourcedid': '{sourcedid}', 'lis_outcome_service_url': '{url}'}}")
        );
        match value["attempt_type"].as_str().unwrap() {
            "run" => assert!(value["is_correct"].is_null()),
            "submit" => assert!(value["is_correct"] == 0 || value["is_correct"] == 1),
            other => panic!("attempt_type {other}"),
        }
    }
    assert!(
        empty_urls > 0 && empty_urls < raw.len() / 10,
        "{empty_urls} of {} without a URL",
        raw.len()
    );
}

#[test]
fn night_hours_have_fewer_records_than_the_afternoon() {
    let count = |h: u32| {
        sorted_records(&window_json(
            &DemoApiArgs::default(),
            at(24, h, 0),
            at(24, h + 1, 0),
        ))
        .len()
    };
    let (night, afternoon) = (count(3), count(17));
    assert!(
        night * 3 < afternoon,
        "night {night}, afternoon {afternoon}"
    );
}

#[test]
fn about_the_requested_share_of_records_is_malformed_and_each_is_rejected() {
    let (start, end) = (at(24, 8, 0), at(24, 20, 0));
    let json = window_json(&args(2_000, 0.1), start, end);
    let parsed = parse_chunk(&json).unwrap();
    let rejected: Vec<_> = parsed.iter().filter_map(|r| r.as_ref().err()).collect();
    let share = rejected.len() as f64 / parsed.len() as f64;
    assert!((0.08..0.12).contains(&share), "{share}");
    // Every kind of damage shows up.
    for reason in [
        "passback_params",
        "attempt_type",
        "created_at",
        "lti_user_id",
    ] {
        assert!(
            rejected.iter().any(|r| r.reason.contains(reason)),
            "no rejection mentions {reason}"
        );
    }
    assert!(rejected.iter().any(|r| !r.raw.contains("\"created_at\"")));
    // The same records are broken whatever the share of the others, and the clean
    // records are the same as with no malformed share at all.
    let clean = window_json(&args(2_000, 0.0), start, end);
    let clean_records = sorted_records(&clean);
    let kept: Vec<String> = {
        let mut kept: Vec<String> = lms_etl_parse::split_records(&json)
            .unwrap()
            .into_iter()
            .zip(&parsed)
            .filter(|(_, p)| p.is_ok())
            .map(|(raw, _)| raw.get().to_owned())
            .collect();
        kept.sort_unstable();
        kept
    };
    let clean_set: HashSet<&String> = clean_records.iter().collect();
    assert!(kept.iter().all(|r| clean_set.contains(r)));
    assert_eq!(kept.len() + rejected.len(), clean_records.len());
}

/// The COPY rows an answer's valid records make: its naive local created_at (in `zone`,
/// outside any repeated hour) back to the UTC instant, sorted.
fn copy_rows_of_answer(json: &str, zone: Tz) -> Vec<String> {
    let mut rows: Vec<String> = parse_chunk(json)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| {
            let is_correct = match r.is_correct {
                None => "\\N",
                Some(true) => "t",
                Some(false) => "f",
            };
            let instant = zone.from_local_datetime(&r.created_at).single().unwrap();
            let p = &r.passback;
            [
                r.user_id.as_ref(),
                p.oauth_consumer_key.as_deref().unwrap(),
                p.lis_result_sourcedid.as_deref().unwrap(),
                p.lis_outcome_service_url.as_deref().unwrap(),
                is_correct,
                r.attempt_type.as_str(),
                &instant
                    .naive_utc()
                    .format("%Y-%m-%d %H:%M:%S%.6f+00")
                    .to_string(),
            ]
            .join("\t")
        })
        .collect();
    rows.sort_unstable();
    rows
}

fn copy_rows(args: &DemoApiArgs, start: NaiveDateTime, end: NaiveDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let rows = write_copy_rows(args, start, end, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len() as u64, rows);
    lines.sort_unstable();
    lines
}

#[test]
fn copy_rows_are_exactly_the_valid_records() {
    let a = args(1_500, 0.2);
    let (start, end) = (
        at(24, 12, 0) + chrono::Duration::microseconds(7),
        at(24, 14, 30),
    );
    let actual = copy_rows(&a, start, end);
    let expected = copy_rows_of_answer(&window_json(&a, start, end), Tz::UTC);
    assert!(expected.len() > 2_000);
    assert_eq!(actual, expected);
    // created_at is the instant with an explicit UTC offset, microseconds always written.
    let created_at = actual[0].rsplit('\t').next().unwrap();
    assert_eq!(created_at.len(), "2026-11-24 12:00:00.000007+00".len());
    assert!(created_at.starts_with("2026-11-24 1") && created_at.ends_with("+00"));
}

#[test]
fn copy_rows_are_the_served_valid_records_at_the_clock_in_the_zone() {
    // Moscow, the clock inside the window, a third of the records late.
    let a = DemoApiArgs {
        timezone: zone("Europe/Moscow"),
        now: Some(at(24, 11, 0).and_utc()),
        late_share: 0.3,
        late_minutes: 45,
        ..args(3_000, 0.1)
    };
    let (start, end) = (at(24, 13, 0), at(24, 15, 0));
    let actual = copy_rows(&a, start, end);
    let expected = copy_rows_of_answer(&window_json(&a, start, end), a.timezone);
    assert_eq!(actual, expected);
    // Moscow 13:00-15:00 is 10:00-12:00 UTC, cut at the clock (11:00 UTC).
    assert!(actual.len() > 1_000);
    assert!(actual.iter().all(|row| {
        let t = row.rsplit('\t').next().unwrap();
        ("2026-11-24 10:00:00.000000+00".."2026-11-24 11:00:00.000001+00").contains(&t)
    }));
    // The same export twice gives the same bytes.
    let once = |_| {
        let mut out = Vec::new();
        write_copy_rows(&a, start, end, &mut out).unwrap();
        out
    };
    assert_eq!(once(1), once(2));
}

#[test]
fn copy_rows_across_the_autumn_change_are_the_instants_of_both_passes() {
    let berlin = DemoApiArgs {
        timezone: zone("Europe/Berlin"),
        ..args(3_600, 0.0)
    };
    let utc = args(3_600, 0.0);
    let rows = copy_rows(
        &berlin,
        naive(2026, 10, 25, 2, 0),
        naive(2026, 10, 25, 3, 0),
    );
    // 02:00-03:00 CEST, then 02:00-03:00 CET: 00:00-02:00 UTC.
    let expected = copy_rows(&utc, naive(2026, 10, 25, 0, 0), naive(2026, 10, 25, 2, 0));
    assert!(expected.len() > 300);
    assert_eq!(rows, expected);
}

#[test]
fn an_empty_or_inverted_window_is_an_empty_array() {
    assert_eq!(
        window_json(&DemoApiArgs::default(), at(24, 3, 0), at(24, 3, 0)),
        "[]"
    );
    let quiet = args(0, 0.0);
    assert_eq!(window_json(&quiet, at(1, 0, 0), at(30, 0, 0)), "[]");
    let mut out = Vec::new();
    assert_eq!(
        write_copy_rows(&quiet, at(1, 0, 0), at(2, 0, 0), &mut out).unwrap(),
        0
    );
}

#[test]
fn nothing_created_after_the_clocks_now_is_served() {
    let now = at(24, 12, 0) + Duration::microseconds(500_000);
    let a = DemoApiArgs {
        now: Some(now.and_utc()),
        ..args(20_000, 0.05)
    };
    let json = window_json(&a, at(24, 11, 0), at(24, 13, 0));
    let valid: Vec<NaiveDateTime> = parse_chunk(&json)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| r.created_at)
        .collect();
    assert!(valid.len() > 10_000);
    assert!(valid.iter().all(|t| *t <= now), "a record from the future");
    // Served right up to the clock: the newest record is seconds old at most.
    let newest = valid.iter().max().unwrap();
    assert!(now - *newest < Duration::seconds(10), "newest {newest}");
    // Exactly the records of [11:00, now] as seen from far later.
    let cut = window_json_at(
        &a,
        at(24, 11, 0),
        now + Duration::microseconds(1),
        FAR_FUTURE,
    );
    assert_eq!(json, cut);
    // A window wholly in the future is empty, however large.
    assert_eq!(
        window_json(&a, at(24, 12, 1), naive(2030, 1, 1, 0, 0)),
        "[]"
    );
}

#[test]
fn late_records_appear_only_after_the_late_minutes_and_are_about_the_share() {
    let t = at(24, 12, 0);
    let on_time = args(12_000, 0.0);
    let late = DemoApiArgs {
        late_share: 0.2,
        late_minutes: 30,
        ..on_time.clone()
    };
    let (start, end) = (at(24, 11, 0), at(24, 13, 0));
    let answer = |a: &DemoApiArgs, now: NaiveDateTime| -> HashSet<String> {
        sorted_records(&window_json_at(a, start, end, micros(now)))
            .into_iter()
            .collect()
    };
    let all = answer(&on_time, t);
    let seen = answer(&late, t);
    assert!(seen.is_subset(&all));
    let created = |r: &String| {
        let (_, tail) = r.split_once("\"created_at\": \"").unwrap();
        NaiveDateTime::parse_from_str(&tail[..26], "%Y-%m-%d %H:%M:%S%.6f").unwrap()
    };
    let missing: Vec<&String> = all.difference(&seen).collect();
    // Only records of the last 30 minutes are still missing...
    let recent = t - Duration::minutes(30);
    assert!(missing.iter().all(|r| created(r) > recent));
    // ...and about the late share of them.
    let recent_all = all.iter().filter(|r| created(r) > recent).count();
    let share = missing.len() as f64 / recent_all as f64;
    assert!(recent_all > 5_000);
    assert!((0.17..0.23).contains(&share), "{share}");
    // Thirty minutes on, every record created up to `t` is there.
    let later = answer(&late, t + Duration::minutes(30));
    assert!(all.is_subset(&later));
    assert!(later.iter().all(|r| all.contains(r) || created(r) > t));
}

#[test]
fn the_same_request_at_a_later_clock_returns_a_superset() {
    let a = DemoApiArgs {
        late_share: 0.3,
        late_minutes: 20,
        timezone: zone("Europe/Berlin"),
        ..args(3_000, 0.1)
    };
    let (start, end) = (at(24, 10, 0), at(24, 14, 0));
    let clocks = [
        at(24, 9, 0),
        at(24, 10, 5),
        at(24, 10, 30),
        at(24, 11, 0),
        at(24, 11, 20),
        at(24, 13, 30),
    ];
    let answers: Vec<HashSet<String>> = clocks
        .iter()
        .map(|now| {
            sorted_records(&window_json_at(&a, start, end, micros(*now)))
                .into_iter()
                .collect()
        })
        .collect();
    // 09:00 UTC is 10:00 in Berlin: nothing created yet.
    assert!(answers[0].is_empty());
    for pair in answers.windows(2) {
        assert!(pair[0].is_subset(&pair[1]));
        assert!(pair[1].len() > pair[0].len());
    }
}

#[test]
fn created_at_is_written_in_the_zone_moscow_is_utc_plus_three() {
    let utc = args(3_000, 0.0);
    let moscow = DemoApiArgs {
        timezone: zone("Europe/Moscow"),
        ..utc.clone()
    };
    // 13:00-14:00 in Moscow is 10:00-11:00 UTC.
    let local = window_json(&moscow, at(24, 13, 0), at(24, 14, 0));
    let times = created_ats(&local);
    assert!(times.len() > 100);
    assert!(times.iter().all(|t| t.hour() == 13));
    assert_eq!(
        normalized_records(&local),
        utc_records_in_zone(
            &window_json(&utc, at(24, 10, 0), at(24, 11, 0)),
            moscow.timezone
        )
    );
}

#[test]
fn a_naive_window_in_the_repeated_autumn_hour_holds_both_passes() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST (01:00 UTC) becomes 02:00 CET.
    let utc = args(3_600, 0.0);
    let berlin = DemoApiArgs {
        timezone: zone("Europe/Berlin"),
        ..utc.clone()
    };
    let day = |h, m| naive(2026, 10, 25, h, m);
    let json = window_json(&berlin, day(2, 0), day(3, 0));
    let records = normalized_records(&json);
    let first_pass = utc_records_in_zone(&window_json(&utc, day(0, 0), day(1, 0)), berlin.timezone);
    let second_pass =
        utc_records_in_zone(&window_json(&utc, day(1, 0), day(2, 0)), berlin.timezone);
    assert!(first_pass.len() > 100 && second_pass.len() > 100);
    let mut both: Vec<String> = first_pass.into_iter().chain(second_pass).collect();
    both.sort_unstable();
    assert_eq!(records, both);
    assert!(created_ats(&json).iter().all(|t| t.hour() == 2));
    // The hours around it hold one pass each: 01:00 CEST and 03:00 CET.
    assert_eq!(
        normalized_records(&window_json(&berlin, day(1, 0), day(2, 0))),
        utc_records_in_zone(
            &window_json(&utc, naive(2026, 10, 24, 23, 0), day(0, 0)),
            berlin.timezone
        )
    );
    assert_eq!(
        normalized_records(&window_json(&berlin, day(3, 0), day(4, 0))),
        utc_records_in_zone(&window_json(&utc, day(2, 0), day(3, 0)), berlin.timezone)
    );
    // Half the naive hour holds the first half of each pass.
    let half = normalized_records(&window_json(&berlin, day(2, 0), day(2, 30)));
    let expected_half: Vec<String> = both
        .iter()
        .filter(|r| {
            r.contains("\"created_at\":\"2026-10-25 02:0")
                || r.contains("\"created_at\":\"2026-10-25 02:1")
                || r.contains("\"created_at\":\"2026-10-25 02:2")
        })
        .cloned()
        .collect();
    assert!(!expected_half.is_empty());
    assert_eq!(half, expected_half);
}

#[test]
fn the_skipped_spring_hour_holds_no_record() {
    // Europe/Berlin, 2026-03-29: 02:00 CET (01:00 UTC) becomes 03:00 CEST.
    let utc = args(3_600, 0.0);
    let berlin = DemoApiArgs {
        timezone: zone("Europe/Berlin"),
        ..utc.clone()
    };
    let day = |h, m| naive(2026, 3, 29, h, m);
    assert_eq!(window_json(&berlin, day(2, 0), day(3, 0)), "[]");
    // The three naive hours 01:00-04:00 hold two hours of instants, 00:00-02:00 UTC.
    let json = window_json(&berlin, day(1, 0), day(4, 0));
    assert_eq!(
        normalized_records(&json),
        utc_records_in_zone(&window_json(&utc, day(0, 0), day(2, 0)), berlin.timezone)
    );
    let hours: HashSet<u32> = created_ats(&json).iter().map(|t| t.hour()).collect();
    assert_eq!(hours, HashSet::from([1, 3]));
}

#[test]
fn a_window_split_anywhere_holds_the_same_records_across_dst_late_and_clock() {
    let a = DemoApiArgs {
        timezone: zone("Europe/Berlin"),
        late_share: 0.25,
        late_minutes: 30,
        // 02:40 CET, in the second pass of the repeated hour.
        now: Some(naive(2026, 10, 25, 1, 40).and_utc()),
        ..args(3_600, 0.05)
    };
    let day = |h, m| naive(2026, 10, 25, h, m);
    let (start, end) = (day(0, 0), day(5, 0));
    let whole = sorted_records(&window_json(&a, start, end));
    assert!(whole.len() > 1_000);
    let cuts = [
        start,
        day(1, 59) + Duration::microseconds(999_999),
        day(2, 0),
        day(2, 30) + Duration::microseconds(1),
        day(3, 0),
        day(4, 17),
        end,
    ];
    let mut pieces: Vec<String> = cuts
        .windows(2)
        .flat_map(|w| sorted_records(&window_json(&a, w[0], w[1])))
        .collect();
    pieces.sort_unstable();
    assert_eq!(pieces, whole);
}

/// Per problem (the sourcedid up to the user), the share of its submits that are correct,
/// over the problems with at least `min_submits` submits in the COPY rows.
fn success_by_problem(rows: &[String], min_submits: u32) -> BTreeMap<String, f64> {
    let mut tally = BTreeMap::<String, (u32, u32)>::new();
    for row in rows {
        let fields: Vec<&str> = row.split('\t').collect();
        let (sourcedid, is_correct) = (fields[2], fields[4]);
        if fields[5] != "submit" {
            continue;
        }
        let problem = sourcedid.rsplit_once(':').unwrap().0.to_owned();
        let t = tally.entry(problem).or_default();
        t.0 += 1;
        t.1 += u32::from(is_correct == "t");
    }
    tally
        .into_iter()
        .filter(|(_, (submits, _))| *submits >= min_submits)
        .map(|(problem, (submits, correct))| (problem, f64::from(correct) / f64::from(submits)))
        .collect()
}

#[test]
fn problems_differ_in_difficulty_and_each_keeps_its_rate_from_day_to_day() {
    let a = args(4_000, 0.0);
    let day = |d| copy_rows(&a, at(d, 0, 0), at(d + 1, 0, 0));
    let monday = success_by_problem(&day(23), 50);
    assert!(
        monday.len() >= 40,
        "{} problems with 50 submits",
        monday.len()
    );
    let (lo, hi) = monday
        .values()
        .fold((1.0_f64, 0.0_f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    assert!(hi - lo >= 0.4, "rates from {lo} to {hi}");
    // The same seed gives the same rates; the next day, each problem is about as hard.
    assert_eq!(success_by_problem(&day(23), 50), monday);
    let tuesday = success_by_problem(&day(24), 300);
    let mut compared = 0;
    for (problem, rate) in &tuesday {
        if let Some(before) = monday.get(problem) {
            assert!(
                (rate - before).abs() < 0.15,
                "{problem}: {before} then {rate}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared} problems compared");
}

#[test]
fn a_volume_dip_keeps_factor_times_the_days_records_and_leaves_other_days_alone() {
    // A plain day, and a 25-hour one (the autumn change in Berlin): the day is the zone's.
    for (zone_name, year, month, day) in [
        ("Europe/Moscow", 2026, 11, 24),
        ("Europe/Berlin", 2026, 10, 25),
    ] {
        let normal = DemoApiArgs {
            timezone: zone(zone_name),
            ..args(600, 0.0)
        };
        let dip = NaiveDate::from_ymd_opt(year, month, day).unwrap();
        let dipped = DemoApiArgs {
            volume_dips: vec![VolumeDip {
                day: dip,
                factor: 0.37,
            }],
            ..normal.clone()
        };
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap();
        let window = |a: &DemoApiArgs, d: NaiveDate| {
            copy_rows(a, midnight(d), midnight(d.succ_opt().unwrap()))
        };
        let all = window(&normal, dip);
        let kept = window(&dipped, dip);
        assert!(all.len() > 10_000, "{zone_name}");
        assert_eq!(
            kept.len(),
            (0.37 * all.len() as f64).floor() as usize,
            "{zone_name}"
        );
        let all_set: HashSet<&String> = all.iter().collect();
        assert!(
            kept.iter().all(|row| all_set.contains(row)),
            "{zone_name}: a subset"
        );
        for other in [dip.pred_opt().unwrap(), dip.succ_opt().unwrap()] {
            assert_eq!(
                window(&dipped, other),
                window(&normal, other),
                "{zone_name} {other}"
            );
        }
        // The JSON answer says the same as the COPY rows.
        let json = window_json(&dipped, midnight(dip), midnight(dip.succ_opt().unwrap()));
        assert_eq!(sorted_records(&json).len(), kept.len());
    }
}

#[test]
fn volume_dips_parse_repeated_and_bad_ones_are_refused_naming_the_flag() {
    let demo = Cli::try_parse_from([
        "demo-api",
        "--volume-dip",
        "2026-11-24:0.37",
        "--volume-dip",
        " 2026-11-25 : 0 ",
    ])
    .unwrap()
    .demo;
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let dip = |d, factor| VolumeDip {
        day: day(d),
        factor,
    };
    assert_eq!(demo.volume_dips, vec![dip(24, 0.37), dip(25, 0.0)]);
    for value in [
        "2026-11-24",
        "2026-11-24:1.5",
        "2026-11-24:-0.1",
        "24.11.2026:0.5",
        "2026-11-24:half",
    ] {
        let err = Cli::try_parse_from(["demo-api", "--volume-dip", value])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--volume-dip") && err.contains("DATE:FACTOR"),
            "{value}: {err}"
        );
    }
    // Args built in code are checked again.
    let refusal = |volume_dips| {
        let args = DemoApiArgs {
            volume_dips,
            ..DemoApiArgs::default()
        };
        args.validate().unwrap_err().to_string()
    };
    assert_eq!(
        refusal(vec![dip(24, 0.5), dip(24, 0.4)]),
        "--volume-dip names 2026-11-24 twice; give each day one factor"
    );
    assert_eq!(
        refusal(vec![dip(24, 1.5)]),
        "--volume-dip 2026-11-24: the factor must be between 0 and 1, found 1.5"
    );
    let help = <Cli as clap::CommandFactory>::command()
        .render_help()
        .to_string();
    assert!(
        help.contains("--volume-dip <DATE:FACTOR>") && help.contains("repeatable"),
        "{help}"
    );
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    demo: DemoApiArgs,
}

#[test]
fn clap_defaults_match_default() {
    let parsed = Cli::try_parse_from(["demo-api"]).unwrap().demo;
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", DemoApiArgs::default())
    );
}

#[test]
fn a_share_outside_zero_to_one_is_refused_naming_the_flag() {
    let err = Cli::try_parse_from(["demo-api", "--fail-5xx", "1.5"])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--fail-5xx") && err.contains("between 0 and 1"),
        "{err}"
    );
    assert!(Cli::try_parse_from(["demo-api", "--malformed", "-0.1"]).is_err());
    let cli = Cli::try_parse_from([
        "demo-api",
        "--malformed",
        "0.25",
        "--fail-429",
        "1",
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    assert_eq!((cli.demo.malformed, cli.demo.fail_429), (0.25, 1.0));

    let bad = DemoApiArgs {
        truncate_bodies: 2.0,
        ..DemoApiArgs::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "--truncate-bodies must be a share between 0 and 1, found 2"
    );
    let mut out = Vec::new();
    assert!(write_copy_rows(&bad, at(1, 0, 0), at(2, 0, 0), &mut out).is_err());
}

#[test]
fn clock_zone_and_lateness_flags_parse_and_bad_values_are_refused_naming_the_flag() {
    let demo = Cli::try_parse_from([
        "demo-api",
        "--now",
        "2026-11-20T13:00:00+03:00",
        "--timezone",
        "Europe/Moscow",
        "--late-share",
        "0.1",
        "--late-minutes",
        "45",
    ])
    .unwrap()
    .demo;
    assert_eq!(demo.now, Some(at(20, 10, 0).and_utc()));
    assert_eq!(demo.timezone, zone("Europe/Moscow"));
    assert_eq!((demo.late_share, demo.late_minutes), (0.1, 45));
    let demo = Cli::try_parse_from(["demo-api", "--now", "2026-11-20 10:00:00.25"])
        .unwrap()
        .demo;
    assert_eq!(
        demo.now,
        Some((at(20, 10, 0) + Duration::milliseconds(250)).and_utc())
    );
    assert_eq!(demo.clock().start(), demo.now.unwrap());
    for (flag, value, says) in [
        ("--timezone", "Mars/Olympus_Mons", "IANA"),
        ("--timezone", "+03:00", "IANA"),
        ("--now", "tomorrow", "RFC 3339"),
        ("--now", "2026-11-20", "RFC 3339"),
        ("--late-share", "1.5", "between 0 and 1"),
    ] {
        let err = Cli::try_parse_from(["demo-api", flag, value])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
    }
    let bad = DemoApiArgs {
        late_share: -0.1,
        ..DemoApiArgs::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "--late-share must be a share between 0 and 1, found -0.1"
    );
}

#[test]
fn debug_output_hides_the_client_key() {
    let a = DemoApiArgs {
        client_key: "s3cr3t-key".to_owned(),
        ..DemoApiArgs::default()
    };
    assert!(!format!("{a:?}").contains("s3cr3t-key"));
}

mod http {
    use super::*;

    const KEY: &str = "k3y-that-must-not-leak";

    struct Running {
        base: String,
        client: reqwest::Client,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    impl Running {
        async fn start(args: DemoApiArgs) -> Running {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let args = DemoApiArgs {
                listen: "127.0.0.1:0".parse().unwrap(),
                client_key: KEY.to_owned(),
                ..args
            };
            let api = bind(args).await.unwrap();
            let base = format!("http://{}", api.local_addr());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(api.serve(async move {
                let _ = stopped.await;
            }));
            Running {
                base,
                client: reqwest::Client::new(),
                _stop: stop,
            }
        }

        async fn get(&self, query: &[(&str, &str)]) -> reqwest::Result<reqwest::Response> {
            let url =
                reqwest::Url::parse_with_params(&format!("{}/api/statistics", self.base), query)
                    .unwrap();
            self.client.get(url).send().await
        }

        async fn window(&self, start: &str, end: &str) -> reqwest::Result<reqwest::Response> {
            self.get(&[
                ("client", "demo"),
                ("client_key", KEY),
                ("start", start),
                ("end", end),
            ])
            .await
        }
    }

    #[tokio::test]
    async fn a_good_request_gets_200_and_the_windows_json_array() {
        let server = Running::start(DemoApiArgs::default()).await;
        let response = server
            .window("2026-11-24", "2026-11-24 12:30:00")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "application/json"
        );
        let body = response.text().await.unwrap();
        let records: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert!(records.len() > 1_000);
        assert_eq!(
            body,
            window_json(&DemoApiArgs::default(), at(24, 0, 0), at(24, 12, 30))
        );
        for key in [
            "lti_user_id",
            "passback_params",
            "is_correct",
            "attempt_type",
            "created_at",
        ] {
            assert!(records[0].get(key).is_some(), "missing {key}");
        }
        assert_eq!(records[0].as_object().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn all_three_timestamp_forms_are_accepted() {
        let server = Running::start(DemoApiArgs::default()).await;
        let response = server
            .window("2026-11-24 10:00:00.250000", "2026-11-24 10:05:00")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let start = at(24, 10, 0) + chrono::Duration::microseconds(250_000);
        assert_eq!(
            body,
            window_json(&DemoApiArgs::default(), start, at(24, 10, 5))
        );
    }

    #[tokio::test]
    async fn a_wrong_key_gets_401_without_echoing_the_key() {
        let server = Running::start(DemoApiArgs::default()).await;
        let wrong = "wrong-key-9f8e7d";
        let response = server
            .get(&[
                ("client", "demo"),
                ("client_key", wrong),
                ("start", "2026-11-24"),
                ("end", "2026-11-25"),
            ])
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let body = response.text().await.unwrap();
        assert!(!body.contains(wrong) && !body.contains(KEY), "{body}");
        let response = server
            .get(&[
                ("client", "other"),
                ("client_key", KEY),
                ("start", "2026-11-24"),
                ("end", "2026-11-25"),
            ])
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert!(!response.text().await.unwrap().contains(KEY));
    }

    #[tokio::test]
    async fn bad_or_missing_parameters_get_400_naming_the_parameter() {
        let server = Running::start(DemoApiArgs::default()).await;
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[
                    ("client", "demo"),
                    ("client_key", KEY),
                    ("end", "2026-11-25"),
                ],
                "`start`",
            ),
            (
                &[
                    ("client", "demo"),
                    ("client_key", KEY),
                    ("start", "2026-11-24"),
                ],
                "`end`",
            ),
            (
                &[
                    ("client", "demo"),
                    ("client_key", KEY),
                    ("start", "yesterday"),
                    ("end", "2026-11-25"),
                ],
                "`start`",
            ),
            (
                &[
                    ("client", "demo"),
                    ("client_key", KEY),
                    ("start", "2026-11-24"),
                    ("end", "2026-13-45 99:61:00"),
                ],
                "`end`",
            ),
            (
                &[
                    ("client", "demo"),
                    ("client_key", KEY),
                    ("start", "2026-11-25"),
                    ("end", "2026-11-24"),
                ],
                "`end`",
            ),
            (
                &[
                    ("client_key", KEY),
                    ("start", "2026-11-24"),
                    ("end", "2026-11-25"),
                ],
                "`client`",
            ),
        ];
        for (query, named) in cases {
            let response = server.get(query).await.unwrap();
            assert_eq!(response.status(), 400, "{query:?}");
            let body = response.text().await.unwrap();
            assert!(body.contains(named), "{query:?}: {body}");
            assert!(!body.contains(KEY));
        }
        let same = server
            .window("2026-11-24 10:00:00", "2026-11-24 10:00:00")
            .await
            .unwrap();
        assert_eq!(same.status(), 400);
    }

    #[tokio::test]
    async fn an_unknown_path_gets_404() {
        let server = Running::start(DemoApiArgs::default()).await;
        let response = server
            .client
            .get(format!("{}/api/other", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }

    #[tokio::test]
    async fn a_429_carries_retry_after() {
        let server = Running::start(DemoApiArgs {
            fail_429: 1.0,
            retry_after_secs: 7,
            ..DemoApiArgs::default()
        })
        .await;
        let response = server.window("2026-11-24", "2026-11-25").await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[reqwest::header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn fail_5xx_answers_a_server_error() {
        let server = Running::start(DemoApiArgs {
            fail_5xx: 1.0,
            ..DemoApiArgs::default()
        })
        .await;
        for _ in 0..5 {
            let status = server
                .window("2026-11-24", "2026-11-25")
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!([500, 502, 503].contains(&status), "{status}");
        }
    }

    #[tokio::test]
    async fn the_first_requests_fail_with_503_then_succeed() {
        let server = Running::start(DemoApiArgs {
            fail_first: 2,
            ..DemoApiArgs::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                server
                    .window("2026-11-24 10:00:00", "2026-11-24 11:00:00")
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        assert_eq!(statuses, [503, 503, 200]);
    }

    #[tokio::test]
    async fn a_truncated_body_is_not_valid_json_but_has_a_matching_length() {
        let server = Running::start(DemoApiArgs {
            truncate_bodies: 1.0,
            ..DemoApiArgs::default()
        })
        .await;
        for (start, end) in [
            ("2026-11-24", "2026-11-25"),
            ("2026-11-24 03:00:00", "2026-11-24 03:00:01"),
        ] {
            let response = server.window(start, end).await.unwrap();
            assert_eq!(response.status(), 200);
            let length = response.content_length().unwrap();
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len() as u64, length);
            assert!(!body.is_empty());
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
            assert!(
                lms_etl_parse::split_records(std::str::from_utf8(&body).unwrap_or("")).is_err()
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_connection_makes_the_client_fail() {
        let server = Running::start(DemoApiArgs {
            drop_connections: 1.0,
            ..DemoApiArgs::default()
        })
        .await;
        let response = server.window("2026-11-24", "2026-11-25").await.unwrap();
        assert_eq!(response.status(), 200);
        let error = response.bytes().await.unwrap_err();
        assert!(error.is_body() || error.is_decode(), "{error:?}");
    }

    #[tokio::test]
    async fn latency_still_answers() {
        let server = Running::start(DemoApiArgs {
            latency_ms: 20,
            ..DemoApiArgs::default()
        })
        .await;
        assert_eq!(
            server
                .window("2026-11-24", "2026-11-24 00:10:00")
                .await
                .unwrap()
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn bind_refuses_a_share_outside_zero_to_one() {
        let err = bind(DemoApiArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            fail_429: -0.5,
            ..DemoApiArgs::default()
        })
        .await
        .err()
        .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("--fail-429"));
    }

    #[tokio::test]
    async fn the_server_stops_when_shutdown_resolves() {
        let api = bind(DemoApiArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..DemoApiArgs::default()
        })
        .await
        .unwrap();
        api.serve(async {}).await.unwrap();
    }

    #[tokio::test]
    async fn the_server_serves_up_to_its_clock_and_holds_late_records_back() {
        let now = at(24, 12, 0);
        let a = DemoApiArgs {
            now: Some(now.and_utc()),
            late_share: 0.5,
            late_minutes: 30,
            ..args(10_000, 0.0)
        };
        let server = Running::start(a.clone()).await;
        let response = server
            .window("2026-11-24 11:00:00", "2026-11-24 13:00:00")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let served: HashSet<String> = sorted_records(&response.text().await.unwrap())
            .into_iter()
            .collect();
        // What the clock showed between its start and a few seconds later.
        let (start, end) = (at(24, 11, 0), at(24, 13, 0));
        let answer_at = |a: &DemoApiArgs, t: NaiveDateTime| -> HashSet<String> {
            sorted_records(&window_json_at(a, start, end, micros(t)))
                .into_iter()
                .collect()
        };
        assert!(answer_at(&a, now).is_subset(&served));
        assert!(served.is_subset(&answer_at(&a, now + Duration::seconds(5))));
        // Half of the last half hour is still on its way.
        let on_time = DemoApiArgs {
            late_share: 0.0,
            ..a.clone()
        };
        let all = answer_at(&on_time, now).len() as f64;
        let share = served.len() as f64 / all;
        assert!((0.7..0.8).contains(&share), "{share}");
    }

    #[tokio::test]
    async fn the_server_reads_and_writes_naive_times_in_its_zone() {
        let a = DemoApiArgs {
            timezone: zone("Europe/Moscow"),
            ..args(3_000, 0.0)
        };
        let server = Running::start(a.clone()).await;
        let body = server
            .window("2026-11-24 13:00:00", "2026-11-24 14:00:00")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, window_json(&a, at(24, 13, 0), at(24, 14, 0)));
        let times = created_ats(&body);
        assert!(times.len() > 100);
        assert!(times.iter().all(|t| t.hour() == 13));
    }

    #[test]
    fn created_at_hours_follow_the_window() {
        // Guards the helper the HTTP tests compare against.
        let json = window_json(&DemoApiArgs::default(), at(24, 5, 0), at(24, 6, 0));
        for r in parse_chunk(&json).unwrap() {
            assert_eq!(r.unwrap().created_at.hour(), 5);
        }
    }
}
