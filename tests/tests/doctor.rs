//! `lms-etl doctor` against the real parts and their stand-ins, each healthy and broken: a
//! table of ✓/✗/– with a fix for each ✗, exit 1 on any ✗, and nothing written or sent.

use lms_etl_tests::harness::{describe, DemoApi, Etl, Login, TestDb, LOADER_LOGIN};
use lms_etl_tests::sheets_emulator::{fixture_key, SheetsEmulator};
use lms_etl_tests::smtp_server::{SmtpAuth, SmtpOptions, SmtpServer};

const SPREADSHEET: &str = "doctor-sheet";
const API_KEY: &str = "Api-K3y-Secret";
const SMTP_PASSWORD: &str = "Smtp-Pa55-Secret";

/// The SMTP stand-in (demanding a login) and the Sheets emulator, on a runtime of their own.
struct Outputs {
    _rt: tokio::runtime::Runtime,
    sheets: SheetsEmulator,
    smtp: SmtpServer,
    keys: tempfile::TempDir,
}

impl Outputs {
    fn start() -> Outputs {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sheets = rt.block_on(SheetsEmulator::start(SPREADSHEET));
        let smtp = rt.block_on(SmtpServer::start(SmtpOptions {
            auth: Some(SmtpAuth::new("etl", SMTP_PASSWORD)),
            ..SmtpOptions::default()
        }));
        Outputs {
            _rt: rt,
            sheets,
            smtp,
            keys: tempfile::tempdir().unwrap(),
        }
    }

    /// Every part configured and right.
    fn configure(&self, etl: Etl) -> Etl {
        let key_file = self.sheets.write_key_file(self.keys.path());
        etl.with_env("LMS_ETL_CLIENT_KEY", API_KEY)
            .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", SPREADSHEET)
            .with_env("LMS_ETL_SHEETS_SHEET", "daily")
            .with_env("LMS_ETL_SHEETS_KEY_FILE", key_file.to_str().unwrap())
            .with_env("LMS_ETL_SHEETS_API_ROOT", &self.sheets.api_root())
            .with_env("LMS_ETL_EMAIL_SMTP_HOST", "127.0.0.1")
            .with_env("LMS_ETL_EMAIL_SMTP_PORT", &self.smtp.port().to_string())
            .with_env("LMS_ETL_EMAIL_SMTP_TLS", "none")
            .with_env("LMS_ETL_EMAIL_SMTP_USER", "etl")
            .with_env("LMS_ETL_EMAIL_SMTP_PASSWORD", SMTP_PASSWORD)
    }
}

fn api() -> DemoApi {
    DemoApi::start(&["--records-per-hour", "60", "--client-key", API_KEY])
}

/// One row of the table: mark, part, result, fix.
#[derive(Debug)]
struct Row {
    mark: String,
    result: String,
    fix: String,
}

struct Doctor {
    code: Option<i32>,
    stdout: String,
    rows: Vec<(String, Row)>,
}

impl Doctor {
    fn run(etl: &Etl) -> Doctor {
        let out = etl.run(&["doctor"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.stderr.is_empty(), "{}", describe(&out));
        let rows = stdout
            .lines()
            .filter(|l| l.starts_with('│'))
            .skip(1)
            .map(|l| {
                let cells: Vec<String> = l.split(['│', '┆']).map(|c| c.trim().to_owned()).collect();
                (
                    cells[2].clone(),
                    Row {
                        mark: cells[1].clone(),
                        result: cells[3].clone(),
                        fix: cells[4].clone(),
                    },
                )
            })
            .collect();
        Doctor {
            code: out.status.code(),
            stdout,
            rows,
        }
    }

    fn row(&self, part: &str) -> &Row {
        self.rows
            .iter()
            .find(|(p, _)| p == part)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no {part:?} row:\n{}", self.stdout))
    }

    fn marks(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .map(|(p, r)| (p.as_str(), r.mark.as_str()))
            .collect()
    }

    fn assert_no_secret(&self) {
        let private_key = fixture_key()["private_key"].as_str().unwrap().to_owned();
        let key_line = private_key.lines().nth(1).unwrap().to_owned();
        for secret in [API_KEY, SMTP_PASSWORD, key_line.as_str()] {
            assert!(
                !self.stdout.contains(secret),
                "{secret} leaked:\n{}",
                self.stdout
            );
        }
    }
}

/// Row counts of every table of the extension's schema.
fn table_counts(db: &TestDb) -> Vec<(String, i64)> {
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'lms_etl' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 9, "{tables:?}");
    tables
        .into_iter()
        .map(|t| {
            let n = db.count(&format!("SELECT count(*) FROM lms_etl.{t}"));
            (t, n)
        })
        .collect()
}

