//! Behaviour of the demo API as a whole: the data set through the JSON and COPY writers,
//! and the HTTP contract against a server bound to 127.0.0.1:0.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use clap::Parser;
use lms_etl_parse::{parse_chunk, parse_passback_params};

use super::render::JsonChunks;
use super::*;

fn at(day: u32, hour: u32, minute: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, day)
        .unwrap()
        .and_hms_opt(hour, minute, 0)
        .unwrap()
}

/// What the API answers for [start, end), without HTTP.
fn window_json(args: &DemoApiArgs, start: NaiveDateTime, end: NaiveDateTime) -> String {
    let data = Arc::new(args.data_set());
    let chunks = JsonChunks::new(
        data,
        start.and_utc().timestamp_micros(),
        end.and_utc().timestamp_micros(),
    );
    let mut bytes = Vec::new();
    for chunk in chunks {
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).unwrap()
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

#[test]
fn copy_rows_are_exactly_the_valid_records() {
    let a = args(1_500, 0.2);
    let (start, end) = (
        at(24, 12, 0) + chrono::Duration::microseconds(7),
        at(24, 14, 30),
    );
    let mut out = Vec::new();
    let rows = write_copy_rows(&a, start, end, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count() as u64, rows);

    let json = window_json(&a, start, end);
    let mut expected: Vec<String> = parse_chunk(&json)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| {
            let is_correct = match r.is_correct {
                None => "\\N",
                Some(true) => "t",
                Some(false) => "f",
            };
            let p = &r.passback;
            [
                r.user_id.as_ref(),
                p.oauth_consumer_key.as_deref().unwrap(),
                p.lis_result_sourcedid.as_deref().unwrap(),
                p.lis_outcome_service_url.as_deref().unwrap(),
                is_correct,
                r.attempt_type.as_str(),
                &r.created_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            ]
            .join("\t")
        })
        .collect();
    let mut actual: Vec<String> = text.lines().map(str::to_owned).collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(rows as usize, expected.len());
    assert_eq!(actual, expected);
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

    #[test]
    fn created_at_hours_follow_the_window() {
        // Guards the helper the HTTP tests compare against.
        let json = window_json(&DemoApiArgs::default(), at(24, 5, 0), at(24, 6, 0));
        for r in parse_chunk(&json).unwrap() {
            assert_eq!(r.unwrap().created_at.hour(), 5);
        }
    }
}
