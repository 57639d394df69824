//! TLS everywhere, through the real `lms-etl` binary. PostgreSQL: libpq's `sslmode` and
//! `sslrootcert` against throwaway clusters, one with `ssl = on` (server certificate for
//! `DNS:localhost` only, plaintext refused over TCP) and one without TLS. SMTP: implicit TLS
//! and STARTTLS with a private CA trusted through `email.ca_file`.

use std::process::Output;

use lms_etl_tests::harness::{describe, DemoApi, Etl, TestDb};
use lms_etl_tests::smtp_server::{Mail, ServerTls, SmtpAuth, SmtpOptions, SmtpServer};
use lms_etl_tests::test_ca::TestCa;
use lms_etl_tests::tls_cluster::PgCluster;

/// In every URL; the clusters trust without asking for it, so only a leak can show it.
const PASSWORD: &str = "Pg-pa55word-never-shown";

fn url(cluster: &PgCluster, host: &str, db: &str, query: &str) -> String {
    format!(
        "postgresql://postgres:{PASSWORD}@{host}:{}/{db}{}{query}",
        cluster.port,
        if query.is_empty() { "" } else { "?" }
    )
}

/// A run of two hours of the demo API into `db`; returns the binary's output.
fn run(etl: &Etl) -> Output {
    etl.run(&[
        "run",
        "--start",
        "2026-11-20 00:00",
        "--end",
        "2026-11-20 02:00",
    ])
}

fn attempts(cluster: &PgCluster, db: &str) -> i64 {
    cluster
        .client(db)
        .query_one("SELECT count(*) FROM lms_etl.attempts", &[])
        .unwrap()
        .get(0)
}