#[test]
fn healthy_parts_pass_and_nothing_is_written_sent_or_pushed() {
    let db = TestDb::new();
    let api = api();
    let outputs = Outputs::start();
    // Some data first, so "unchanged" means something.
    let loaded = Etl::new(&db, &api.url).with_env("LMS_ETL_CLIENT_KEY", API_KEY);
    let out = loaded.run(&["run", "--start", "2026-11-20", "--end", "2026-11-20 03:00"]);
    assert!(out.status.success(), "{}", describe(&out));
    let before = table_counts(&db);

    let etl = outputs.configure(Etl::new(&db, &api.url));
    let doctor = Doctor::run(&etl);

    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
    assert_eq!(
        doctor.marks(),
        [
            ("config", "✓"),
            ("logs", "✓"),
            ("PostgreSQL", "✓"),
            ("PostgreSQL TLS", "✓"),
            ("extension", "✓"),
            ("privileges", "✓"),
            ("API", "✓"),
            ("e-mail", "✓"),
            ("Google Sheets", "✓"),
        ]
    );
    assert!(doctor.stdout.ends_with("all checks passed\n"));
    assert!(doctor
        .row("PostgreSQL")
        .result
        .contains(&format!("database {} as {LOADER_LOGIN}", db.name)));
    // sslmode=prefer (no sslmode in the URL): encrypted exactly when the server offers TLS.
    let tls = &doctor.row("PostgreSQL TLS").result;
    let server_ssl: String = db.client().query_one("SHOW ssl", &[]).unwrap().get(0);
    let encrypted = if server_ssl == "on" {
        "encrypted (TLSv1."
    } else {
        "not encrypted, "
    };
    assert!(
        tls.starts_with(encrypted) && tls.ends_with("sslmode=prefer (TLS if the server offers it)"),
        "{tls}"
    );
    assert_eq!(
        doctor.row("extension").result,
        format!("lms_etl {}, as this lms-etl", env!("CARGO_PKG_VERSION"))
    );
    assert!(doctor
        .row("API")
        .result
        .contains("answered 200 with a JSON array, key accepted"));
    assert!(doctor
        .row("e-mail")
        .result
        .contains("logged in as etl; nothing sent"));
    assert!(
        doctor.row("Google Sheets").result.contains(&format!(
            "spreadsheet {SPREADSHEET} readable, tab daily will be created by the first push"
        )),
        "{}",
        doctor.stdout
    );
    doctor.assert_no_secret();

    // Nothing written, sent or pushed; not even the log or outbox directory made.
    assert_eq!(table_counts(&db), before);
    assert!(outputs.smtp.messages().is_empty());
    let commands = outputs.smtp.commands();
    assert!(
        commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.starts_with("MAIL")),
        "{commands:?}"
    );
    assert_eq!(outputs.sheets.calls(), ["spreadsheets.get"]);
    assert!(outputs.sheets.tab_titles() == ["Sheet1"]);
    assert!(!etl.log_dir().exists() && !etl.outbox().exists());
}

#[test]
fn wrong_key_password_and_spreadsheet_each_fail_with_their_fix() {
    let db = TestDb::new();
    let api = api();
    let outputs = Outputs::start();
    let etl = outputs
        .configure(Etl::new(&db, &api.url))
        .with_env("LMS_ETL_CLIENT_KEY", "Wr0ng-Api-K3y")
        .with_env("LMS_ETL_EMAIL_SMTP_PASSWORD", "Wr0ng-Smtp-Pa55")
        .with_env("LMS_ETL_SHEETS_SPREADSHEET_ID", "no-such-sheet");
    let doctor = Doctor::run(&etl);

    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    assert!(
        doctor.stdout.ends_with("3 checks failed\n"),
        "{}",
        doctor.stdout
    );
    let api_row = doctor.row("API");
    assert_eq!(api_row.mark, "✗");
    assert!(api_row
        .result
        .contains("the API refused the credentials (HTTP 401)"));
    assert!(api_row
        .fix
        .contains("api.client_key (env LMS_ETL_CLIENT, LMS_ETL_CLIENT_KEY)"));
    let mail = doctor.row("e-mail");
    assert_eq!(mail.mark, "✗");
    assert!(mail.result.contains("authentication rejected"), "{mail:?}");
    assert!(mail.fix.contains("email.smtp_password"), "{mail:?}");
    let sheets = doctor.row("Google Sheets");
    assert_eq!(sheets.mark, "✗");
    assert!(
        sheets
            .result
            .contains("spreadsheets.get on spreadsheet no-such-sheet failed with HTTP 404"),
        "{sheets:?}"
    );
    assert!(sheets.fix.contains("sheets.spreadsheet_id"));
    for part in ["config", "PostgreSQL", "extension", "privileges"] {
        assert_eq!(doctor.row(part).mark, "✓", "{part}");
    }
    for secret in ["Wr0ng-Api-K3y", "Wr0ng-Smtp-Pa55"] {
        assert!(!doctor.stdout.contains(secret), "{}", doctor.stdout);
    }
    doctor.assert_no_secret();
    assert!(outputs.smtp.messages().is_empty());
}

