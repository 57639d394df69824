//! `report::email::send_report` against the SMTP stand-in and the outbox directory.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone, Utc};
use lms_etl_loader::config::{EmailConfig, SendOn, SmtpConfig, SmtpTls};
use lms_etl_loader::report::email::{send_report, subject, Delivery, EmailError};
use lms_etl_loader::report::{Counts, DailyStats, RunReport, RunStatus};
use lms_etl_tests::smtp_server::{
    AuthMechanism, Mail, SmtpAuth, SmtpOptions, SmtpServer, StartTls,
};

const PASSWORD: &str = "s3cret-Pa55word";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn report(status: RunStatus) -> RunReport {
    let computed_at = Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap();
    RunReport {
        run_id: Some(42),
        status,
        window_start: at("2026-11-24 00:00:00"),
        window_end: at("2026-11-25 00:00:00"),
        counts: Counts {
            fetched: 12_400,
            inserted: 12_345,
            duplicates: 50,
            rejected: 5,
        },
        stage_ms: vec![
            ("fetch".into(), 81_234),
            ("load".into(), 5_678),
            ("aggregate".into(), 120),
        ],
        days: vec![
            DailyStats {
                day: "2026-11-23".parse().unwrap(),
                attempts: 7,
                successful_attempts: 7,
                unique_users: 3,
                computed_at,
            },
            DailyStats {
                day: "2026-11-24".parse().unwrap(),
                attempts: 12_338,
                successful_attempts: 9_870,
                unique_users: 1_234,
                computed_at,
            },
        ],
        error: None,
        sheets_error: None,
        sheets_url: Some("https://docs.google.com/spreadsheets/d/1TestSheet".into()),
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
        "2026-11-24 00:00:00 .. 2026-11-25 00:00:00",
        "fetched",
        "12 400",
        "inserted",
        "12 345",
        "duplicates",
        "50",
        "rejected",
        "fetch",
        "81 234 ms",
        "aggregate",
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
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded"
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
        "[lms-etl] PARTIAL 2026-11-24: 12 345 attempts loaded, Sheets failed"
    );
    assert!(mail
        .text()
        .unwrap()
        .contains("HTTP 503: <unavailable> & co"));
    assert!(
        mail.html()
            .unwrap()
            .contains("HTTP 503: &lt;unavailable&gt; &amp; co"),
        "escaped in HTML"
    );
}

#[tokio::test]
async fn required_starttls_not_offered_is_an_error_and_nothing_is_sent() {
    init();
    let server = SmtpServer::start(SmtpOptions {
        starttls: StartTls::NotAdvertised,
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
        "[lms-etl] OK 2026-11-24: 12 345 attempts loaded"
    );
    assert_report_content(mail.text().unwrap());
    assert_report_content(mail.html().unwrap());
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
}
