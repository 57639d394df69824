//! `lms-etl doctor`: checks each part a run depends on (configuration, log directory,
//! PostgreSQL, the API, e-mail, Google Sheets) without writing data or sending anything.

use std::path::Path;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use lms_etl_parse::source_time::chrono_tz::Tz;
use secrecy::ExposeSecret;

use crate::config::{Config, ConfigError, EmailConfig, SheetsConfig};
use crate::fetch::{scrub, Failure, FetchError, Fetcher};
use crate::load::{Database, LoadError};
use crate::report::{email, sheets};
use crate::window::Window;

/// No single check may hold the doctor longer than this (the API's own request timeout is
/// sized for a day's chunk, not for a probe).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What the loader's role needs on each table: `sql/roles.sql`'s grants to `lms_etl_loader`
/// (a unit test keeps the two equal).
const TABLE_PRIVILEGES: &[(&str, &[&str])] = &[
    ("attempts", &["SELECT", "INSERT"]),
    ("run_chunks", &["SELECT", "INSERT"]),
    ("runs", &["SELECT", "INSERT", "UPDATE"]),
    ("watermark", &["SELECT", "INSERT", "UPDATE"]),
    ("daily_stats", &["SELECT", "INSERT", "UPDATE"]),
    (
        "rejected_attempts",
        &["SELECT", "INSERT", "UPDATE", "DELETE"],
    ),
    ("pending_days", &["SELECT", "INSERT", "UPDATE", "DELETE"]),
    ("held_chunks", &["SELECT", "INSERT", "UPDATE", "DELETE"]),
    (
        "daily_problem_stats",
        &["SELECT", "INSERT", "UPDATE", "DELETE"],
    ),
    ("settings", &["SELECT"]),
];

/// The extension's functions the loader calls (EXECUTE is PUBLIC's unless revoked).
const FUNCTIONS: &[&str] = &[
    "ingest_chunk(text, bigint, text, integer)",
    "aggregate_pending()",
    "refresh_daily_stats(date, date)",
    "reprocess(bigint)",
    "setting(text)",
    "sheets_pending()",
    "mark_sheets_pushed(date[], timestamptz[])",
    // Revoked from PUBLIC, granted to lms_etl_loader (sql/partitions.sql, sql/roles.sql).
    "create_partitions(timestamptz, timestamptz)",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pass,
    Fail,
    /// Not configured (or not checkable because a part before it failed).
    Skipped,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Skipped => "–",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub part: &'static str,
    pub mark: Mark,
    pub detail: String,
    /// What to do, for a failed check.
    pub fix: String,
}

