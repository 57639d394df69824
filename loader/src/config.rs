//! The one typed configuration: a TOML file overlaid by environment variables,
//! validated once at start-up. Nothing else in the program reads the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A setting that is missing or invalid, named by its key and its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Names the place, never the text there: a broken line may hold a secret.
    #[error("config file {path} is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config key `{key}` (env {env}): {message}")]
    Invalid {
        key: String,
        env: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub window: WindowConfig,
    pub load: LoadConfig,
    pub logs: LogsConfig,
    pub sheets: Option<SheetsConfig>,
    pub email: EmailConfig,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// From the libpq-style URL or key=value string, TLS options included; its `Debug`
    /// shows no password, and the string itself is not kept.
    pub target: crate::pg_tls::Target,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL; `/api/statistics` is appended.
    pub url: reqwest::Url,
    pub client: String,
    pub client_key: SecretString,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Attempts per request after the first.
    pub max_retries: u32,
    /// Retries allowed across the whole run, so a flapping API cannot stretch a run forever.
    pub retry_budget: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Time zone of the API's naive timestamps (`created_at`, `start`, `end`); `None`: the
    /// database's `lms_etl.setting('source_timezone')`, so psql and the loader agree.
    pub source_timezone: Option<chrono_tz::Tz>,
}

#[derive(Debug, Clone)]
pub struct WindowConfig {
    pub chunk: chrono::Duration,
    /// Sub-batches each loading connection downloads ahead of the one it is loading.
    pub prefetch: usize,
    /// Database connections loading chunks at the same time.
    pub parallel_loads: usize,
    /// Window length of the very first run, when there is no watermark yet.
    pub first_run_lookback: chrono::Duration,
    /// No run loads past now − settle lag.
    pub settle_lag: chrono::Duration,
    /// How much an incremental run re-reads before the watermark.
    pub overlap: chrono::Duration,
    /// Largest sub-batch of a chunk handed to the database in one call (memory is bounded
    /// by bytes, not by the chunk's length in time).
    pub max_batch_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// A chunk (or the run so far) with a larger share of invalid records fails the run.
    pub max_rejected_ratio: f64,
    /// Chunks with fewer records are judged by the run's running total instead.
    pub ratio_min_records: i64,
}

