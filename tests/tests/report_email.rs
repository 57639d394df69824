//! `report::email::send_report` against the SMTP stand-in and the outbox directory.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use lms_etl_loader::config::{EmailConfig, SendOn, SmtpConfig, SmtpTls};
use lms_etl_loader::report::email::{send_report, subject, Delivery, EmailError, CHART_CID};
use lms_etl_loader::report::{Counts, DailyStats, RejectionGroup, RunReport, RunStatus};
use lms_etl_tests::smtp_server::{
    AuthMechanism, Mail, ReceivedMessage, ServerTls, SmtpAuth, SmtpOptions, SmtpServer, StartTls,
};
use lms_etl_tests::test_ca::TestCa;
use mail_parser::MimeHeaders as _;

const PASSWORD: &str = "s3cret-Pa55word";
/// A learner's id as the API sends it: 32 hex digits.
const USER_ID: &str = "3f4a9b8c7d6e5f4a3b2c1d0e9f8a7b6c";
/// The per-problem part of a sourcedid.
const BLOCK_ID: &str = "9c1e0d2f3a4b5c6d7e8f90a1b2c3d4e5";
/// The LMS's grade callback.
const GRADE_URL: &str = "https://lms.skillfactory.ru/courses/course-v1:SF+DST+1/xblock/\
    block-v1:SF+DST+1+type@problem+block@9c1e0d2f3a4b5c6d7e8f90a1b2c3d4e5/handler_noauth/grade_handler";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A wall-clock time in Moscow (the fixture's source zone) as an instant.
fn msk(s: &str) -> DateTime<Utc> {
    Moscow
        .from_local_datetime(&NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// The quarantine of the fixture run, largest group first, with raw examples as the
/// database holds them: ids and URLs in full.
fn rejections() -> Vec<RejectionGroup> {
    vec![
        RejectionGroup {
            kind: "invalid created_at".into(),
            count: 4,
            example: "record 3: field `created_at`: expected a timestamp \
                      YYYY-MM-DD HH:MM:SS[.ffffff], found \"2026-11-24T10:00:00Z\""
                .into(),
        },
        RejectionGroup {
            kind: "conflict".into(),
            count: 2,
            example: format!(
                "record 17: conflict: lis_result_sourcedid \
                 'course-v1:SF+DST+1:lms.skillfactory.ru-{USER_ID}:{BLOCK_ID}', \
                 lis_outcome_service_url '{GRADE_URL}'"
            ),
        },
        RejectionGroup {
            kind: "invalid passback_params".into(),
            count: 1,
            example: format!(
                "{{\"lti_user_id\": \"{USER_ID}\",\n  \"passback_params\": \"{{'oauth_consumer_key': '', \
                 'lis_result_sourcedid': 'course-v1:SF+DST+1:lms.skillfactory.ru-{USER_ID}:{BLOCK_ID}', \
                 'lis_outcome_service_url': '{GRADE_URL}'\", \"is_correct\": 1, \
                 \"attempt_type\": \"submit\", \"created_at\": \"2026-11-24 10:00:00\"}}"
            ),
        },
    ]
}

/// A `daily_stats` row computed just after the fixture's window.
fn stats(day: &str, attempts: i64, successful_attempts: i64, unique_users: i64) -> DailyStats {
    DailyStats {
        day: day.parse().unwrap(),
        attempts,
        successful_attempts,
        unique_users,
        computed_at: Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap(),
        submits: 0,
        submit_success_rate: None,
    }
}

fn report(status: RunStatus) -> RunReport {
    let computed_at = Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap();
    let days = vec![
        stats("2026-11-23", 7, 7, 3),
        stats("2026-11-24", 12_338, 9_870, 1_234),
    ];
    RunReport {
        run_id: Some(42),
        status,
        window_start: msk("2026-11-24 00:00:00"),
        window_end: msk("2026-11-25 00:00:00"),
        requested_end: None,
        source_timezone: Moscow,
        report_timezone: chrono_tz::UTC,
        counts: Counts {
            fetched: 12_402,
            inserted: 12_345,
            duplicates: 50,
            conflicts: 2,
            rejected: 5,
        },
        // Wall clock, as a run measures them: they add up to the total.
        stage_ms: vec![
            ("plan".into(), 120),
            ("fetch+load".into(), 81_234),
            ("aggregate".into(), 5_678),
            ("sheets".into(), 420),
            ("other".into(), 3),
            ("total".into(), 87_455),
        ],
        days: days.clone(),
        // 11-17 is the Tuesday before 11-24; 11-16 (before 11-23) has no row.
        history: [
            stats("2026-11-10", 9_000, 6_000, 1_000),
            stats("2026-11-17", 11_000, 8_800, 1_100),
        ]
        .into_iter()
        .chain(days)
        .collect(),
        rejections: rejections(),
        warnings: vec![],
        error: None,
        sheets_error: None,
        sheets_url: Some("https://docs.google.com/spreadsheets/d/1TestSheet".into()),
        checks: Vec::new(),
        hardest_day: None,
        hardest: Vec::new(),
        log_file: "/var/log/lms-etl/lms-etl.2026-11-25.log".into(),
        finished_at: computed_at,
    }
}

fn config(smtp: Option<SmtpConfig>, outbox: &std::path::Path) -> EmailConfig {
    EmailConfig {
        smtp,
        from: "lms-etl <lms-etl@example.org>".parse().unwrap(),
        to: vec![
            "Data Team <data@example.org>".parse().unwrap(),
            "ops@example.org".parse().unwrap(),
        ],
        send_on: SendOn::Both,
        outbox_dir: outbox.to_owned(),
    }
}

fn smtp(
    server: &SmtpServer,
    tls: SmtpTls,
    user: Option<&str>,
    password: Option<&str>,
) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port(),
        tls,
        ca_file: None,
        user: user.map(str::to_owned),
        password: password.map(|p| p.to_owned().into()),
        timeout: Duration::from_secs(10),
    }
}

/// Guards against a hang turning into a stuck test run; not a timing assertion.
async fn send(cfg: &EmailConfig, report: &RunReport) -> Result<Delivery, EmailError> {
    tokio::time::timeout(Duration::from_secs(60), send_report(cfg, report))
        .await
        .expect("send_report hung")
}

fn assert_report_content(body: &str) {
    for needle in [
        "42",
        "succeeded",
        "2026-11-24 00:00 – 2026-11-25 00:00 (Europe/Moscow)",
        "fetched",
        "12 402",
        "inserted",
        "12 345",
        "duplicates",
        "50",
        "rejected",
        "fetch",
        "81 234 ms",
        "aggregate",
        "day (UTC)",
        "2026-11-23",
        "2026-11-24",
        "12 338",
        "9 870",
        "1 234",
        "80.00 %",
        "100.00 %",
        "https://docs.google.com/spreadsheets/d/1TestSheet",
        "/var/log/lms-etl/lms-etl.2026-11-25.log",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[tokio::test]
async fn success_mail_has_subject_addresses_and_both_parts_with_the_run_details() {
    init();
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::NotAdvertised,
        tls: None,
        auth: Some(SmtpAuth::new("etl", PASSWORD)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        Some(smtp(&server, SmtpTls::None, Some("etl"), Some(PASSWORD))),
        dir.path(),
    );

    let delivery = send(&cfg, &report(RunStatus::Succeeded))
        .await
        .expect("sent");

    assert_eq!(delivery, Delivery::Sent { recipients: 2 });
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.envelope_from, "lms-etl@example.org");
    assert_eq!(m.recipients, ["data@example.org", "ops@example.org"]);
    assert_eq!(m.authenticated_as.as_deref(), Some("etl"));
    let mail = m.mail();
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded, 2 conflicts, 5 rejected"
    );
    let from = mail.header("From").unwrap();
    assert!(
        from.starts_with("lms-etl") && from.ends_with("<lms-etl@example.org>"),
        "{from}"
    );
    let to = mail.header("To").unwrap();
    assert!(
        to.contains("<data@example.org>") && to.contains("ops@example.org"),
        "{to}"
    );
    assert!(mail
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/alternative"));
    let text = mail.text().expect("text/plain part");
    let html = mail.html().expect("text/html part");
    assert_report_content(text);
    assert_report_content(html);
    assert!(
        html.contains("<table")
            && html.contains("<a href=\"https://docs.google.com/spreadsheets/d/1TestSheet\">")
    );
    assert!(!String::from_utf8_lossy(&m.data).contains(PASSWORD));
}

#[tokio::test]
async fn login_is_used_when_the_server_offers_only_login() {
    init();
    let auth = SmtpAuth {
        mechanisms: vec![AuthMechanism::Login],
        ..SmtpAuth::new("etl", PASSWORD)
    };
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::NotAdvertised,
        tls: None,
        auth: Some(auth),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        Some(smtp(&server, SmtpTls::None, Some("etl"), Some(PASSWORD))),
        dir.path(),
    );

    send(&cfg, &report(RunStatus::Succeeded))
        .await
        .expect("sent");

    assert!(
        server.commands().contains(&"AUTH LOGIN".to_owned()),
        "{:?}",
        server.commands()
    );
    assert_eq!(
        server.messages()[0].authenticated_as.as_deref(),
        Some("etl")
    );
}

#[tokio::test]
async fn failure_mail_subject_says_failed_with_the_first_error_line() {
    init();
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Some(smtp(&server, SmtpTls::None, None, None)), dir.path());
    let mut r = report(RunStatus::Failed);
    r.error = Some(
        "fetch chunk 2026-11-24 10:00..11:00 failed: API answered HTTP 502\ncaused by: bad gateway"
            .into(),
    );
    r.sheets_url = None;
    r.days.clear();

    send(&cfg, &r).await.expect("sent");

    let mail = server.messages()[0].mail();
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] FAILED 2026-11-24: fetch chunk 2026-11-24 10:00..11:00 failed: API answered HTTP 502"
    );
    for body in [mail.text().unwrap(), mail.html().unwrap()] {
        assert!(
            body.contains("failed: API answered HTTP 502")
                && body.contains("caused by: bad gateway"),
            "{body}"
        );
        assert!(
            body.contains("/var/log/lms-etl/lms-etl.2026-11-25.log"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn partial_mail_says_sheets_failed_and_shows_the_sheets_error() {
    init();
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Some(smtp(&server, SmtpTls::None, None, None)), dir.path());
    let mut r = report(RunStatus::Partial);
    r.sheets_error =
        Some("Sheets API spreadsheets.get failed with HTTP 503: <unavailable> & co".into());

    send(&cfg, &r).await.expect("sent");

    let mail = server.messages()[0].mail();
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] PARTIAL 2026-11-24: 12 345 attempts loaded, 2 conflicts, 5 rejected, Sheets failed"
    );
    assert!(mail
        .text()
        .unwrap()
        .contains("HTTP 503: <unavailable> & co"));
    assert!(
        mail.html()
            .unwrap()
            .contains("HTTP 503: &#60;unavailable&#62; &#38; co"),
        "escaped in HTML"
    );
}