fn pass(part: &'static str, detail: impl Into<String>) -> Check {
    Check {
        part,
        mark: Mark::Pass,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn fail(part: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        part,
        mark: Mark::Fail,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn skipped(part: &'static str, detail: impl Into<String>) -> Check {
    Check {
        part,
        mark: Mark::Skipped,
        detail: detail.into(),
        fix: String::new(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// No check failed (passed or not configured).
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.mark != Mark::Fail)
    }

    pub fn render(&self) -> String {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            // Wraps to a terminal's width; in a pipe each row stays one line, for grep.
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["", "part", "result", "fix"]);

        for c in &self.checks {
            t.add_row(vec![c.mark.symbol(), c.part, &c.detail, &c.fix]);
        }
        let failed = self.checks.iter().filter(|c| c.mark == Mark::Fail).count();
        let verdict = match failed {
            0 => "all checks passed".to_owned(),
            1 => "1 check failed".to_owned(),
            n => format!("{n} checks failed"),
        };
        format!("{t}\n{verdict}\n")
    }
}

/// Runs every check in order; a part that cannot be checked because one before it failed
/// is shown as skipped.
pub async fn check(file: Option<&Path>) -> DoctorReport {
    let mut checks = Vec::new();
    let config = match Config::load(file) {
        Ok(c) => {
            checks.push(pass(
                "config",
                match file {
                    Some(path) => format!("{} and the environment: valid", path.display()),
                    None => "the environment (no config file): valid".to_owned(),
                },
            ));
            c
        }
        Err(e) => {
            checks.push(config_failure(&e));
            for part in ["logs", "PostgreSQL", "API", "e-mail", "Google Sheets"] {
                checks.push(skipped(
                    part,
                    "not checked: the configuration does not load",
                ));
            }
            return DoctorReport { checks };
        }
    };
    checks.push(logs_dir(&config.logs.dir));
    let db = database(&config, &mut checks).await;
    checks.push(api(&config, db.as_ref()).await);
    checks.push(mail(&config.email).await);
    checks.push(google_sheets(config.sheets.as_ref()).await);

    // Every text is built to hold no secret; this is the belt to those braces.
    let secrets = secrets(&config);
    for c in &mut checks {
        for secret in &secrets {
            c.detail = scrub(&c.detail, secret);
            c.fix = scrub(&c.fix, secret);
        }
    }
    DoctorReport { checks }
}

fn secrets(config: &Config) -> Vec<String> {
    let mut secrets = vec![config.api.client_key.expose_secret().to_owned()];
    if let Some(p) = config.email.smtp.as_ref().and_then(|s| s.password.as_ref()) {
        secrets.push(p.expose_secret().to_owned());
    }
    if let Some(p) = config.database.target.password() {
        secrets.push(String::from_utf8_lossy(p).into_owned());
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// The configuration's own error names the key and where its value came from, never the
/// value; the fix says where to set it.
fn config_failure(e: &ConfigError) -> Check {
    let fix = match e {
        ConfigError::Missing { key, env, .. } => {
            format!("set `{key}` in the config file or the environment variable {env}")
        }
        ConfigError::Invalid { key, .. } => {
            format!("set `{key}` to a valid value (see lms-etl.example.toml)")
        }
        _ => "fix the file at the place named, or pass another with --config".to_owned(),
    };
    fail("config", e.to_string(), fix)
}

/// A directory the loader must write to: writable now, or creatable. Probes with a file it
/// removes at once; creates nothing else.
fn writable(dir: &Path) -> Result<String, String> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".lms-etl-doctor-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot write to {}: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if existing == dir {
        format!("{} is writable", dir.display())
    } else {
        format!(
            "{} will be created (in {})",
            dir.display(),
            existing.display()
        )
    })
}

fn logs_dir(dir: &Path) -> Check {
    match writable(dir) {
        Ok(detail) => pass("logs", detail),
        Err(e) => fail(
            "logs",
            e,
            "make logs.dir (env LMS_ETL_LOG_DIR) a directory the loader's user can write",
        ),
    }
}

/// PostgreSQL, its TLS, the extension and the role's privileges: four rows. Returns the
/// connection when the extension is usable, for the API check's source zone.
async fn database(config: &Config, checks: &mut Vec<Check>) -> Option<Database> {
    const PARTS: [&str; 3] = ["PostgreSQL TLS", "extension", "privileges"];
    let db = match Database::connect_server(&config.database.target).await {
        Ok(db) => db,
        Err(e) => {
            checks.push(fail(
                "PostgreSQL",
                crate::error_chain(&e),
                "check database.url (env DATABASE_URL): host, port, database, user, password, \
                 sslmode; is PostgreSQL running, and does pg_hba.conf admit this client?",
            ));
            for part in PARTS {
                checks.push(skipped(part, "not checked: PostgreSQL is unreachable"));
            }
            return None;
        }
    };
    let who = db
        .client()
        .query_one(
            "SELECT current_user::text, current_database()::text, current_setting('server_version'),
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
                    coalesce((SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '')",
            &[],
        )
        .await;
    let (user, database, version, encrypted, tls_version): (String, String, String, bool, String) =
        match who {
            Ok(r) => (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)),
            Err(e) => {
                checks.push(fail(
                    "PostgreSQL",
                    format!("connected, but a plain query failed: {e}"),
                    "check the server's log",
                ));
                for part in PARTS {
                    checks.push(skipped(part, "not checked"));
                }
                return None;
            }
        };
    checks.push(pass(
        "PostgreSQL",
        format!("connected to database {database} as {user} (PostgreSQL {version})"),
    ));
    checks.push(tls(
        config.database.target.sslmode().as_str(),
        encrypted,
        &tls_version,
    ));

    match extension(&db).await {
        Ok(detail) => checks.push(pass("extension", detail)),
        Err(e) => {
            let fix = match &e {
                LoadError::ExtensionMissing => {
                    "install the extension's files, then as the database owner: CREATE EXTENSION lms_etl;"
                        .to_owned()
                }
                LoadError::VersionMismatch { binary, .. } => format!(
                    "install the {binary} extension files, then ALTER EXTENSION lms_etl UPDATE; \
                     (or run the lms-etl of the installed version)"
                ),
                _ => "see the error".to_owned(),
            };
            let missing = matches!(e, LoadError::ExtensionMissing);
            checks.push(fail("extension", crate::error_chain(&e), fix));
            if missing {
                checks.push(skipped("privileges", "not checked: no lms_etl schema"));
                return None;
            }
        }
    }
    checks.push(privileges(&db, &user).await);
    Some(db)
}

fn tls(sslmode: &str, encrypted: bool, version: &str) -> Check {
    let asked = match sslmode {
        "prefer" => "sslmode=prefer (TLS if the server offers it)".to_owned(),
        mode => format!("sslmode={mode}"),
    };
    let demands_tls = matches!(sslmode, "require" | "verify-ca" | "verify-full");
    match (encrypted, demands_tls) {
        (true, _) => pass("PostgreSQL TLS", format!("encrypted ({version}), {asked}")),
        (false, false) => pass("PostgreSQL TLS", format!("not encrypted, {asked}")),
        (false, true) => fail(
            "PostgreSQL TLS",
            format!("not encrypted although {asked}"),
            "check the server's ssl settings and database.url",
        ),
    }
}

async fn extension(db: &Database) -> Result<String, LoadError> {
    db.require_extension().await?;
    let binary = env!("CARGO_PKG_VERSION");
    db.check_version(binary).await?;
    Ok(format!("lms_etl {binary}, as this lms-etl"))
}

/// Every privilege of [`TABLE_PRIVILEGES`] and [`FUNCTIONS`] the current user lacks.
async fn privileges(db: &Database, user: &str) -> Check {
    let mut kinds = vec!["schema".to_owned()];
    let mut names = vec!["lms_etl".to_owned()];
    let mut privileges = vec!["USAGE".to_owned()];
    for (table, privs) in TABLE_PRIVILEGES {
        for p in *privs {
            kinds.push("table".into());
            names.push(format!("lms_etl.{table}"));
            privileges.push((*p).into());
        }
    }
    for f in FUNCTIONS {
        kinds.push("function".into());
        names.push(format!("lms_etl.{f}"));
        privileges.push("EXECUTE".into());
    }
    // Without USAGE on the schema nothing in it can even be named (to_regclass would raise).
    let usage = db
        .client()
        .query_one("SELECT has_schema_privilege('lms_etl', 'USAGE')", &[])
        .await;
    if let Ok(false) = usage.as_ref().map(|r| r.get::<_, bool>(0)) {
        return fail(
            "privileges",
            format!("{user} lacks USAGE on schema lms_etl, so everything in it"),
            format!("as a superuser: GRANT lms_etl_loader TO {user};"),
        );
    }
    let rows = db
        .client()
        .query(
            "SELECT privilege || ' on ' || kind || ' ' || name
               FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(kind, name, privilege, n)
              WHERE NOT coalesce(CASE kind
                        WHEN 'schema' THEN has_schema_privilege(name, privilege)
                        WHEN 'table' THEN has_table_privilege(to_regclass(name), privilege)
                        WHEN 'function' THEN has_function_privilege(to_regprocedure(name), privilege)
                    END, false)
              ORDER BY n",
            &[&kinds, &names, &privileges],
        )
        .await;
    match rows {
        Err(e) => fail(
            "privileges",
            format!("cannot check the privileges: {e}"),
            "see the error",
        ),
        Ok(rows) if rows.is_empty() => pass(
            "privileges",
            format!(
                "{user} holds all {} privileges the loader needs",
                kinds.len()
            ),
        ),
        Ok(rows) => {
            let lacking: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            fail(
                "privileges",
                format!("{user} lacks {}", lacking.join(", ")),
                format!("as a superuser: GRANT lms_etl_loader TO {user};"),
            )
        }
    }
}

/// One request for a minute that settled long ago; the body is dropped unread.
async fn api(config: &Config, db: Option<&Database>) -> Check {
    let zone: Tz = match (config.api.source_timezone, db) {
        (Some(z), _) => z,
        (None, Some(db)) => db.zones(None).await.map_or(Tz::UTC, |z| z.source),
        (None, None) => Tz::UTC,
    };
    let end = (Utc::now() - config.window.settle_lag - chrono::Duration::minutes(1))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap_or_else(|_| Utc::now());
    let start = end - chrono::Duration::minutes(1);
    let bounds = Window::new(start, end)
        .ok()
        .and_then(|w| w.api_bounds(zone))
        .unwrap_or_else(|| {
            let f = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
            (f(start), f(end))
        });
    let fetcher = match Fetcher::new(&config.api) {
        Ok(f) => f,
        Err(e) => return fail("API", e.to_string(), "see the error"),
    };
    let shown = config
        .api
        .url
        .join("api/statistics")
        .map_or_else(|_| config.api.url.to_string(), |u| u.to_string());
    let url_fix =
        "check api.url (env LMS_ETL_API_URL) and that the API is up and reachable from here";
    match tokio::time::timeout(CHECK_TIMEOUT, fetcher.open(&bounds)).await {
        Err(_) => fail(
            "API",
            format!("{shown}: no answer within {} s", CHECK_TIMEOUT.as_secs()),
            url_fix,
        ),
        Ok(Ok(response)) => {
            // A 200 alone proves little: a URL that misses the API often lands on a web
            // page (a site's catch-all, a proxy's login) that answers 200 to any path, and
            // every run would then fail to parse it. The answer must open a JSON array.
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            match tokio::time::timeout(CHECK_TIMEOUT, first_byte(response)).await {
                Ok(Some(b'[')) => pass(
                    "API",
                    format!(
                        "{shown} answered 200 with a JSON array, key accepted (one minute: {} .. {}, {})",
                        bounds.0,
                        bounds.1,
                        zone.name()
                    ),
                ),
                Ok(_) => fail(
                    "API",
                    format!(
                        "{shown} answered 200, but not with a JSON array of attempts (Content-Type: {content_type})"
                    ),
                    "point api.url (env LMS_ETL_API_URL) at the API's base URL, the one `api/statistics` is under, not at a web page",
                ),
                Err(_) => fail(
                    "API",
                    format!(
                        "{shown} answered 200, but sent no body within {} s",
                        CHECK_TIMEOUT.as_secs()
                    ),
                    url_fix,
                ),
            }
        }
        Ok(Err(Failure::Fatal(e @ FetchError::Unauthorized { .. }))) => fail(
            "API",
            e.to_string(),
            "check api.client and api.client_key (env LMS_ETL_CLIENT, LMS_ETL_CLIENT_KEY)",
        ),
        Ok(Err(Failure::Fatal(e))) => fail("API", e.to_string(), url_fix),
        Ok(Err(Failure::Retry { reason, .. })) => {
            fail("API", format!("{shown}: {reason}"), url_fix)
        }
    }
}

/// The first byte of the body that is not JSON whitespace; `None` for an empty or broken body.
async fn first_byte(mut response: reqwest::Response) -> Option<u8> {
    while let Ok(Some(chunk)) = response.chunk().await {
        if let Some(&b) = chunk
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return Some(b);
        }
    }
    None
}