#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub dir: PathBuf,
    pub keep_days: u32,
    /// A tracing `EnvFilter` directive, e.g. `info` or `lms_etl_loader=debug`.
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct SheetsConfig {
    pub spreadsheet_id: String,
    pub sheet: String,
    pub key_file: PathBuf,
    /// Root of the Sheets REST API, ending in `/`.
    pub api_root: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOn {
    Success,
    Failure,
    Both,
    Never,
}

impl SendOn {
    pub fn wants(self, success: bool) -> bool {
        match self {
            SendOn::Both => true,
            SendOn::Never => false,
            SendOn::Success => success,
            SendOn::Failure => !success,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// PEM file of CA certificates trusted besides the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `None`: no SMTP server configured, messages go to `outbox_dir` as `.eml` files.
    pub smtp: Option<SmtpConfig>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub send_on: SendOn,
    pub outbox_dir: PathBuf,
}

// ---- the file format -------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    load: RawLoad,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    sheets: RawSheets,
    #[serde(default)]
    email: RawEmail,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    url: Option<String>,
    client: Option<String>,
    client_key: Option<String>,
    connect_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    retry_budget: Option<u32>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    source_timezone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    chunk_minutes: Option<i64>,
    prefetch: Option<usize>,
    parallel_loads: Option<usize>,
    first_run_lookback_hours: Option<i64>,
    settle_lag_minutes: Option<i64>,
    overlap_minutes: Option<i64>,
    max_batch_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    max_rejected_ratio: Option<f64>,
    ratio_min_records: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    dir: Option<PathBuf>,
    keep_days: Option<u32>,
    level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSheets {
    spreadsheet_id: Option<String>,
    sheet: Option<String>,
    key_file: Option<PathBuf>,
    api_root: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_tls: Option<String>,
    ca_file: Option<PathBuf>,
    smtp_user: Option<String>,
    smtp_password: Option<String>,
    smtp_password_file: Option<PathBuf>,
    smtp_timeout_secs: Option<u64>,
    from: Option<String>,
    to: Option<Vec<String>>,
    send_on: Option<String>,
    outbox_dir: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    List,
}

/// Every key an environment variable can set: (key, variable, kind).
/// The first five names are the conventional ones; the rest follow `LMS_ETL_<SECTION>_<KEY>`.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("database.url", "DATABASE_URL", Kind::Str),
    ("api.url", "LMS_ETL_API_URL", Kind::Str),
    ("api.client", "LMS_ETL_CLIENT", Kind::Str),
    ("api.client_key", "LMS_ETL_CLIENT_KEY", Kind::Str),
    ("logs.dir", "LMS_ETL_LOG_DIR", Kind::Str),
    (
        "api.connect_timeout_secs",
        "LMS_ETL_API_CONNECT_TIMEOUT_SECS",
        Kind::Int,
    ),
    (
        "api.request_timeout_secs",
        "LMS_ETL_API_REQUEST_TIMEOUT_SECS",
        Kind::Int,
    ),
    ("api.max_retries", "LMS_ETL_API_MAX_RETRIES", Kind::Int),
    ("api.retry_budget", "LMS_ETL_API_RETRY_BUDGET", Kind::Int),
    (
        "api.backoff_initial_ms",
        "LMS_ETL_API_BACKOFF_INITIAL_MS",
        Kind::Int,
    ),
    (
        "api.backoff_max_ms",
        "LMS_ETL_API_BACKOFF_MAX_MS",
        Kind::Int,
    ),
    (
        "api.source_timezone",
        "LMS_ETL_API_SOURCE_TIMEZONE",
        Kind::Str,
    ),
    (
        "window.chunk_minutes",
        "LMS_ETL_WINDOW_CHUNK_MINUTES",
        Kind::Int,
    ),
    ("window.prefetch", "LMS_ETL_WINDOW_PREFETCH", Kind::Int),
    (
        "window.parallel_loads",
        "LMS_ETL_WINDOW_PARALLEL_LOADS",
        Kind::Int,
    ),
    (
        "window.first_run_lookback_hours",
        "LMS_ETL_WINDOW_FIRST_RUN_LOOKBACK_HOURS",
        Kind::Int,
    ),
    (
        "window.settle_lag_minutes",
        "LMS_ETL_WINDOW_SETTLE_LAG_MINUTES",
        Kind::Int,
    ),
    (
        "window.overlap_minutes",
        "LMS_ETL_WINDOW_OVERLAP_MINUTES",
        Kind::Int,
    ),
    (
        "window.max_batch_bytes",
        "LMS_ETL_WINDOW_MAX_BATCH_BYTES",
        Kind::Int,
    ),
    (
        "load.max_rejected_ratio",
        "LMS_ETL_LOAD_MAX_REJECTED_RATIO",
        Kind::Float,
    ),
    (
        "load.ratio_min_records",
        "LMS_ETL_LOAD_RATIO_MIN_RECORDS",
        Kind::Int,
    ),
    ("logs.keep_days", "LMS_ETL_LOGS_KEEP_DAYS", Kind::Int),
    ("logs.level", "LMS_ETL_LOGS_LEVEL", Kind::Str),
    (
        "sheets.spreadsheet_id",
        "LMS_ETL_SHEETS_SPREADSHEET_ID",
        Kind::Str,
    ),
    ("sheets.sheet", "LMS_ETL_SHEETS_SHEET", Kind::Str),
    ("sheets.key_file", "LMS_ETL_SHEETS_KEY_FILE", Kind::Str),
    ("sheets.api_root", "LMS_ETL_SHEETS_API_ROOT", Kind::Str),
    ("email.smtp_host", "LMS_ETL_EMAIL_SMTP_HOST", Kind::Str),
    ("email.smtp_port", "LMS_ETL_EMAIL_SMTP_PORT", Kind::Int),
    ("email.smtp_tls", "LMS_ETL_EMAIL_SMTP_TLS", Kind::Str),
    ("email.ca_file", "LMS_ETL_EMAIL_CA_FILE", Kind::Str),
    ("email.smtp_user", "LMS_ETL_EMAIL_SMTP_USER", Kind::Str),
    (
        "email.smtp_password",
        "LMS_ETL_EMAIL_SMTP_PASSWORD",
        Kind::Str,
    ),
    (
        "email.smtp_password_file",
        "LMS_ETL_EMAIL_SMTP_PASSWORD_FILE",
        Kind::Str,
    ),
    (
        "email.smtp_timeout_secs",
        "LMS_ETL_EMAIL_SMTP_TIMEOUT_SECS",
        Kind::Int,
    ),
    ("email.from", "LMS_ETL_EMAIL_FROM", Kind::Str),
    ("email.to", "LMS_ETL_EMAIL_TO", Kind::List),
    ("email.send_on", "LMS_ETL_EMAIL_SEND_ON", Kind::Str),
    ("email.outbox_dir", "LMS_ETL_EMAIL_OUTBOX_DIR", Kind::Str),
];

fn env_of(key: &str) -> &'static str {
    ENV_KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, e, _)| *e)
        .unwrap_or("-")
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        env: env_of(key).to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// Reads `file` (if given) and overlays the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(file, &env)
    }

    /// The pure form of [`Config::load`], for tests: the environment is passed in.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    let at = e.span().map_or(0, |span| span.start).min(text.len());
                    let before = &text[..at];
                    ConfigError::Syntax {
                        path: path.to_owned(),
                        line: before.matches('\n').count() + 1,
                        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                        // The description only: toml's Display quotes the offending line.
                        message: e.message().trim().to_owned(),
                    }
                })?
            }
        };
        for (key, var, kind) in ENV_KEYS {
            let Some(value) = env.get(*var).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value =
                match kind {
                    Kind::Str => toml::Value::String(value.clone()),
                    Kind::Int => toml::Value::Integer(value.trim().parse().map_err(|_| {
                        invalid(key, format!("expected an integer, found {value:?}"))
                    })?),
                    Kind::Float => toml::Value::Float(value.trim().parse().map_err(|_| {
                        invalid(key, format!("expected a number, found {value:?}"))
                    })?),
                    Kind::List => toml::Value::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.to_owned().into())
                            .collect(),
                    ),
                };
            let (section, field) = key.split_once('.').expect("keys are section.field");
            let section = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| invalid(key, format!("[{section}] must be a table")))?;
            section.insert(field.to_owned(), value);
        }
        let raw: RawConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "(file)".into(),
                    env: "-".into(),
                    message: e.message().to_owned(),
                })?;
        // libpq's default root certificate lives in the home directory.
        raw.validate(env.get("HOME").map(Path::new))
    }
}