#[test]
fn unreachable_parts_fail_and_what_depends_on_them_is_not_checked() {
    let db = TestDb::new();
    let outputs = Outputs::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    outputs.sheets.set_reject_grants(true);
    let etl = outputs
        .configure(Etl::new(&db, &format!("http://{closed}")))
        .with_env(
            "DATABASE_URL",
            &format!("postgresql://postgres:Db-Pa55-Secret@{closed}/lms_etl"),
        )
        .with_env("LMS_ETL_EMAIL_SMTP_PORT", &closed.port().to_string());
    let doctor = Doctor::run(&etl);

    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    assert_eq!(
        doctor.marks(),
        [
            ("config", "✓"),
            ("logs", "✓"),
            ("PostgreSQL", "✗"),
            ("PostgreSQL TLS", "–"),
            ("extension", "–"),
            ("privileges", "–"),
            ("API", "✗"),
            ("e-mail", "✗"),
            ("Google Sheets", "✗"),
        ]
    );
    let pg = doctor.row("PostgreSQL");
    assert!(pg.result.contains("cannot connect to PostgreSQL"), "{pg:?}");
    assert!(pg.fix.contains("database.url (env DATABASE_URL)"), "{pg:?}");
    assert!(doctor
        .row("API")
        .fix
        .contains("api.url (env LMS_ETL_API_URL)"));
    let mail = doctor.row("e-mail");
    assert!(
        mail.result
            .contains(&format!("127.0.0.1:{}", closed.port())),
        "{mail:?}"
    );
    assert!(
        mail.fix.contains("email.smtp_host and email.smtp_port"),
        "{mail:?}"
    );
    let sheets = doctor.row("Google Sheets");
    assert!(
        sheets.result.contains("Google authentication as"),
        "{sheets:?}"
    );
    assert!(
        !doctor.stdout.contains("Db-Pa55-Secret"),
        "{}",
        doctor.stdout
    );
    doctor.assert_no_secret();
    assert!(outputs.sheets.calls().is_empty());
}

#[test]
fn a_missing_or_older_extension_fails_with_the_statement_that_fixes_it() {
    let bare = TestDb::empty();
    let api = api();
    let etl = Etl::new(&bare, &api.url).with_env("LMS_ETL_CLIENT_KEY", API_KEY);
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let ext = doctor.row("extension");
    assert_eq!(ext.mark, "✗");
    assert!(ext
        .result
        .contains("the lms_etl extension is not installed in this database"));
    assert!(ext.fix.contains("CREATE EXTENSION lms_etl;"), "{ext:?}");
    assert_eq!(doctor.row("privileges").mark, "–");
    assert_eq!(
        doctor.row("API").mark,
        "✓",
        "the API does not need the database"
    );

    let older = TestDb::new();
    older
        .client()
        .batch_execute("UPDATE pg_extension SET extversion = '0.1.9' WHERE extname = 'lms_etl'")
        .unwrap();
    let doctor = Doctor::run(&Etl::new(&older, &api.url).with_env("LMS_ETL_CLIENT_KEY", API_KEY));
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let ext = doctor.row("extension");
    assert!(
        ext.result.contains("is version 0.1.9 and this lms-etl is"),
        "{ext:?}"
    );
    assert!(
        ext.fix.contains("ALTER EXTENSION lms_etl UPDATE;"),
        "{ext:?}"
    );
    assert_eq!(doctor.row("privileges").mark, "✓");
}