async fn mail(cfg: &EmailConfig) -> Check {
    let Some(smtp) = &cfg.smtp else {
        return match writable(&cfg.outbox_dir) {
            Ok(detail) => pass(
                "e-mail",
                format!("no SMTP server: mails go to the outbox; {detail}"),
            ),
            Err(e) => fail(
                "e-mail",
                e,
                "make email.outbox_dir (env LMS_ETL_EMAIL_OUTBOX_DIR) writable, or set email.smtp_host",
            ),
        };
    };
    let login = smtp
        .user
        .as_ref()
        .map_or_else(String::new, |u| format!(", logged in as {u}"));
    match tokio::time::timeout(CHECK_TIMEOUT, email::check_smtp(smtp)).await {
        Ok(Ok(())) => pass(
            "e-mail",
            format!(
                "SMTP {}:{} answered{login}; nothing sent",
                smtp.host, smtp.port
            ),
        ),
        Ok(Err(e)) => {
            let fix = match &e {
                email::EmailError::Smtp { stage, .. } if stage.contains("authentication") => {
                    "check email.smtp_user and email.smtp_password (env LMS_ETL_EMAIL_SMTP_USER, LMS_ETL_EMAIL_SMTP_PASSWORD)"
                }
                email::EmailError::Smtp { stage, .. } if stage.contains("TLS") => {
                    "check email.smtp_tls (none, starttls or tls) against what the server offers"
                }
                _ => "check email.smtp_host and email.smtp_port, and that the server is reachable from here",
            };
            fail("e-mail", crate::error_chain(&e), fix)
        }
        Err(_) => fail(
            "e-mail",
            format!(
                "SMTP {}:{}: no answer within {} s",
                smtp.host,
                smtp.port,
                CHECK_TIMEOUT.as_secs()
            ),
            "check email.smtp_host and email.smtp_port",
        ),
    }
}