fn required(key: &str, value: Option<String>) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(key, "missing"))
}

fn positive(key: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(key, "must be greater than 0")),
        v => Ok(v),
    }
}

impl RawConfig {
    fn validate(self, home: Option<&Path>) -> Result<Config, ConfigError> {
        let url = SecretString::from(required("database.url", self.database.url)?);
        let database = DatabaseConfig {
            target: crate::pg_tls::Target::parse(url.expose_secret(), home)
                .map_err(|e| invalid("database.url", crate::error_chain(&e)))?,
        };

        let a = self.api;
        let mut url: reqwest::Url = required("api.url", a.url)?
            .parse()
            .map_err(|e| invalid("api.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("api.url", "must be an http:// or https:// URL"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let backoff_initial = positive("api.backoff_initial_ms", a.backoff_initial_ms, 500)?;
        let backoff_max = positive("api.backoff_max_ms", a.backoff_max_ms, 30_000)?;
        if backoff_max < backoff_initial {
            return Err(invalid(
                "api.backoff_max_ms",
                "must not be less than api.backoff_initial_ms",
            ));
        }
        let api = ApiConfig {
            url,
            client: required("api.client", a.client)?,
            client_key: required("api.client_key", a.client_key)?.into(),
            connect_timeout: Duration::from_secs(positive(
                "api.connect_timeout_secs",
                a.connect_timeout_secs,
                10,
            )?),
            request_timeout: Duration::from_secs(positive(
                "api.request_timeout_secs",
                a.request_timeout_secs,
                600,
            )?),
            max_retries: a.max_retries.unwrap_or(5),
            retry_budget: a.retry_budget.unwrap_or(30),
            backoff_initial: Duration::from_millis(backoff_initial),
            backoff_max: Duration::from_millis(backoff_max),
            source_timezone: a
                .source_timezone
                .filter(|z| !z.trim().is_empty())
                .map(|z| {
                    lms_etl_parse::source_time::parse_zone(&z)
                        .map_err(|e| invalid("api.source_timezone", e.to_string()))
                })
                .transpose()?,
        };

        let w = self.window;
        let chunk_minutes = w.chunk_minutes.unwrap_or(60);
        if !(1..=7 * 24 * 60).contains(&chunk_minutes) {
            return Err(invalid(
                "window.chunk_minutes",
                "must be between 1 and 10080 (one week)",
            ));
        }
        let lookback = w.first_run_lookback_hours.unwrap_or(24);
        if lookback < 1 {
            return Err(invalid(
                "window.first_run_lookback_hours",
                "must be at least 1",
            ));
        }
        let minutes = |key: &str, value: Option<i64>, default: i64| match value.unwrap_or(default) {
            m if (0..=7 * 24 * 60).contains(&m) => Ok(chrono::Duration::minutes(m)),
            _ => Err(invalid(
                key,
                "must be between 0 and 10080 minutes (one week)",
            )),
        };
        let max_batch_bytes = w.max_batch_bytes.unwrap_or(4 << 20);
        // The extension's ingest_chunk reads at most 64 MiB at once (MAX_CHUNK_BYTES).
        if !(64 << 10..=32 << 20).contains(&max_batch_bytes) {
            return Err(invalid(
                "window.max_batch_bytes",
                "must be between 65536 (64 KiB) and 33554432 (32 MiB)",
            ));
        }
        let window = WindowConfig {
            chunk: chrono::Duration::minutes(chunk_minutes),
            prefetch: w.prefetch.unwrap_or(1).clamp(1, 16),
            parallel_loads: w.parallel_loads.unwrap_or(2).clamp(1, 16),
            first_run_lookback: chrono::Duration::hours(lookback),
            settle_lag: minutes("window.settle_lag_minutes", w.settle_lag_minutes, 15)?,
            overlap: minutes("window.overlap_minutes", w.overlap_minutes, 60)?,
            max_batch_bytes,
        };
        let load = LoadConfig {
            max_rejected_ratio: rejected_ratio(
                "load.max_rejected_ratio",
                self.load.max_rejected_ratio.unwrap_or(0.05),
            )?,
            ratio_min_records: match self.load.ratio_min_records.unwrap_or(100) {
                n if n >= 1 => n,
                _ => return Err(invalid("load.ratio_min_records", "must be at least 1")),
            },
        };

        let logs = LogsConfig {
            dir: self.logs.dir.unwrap_or_else(|| PathBuf::from("./logs")),
            keep_days: self.logs.keep_days.unwrap_or(3).max(1),
            level: self.logs.level.unwrap_or_else(|| "info".into()),
        };

        let s = self.sheets;
        let sheets = match s.spreadsheet_id.filter(|id| !id.trim().is_empty()) {
            None => None,
            Some(spreadsheet_id) => {
                let key_file = s.key_file.ok_or_else(|| {
                    invalid(
                        "sheets.key_file",
                        "missing (needed with sheets.spreadsheet_id)",
                    )
                })?;
                let mut api_root = s
                    .api_root
                    .unwrap_or_else(|| "https://sheets.googleapis.com/".into());
                if !api_root.ends_with('/') {
                    api_root.push('/');
                }
                Some(SheetsConfig {
                    spreadsheet_id,
                    sheet: s.sheet.unwrap_or_else(|| "daily_stats".into()),
                    key_file,
                    api_root,
                })
            }
        };

        let email = self.email.validate()?;
        Ok(Config {
            database,
            api,
            window,
            load,
            logs,
            sheets,
            email,
        })
    }
}

/// A share of rejected records: a number from 0 to 1.
pub fn rejected_ratio(key: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, "must be a share between 0 and 1 (e.g. 0.05)"))
    }
}