#[test]
fn a_role_without_the_loader_grants_is_told_what_it_lacks_and_how_to_grant_it() {
    let db = TestDb::new();
    let api = api();
    let nobody = Login::new("");
    let etl = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_CLIENT_KEY", API_KEY)
        .with_env("DATABASE_URL", &nobody.url(&db));
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let row = doctor.row("privileges");
    assert_eq!(row.mark, "✗");
    assert_eq!(
        row.result,
        format!(
            "{} lacks USAGE on schema lms_etl, so everything in it",
            nobody.name
        )
    );
    assert_eq!(
        row.fix,
        format!("as a superuser: GRANT lms_etl_loader TO {};", nobody.name)
    );

    // With the schema but not the tables: each missing privilege is named.
    db.client()
        .batch_execute(&format!("GRANT USAGE ON SCHEMA lms_etl TO {}", nobody.name))
        .unwrap();
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let row = doctor.row("privileges");
    assert!(
        row.result.starts_with(&format!(
            "{} lacks SELECT on table lms_etl.attempts, INSERT on table lms_etl.attempts, SELECT on table lms_etl.run_chunks",
            nobody.name
        )),
        "{row:?}"
    );
    // Functions are PUBLIC's, but for create_partitions (granted to lms_etl_loader only).
    assert!(
        row.result
            .ends_with(", EXECUTE on function lms_etl.create_partitions(timestamptz, timestamptz)"),
        "{row:?}"
    );
    assert_eq!(row.result.matches("EXECUTE").count(), 1, "{row:?}");
    db.client()
        .batch_execute(&format!(
            "REVOKE USAGE ON SCHEMA lms_etl FROM {}",
            nobody.name
        ))
        .unwrap();

    let loader = Login::new("lms_etl_loader");
    let etl = Etl::new(&db, &api.url)
        .with_env("LMS_ETL_CLIENT_KEY", API_KEY)
        .with_env("DATABASE_URL", &loader.url(&db));
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
    assert!(doctor
        .row("privileges")
        .result
        .contains(&format!("{} holds all", loader.name)));
}

#[test]
fn a_bad_setting_names_its_key_and_source_never_its_value() {
    let db = TestDb::new();
    let etl =
        Etl::new(&db, "http://127.0.0.1:1").with_env("LMS_ETL_WINDOW_CHUNK_MINUTES", "S3cret-Typo");
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let config = doctor.row("config");
    assert_eq!(config.mark, "✗");
    assert_eq!(
        config.result,
        "config key `window.chunk_minutes` from environment variable LMS_ETL_WINDOW_CHUNK_MINUTES: \
         expected a positive integer"
    );
    assert!(config.fix.contains("window.chunk_minutes"));
    assert!(!doctor.stdout.contains("S3cret-Typo"));
    for part in ["logs", "PostgreSQL", "API", "e-mail", "Google Sheets"] {
        assert_eq!(doctor.row(part).mark, "–", "{part}");
    }

    let missing = Etl::new(&db, "http://127.0.0.1:1").with_env("LMS_ETL_CLIENT", " ");
    let doctor = Doctor::run(&missing);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let config = doctor.row("config");
    assert_eq!(
        config.result,
        "config key `api.client` (env LMS_ETL_CLIENT): missing"
    );
    assert_eq!(
        config.fix,
        "set `api.client` in the config file or the environment variable LMS_ETL_CLIENT"
    );

    let file = etl.dir.path().join("lms-etl.toml");
    std::fs::write(&file, "[window]\nchunk_minutes = 0\n").unwrap();
    let etl = Etl::new(&db, "http://127.0.0.1:1");
    let out = etl.run(&["--config", file.to_str().unwrap(), "doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "config key `window.chunk_minutes` from {}: expected a positive integer",
            file.display()
        )),
        "{stdout}"
    );
}

#[test]
fn an_outbox_that_cannot_be_written_fails_the_mail_check() {
    let db = TestDb::new();
    let api = api();
    let etl = Etl::new(&db, &api.url).with_env("LMS_ETL_CLIENT_KEY", API_KEY);
    let file = etl.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let etl = etl.with_env(
        "LMS_ETL_EMAIL_OUTBOX_DIR",
        file.join("outbox").to_str().unwrap(),
    );
    let doctor = Doctor::run(&etl);
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let mail = doctor.row("e-mail");
    assert_eq!(mail.mark, "✗");
    assert!(mail.result.contains("is not a directory"), "{mail:?}");
    assert!(mail.fix.contains("email.outbox_dir"), "{mail:?}");
    assert_eq!(doctor.row("Google Sheets").mark, "–");
}