/// Everything the operator could see: stdout, stderr, the log and any outbox mail.
fn all_output(etl: &Etl, out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.push_str(&etl.log_text());
    if let Ok(dir) = std::fs::read_dir(etl.outbox()) {
        for entry in dir.flatten() {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

/// Runs `lms-etl status`, expects it to fail with exit 1 naming the server and sslmode,
/// and the password nowhere; returns everything shown.
fn failing_status(etl: &Etl, server: &str, sslmode: &str) -> String {
    let out = etl.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = all_output(etl, &out);
    assert!(
        text.contains(&format!(
            "cannot connect to PostgreSQL at {server} (sslmode={sslmode})"
        )),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    text
}

fn ca_query(cluster: &PgCluster, mode: &str) -> String {
    format!("sslmode={mode}&sslrootcert={}", cluster.ca_file().display())
}

/// A PEM file of a CA that signed nothing the cluster presents.
fn other_ca(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("other-ca.pem");
    TestCa::new("some other CA").write_pem(&path);
    path.display().to_string()
}

/// A run into a new database of `cluster` at `host` with `query` succeeds and loads rows.
fn run_loads_rows(cluster: &PgCluster, host: &str, query: &str) {
    let db = cluster.create_database();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let etl = Etl::with_database_url(&url(cluster, host, &db, query), &api.url);
    let out = run(&etl);
    assert!(out.status.success(), "{}", describe(&out));
    // hostnossl rejects plaintext on the TLS cluster: there, every row came over TLS.
    assert!(attempts(cluster, &db) > 0);
    assert!(!all_output(&etl, &out).contains(PASSWORD));
}

/// `lms-etl status` against `cluster` at `host` with `query` fails naming the server and
/// `sslmode`; returns everything shown.
fn status_fails(cluster: &PgCluster, host: &str, query: &str, sslmode: &str) -> String {
    let db = cluster.create_database();
    let etl = Etl::with_database_url(&url(cluster, host, &db, query), "http://127.0.0.1:1");
    failing_status(&etl, &format!("{host}:{}", cluster.port), sslmode)
}

#[test]
fn verify_full_with_the_right_ca_and_host_localhost_loads_rows() {
    let cluster = PgCluster::tls();
    run_loads_rows(cluster, "localhost", &ca_query(cluster, "verify-full"));
}

#[test]
fn verify_full_with_a_wrong_ca_fails_on_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let query = format!("sslmode=verify-full&sslrootcert={}", other_ca(&dir));
    let text = status_fails(PgCluster::tls(), "localhost", &query, "verify-full");
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
}

#[test]
fn verify_full_with_the_right_ca_fails_for_a_host_the_certificate_does_not_name() {
    let cluster = PgCluster::tls();
    let query = ca_query(cluster, "verify-full");
    let text = status_fails(cluster, "127.0.0.1", &query, "verify-full");
    assert!(text.contains("certificate not valid for name"), "{text}");
}

#[test]
fn verify_ca_with_the_right_ca_accepts_any_host_name() {
    let cluster = PgCluster::tls();
    run_loads_rows(cluster, "127.0.0.1", &ca_query(cluster, "verify-ca"));
}

#[test]
fn require_without_a_ca_encrypts_without_checking_the_certificate() {
    run_loads_rows(PgCluster::tls(), "127.0.0.1", "sslmode=require");
}

#[test]
fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
    let cluster = PgCluster::tls();
    let dir = tempfile::tempdir().unwrap();
    let query = format!("sslmode=require&sslrootcert={}", other_ca(&dir));
    let text = status_fails(cluster, "127.0.0.1", &query, "require");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // The right CA and a host name the certificate lacks: the chain is all require checks.
    let db = cluster.create_database();
    let etl = Etl::with_database_url(
        &url(cluster, "127.0.0.1", &db, &ca_query(cluster, "require")),
        "http://127.0.0.1:1",
    );
    let out = etl.run(&["status"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// `CREATE EXTENSION citus` makes the server present a self-signed X.509 v1 certificate,
/// which libpq takes under `prefer` and `require` (nothing checked but the handshake's
/// signature): so must the loader, over TLS 1.3 and 1.2 alike.
#[test]
fn prefer_and_require_connect_to_a_self_signed_v1_certificate_over_tls_1_3_and_1_2() {
    for (tls12, version) in [(false, "TLSv1.3"), (true, "TLSv1.2")] {
        let cluster = PgCluster::self_signed_v1(tls12);
        // hostnossl rejects plaintext: the rows came over TLS.
        run_loads_rows(cluster, "127.0.0.1", "");
        let db = cluster.create_database();
        let api = DemoApi::start(&["--records-per-hour", "60"]);
        for (query, asked) in [
            ("", "sslmode=prefer (TLS if the server offers it)"),
            ("sslmode=require", "sslmode=require"),
        ] {
            let etl = Etl::with_database_url(&url(cluster, "127.0.0.1", &db, query), &api.url);
            let out = etl.run(&["doctor"]);
            assert!(
                out.status.success(),
                "{version} {query}: {}",
                describe(&out)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("encrypted ({version}), {asked}")),
                "{stdout}"
            );
        }
    }
}

/// verify-ca and verify-full keep rustls' (webpki's) full verification, which refuses
/// X.509 v1 even as its own trust anchor, where libpq's OpenSSL would accept it (README).
#[test]
fn verify_ca_refuses_a_v1_certificate_naming_its_version() {
    let cluster = PgCluster::self_signed_v1(false);
    let query = ca_query(cluster, "verify-ca");
    let text = status_fails(cluster, "127.0.0.1", &query, "verify-ca");
    assert!(text.contains("UnsupportedCertVersion"), "{text}");
}

#[test]
fn disable_against_a_tls_only_server_fails_with_the_servers_reason() {
    let text = status_fails(PgCluster::tls(), "127.0.0.1", "sslmode=disable", "disable");
    assert!(text.contains("no encryption"), "{text}");
}

#[test]
fn a_failed_run_names_the_tls_failure_in_its_mail_without_the_password() {
    let cluster = PgCluster::tls();
    let db = cluster.create_database();
    let etl = Etl::with_database_url(
        &url(cluster, "127.0.0.1", &db, &ca_query(cluster, "verify-full")),
        "http://127.0.0.1:1",
    );
    let out = run(&etl);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = all_output(&etl, &out);
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    let eml = std::fs::read_dir(etl.outbox())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .next()
        .expect("the failure mail in the outbox");
    let mail = Mail::parse(&eml);
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject
            .starts_with("[lms-etl] FAILED 2026-11-20: cannot connect to PostgreSQL at 127.0.0.1:"),
        "{subject}"
    );
    let body = mail.text().unwrap();
    assert!(
        body.contains("(sslmode=verify-full): error performing TLS handshake: invalid peer certificate: certificate not valid for name"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD));
}

#[test]
fn without_sslmode_tls_is_used_when_offered_and_plaintext_otherwise() {
    let tls = PgCluster::tls();
    let db = tls.create_database();
    let etl = Etl::with_database_url(&url(tls, "127.0.0.1", &db, ""), "http://127.0.0.1:1");
    let out = etl.run(&["status"]);
    // The TLS cluster refuses plaintext, so this passed over TLS.
    assert!(out.status.success(), "{}", describe(&out));

    let plain = PgCluster::plaintext();
    let db = plain.create_database();
    let etl = Etl::with_database_url(&url(plain, "127.0.0.1", &db, ""), "http://127.0.0.1:1");
    let out = etl.run(&["status"]);
    assert!(out.status.success(), "{}", describe(&out));

    // require insists on TLS, which this server does not speak.
    let text = status_fails(plain, "127.0.0.1", "sslmode=require", "require");
    assert!(text.contains("server does not support TLS"), "{text}");
}

#[test]
fn verify_modes_without_sslrootcert_use_the_home_root_crt_or_stop_naming_the_option() {
    let cluster = PgCluster::tls();
    let db = cluster.create_database();
    let home = tempfile::tempdir().unwrap();
    let conn = url(cluster, "localhost", &db, "sslmode=verify-full");

    let etl = Etl::with_database_url(&conn, "http://127.0.0.1:1")
        .with_env("HOME", home.path().to_str().unwrap());
    let out = etl.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = all_output(&etl, &out);
    assert!(
        text.contains(
            "config key `database.url` from environment variable DATABASE_URL: sslmode=verify-full needs the CA"
        ),
        "{text}"
    );
    assert!(text.contains("set sslrootcert=<PEM file>"), "{text}");
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");

    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(
        cluster.ca_file(),
        home.path().join(".postgresql").join("root.crt"),
    )
    .unwrap();
    let out = etl.run(&["status"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn the_key_value_form_carries_the_same_options() {
    let cluster = PgCluster::tls();
    let db = cluster.create_database();
    let conn = format!(
        "host=localhost port={} user=postgres password='{PASSWORD}' dbname={db} \
         sslmode=verify-full sslrootcert='{}'",
        cluster.port,
        cluster.ca_file().display()
    );
    let etl = Etl::with_database_url(&conn, "http://127.0.0.1:1");
    let out = etl.run(&["status"]);
    assert!(out.status.success(), "{}", describe(&out));

    let etl = Etl::with_database_url(
        &conn.replace("localhost", "127.0.0.1"),
        "http://127.0.0.1:1",
    );
    failing_status(&etl, &format!("127.0.0.1:{}", cluster.port), "verify-full");
}

// ---- SMTP ------------------------------------------------------------------------------

const SMTP_PASSWORD: &str = "Smtp-pa55word-never-shown";

/// An SMTP stand-in speaking `tls` with a certificate for 127.0.0.1 from a fresh CA, whose
/// PEM file is returned; the runtime must outlive the server.
fn smtp_with_private_ca(
    implicit: bool,
) -> (tokio::runtime::Runtime, SmtpServer, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new("lms-etl test CA (SMTP)");
    let dir = tempfile::tempdir().unwrap();
    ca.write_pem(&dir.path().join("ca.pem"));
    let config = ca.issue(&["127.0.0.1"]).server_config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(SmtpServer::start(SmtpOptions {
        tls: Some(if implicit {
            ServerTls::Implicit(config)
        } else {
            ServerTls::StartTls(config)
        }),
        auth: Some(SmtpAuth::new("etl", SMTP_PASSWORD)),
        ..SmtpOptions::default()
    }));
    (rt, server, dir)
}

fn mailing(etl: Etl, server: &SmtpServer, tls: &str) -> Etl {
    etl.with_env("LMS_ETL_EMAIL_SMTP_HOST", "127.0.0.1")
        .with_env("LMS_ETL_EMAIL_SMTP_PORT", &server.port().to_string())
        .with_env("LMS_ETL_EMAIL_SMTP_TLS", tls)
        .with_env("LMS_ETL_EMAIL_SMTP_USER", "etl")
        .with_env("LMS_ETL_EMAIL_SMTP_PASSWORD", SMTP_PASSWORD)
        .with_env("LMS_ETL_EMAIL_TO", "team@example.org")
}

#[test]
fn a_run_mails_over_starttls_and_implicit_tls_trusting_email_ca_file() {
    for (implicit, tls) in [(false, "starttls"), (true, "tls")] {
        let (_rt, server, ca_dir) = smtp_with_private_ca(implicit);
        let db = TestDb::new();
        let api = DemoApi::start(&["--records-per-hour", "60"]);
        let etl = mailing(Etl::new(&db, &api.url), &server, tls).with_env(
            "LMS_ETL_EMAIL_CA_FILE",
            ca_dir.path().join("ca.pem").to_str().unwrap(),
        );
        let out = run(&etl);
        assert!(out.status.success(), "{tls}: {}", describe(&out));
        let messages = server.messages();
        assert_eq!(messages.len(), 1, "{tls}");
        assert!(messages[0].encrypted, "{tls}");
        assert_eq!(messages[0].recipients, ["team@example.org"]);
        let inserted = db.count("SELECT inserted FROM lms_etl.runs");
        let subject = messages[0].mail().header("Subject").unwrap();
        // Health checks may follow (the fixture's data is days old by the database's clock).
        assert!(
            subject.starts_with(&format!(
                "[lms-etl] OK 2026-11-20: {inserted} attempts loaded"
            )),
            "{tls}: {subject}"
        );
        assert!(!all_output(&etl, &out).contains(SMTP_PASSWORD));
    }
}

#[test]
fn an_untrusted_smtp_certificate_exits_4_naming_the_tls_stage_and_keeps_the_data() {
    let (_rt, server, _ca_dir) = smtp_with_private_ca(true);
    let db = TestDb::new();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    // No email.ca_file: the system's roots do not know the test CA.
    let etl = mailing(Etl::new(&db, &api.url), &server, "tls");
    let out = run(&etl);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(db.count("SELECT count(*) FROM lms_etl.attempts") > 0);
    let text = all_output(&etl, &out);
    assert!(text.contains("e-mail failed"), "{text}");
    assert!(
        text.contains(&format!(
            "e-mail via SMTP server 127.0.0.1:{} (tls=tls) failed: TLS negotiation failed",
            server.port()
        )),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(
        !text.contains(SMTP_PASSWORD),
        "the password leaked:\n{text}"
    );
    assert!(server.messages().is_empty());
}

#[test]
fn a_wrong_email_ca_file_stops_the_start_with_exit_2_naming_the_key() {
    let etl = Etl::with_database_url("postgresql://postgres@127.0.0.1/x", "http://127.0.0.1:1")
        .with_env("LMS_ETL_EMAIL_SMTP_HOST", "127.0.0.1")
        .with_env("LMS_ETL_EMAIL_CA_FILE", "/nonexistent/ca.pem");
    let out = etl.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config key `email.ca_file` from environment variable LMS_ETL_EMAIL_CA_FILE: cannot use /nonexistent/ca.pem as CA certificates"),
        "{stderr}"
    );
}

#[test]
fn doctor_reports_an_encrypted_session_and_the_sslmode_asked() {
    let cluster = PgCluster::tls();
    let db = cluster.create_database();
    let api = DemoApi::start(&["--records-per-hour", "60"]);
    let query = ca_query(cluster, "verify-full");
    let etl = Etl::with_database_url(&url(cluster, "localhost", &db, &query), &api.url);
    let out = etl.run(&["doctor"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.contains("PostgreSQL TLS"))
        .unwrap_or_else(|| panic!("no TLS row:\n{stdout}"));
    assert!(
        row.contains("✓") && row.contains("encrypted (TLSv1.3), sslmode=verify-full"),
        "{row}"
    );
    assert!(!all_output(&etl, &out).contains(PASSWORD));
}