async fn google_sheets(cfg: Option<&SheetsConfig>) -> Check {
    let Some(cfg) = cfg else {
        return skipped(
            "Google Sheets",
            "not configured (sheets.spreadsheet_id unset): runs skip it",
        );
    };
    match sheets::check_access(cfg).await {
        Ok(access) => pass(
            "Google Sheets",
            format!(
                "token for {}; spreadsheet {} readable, tab {} {}",
                access.client_email,
                cfg.spreadsheet_id,
                cfg.sheet,
                if access.tab_exists {
                    "exists"
                } else {
                    "will be created by the first push"
                }
            ),
        ),
        Err(e) => {
            let fix = match &e {
                sheets::SheetsError::KeyFile { .. } | sheets::SheetsError::KeyInvalid { .. } => {
                    "point sheets.key_file (env LMS_ETL_SHEETS_KEY_FILE) at the service account's JSON key".to_owned()
                }
                sheets::SheetsError::Auth { .. } => {
                    "check that the key is current and the service account enabled (a new key in the Google Cloud console)".to_owned()
                }
                sheets::SheetsError::Api { status: 404, .. } => {
                    "check sheets.spreadsheet_id (env LMS_ETL_SHEETS_SPREADSHEET_ID)".to_owned()
                }
                sheets::SheetsError::Api { status: 403, .. } => {
                    "share the spreadsheet with the service account's e-mail as an editor".to_owned()
                }
                _ => "check sheets.api_root and that Google is reachable from here".to_owned(),
            };
            fail("Google Sheets", crate::error_chain(&e), fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `sql/roles.sql`'s table grants to lms_etl_loader, as (table, privilege) pairs.
    fn granted_to_loader() -> BTreeSet<(String, String)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/roles.sql");
        let text = std::fs::read_to_string(path).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut granted = BTreeSet::new();
        for statement in code.split(';') {
            let words = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            let Some(rest) = words.strip_prefix("GRANT ") else {
                continue;
            };
            // EXECUTE on a function: checked through FUNCTIONS (see the test below).
            if rest.starts_with("EXECUTE ON FUNCTION ") {
                continue;
            }
            let (privs, rest) = rest.split_once(" ON ").unwrap();
            let (objects, roles) = rest.split_once(" TO ").unwrap();
            if !roles.split(',').any(|r| r.trim() == "lms_etl_loader") {
                continue;
            }
            for object in objects.split(',') {
                let object = object.trim();
                let name = object
                    .strip_prefix("SCHEMA ")
                    .map(|s| format!("schema {s}"))
                    .unwrap_or_else(|| object.trim_start_matches("lms_etl.").to_owned());
                for p in privs.split(',') {
                    granted.insert((name.clone(), p.trim().to_owned()));
                }
            }
        }
        granted
    }

    #[test]
    fn the_checked_privileges_are_the_grants_of_roles_sql() {
        let mut checked: BTreeSet<(String, String)> = TABLE_PRIVILEGES
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.to_string(), p.to_string())))
            .collect();
        checked.insert(("schema lms_etl".into(), "USAGE".into()));
        assert_eq!(checked, granted_to_loader());
    }

    #[test]
    fn no_checked_function_is_revoked_in_roles_sql() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/roles.sql");
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines().filter(|l| l.starts_with("REVOKE")) {
            for f in FUNCTIONS {
                let name = f.split('(').next().unwrap();
                assert!(
                    !line.contains(&format!("lms_etl.{name}(")),
                    "{line} revokes {f}"
                );
            }
        }
    }

    #[test]
    fn tls_fails_only_when_asked_for_and_missing() {
        assert_eq!(tls("prefer", false, "").mark, Mark::Pass);
        assert_eq!(tls("disable", false, "").mark, Mark::Pass);
        assert_eq!(tls("require", true, "TLSv1.3").mark, Mark::Pass);
        assert!(tls("require", true, "TLSv1.3").detail.contains("TLSv1.3"));
        assert_eq!(tls("verify-full", false, "").mark, Mark::Fail);
    }

    #[test]
    fn a_writable_directory_passes_and_the_probe_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("a/b");
        assert!(writable(&later).unwrap().contains("will be created"));
        assert!(writable(dir.path()).unwrap().ends_with("is writable"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Under a file nothing can be created, even as root.
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(writable(&file.join("sub")).is_err());
    }

    #[test]
    fn the_table_marks_each_part_and_counts_failures() {
        let report = DoctorReport {
            checks: vec![
                pass("config", "ok"),
                fail("API", "HTTP 401", "check api.client_key"),
                skipped("Google Sheets", "not configured"),
            ],
        };
        assert!(!report.healthy());
        let text = report.render();
        assert!(text.ends_with("1 check failed\n"), "{text}");
        let rows: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.starts_with('│'))
            .skip(1)
            .map(|l| l.split(['│', '┆']).map(|c| c.trim().to_owned()).collect())
            .collect();
        assert_eq!(
            rows[1][1..5],
            ["✗", "API", "HTTP 401", "check api.client_key"]
        );
        assert_eq!(rows[2][1..3], ["–", "Google Sheets"]);
        assert!(DoctorReport {
            checks: vec![skipped("x", "y")]
        }
        .healthy());
    }
}