#[tokio::test]
async fn required_starttls_not_offered_is_an_error_and_nothing_is_sent() {
    init();
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::NotAdvertised,
        tls: None,
        auth: Some(SmtpAuth::new("etl", PASSWORD)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        Some(smtp(
            &server,
            SmtpTls::StartTls,
            Some("etl"),
            Some(PASSWORD),
        )),
        dir.path(),
    );

    let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

    let text = err.to_string();
    assert!(matches!(err, EmailError::Smtp { .. }), "{err:?}");
    assert!(
        matches!(
            err,
            EmailError::Smtp {
                stage: "STARTTLS required but not offered",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())) && text.contains("STARTTLS"),
        "{text}"
    );
    assert!(server.messages().is_empty());
    assert!(
        !server
            .commands()
            .iter()
            .any(|c| c.starts_with("AUTH") || c.starts_with("MAIL")),
        "{:?}",
        server.commands()
    );
}

#[tokio::test]
async fn required_starttls_refused_with_454_is_an_error_not_a_hang() {
    init();
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::Refused,
        tls: None,
        auth: Some(SmtpAuth::new("etl", PASSWORD)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        Some(smtp(
            &server,
            SmtpTls::StartTls,
            Some("etl"),
            Some(PASSWORD),
        )),
        dir.path(),
    );

    let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

    let text = err.to_string();
    assert!(
        matches!(
            err,
            EmailError::Smtp {
                stage: "STARTTLS refused by the server",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())) && text.contains("454"),
        "{text}"
    );
    assert!(
        server.commands().contains(&"STARTTLS".to_owned()),
        "{:?}",
        server.commands()
    );
    assert!(
        !server
            .commands()
            .iter()
            .any(|c| c.starts_with("AUTH") || c.starts_with("MAIL")),
        "{:?}",
        server.commands()
    );
    assert!(server.messages().is_empty());
    assert!(!text.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD));
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_that_does_not_contain_the_password() {
    init();
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::NotAdvertised,
        tls: None,
        auth: Some(SmtpAuth::new("etl", PASSWORD)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-Pa55word-123";
    let cfg = config(
        Some(smtp(&server, SmtpTls::None, Some("etl"), Some(wrong))),
        dir.path(),
    );

    let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

    let text = err.to_string();
    assert!(
        matches!(
            err,
            EmailError::Smtp {
                stage: "authentication rejected",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("535") && text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    for secret in [wrong, PASSWORD] {
        assert!(
            !text.contains(secret) && !format!("{err:?}").contains(secret),
            "{text}"
        );
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_naming_it() {
    init();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(None, dir.path());
    cfg.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        ca_file: None,
        user: None,
        password: None,
        timeout: Duration::from_secs(10),
    });

    let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn send_on_decides_which_outcomes_are_mailed() {
    init();
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(smtp(&server, SmtpTls::None, None, None)), dir.path());

    for (send_on, status, expect_mail) in [
        (SendOn::Failure, RunStatus::Succeeded, false),
        (SendOn::Failure, RunStatus::Partial, false),
        (SendOn::Failure, RunStatus::Failed, true),
        (SendOn::Success, RunStatus::Failed, false),
        (SendOn::Success, RunStatus::Partial, true),
        (SendOn::Never, RunStatus::Failed, false),
        (SendOn::Failure, RunStatus::Interrupted, true),
        (SendOn::Success, RunStatus::Interrupted, false),
        (SendOn::Both, RunStatus::Succeeded, true),
    ] {
        cfg.send_on = send_on;
        let before = server.messages().len();
        let delivery = send(&cfg, &report(status)).await.unwrap();
        if expect_mail {
            assert_eq!(
                delivery,
                Delivery::Sent { recipients: 2 },
                "{send_on:?} {status:?}"
            );
            assert_eq!(server.messages().len(), before + 1);
        } else {
            assert_eq!(delivery, Delivery::Skipped, "{send_on:?} {status:?}");
            assert_eq!(server.messages().len(), before);
        }
    }
}

#[tokio::test]
async fn without_smtp_the_mail_is_written_to_the_outbox_as_eml() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox").join("not-yet-created");
    let cfg = config(None, &outbox);
    let r = report(RunStatus::Succeeded);

    let delivery = send(&cfg, &r).await.expect("written");

    let Delivery::WrittenToOutbox(path) = delivery else {
        panic!("expected the outbox, got {delivery:?}")
    };
    assert_eq!(path.parent(), Some(outbox.as_path()));
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("eml"));
    let raw = std::fs::read(&path).unwrap();
    let mail = Mail::parse(&raw);
    assert_eq!(mail.header("Subject").unwrap(), subject(&r));
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded, 2 conflicts, 5 rejected"
    );
    assert_report_content(mail.text().unwrap());
    assert_report_content(mail.html().unwrap());
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
}

/// Sends `r` through a fresh SMTP stand-in and returns what it received.
async fn deliver(r: &RunReport) -> ReceivedMessage {
    init();
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Some(smtp(&server, SmtpTls::None, None, None)), dir.path());
    send(&cfg, r).await.expect("sent");
    let mut messages = server.messages();
    assert_eq!(messages.len(), 1);
    messages.remove(0)
}