impl RawEmail {
    fn validate(self) -> Result<EmailConfig, ConfigError> {
        let mailbox = |key: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| invalid(key, format!("not an e-mail address {text:?}: {e}")))
        };
        let from = mailbox(
            "email.from",
            self.from
                .as_deref()
                .unwrap_or("lms-etl <lms-etl@localhost>"),
        )?;
        let to = match self.to {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|t| mailbox("email.to", t))
                .collect::<Result<_, _>>()?,
            _ => vec![mailbox("email.to", "data-team <data-team@localhost>")?],
        };
        let send_on = match self.send_on.as_deref().unwrap_or("both") {
            "both" => SendOn::Both,
            "success" => SendOn::Success,
            "failure" => SendOn::Failure,
            "never" => SendOn::Never,
            other => {
                return Err(invalid(
                    "email.send_on",
                    format!("expected both, success, failure or never, found {other:?}"),
                ))
            }
        };
        let smtp = match self.smtp_host.filter(|h| !h.trim().is_empty()) {
            None => None,
            Some(host) => {
                let tls = match self.smtp_tls.as_deref().unwrap_or("starttls") {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Implicit,
                    other => {
                        return Err(invalid(
                            "email.smtp_tls",
                            format!("expected none, starttls or tls, found {other:?}"),
                        ))
                    }
                };
                let password = match (self.smtp_password, self.smtp_password_file) {
                    (Some(p), _) => Some(SecretString::from(p)),
                    (None, Some(path)) => {
                        let text = std::fs::read_to_string(&path).map_err(|e| {
                            invalid(
                                "email.smtp_password_file",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?;
                        Some(SecretString::from(
                            text.trim_end_matches(['\r', '\n']).to_owned(),
                        ))
                    }
                    (None, None) => None,
                };
                let ca_file = self.ca_file.filter(|p| !p.as_os_str().is_empty());
                if let Some(path) = &ca_file {
                    // Read now so a wrong path stops the start, not the mail at the end.
                    crate::tls::read_ca_file(path)
                        .map_err(|e| invalid("email.ca_file", e.to_string()))?;
                }
                let default_port = match tls {
                    SmtpTls::None => 25,
                    SmtpTls::StartTls => 587,
                    SmtpTls::Implicit => 465,
                };
                Some(SmtpConfig {
                    host,
                    port: self.smtp_port.unwrap_or(default_port),
                    tls,
                    ca_file,
                    user: self.smtp_user.filter(|u| !u.is_empty()),
                    password,
                    timeout: Duration::from_secs(positive(
                        "email.smtp_timeout_secs",
                        self.smtp_timeout_secs,
                        30,
                    )?),
                })
            }
        };
        Ok(EmailConfig {
            smtp,
            from,
            to,
            send_on,
            outbox_dir: self.outbox_dir.unwrap_or_else(|| PathBuf::from("./outbox")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/lms_etl"),
        ("LMS_ETL_API_URL", "http://127.0.0.1:8080"),
        ("LMS_ETL_CLIENT", "demo"),
        ("LMS_ETL_CLIENT_KEY", "s3cret"),
    ];

    #[test]
    fn env_alone_is_enough_and_defaults_apply() {
        let c = Config::from_sources(None, &env(MINIMAL)).unwrap();
        assert_eq!(c.api.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(c.window.chunk, chrono::Duration::hours(1));
        assert_eq!(c.logs.dir, PathBuf::from("./logs"));
        assert!(c.sheets.is_none());
        assert!(c.email.smtp.is_none());
        assert_eq!(c.api.source_timezone, None);
        assert_eq!(c.window.settle_lag, chrono::Duration::minutes(15));
        assert_eq!(c.window.overlap, chrono::Duration::minutes(60));
        assert_eq!(c.window.max_batch_bytes, 4 << 20);
        assert_eq!(c.load.max_rejected_ratio, 0.05);
        assert_eq!(c.load.ratio_min_records, 100);
    }

    #[test]
    fn a_syntax_error_names_the_place_and_never_shows_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[api]\nclient = \"demo\"\nclient_key = \"s3cr3t-Key\n",
        )
        .unwrap();
        let err = Config::from_sources(Some(&path), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(
            err.starts_with(&format!(
                "config file {} is not valid TOML at line 3, column ",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn the_example_file_is_valid_and_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lms-etl.example.toml");
        let c = Config::from_sources(Some(&path), &BTreeMap::new()).unwrap();
        let defaults = Config::from_sources(None, &env(MINIMAL)).unwrap();
        assert_eq!(c.window.settle_lag, defaults.window.settle_lag);
        assert_eq!(c.window.overlap, defaults.window.overlap);
        assert_eq!(c.window.max_batch_bytes, defaults.window.max_batch_bytes);
        assert_eq!(c.load.max_rejected_ratio, defaults.load.max_rejected_ratio);
        assert_eq!(c.load.ratio_min_records, defaults.load.ratio_min_records);
    }

    #[test]
    fn window_and_load_settings_come_from_the_environment_and_are_checked() {
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_WINDOW_SETTLE_LAG_MINUTES".into(), "5".into());
        e.insert("LMS_ETL_WINDOW_OVERLAP_MINUTES".into(), "90".into());
        e.insert("LMS_ETL_LOAD_MAX_REJECTED_RATIO".into(), "0.2".into());
        e.insert("LMS_ETL_API_SOURCE_TIMEZONE".into(), "Europe/Moscow".into());
        let c = Config::from_sources(None, &e).unwrap();
        assert_eq!(c.window.settle_lag, chrono::Duration::minutes(5));
        assert_eq!(c.window.overlap, chrono::Duration::minutes(90));
        assert_eq!(c.load.max_rejected_ratio, 0.2);
        assert_eq!(c.api.source_timezone, Some(chrono_tz::Europe::Moscow));
        e.insert("LMS_ETL_LOAD_MAX_REJECTED_RATIO".into(), "1.5".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert_eq!(err, "config key `load.max_rejected_ratio` (env LMS_ETL_LOAD_MAX_REJECTED_RATIO): must be a share between 0 and 1 (e.g. 0.05)");
    }

    #[test]
    fn env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[api]\nclient = \"file\"\n[window]\nchunk_minutes = 15\n[logs]\ndir = \"/var/log/x\"\n").unwrap();
        let mut e = env(MINIMAL);
        e.remove("LMS_ETL_CLIENT");
        e.insert("LMS_ETL_LOG_DIR".into(), "/tmp/logs".into());
        e.insert("LMS_ETL_EMAIL_TO".into(), "a@x.org, b@y.org".into());
        let c = Config::from_sources(Some(&path), &e).unwrap();
        assert_eq!(c.api.client, "file");
        assert_eq!(c.window.chunk, chrono::Duration::minutes(15));
        assert_eq!(c.logs.dir, PathBuf::from("/tmp/logs"));
        assert_eq!(c.email.to.len(), 2);
    }

    #[test]
    fn errors_name_the_key_and_variable() {
        let mut e = env(MINIMAL);
        e.remove("LMS_ETL_CLIENT_KEY");
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `api.client_key` (env LMS_ETL_CLIENT_KEY): missing"
        );

        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_WINDOW_CHUNK_MINUTES".into(), "soon".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert_eq!(err, "config key `window.chunk_minutes` (env LMS_ETL_WINDOW_CHUNK_MINUTES): expected an integer, found \"soon\"");

        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_API_SOURCE_TIMEZONE".into(), "Mars/Olympus".into());
        assert!(Config::from_sources(None, &e)
            .unwrap_err()
            .to_string()
            .contains("api.source_timezone"));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[api]\nclinet = \"typo\"\n").unwrap();
        let err = Config::from_sources(Some(&path), &env(MINIMAL))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `clinet`"), "{err}");
    }

    #[test]
    fn the_smtp_password_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("smtp-password");
        std::fs::write(&secret, "from-file\n").unwrap();
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_EMAIL_SMTP_HOST".into(), "smtp.example.org".into());
        e.insert(
            "LMS_ETL_EMAIL_SMTP_PASSWORD_FILE".into(),
            secret.to_str().unwrap().into(),
        );
        let c = Config::from_sources(None, &e).unwrap();
        let smtp = c.email.smtp.unwrap();
        assert_eq!(smtp.password.unwrap().expose_secret(), "from-file");
        assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));

        e.insert(
            "LMS_ETL_EMAIL_SMTP_PASSWORD_FILE".into(),
            "/nonexistent/pw".into(),
        );
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `email.smtp_password_file`"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let c = Config::from_sources(None, &env(MINIMAL)).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