/// The text after `heading` in `body`, up to the next blank line (text) or `</table>` (HTML).
fn section<'a>(body: &'a str, heading: &str) -> &'a str {
    let start = body
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{body}"));
    let rest = &body[start..];
    let end = ["\n\n", "</table>", "</ul>"]
        .iter()
        .filter_map(|e| rest.find(e))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test]
async fn interrupted_mail_subject_says_interrupted_and_what_was_loaded() {
    let mut r = report(RunStatus::Interrupted);
    r.error = Some("interrupted by a signal; chunks committed so far are kept".into());

    let mail = deliver(&r).await.mail();

    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] INTERRUPTED 2026-11-24: stopped after 12 345 attempts loaded, 2 conflicts, 5 rejected"
    );
    for body in [mail.text().unwrap(), mail.html().unwrap()] {
        assert!(body.contains("lms-etl run 42: interrupted"), "{body}");
        assert!(
            body.contains("interrupted by a signal; chunks committed so far are kept"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn rejected_records_are_listed_by_kind_with_counts_and_shortened_examples() {
    let mail = deliver(&report(RunStatus::Succeeded)).await.mail();

    let timestamp_example = "record 3: field `created_at`: expected a timestamp \
                             YYYY-MM-DD HH:MM:SS[.ffffff], found \"2026-11-24T10:00:00Z\"";
    let conflict_example = "record 17: conflict: lis_result_sourcedid \
                            'course-v1:SF+DST+1:lms.skillfactory.ru-3f4a9b…:9c1e0d…', \
                            lis_outcome_service_url 'https://lms.skillfactory.ru/…'";

    let text = section(mail.text().unwrap(), "Rejected records");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines[..5],
        [
            "Rejected records",
            "4  invalid created_at",
            format!("e.g. {timestamp_example}").as_str(),
            "2  conflict",
            format!("e.g. {conflict_example}").as_str(),
        ],
        "{text}"
    );
    assert_eq!(lines[5], "1  invalid passback_params", "{text}");
    let raw_example = lines[6].strip_prefix("e.g. ").expect(text);
    assert!(
        raw_example.starts_with(
            "{\"lti_user_id\": \"3f4a9b…\", \"passback_params\": \"{'oauth_consumer_key': '', \
             'lis_result_sourcedid': 'course-v1:SF+DST+1:lms.skillfactory.ru-3f4a9b…:9c1e0d…'"
        ),
        "{raw_example}"
    );
    assert!(raw_example.ends_with('…'), "cut short: {raw_example}");
    assert!(raw_example.chars().count() <= 160, "{raw_example}");

    let html = section(mail.html().unwrap(), "<h3>Rejected records</h3>");
    let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<tr><td")).collect();
    assert_eq!(rows.len(), 3, "{html}");
    assert_eq!(
        rows[0],
        "<tr><td align=\"right\">4</td><td>invalid created_at</td><td><code>record 3: field \
         `created_at`: expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found \
         &#34;2026-11-24T10:00:00Z&#34;</code></td></tr>"
    );
    assert_eq!(
        rows[1],
        format!(
            "<tr><td align=\"right\">2</td><td>conflict</td><td><code>{}</code></td></tr>",
            conflict_example.replace('\'', "&#39;")
        )
    );
    assert!(
        rows[2].starts_with(
            "<tr><td align=\"right\">1</td><td>invalid passback_params</td><td><code>\
             {&#34;lti_user_id&#34;: &#34;3f4a9b…&#34;, &#34;passback_params&#34;"
        ),
        "{}",
        rows[2]
    );
}

#[tokio::test]
async fn no_full_user_id_or_url_appears_anywhere_in_the_message() {
    let m = deliver(&report(RunStatus::Succeeded)).await;
    let mail = m.mail();
    let raw = String::from_utf8_lossy(&m.data).into_owned();
    // Quoted-printable may wrap a long id across lines; look at the raw text unwrapped too.
    let unwrapped = raw.replace("=\r\n", "").replace("=\n", "");
    let mut everything = vec![raw, unwrapped, mail.header("Subject").unwrap()];
    everything.extend(mail.parts().iter().map(|p| p.body.clone()));
    assert_eq!(mail.parts().len(), 3, "text, HTML and the chart decoded");

    for haystack in &everything {
        for secret in [
            USER_ID,
            BLOCK_ID,
            &USER_ID[..16],
            &BLOCK_ID[..16],
            GRADE_URL,
            "/courses/",
            "handler_noauth",
        ] {
            assert!(
                !haystack.contains(secret),
                "{secret:?} leaked into:\n{haystack}"
            );
        }
    }
    // The masked forms are there instead: the shape of the problem survives.
    for body in [mail.text().unwrap(), mail.html().unwrap()] {
        assert!(
            body.contains("lms.skillfactory.ru-3f4a9b…:9c1e0d…"),
            "{body}"
        );
        assert!(body.contains("https://lms.skillfactory.ru/…"), "{body}");
    }
}

#[tokio::test]
async fn conflicts_are_counted_apart_from_rejections() {
    let mut r = report(RunStatus::Succeeded);
    r.counts.conflicts = 1_234;

    let mail = deliver(&r).await.mail();

    assert!(mail
        .header("Subject")
        .unwrap()
        .ends_with("12 345 attempts loaded, 1 234 conflicts, 5 rejected"));
    let text = section(mail.text().unwrap(), "Counts");
    let counts: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.trim().splitn(2, ' ').map(str::trim).collect())
        .collect();
    assert_eq!(
        counts,
        [
            ["fetched", "12 402"],
            ["inserted", "12 345"],
            ["duplicates", "50"],
            ["conflicts", "1 234"],
            ["rejected", "5"],
        ],
        "{text}"
    );
    assert!(mail
        .html()
        .unwrap()
        .contains("<tr><th align=\"left\">conflicts</th><td align=\"right\">1 234</td></tr>"));
}

#[tokio::test]
async fn the_window_is_shown_in_the_named_source_zone_and_days_in_the_report_zone() {
    let mut r = report(RunStatus::Succeeded);
    r.report_timezone = chrono_tz::Asia::Tokyo;

    let mail = deliver(&r).await.mail();

    // The window ends 2026-11-25 00:00 in Moscow, 06:00 in Tokyo: the subject names the
    // report zone's last day, the day of the table's last row.
    assert!(mail
        .header("Subject")
        .unwrap()
        .starts_with("[lms-etl] OK 2026-11-25: "));
    let text = mail.text().unwrap();
    assert!(
        text.lines()
            .any(|l| l == "Window:    2026-11-24 00:00 – 2026-11-25 00:00 (Europe/Moscow)"),
        "{text}"
    );
    assert!(
        section(text, "Days")
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with("day (Asia/Tokyo)"),
        "{text}"
    );
    let html = mail.html().unwrap();
    assert!(html.contains(
        "<tr><th align=\"left\">Window</th><td>2026-11-24 00:00 – 2026-11-25 00:00 (Europe/Moscow)</td></tr>"
    ));
    assert!(html.contains("<tr><th>day (Asia/Tokyo)</th><th>attempts</th>"));
}

#[tokio::test]
async fn a_clamped_end_shows_the_requested_and_the_effective_end_and_the_warning() {
    let mut r = report(RunStatus::Succeeded);
    r.requested_end = Some(msk("2026-11-25 00:00:00"));
    r.window_end = msk("2026-11-24 23:50:00");
    let warning = "--end 2026-11-25 00:00 is later than now minus the settle lag (10 min); \
                   loaded up to 2026-11-24 23:50 <Europe/Moscow>";
    r.warnings = vec![warning.into()];

    let mail = deliver(&r).await.mail();

    let text = mail.text().unwrap();
    for line in [
        "Window:    2026-11-24 00:00 – 2026-11-24 23:50 (Europe/Moscow)",
        "End:       requested 2026-11-25 00:00, effective 2026-11-24 23:50 \
         (Europe/Moscow; clamped to now minus the settle lag)",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert_eq!(
        section(text, "Warnings").lines().collect::<Vec<_>>(),
        ["Warnings", format!("  - {warning}").as_str()]
    );
    let html = mail.html().unwrap();
    assert!(html.contains(
        "<tr><th align=\"left\">End</th><td>requested 2026-11-25 00:00, effective 2026-11-24 23:50 \
         (Europe/Moscow; clamped to now minus the settle lag)</td></tr>"
    ), "{html}");
    assert!(
        html.contains(&format!(
            "<h3>Warnings</h3>\n<ul>\n<li>{}</li>\n</ul>",
            warning.replace('<', "&#60;").replace('>', "&#62;")
        )),
        "{html}"
    );
}

#[tokio::test]
async fn a_clean_run_has_no_rejection_warning_or_end_lines() {
    let mut r = report(RunStatus::Succeeded);
    r.counts = Counts {
        fetched: 12_395,
        inserted: 12_345,
        duplicates: 50,
        conflicts: 0,
        rejected: 0,
    };
    r.rejections.clear();

    let mail = deliver(&r).await.mail();

    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded"
    );
    for body in [mail.text().unwrap(), mail.html().unwrap()] {
        for absent in ["Rejected records", "Warnings", "requested", "clamped"] {
            assert!(!body.contains(absent), "{absent:?} in:\n{body}");
        }
    }
}

/// The MIME tree of a message as `type[child, child]`, from mail-parser (not our reader).
fn mime_tree(message: &mail_parser::Message, id: u32) -> String {
    let part = message.part(id).expect("part");
    let content_type = part
        .content_type()
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .unwrap_or_else(|| "text/plain".into());
    match part.sub_parts() {
        Some(children) => format!(
            "{content_type}[{}]",
            children
                .iter()
                .map(|c| mime_tree(message, *c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => content_type,
    }
}

/// The one leaf part of type `mime`.
fn leaf<'a>(message: &'a mail_parser::Message<'a>, mime: &str) -> &'a mail_parser::MessagePart<'a> {
    let found: Vec<_> = message
        .parts
        .iter()
        .filter(|p| {
            p.sub_parts().is_none()
                && p.content_type()
                    .is_some_and(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")) == mime)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {mime} part");
    found[0]
}

#[tokio::test]
async fn the_chart_is_an_inline_png_the_html_names_by_content_id() {
    let m = deliver(&report(RunStatus::Succeeded)).await;
    let message = mail_parser::MessageParser::default()
        .parse(&m.data)
        .expect("a parseable message");

    assert_eq!(
        mime_tree(&message, 0),
        "multipart/alternative[text/plain, multipart/related[text/html, image/png]]"
    );
    let png_part = leaf(&message, "image/png");
    let cid = png_part.content_id().expect("the chart has a Content-ID");
    assert_eq!(cid, CHART_CID);
    assert!(
        png_part
            .content_disposition()
            .is_some_and(|d| d.ctype() == "inline"),
        "shown in place, not offered as an attachment"
    );
    let html = leaf(&message, "text/html").text_contents().unwrap();
    assert!(html.contains(&format!("<img src=\"cid:{cid}\"")), "{html}");

    let png_bytes = png_part.contents();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut reader = png::Decoder::new(png_bytes).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("decodes");
    assert_eq!((frame.width, frame.height), (640, 280));
    let distinct: std::collections::HashSet<&[u8]> = pixels[..frame.buffer_size()]
        .chunks(frame.line_size / frame.width as usize)
        .collect();
    assert!(distinct.len() > 10, "a drawing, not a blank image");
}

#[tokio::test]
async fn text_clients_get_the_same_facts_as_the_html_and_its_chart() {
    let mail = deliver(&report(RunStatus::Succeeded)).await.mail();
    let (text, html) = (mail.text().unwrap(), mail.html().unwrap());
    // The chart's facts in words: both parts, and the image's alt text.
    let last_days = "Last 30 days (2026-10-26 – 2026-11-24): 32 345 attempts, \
                     76.29 % successful; most 12 338 on 2026-11-24, fewest 7 on 2026-11-23; \
                     26 days without data.";
    assert!(text.contains(last_days), "{text}");
    assert!(html.contains(&format!("alt=\"{last_days}\"")), "{html}");
    assert!(html.contains(&format!("<p>{last_days}</p>")), "{html}");
    for fact in [
        "+12%",
        "n/a",
        "fetch+load",
        "87 455",
        "Rejected records",
        "e.g. ",
    ] {
        assert!(
            text.contains(fact),
            "{fact:?} missing in the text part:\n{text}"
        );
    }
}

// ---- TLS with a private CA (`email.ca_file`) ------------------------------------------

/// A CA, its PEM file, and a server certificate for 127.0.0.1 it signed.
struct PrivateCa {
    dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
}

impl PrivateCa {
    fn new() -> PrivateCa {
        init();
        let ca = TestCa::new("lms-etl test CA (SMTP)");
        let dir = tempfile::tempdir().unwrap();
        ca.write_pem(&dir.path().join("ca.pem"));
        let server = ca.issue(&["127.0.0.1", "localhost"]).server_config();
        PrivateCa { dir, server }
    }

    fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

async fn tls_server(tls: ServerTls) -> SmtpServer {
    SmtpServer::start(SmtpOptions {
        tls: Some(tls),
        auth: Some(SmtpAuth::new("etl", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await
}

fn tls_config(
    server: &SmtpServer,
    tls: SmtpTls,
    ca_file: Option<std::path::PathBuf>,
) -> SmtpConfig {
    SmtpConfig {
        ca_file,
        ..smtp(server, tls, Some("etl"), Some(PASSWORD))
    }
}

/// Sends `r` through `server` as `smtp` says; expects both recipients accepted and one
/// message, encrypted, which it returns.
async fn deliver_encrypted(
    server: &SmtpServer,
    smtp: SmtpConfig,
    r: &RunReport,
) -> ReceivedMessage {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Some(smtp), dir.path());
    let delivery = send(&cfg, r).await.expect("sent");
    assert_eq!(delivery, Delivery::Sent { recipients: 2 });
    let mut messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].encrypted);
    messages.remove(0)
}

#[tokio::test]
async fn implicit_tls_trusting_the_ca_file_delivers_the_report_encrypted() {
    let ca = PrivateCa::new();
    let server = tls_server(ServerTls::Implicit(ca.server.clone())).await;
    let smtp = tls_config(&server, SmtpTls::Implicit, Some(ca.ca_file()));

    let message = deliver_encrypted(&server, smtp, &report(RunStatus::Succeeded)).await;

    assert_eq!(message.authenticated_as.as_deref(), Some("etl"));
    let mail = message.mail();
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded, 2 conflicts, 5 rejected"
    );
    assert_report_content(mail.text().unwrap());
}

#[tokio::test]
async fn starttls_trusting_the_ca_file_upgrades_before_auth_and_delivers() {
    let ca = PrivateCa::new();
    let server = tls_server(ServerTls::StartTls(ca.server.clone())).await;
    let smtp = tls_config(&server, SmtpTls::StartTls, Some(ca.ca_file()));

    let message = deliver_encrypted(&server, smtp, &report(RunStatus::Failed)).await;

    assert!(message
        .mail()
        .header("Subject")
        .unwrap()
        .starts_with("[lms-etl] FAILED 2026-11-24"));
    // EHLO, STARTTLS, then EHLO again and AUTH only inside TLS.
    let commands = server.commands();
    let verbs: Vec<&str> = commands
        .iter()
        .map(|c| c.split(' ').next().unwrap())
        .take(4)
        .collect();
    assert_eq!(verbs, ["EHLO", "STARTTLS", "EHLO", "AUTH"], "{commands:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_in_the_tls_negotiation_and_sends_nothing() {
    let ca = PrivateCa::new();
    for (server_tls, tls) in [
        (ServerTls::Implicit(ca.server.clone()), SmtpTls::Implicit),
        (ServerTls::StartTls(ca.server.clone()), SmtpTls::StartTls),
    ] {
        let server = tls_server(server_tls).await;
        let dir = tempfile::tempdir().unwrap();
        // Only the system's roots: the private CA is not among them.
        let cfg = config(Some(tls_config(&server, tls, None)), dir.path());

        let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

        assert!(
            matches!(
                err,
                EmailError::Smtp {
                    stage: "TLS negotiation failed",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", server.port())),
            "{text}"
        );
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(!text.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD));
        assert!(server.messages().is_empty());
        assert!(
            !server.commands().iter().any(|c| c.starts_with("AUTH")),
            "{:?}",
            server.commands()
        );
    }
}

#[tokio::test]
async fn each_day_shows_its_change_against_the_same_weekday_a_week_before() {
    let mut r = report(RunStatus::Succeeded);
    // Submits and their success rate stand beside the day's other figures.
    r.days[1].submits = 4_000;
    r.days[1].submit_success_rate = Some(0.6125);
    let mail = deliver(&r).await.mail();
    let rows: Vec<Vec<String>> = section(mail.text().unwrap(), "Days\n")
        .lines()
        .skip(2)
        .map(|l| {
            // Cells are right-aligned, separated by at least two spaces.
            l.trim()
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            ["2026-11-23", "7", "7", "3", "100.00 %", "0", "-", "n/a"],
            [
                "2026-11-24",
                "12 338",
                "9 870",
                "1 234",
                "80.00 %",
                "4 000",
                "61.25 %",
                "+12%"
            ],
        ]
    );
    let html = mail.html().unwrap();
    assert!(html.contains(
        "<th>success rate</th><th>submits</th><th>submit success</th><th>vs week before</th></tr>"
    ));
    assert!(html.contains("<td align=\"right\">80.00 %</td><td align=\"right\">4 000</td><td align=\"right\">61.25 %</td><td align=\"right\">+12%</td></tr>"));

    // Fewer than a week before: a minus sign, rounded to a whole percent.
    r.history[1].attempts = 33_338; // 12 338 / 33 338 − 1 = −62.99 %
    let mail = deliver(&r).await.mail();
    assert!(
        section(mail.text().unwrap(), "Days\n")
            .lines()
            .any(|l| l.starts_with("  2026-11-24") && l.ends_with("  \u{2212}63%")),
        "{}",
        mail.text().unwrap()
    );
}

#[tokio::test]
async fn a_mail_without_days_before_has_no_chart_and_no_related_part() {
    let mut r = report(RunStatus::Failed);
    r.error = Some("cannot connect to PostgreSQL".into());
    r.days.clear();
    r.history.clear();
    let m = deliver(&r).await;
    let message = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    assert_eq!(
        mime_tree(&message, 0),
        "multipart/alternative[text/plain, text/html]"
    );
    let mail = m.mail();
    for body in [mail.text().unwrap(), mail.html().unwrap()] {
        assert!(
            !body.contains("Last 30 days") && !body.contains("cid:"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_tls_setup_error_naming_the_file() {
    init();
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let cfg = config(
        Some(tls_config(
            &server,
            SmtpTls::Implicit,
            Some(missing.clone()),
        )),
        dir.path(),
    );

    let err = send(&cfg, &report(RunStatus::Succeeded)).await.unwrap_err();

    assert!(matches!(err, EmailError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(server.commands().is_empty());
}
