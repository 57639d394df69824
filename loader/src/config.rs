//! The one typed configuration: defaults, a TOML file and environment variables layered
//! with figment, validated once at start-up. Nothing else in the program reads the environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A setting that is missing or invalid. Errors name the key and where its value came
/// from, never the value: any key may hold a secret, and a typo can put one in any key.
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
    /// A required key with no value: says both ways to give it one.
    #[error("config key `{key}` (env {env}): {message}")]
    Missing {
        key: String,
        env: String,
        message: String,
    },
    #[error("config key `{key}` from {origin}: {message}")]
    Invalid {
        key: String,
        origin: Origin,
        message: String,
    },
    /// A command-line option that overrides a key.
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
}

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// The variable's name.
    Env(String),
    /// The built-in default (an error here is a bug of ours).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Default => f.write_str("the built-in default"),
        }
    }
}

/// The environment variable that sets `key` (`section.field`): `LMS_ETL_<SECTION>_<FIELD>`,
/// except for the conventional names of the most used keys.
pub fn env_var(key: &str) -> String {
    const CONVENTIONAL: &[(&str, &str)] = &[
        ("database.url", "DATABASE_URL"),
        ("api.client", "LMS_ETL_CLIENT"),
        ("api.client_key", "LMS_ETL_CLIENT_KEY"),
        ("logs.dir", "LMS_ETL_LOG_DIR"),
    ];
    CONVENTIONAL.iter().find(|(k, _)| *k == key).map_or_else(
        || format!("LMS_ETL_{}", key.replace('.', "_").to_ascii_uppercase()),
        |(_, var)| (*var).to_owned(),
    )
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
    pub report: ReportConfig,
}

/// What the run's e-mail tells beyond the run itself.
#[derive(Debug, Clone, Copy)]
pub struct ReportConfig {
    /// "Hardest problems yesterday" considers problems with at least this many learners
    /// who submitted.
    pub hardest_min_submitters: i64,
    /// How many problems that list shows (0: no list).
    pub hardest_count: i64,
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
    /// Tab holding the line chart of `sheet`; `None` (configured as `""`): no chart.
    pub chart_sheet: Option<String>,
    /// Tab rewritten each run with the last days' per-problem table; `None` (configured as
    /// `""`): none.
    pub problems_sheet: Option<String>,
    pub key_file: PathBuf,
    /// Root of the Sheets REST API, ending in `/`.
    pub api_root: String,
    /// Retries of one call answered 429 or 5xx.
    pub max_retries: u32,
    /// Longest a push may spend waiting between retries, all calls together.
    pub retry_budget: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    StartTls,
    #[serde(rename = "tls")]
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
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

// ---- the layers: built-in defaults < file < environment ------------------------------

/// The name of the environment layer's metadata; errors read it to say "environment variable".
const ENV_LAYER: &str = "environment variable";

/// The file as a figment layer. The text is parsed here, not by figment's TOML provider,
/// because toml's own error message quotes the broken line, which may hold a secret.
struct FileLayer {
    path: PathBuf,
    table: toml::Table,
}

impl FileLayer {
    fn read(path: &Path) -> Result<FileLayer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table = text.parse::<toml::Table>().map_err(|e| {
            let at = e.span().map_or(0, |span| span.start).min(text.len());
            let before = &text[..at];
            ConfigError::Syntax {
                path: path.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                // The description only: toml's Display quotes the offending line.
                message: e.message().trim().to_owned(),
            }
        })?;
        Ok(FileLayer {
            path: path.to_owned(),
            table,
        })
    }
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.table).data()
    }
}

/// The environment as a figment layer: one variable per key of the defaults, named by
/// [`env_var`]. An empty variable is unset; a list key takes a comma-separated list.
struct EnvLayer<'a> {
    env: &'a BTreeMap<String, String>,
    /// The defaults: the keys there are, and by each default's kind how its variable is
    /// read (a comma-separated list, a number, or text).
    defaults: &'a Dict,
}

impl Provider for EnvLayer<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_LAYER).interpolater(|_, keys| env_var(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (section, fields) in self.defaults {
            let Some(fields) = fields.as_dict() else {
                continue;
            };
            let mut set = Dict::new();
            for (field, default) in fields {
                let Some(text) = self
                    .env
                    .get(&env_var(&format!("{section}.{field}")))
                    .filter(|text| !text.is_empty())
                else {
                    continue;
                };
                let value = match default {
                    Value::Array(..) => Value::from(
                        text.split(',')
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .collect::<Vec<_>>(),
                    ),
                    Value::Num(_, number) => typed_number(text, number),
                    _ => Value::from(text.as_str()),
                };
                set.insert(field.clone(), value);
            }
            if !set.is_empty() {
                root.insert(section.clone(), set.into());
            }
        }
        Ok(Profile::Default.collect(root))
    }
}

/// The text of a variable as a number of the same kind as the key's default (figment's own
/// lossy reading makes `0.2` an f32, 0.20000000298); text that is none stays text, and the
/// key's type then refuses it.
fn typed_number(text: &str, default: &Num) -> Value {
    let trimmed = text.trim();
    let number = match default {
        Num::F32(_) | Num::F64(_) => trimmed.parse::<f64>().ok().map(Value::from),
        _ => trimmed
            .parse::<i64>()
            .ok()
            .map(Value::from)
            .or_else(|| trimmed.parse::<u64>().ok().map(Value::from)),
    };
    number.unwrap_or_else(|| Value::from(text))
}

/// The merged layers, kept after extraction to say where each value came from.
struct Layers {
    figment: Figment,
}

impl Layers {
    fn origin(&self, key: &str) -> Origin {
        self.figment
            .find_metadata(key)
            .map_or(Origin::Default, |metadata| origin_of(metadata, key))
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    /// figment's own errors carry the value (`Actual::Str(..)`) and print it: they are
    /// turned into the key, its origin and a message made from the expected type only.
    fn explain(&self, error: figment::Error) -> ConfigError {
        // For an unknown key, figment's path already ends in the key's own name; in a list
        // it ends in the item's index, which the message gives instead.
        let mut path = error.path.clone();
        let item = match path.last().map(|last| last.parse::<usize>()) {
            Some(Ok(index)) => {
                path.pop();
                format!("item {} of the list: ", index + 1)
            }
            _ => String::new(),
        };
        let key = path.join(".");
        let origin = match self.figment.find_metadata(&key) {
            Some(metadata) => origin_of(metadata, &key),
            None => error
                .metadata
                .as_ref()
                .map_or(Origin::Default, |metadata| origin_of(metadata, &key)),
        };
        ConfigError::Invalid {
            message: item + &describe(&error.kind, path.len()),
            key,
            origin,
        }
    }
}

fn origin_of(metadata: &Metadata, key: &str) -> Origin {
    match &metadata.source {
        Some(Source::File(path)) => Origin::File(path.clone()),
        _ if metadata.name == ENV_LAYER => Origin::Env(
            metadata.interpolate(&Profile::Default, &key.split('.').collect::<Vec<_>>()),
        ),
        _ => Origin::Default,
    }
}

/// A value-free message for a figment error kind; `depth` 1 is a section, 2 a key.
fn describe(kind: &Kind, depth: usize) -> String {
    match kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("expected {}", plain(expected))
        }
        Kind::InvalidLength(_, expected) => format!("expected {expected}"),
        Kind::UnknownVariant(_, known) => format!("expected one of {}", known.join(", ")),
        Kind::UnknownField(_, known) if depth <= 1 => {
            format!("unknown section (known: {})", known.join(", "))
        }
        Kind::UnknownField(_, known) => format!("unknown key (known: {})", known.join(", ")),
        Kind::MissingField(_) => "missing".into(),
        Kind::DuplicateField(_) => "given twice".into(),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        // A free-form message may quote the value.
        Kind::Message(_) | Kind::Unsupported(_) | Kind::UnsupportedKey(..) => {
            "invalid value".into()
        }
    }
}

/// Serde's name of an expected type, in words (it names the type, never the value).
fn plain(expected: &str) -> String {
    match expected {
        "u8" => format!("an integer from 0 to {}", u8::MAX),
        "u16" => format!("an integer from 0 to {}", u16::MAX),
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        "u64" | "u128" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "path string" => "a path".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other if other.starts_with("enum ") => "a string".into(),
        other => other.into(),
    }
}

/// An integer above zero; the rule lives in the type, so its error says "a positive integer".
#[derive(Clone, Copy, Serialize)]
#[serde(transparent)]
struct Positive(u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Positive;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Positive, E> {
                match v {
                    0 => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                    v => Ok(Positive(v)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Positive, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
        }
        deserializer.deserialize_u64(Visitor)
    }
}

// ---- the sections, with their defaults -----------------------------------------------

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Sections {
    database: DatabaseSection,
    api: ApiSection,
    window: WindowSection,
    load: LoadSection,
    logs: LogsSection,
    sheets: SheetsSection,
    email: EmailSection,
    report: ReportSection,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct ReportSection {
    hardest_min_submitters: Positive,
    hardest_count: u32,
}

impl Default for ReportSection {
    fn default() -> Self {
        ReportSection {
            hardest_min_submitters: Positive(10),
            hardest_count: 5,
        }
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
struct DatabaseSection {
    url: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct ApiSection {
    url: Option<String>,
    client: Option<String>,
    client_key: Option<String>,
    connect_timeout_secs: Positive,
    request_timeout_secs: Positive,
    max_retries: u32,
    retry_budget: u32,
    backoff_initial_ms: Positive,
    backoff_max_ms: Positive,
    source_timezone: Option<String>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            url: None,
            client: None,
            client_key: None,
            connect_timeout_secs: Positive(10),
            request_timeout_secs: Positive(600),
            max_retries: 5,
            retry_budget: 30,
            backoff_initial_ms: Positive(500),
            backoff_max_ms: Positive(30_000),
            source_timezone: None,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct WindowSection {
    chunk_minutes: Positive,
    prefetch: usize,
    parallel_loads: usize,
    first_run_lookback_hours: Positive,
    settle_lag_minutes: i64,
    overlap_minutes: i64,
    max_batch_bytes: usize,
}

impl Default for WindowSection {
    fn default() -> Self {
        WindowSection {
            chunk_minutes: Positive(60),
            prefetch: 1,
            parallel_loads: 2,
            first_run_lookback_hours: Positive(24),
            settle_lag_minutes: 15,
            overlap_minutes: 60,
            max_batch_bytes: 4 << 20,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct LoadSection {
    max_rejected_ratio: f64,
    ratio_min_records: Positive,
}

impl Default for LoadSection {
    fn default() -> Self {
        LoadSection {
            max_rejected_ratio: 0.05,
            ratio_min_records: Positive(100),
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct LogsSection {
    dir: PathBuf,
    keep_days: u32,
    level: String,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            dir: PathBuf::from("./logs"),
            keep_days: 3,
            level: "info".into(),
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct SheetsSection {
    spreadsheet_id: Option<String>,
    sheet: String,
    /// Unset: `<sheet> chart`; `""` (file only: an empty variable counts as unset): no chart.
    chart_sheet: Option<String>,
    /// Unset: `problems`; `""` (file only, as chart_sheet): no problems tab.
    problems_sheet: Option<String>,
    key_file: Option<PathBuf>,
    api_root: String,
    max_retries: u32,
    retry_budget_secs: u64,
}

impl Default for SheetsSection {
    fn default() -> Self {
        SheetsSection {
            spreadsheet_id: None,
            sheet: "daily_stats".into(),
            chart_sheet: None,
            problems_sheet: None,
            key_file: None,
            api_root: "https://sheets.googleapis.com/".into(),
            max_retries: 4,
            retry_budget_secs: 30,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct EmailSection {
    smtp_host: Option<String>,
    /// 0: the usual port of `smtp_tls`. A number, not an `Option`, so that the environment
    /// layer reads its variable as a number (it takes the kind from the default).
    smtp_port: u16,
    smtp_tls: SmtpTls,
    ca_file: Option<PathBuf>,
    smtp_user: Option<String>,
    smtp_password: Option<String>,
    smtp_password_file: Option<PathBuf>,
    smtp_timeout_secs: Positive,
    from: String,
    to: Vec<String>,
    send_on: SendOn,
    outbox_dir: PathBuf,
}

impl Default for EmailSection {
    fn default() -> Self {
        EmailSection {
            smtp_host: None,
            smtp_port: 0,
            smtp_tls: SmtpTls::StartTls,
            ca_file: None,
            smtp_user: None,
            smtp_password: None,
            smtp_password_file: None,
            smtp_timeout_secs: Positive(30),
            from: "lms-etl <lms-etl@localhost>".into(),
            to: vec!["data-team <data-team@localhost>".into()],
            send_on: SendOn::Both,
            outbox_dir: PathBuf::from("./outbox"),
        }
    }
}

// ---- loading and validation ----------------------------------------------------------

impl Config {
    /// Reads `file` (if given) and overlays the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        // Variables that are not Unicode cannot be any of ours; skipping them beats a panic.
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::from_sources(file, &env)
    }

    /// The pure form of [`Config::load`], for tests: the environment is passed in.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let defaults = Serialized::defaults(Sections::default());
        let keys = defaults
            .data()
            .ok()
            .and_then(|mut profiles| profiles.remove(&Profile::Default))
            .unwrap_or_default();
        let mut figment = Figment::from(defaults);
        if let Some(path) = file {
            figment = figment.merge(FileLayer::read(path)?);
        }
        let layers = Layers {
            figment: figment.merge(EnvLayer {
                env,
                defaults: &keys,
            }),
        };
        let sections: Sections = layers.figment.extract().map_err(|e| layers.explain(e))?;
        // libpq's default root certificate lives in the home directory.
        sections.validate(&layers, env.get("HOME").map(Path::new))
    }
}

/// A required text: absent or blank is missing.
fn required(key: &str, value: Option<String>) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| missing(key, "missing"))
}

fn missing(key: &str, message: &str) -> ConfigError {
    ConfigError::Missing {
        key: key.to_owned(),
        env: env_var(key),
        message: message.to_owned(),
    }
}

const SHARE: &str = "must be a share between 0 and 1 (e.g. 0.05)";

/// A share of rejected records given on the command line: a number from 0 to 1.
pub fn rejected_ratio(flag: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Flag {
            flag: flag.to_owned(),
            message: SHARE.to_owned(),
        })
    }
}

/// Longest chunk, settle lag and overlap: one week of minutes.
const WEEK_MINUTES: i64 = 7 * 24 * 60;

impl Sections {
    fn validate(self, layers: &Layers, home: Option<&Path>) -> Result<Config, ConfigError> {
        let url = SecretString::from(required("database.url", self.database.url)?);
        let database = DatabaseConfig {
            target: crate::pg_tls::Target::parse(url.expose_secret(), home)
                .map_err(|e| layers.invalid("database.url", crate::error_chain(&e)))?,
        };
        let api = self.api.validate(layers)?;
        let window = self.window.validate(layers)?;

        let l = self.load;
        if !(0.0..=1.0).contains(&l.max_rejected_ratio) {
            return Err(layers.invalid("load.max_rejected_ratio", SHARE));
        }
        let load = LoadConfig {
            max_rejected_ratio: l.max_rejected_ratio,
            ratio_min_records: i64::try_from(l.ratio_min_records.0)
                .map_err(|_| layers.invalid("load.ratio_min_records", "too large"))?,
        };

        let logs = LogsConfig {
            dir: self.logs.dir,
            keep_days: self.logs.keep_days.max(1),
            level: self.logs.level,
        };

        let s = self.sheets;
        let sheets = match s.spreadsheet_id.filter(|id| !id.trim().is_empty()) {
            None => None,
            Some(spreadsheet_id) => {
                let key_file = s
                    .key_file
                    .filter(|path| !path.as_os_str().is_empty())
                    .ok_or_else(|| {
                        missing(
                            "sheets.key_file",
                            "missing (needed with sheets.spreadsheet_id)",
                        )
                    })?;
                let mut api_root = s.api_root;
                if !api_root.ends_with('/') {
                    api_root.push('/');
                }
                http_url(&api_root)
                    .map_err(|message| layers.invalid("sheets.api_root", message))?;
                let sheet = s.sheet;
                let chart_sheet = match s.chart_sheet {
                    None => Some(format!("{sheet} chart")),
                    Some(name) if name.is_empty() => None,
                    Some(name) if crate::report::sheets::same_tab_title(&name, &sheet) => {
                        return Err(layers.invalid(
                            "sheets.chart_sheet",
                            "must name another tab than sheets.sheet (titles compare ignoring case)",
                        ))
                    }
                    Some(name) => Some(name),
                };
                // The default is judged too: with `sheet = "Problems"` it would name the daily
                // tab, and the problems push clears A–J of whatever tab it names.
                let defaulted = s.problems_sheet.is_none();
                let problems_sheet = match s.problems_sheet {
                    None => Some("problems".to_owned()),
                    Some(name) if name.is_empty() => None,
                    Some(name) => Some(name),
                };
                if let Some(name) = &problems_sheet {
                    if crate::report::sheets::same_tab_title(name, &sheet)
                        || chart_sheet
                            .as_deref()
                            .is_some_and(|chart| crate::report::sheets::same_tab_title(name, chart))
                    {
                        return Err(layers.invalid(
                            "sheets.problems_sheet",
                            if defaulted {
                                "its default `problems` names the same tab as sheets.sheet or sheets.chart_sheet (titles compare ignoring case): set sheets.problems_sheet to another tab, or to \"\" for none"
                            } else {
                                "must name another tab than sheets.sheet and sheets.chart_sheet (titles compare ignoring case)"
                            },
                        ));
                    }
                }
                Some(SheetsConfig {
                    spreadsheet_id,
                    sheet,
                    chart_sheet,
                    problems_sheet,
                    key_file,
                    api_root,
                    max_retries: s.max_retries,
                    retry_budget: Duration::from_secs(s.retry_budget_secs),
                })
            }
        };

        let email = self.email.validate(layers)?;
        let report = ReportConfig {
            hardest_min_submitters: i64::try_from(self.report.hardest_min_submitters.0)
                .map_err(|_| layers.invalid("report.hardest_min_submitters", "too large"))?,
            hardest_count: i64::from(self.report.hardest_count),
        };
        Ok(Config {
            database,
            api,
            window,
            load,
            logs,
            sheets,
            email,
            report,
        })
    }
}

/// An http:// or https:// URL; the message never quotes the text.
/// Credentials are refused: the loader logs and mails its URLs (redacting only the key).
fn http_url(text: &str) -> Result<reqwest::Url, String> {
    let url: reqwest::Url = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user name or password (URLs are logged; the API key goes in api.client_key)"
                .into(),
        );
    }
    Ok(url)
}

impl ApiSection {
    fn validate(self, layers: &Layers) -> Result<ApiConfig, ConfigError> {
        let mut url = http_url(&required("api.url", self.url)?)
            .map_err(|message| layers.invalid("api.url", message))?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let (backoff_initial, backoff_max) = (self.backoff_initial_ms.0, self.backoff_max_ms.0);
        if backoff_max < backoff_initial {
            // Blame the key the operator set: the other one may be the default.
            return Err(match layers.origin("api.backoff_max_ms") {
                Origin::Default => layers.invalid(
                    "api.backoff_initial_ms",
                    "must not be greater than api.backoff_max_ms",
                ),
                _ => layers.invalid(
                    "api.backoff_max_ms",
                    "must not be less than api.backoff_initial_ms",
                ),
            });
        }
        Ok(ApiConfig {
            url,
            client: required("api.client", self.client)?,
            client_key: required("api.client_key", self.client_key)?.into(),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.0),
            request_timeout: Duration::from_secs(self.request_timeout_secs.0),
            max_retries: self.max_retries,
            retry_budget: self.retry_budget,
            backoff_initial: Duration::from_millis(backoff_initial),
            backoff_max: Duration::from_millis(backoff_max),
            source_timezone: self
                .source_timezone
                .filter(|z| !z.trim().is_empty())
                .map(|z| {
                    // parse_zone's error quotes the text.
                    lms_etl_parse::source_time::parse_zone(&z).map_err(|_| {
                        layers.invalid(
                            "api.source_timezone",
                            "expected an IANA time zone name such as UTC or Europe/Moscow",
                        )
                    })
                })
                .transpose()?,
        })
    }
}

impl WindowSection {
    fn validate(self, layers: &Layers) -> Result<WindowConfig, ConfigError> {
        let chunk_minutes = match i64::try_from(self.chunk_minutes.0) {
            Ok(m) if m <= WEEK_MINUTES => m,
            _ => {
                return Err(layers.invalid(
                    "window.chunk_minutes",
                    "must be between 1 and 10080 (one week)",
                ))
            }
        };
        let first_run_lookback = i64::try_from(self.first_run_lookback_hours.0)
            .ok()
            .and_then(chrono::Duration::try_hours)
            .ok_or_else(|| layers.invalid("window.first_run_lookback_hours", "too large"))?;
        let minutes = |key: &str, m: i64| {
            if (0..=WEEK_MINUTES).contains(&m) {
                Ok(chrono::Duration::minutes(m))
            } else {
                Err(layers.invalid(key, "must be between 0 and 10080 minutes (one week)"))
            }
        };
        // The extension's ingest_chunk reads at most 64 MiB at once (MAX_CHUNK_BYTES).
        if !(64 << 10..=32 << 20).contains(&self.max_batch_bytes) {
            return Err(layers.invalid(
                "window.max_batch_bytes",
                "must be between 65536 (64 KiB) and 33554432 (32 MiB)",
            ));
        }
        Ok(WindowConfig {
            chunk: chrono::Duration::minutes(chunk_minutes),
            prefetch: self.prefetch.clamp(1, 16),
            parallel_loads: self.parallel_loads.clamp(1, 16),
            first_run_lookback,
            settle_lag: minutes("window.settle_lag_minutes", self.settle_lag_minutes)?,
            overlap: minutes("window.overlap_minutes", self.overlap_minutes)?,
            max_batch_bytes: self.max_batch_bytes,
        })
    }
}

impl EmailSection {
    fn validate(self, layers: &Layers) -> Result<EmailConfig, ConfigError> {
        // lettre's address errors name the fault, not the text.
        let from = self
            .from
            .parse::<Mailbox>()
            .map_err(|e| layers.invalid("email.from", format!("not an e-mail address: {e}")))?;
        let to = if self.to.is_empty() {
            EmailSection::default().to
        } else {
            self.to
        };
        let to = to
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<Mailbox>().map_err(|e| {
                    layers.invalid(
                        "email.to",
                        format!("item {} of the list: not an e-mail address: {e}", i + 1),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let smtp = match self.smtp_host.filter(|h| !h.trim().is_empty()) {
            None => None,
            Some(host) => {
                let password = match (self.smtp_password, self.smtp_password_file) {
                    (Some(p), _) => Some(SecretString::from(p)),
                    (None, Some(path)) => {
                        let text = std::fs::read_to_string(&path).map_err(|e| {
                            layers.invalid(
                                "email.smtp_password_file",
                                format!("cannot read the file: {e}"),
                            )
                        })?;
                        Some(SecretString::from(
                            text.trim_end_matches(['\r', '\n']).to_owned(),
                        ))
                    }
                    (None, None) => None,
                };
                let ca_file = self.ca_file.filter(|path| !path.as_os_str().is_empty());
                if let Some(path) = &ca_file {
                    // Read now so a wrong path stops the start, not the mail at the end.
                    crate::tls::read_ca_file(path)
                        .map_err(|e| layers.invalid("email.ca_file", e.to_string()))?;
                }
                let port = match (self.smtp_port, self.smtp_tls) {
                    (0, SmtpTls::None) => 25,
                    (0, SmtpTls::StartTls) => 587,
                    (0, SmtpTls::Implicit) => 465,
                    (port, _) => port,
                };
                Some(SmtpConfig {
                    host,
                    port,
                    tls: self.smtp_tls,
                    ca_file,
                    user: self.smtp_user.filter(|u| !u.is_empty()),
                    password,
                    timeout: Duration::from_secs(self.smtp_timeout_secs.0),
                })
            }
        };
        Ok(EmailConfig {
            smtp,
            from,
            to,
            send_on: self.send_on,
            outbox_dir: self.outbox_dir,
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

    /// A config file in a temporary directory (kept alive by the returned guard).
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lms-etl.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn error_with(path: Option<&Path>, extra: &[(&str, &str)]) -> String {
        let mut e = env(MINIMAL);
        for (k, v) in extra {
            e.insert(k.to_string(), v.to_string());
        }
        Config::from_sources(path, &e).unwrap_err().to_string()
    }

    /// The error for a file holding `text` (over the minimal environment), its path as `FILE`.
    fn file_error(text: &str) -> String {
        let (_dir, path) = file(text);
        error_with(Some(&path), &[]).replace(&path.display().to_string(), "FILE")
    }

    #[test]
    fn sheets_defaults_name_the_chart_tab_after_the_sheet_and_bound_retries() {
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_SHEETS_SPREADSHEET_ID".into(), "1abc".into());
        e.insert("LMS_ETL_SHEETS_KEY_FILE".into(), "/k.json".into());
        e.insert("LMS_ETL_SHEETS_SHEET".into(), "stats".into());
        let s = Config::from_sources(None, &e).unwrap().sheets.unwrap();
        assert_eq!(s.chart_sheet.as_deref(), Some("stats chart"));
        assert_eq!(
            (s.max_retries, s.retry_budget),
            (4, Duration::from_secs(30))
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[sheets]\nchart_sheet = \"\"\n").unwrap();
        e.insert("LMS_ETL_SHEETS_MAX_RETRIES".into(), "2".into());
        e.insert("LMS_ETL_SHEETS_RETRY_BUDGET_SECS".into(), "5".into());
        let s = Config::from_sources(Some(&path), &e)
            .unwrap()
            .sheets
            .unwrap();
        assert_eq!(s.chart_sheet, None, "an empty name turns the chart off");
        assert_eq!((s.max_retries, s.retry_budget), (2, Duration::from_secs(5)));

        e.insert("LMS_ETL_SHEETS_CHART_SHEET".into(), "STATS".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(err.starts_with("config key `sheets.chart_sheet` from environment variable LMS_ETL_SHEETS_CHART_SHEET: must name another tab"), "{err}");
    }

    #[test]
    fn problems_tab_and_hardest_list_have_defaults_and_can_be_turned_off() {
        let mut e = env(MINIMAL);
        let c = Config::from_sources(None, &e).unwrap();
        assert_eq!(
            (c.report.hardest_min_submitters, c.report.hardest_count),
            (10, 5)
        );
        e.insert("LMS_ETL_SHEETS_SPREADSHEET_ID".into(), "1abc".into());
        e.insert("LMS_ETL_SHEETS_KEY_FILE".into(), "/k.json".into());
        let s = Config::from_sources(None, &e).unwrap().sheets.unwrap();
        assert_eq!(s.problems_sheet.as_deref(), Some("problems"));

        let (_dir, path) = file(
            "[sheets]\nproblems_sheet = \"\"\n[report]\nhardest_min_submitters = 3\nhardest_count = 0\n",
        );
        let c = Config::from_sources(Some(&path), &e).unwrap();
        assert_eq!(
            c.sheets.unwrap().problems_sheet,
            None,
            "\"\" turns the tab off"
        );
        assert_eq!(
            (c.report.hardest_min_submitters, c.report.hardest_count),
            (3, 0)
        );

        e.insert("LMS_ETL_SHEETS_PROBLEMS_SHEET".into(), "Daily_Stats".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(err.starts_with("config key `sheets.problems_sheet` from environment variable LMS_ETL_SHEETS_PROBLEMS_SHEET: must name another tab"), "{err}");
        e.remove("LMS_ETL_SHEETS_PROBLEMS_SHEET");
        e.insert("LMS_ETL_REPORT_HARDEST_MIN_SUBMITTERS".into(), "0".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(err.contains("report.hardest_min_submitters"), "{err}");
    }

    /// The default problems tab `problems` is held to the rule an explicit name is: with the
    /// daily tab (or the chart tab) named `Problems`, each run's problems push would clear
    /// A–J of that tab and fill it with problem rows.
    #[test]
    fn the_default_problems_tab_may_not_be_the_daily_or_the_chart_tab() {
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_SHEETS_SPREADSHEET_ID".into(), "1abc".into());
        e.insert("LMS_ETL_SHEETS_KEY_FILE".into(), "/k.json".into());
        e.insert("LMS_ETL_SHEETS_SHEET".into(), "Problems".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `sheets.problems_sheet`")
                && err.contains(": its default `problems` names the same tab as sheets.sheet"),
            "{err}"
        );

        e.insert("LMS_ETL_SHEETS_SHEET".into(), "daily".into());
        e.insert("LMS_ETL_SHEETS_CHART_SHEET".into(), "PROBLEMS".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(err.contains("sheets.problems_sheet"), "{err}");

        e.insert("LMS_ETL_SHEETS_PROBLEMS_SHEET".into(), "per problem".into());
        let s = Config::from_sources(None, &e).unwrap().sheets.unwrap();
        assert_eq!(s.problems_sheet.as_deref(), Some("per problem"));
    }

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
        assert_eq!(c.api.backoff_initial, Duration::from_millis(500));
        assert_eq!(c.api.request_timeout, Duration::from_secs(600));
        assert_eq!(c.email.to.len(), 1);
        assert_eq!(c.email.send_on, SendOn::Both);
    }

    #[test]
    fn a_syntax_error_names_the_place_and_never_shows_the_line() {
        let (_dir, path) = file("[api]\nclient = \"demo\"\nclient_key = \"s3cr3t-Key\n");
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
    fn a_syntax_error_after_a_secret_on_the_broken_line_hides_it() {
        // The parser stops after the secret: the broken line is all secret and garbage.
        let (_dir, path) = file("[api]\nclient_key = \"Zq8-Secret-Value\" trailing\n");
        let err = Config::from_sources(Some(&path), &env(MINIMAL))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("Zq8-Secret-Value"), "{err}");
        assert!(!err.contains("trailing"), "{err}");
        assert!(err.contains("at line 2, column "), "{err}");
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
        e.insert("LMS_ETL_WINDOW_OVERLAP_MINUTES".into(), " 90 ".into());
        e.insert("LMS_ETL_LOAD_MAX_REJECTED_RATIO".into(), "0.2".into());
        e.insert("LMS_ETL_API_SOURCE_TIMEZONE".into(), "Europe/Moscow".into());
        let c = Config::from_sources(None, &e).unwrap();
        assert_eq!(c.window.settle_lag, chrono::Duration::minutes(5));
        assert_eq!(c.window.overlap, chrono::Duration::minutes(90));
        assert_eq!(c.load.max_rejected_ratio, 0.2);
        assert_eq!(c.api.source_timezone, Some(chrono_tz::Europe::Moscow));
        e.insert("LMS_ETL_LOAD_MAX_REJECTED_RATIO".into(), "1.5".into());
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert_eq!(err, "config key `load.max_rejected_ratio` from environment variable LMS_ETL_LOAD_MAX_REJECTED_RATIO: must be a share between 0 and 1 (e.g. 0.05)");
    }

    #[test]
    fn env_overrides_the_file() {
        let (_dir, path) = file("[api]\nclient = \"file\"\n[window]\nchunk_minutes = 15\n[logs]\ndir = \"/var/log/x\"\n");
        let mut e = env(MINIMAL);
        e.remove("LMS_ETL_CLIENT");
        e.insert("LMS_ETL_LOG_DIR".into(), "/tmp/logs".into());
        e.insert("LMS_ETL_EMAIL_TO".into(), "a@x.org, b@y.org".into());
        let c = Config::from_sources(Some(&path), &e).unwrap();
        assert_eq!(c.api.client, "file");
        assert_eq!(c.window.chunk, chrono::Duration::minutes(15));
        assert_eq!(c.logs.dir, PathBuf::from("/tmp/logs"));
        let to: Vec<String> = c.email.to.iter().map(ToString::to_string).collect();
        assert_eq!(to, ["a@x.org", "b@y.org"]);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let (_dir, path) = file("[api]\nclient = \"file\"\n[window]\nchunk_minutes = 15\n");
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_CLIENT".into(), String::new());
        e.insert("LMS_ETL_WINDOW_CHUNK_MINUTES".into(), String::new());
        e.insert("LMS_ETL_EMAIL_TO".into(), String::new());
        e.insert("LMS_ETL_EMAIL_SMTP_HOST".into(), "smtp.example.org".into());
        e.insert("LMS_ETL_EMAIL_CA_FILE".into(), String::new());
        let c = Config::from_sources(Some(&path), &e).unwrap();
        assert_eq!(c.api.client, "file");
        assert_eq!(c.window.chunk, chrono::Duration::minutes(15));
        assert_eq!(c.email.to.len(), 1);
        assert_eq!(c.email.smtp.unwrap().ca_file, None);
    }

    #[test]
    fn variables_that_are_no_key_are_ignored() {
        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_NO_SUCH_KEY".into(), "x".into());
        e.insert(
            "LMS_ETL_API_CLIENT".into(),
            "not the name of api.client".into(),
        );
        let c = Config::from_sources(None, &e).unwrap();
        assert_eq!(c.api.client, "demo");
    }

    /// A self-signed CA certificate: `email.ca_file` must name a readable PEM file.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBmTCCAT+gAwIBAgIUQzVWvssxe5ZYnYkONyWUGrEbkokwCgYIKoZIzj0EAwIw\nITEfMB0GA1UEAwwWbG1zLWV0bCBjb25maWcgdGVzdCBDQTAgFw0yNjExMjcwNzAz\nNDFaGA8yMTI2MTEwMzA3MDM0MVowITEfMB0GA1UEAwwWbG1zLWV0bCBjb25maWcg\ndGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLXO2cgekxr7M3HyiPdy\nyfMDp1DOaKm823DwzQ4lmkaqXQgH0wYIdrl/ayzF3AWoQdom4eqQxSAsqdirNkC5\nVGWjUzBRMB0GA1UdDgQWBBTXrz7/ytay2VRpMldJBjyku3UN5TAfBgNVHSMEGDAW\ngBTXrz7/ytay2VRpMldJBjyku3UN5TAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49\nBAMCA0gAMEUCIFRhCFd2FZtzBnRAm4qrJqyo8p5nTmHuDk0E7vPqpWVVAiEAqwQG\nqGCVFI2neZMyuakAMZtEoNhGq8p2aDmX+H6He3A=\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_smtp_ca_file_comes_from_file_or_environment_and_empty_is_unset() {
        let certs = tempfile::tempdir().unwrap();
        let (file_ca, env_ca) = (
            certs.path().join("file-ca.pem"),
            certs.path().join("env-ca.pem"),
        );
        std::fs::write(&file_ca, TEST_CA_PEM).unwrap();
        std::fs::write(&env_ca, TEST_CA_PEM).unwrap();
        let (_dir, path) = file(&format!(
            "[email]\nsmtp_host = \"smtp.example.org\"\nca_file = \"{}\"\n",
            file_ca.display()
        ));
        let c = Config::from_sources(Some(&path), &env(MINIMAL)).unwrap();
        let smtp = c.email.smtp.unwrap();
        assert_eq!(smtp.ca_file, Some(file_ca.clone()));

        let mut e = env(MINIMAL);
        e.insert("LMS_ETL_EMAIL_CA_FILE".into(), env_ca.display().to_string());
        let c = Config::from_sources(Some(&path), &e).unwrap();
        let smtp = c.email.smtp.unwrap();
        assert_eq!(smtp.ca_file, Some(env_ca.clone()));

        let (_dir, path) =
            file("[email]\nsmtp_host = \"smtp.example.org\"\nsmtp_tls = \"tls\"\nca_file = \"\"\n");
        let smtp = Config::from_sources(Some(&path), &env(MINIMAL))
            .unwrap()
            .email
            .smtp
            .unwrap();
        assert_eq!(
            (smtp.ca_file, smtp.tls, smtp.port),
            (None, SmtpTls::Implicit, 465)
        );
    }

    #[test]
    fn a_missing_key_says_how_to_set_it() {
        let mut e = env(MINIMAL);
        e.remove("LMS_ETL_CLIENT_KEY");
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `api.client_key` (env LMS_ETL_CLIENT_KEY): missing"
        );
        let err = error_with(None, &[("LMS_ETL_SHEETS_SPREADSHEET_ID", "1AbC")]);
        assert_eq!(err, "config key `sheets.key_file` (env LMS_ETL_SHEETS_KEY_FILE): missing (needed with sheets.spreadsheet_id)");
    }

    #[test]
    fn a_value_error_names_the_variable_or_the_file_it_came_from() {
        let err = error_with(None, &[("LMS_ETL_WINDOW_CHUNK_MINUTES", "soon")]);
        assert_eq!(err, "config key `window.chunk_minutes` from environment variable LMS_ETL_WINDOW_CHUNK_MINUTES: expected a positive integer");

        assert_eq!(
            file_error("[window]\nchunk_minutes = 0\n"),
            "config key `window.chunk_minutes` from FILE: expected a positive integer"
        );

        // The same key set in both: the environment wins, so it is the one named.
        let (_dir, path) = file("[window]\nchunk_minutes = 0\n");
        let err = error_with(Some(&path), &[("LMS_ETL_WINDOW_CHUNK_MINUTES", "-3")]);
        assert!(
            err.starts_with("config key `window.chunk_minutes` from environment variable LMS_ETL_WINDOW_CHUNK_MINUTES: "),
            "{err}"
        );

        // A range check after extraction names the source the same way.
        assert_eq!(
            file_error("[window]\nchunk_minutes = 20000\n"),
            "config key `window.chunk_minutes` from FILE: must be between 1 and 10080 (one week)"
        );
        let err = error_with(None, &[("LMS_ETL_WINDOW_CHUNK_MINUTES", "20000")]);
        assert_eq!(err, "config key `window.chunk_minutes` from environment variable LMS_ETL_WINDOW_CHUNK_MINUTES: must be between 1 and 10080 (one week)");

        // The conventional names are the ones named.
        let err = error_with(None, &[("LMS_ETL_API_URL", "ftp://127.0.0.1/")]);
        assert_eq!(err, "config key `api.url` from environment variable LMS_ETL_API_URL: must be an http:// or https:// URL");
    }

    /// (file text or none, variables, the value that must not appear, the key named)
    type LeakCase<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str, &'a str);

    #[test]
    fn no_value_appears_in_any_error() {
        let cases: &[LeakCase] = &[
            // string keys
            (
                None,
                &[("LMS_ETL_API_URL", "Zq8sec://x y")],
                "Zq8sec",
                "api.url",
            ),
            (
                Some("[api]\nclient = 73914286\n"),
                &[("LMS_ETL_CLIENT", "")],
                "73914286",
                "api.client",
            ),
            (
                Some("[email]\nfrom = \"Zq8-from-secret\"\n"),
                &[],
                "Zq8-from-secret",
                "email.from",
            ),
            (
                None,
                &[("LMS_ETL_EMAIL_SEND_ON", "Zq8-sometimes")],
                "Zq8-sometimes",
                "email.send_on",
            ),
            (
                None,
                &[
                    ("LMS_ETL_EMAIL_SMTP_HOST", "h"),
                    ("LMS_ETL_EMAIL_SMTP_TLS", "Zq8-ssl"),
                ],
                "Zq8-ssl",
                "email.smtp_tls",
            ),
            (
                None,
                &[("LMS_ETL_API_SOURCE_TIMEZONE", "Zq8/Olympus")],
                "Zq8",
                "api.source_timezone",
            ),
            (
                None,
                &[
                    ("LMS_ETL_EMAIL_SMTP_HOST", "h"),
                    (
                        "LMS_ETL_EMAIL_SMTP_PASSWORD_FILE",
                        "/nonexistent/Zq8-pw-path",
                    ),
                ],
                "Zq8-pw-path",
                "email.smtp_password_file",
            ),
            // int keys
            (
                None,
                &[("LMS_ETL_WINDOW_CHUNK_MINUTES", "Zq8-sixty")],
                "Zq8-sixty",
                "window.chunk_minutes",
            ),
            (
                Some("[window]\nchunk_minutes = \"Zq8-sixty\"\n"),
                &[],
                "Zq8-sixty",
                "window.chunk_minutes",
            ),
            (
                None,
                &[("LMS_ETL_EMAIL_SMTP_PORT", "7391428")],
                "7391428",
                "email.smtp_port",
            ),
            (
                Some("[api]\nmax_retries = -739142\n"),
                &[],
                "739142",
                "api.max_retries",
            ),
            // float keys
            (
                None,
                &[("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "Zq8-half")],
                "Zq8-half",
                "load.max_rejected_ratio",
            ),
            (
                Some("[load]\nmax_rejected_ratio = 7.3914\n"),
                &[],
                "7.3914",
                "load.max_rejected_ratio",
            ),
            // list keys
            (
                None,
                &[("LMS_ETL_EMAIL_TO", "ok@x.org, Zq8-not-an-address")],
                "Zq8",
                "email.to",
            ),
            (
                Some("[email]\nto = \"Zq8-one@x.org\"\n"),
                &[],
                "Zq8",
                "email.to",
            ),
            (
                Some("[email]\nto = [73914286]\n"),
                &[],
                "73914286",
                "email.to",
            ),
            // secrets
            (
                Some("[api]\nclient_key = 73914286\n"),
                &[("LMS_ETL_CLIENT_KEY", "")],
                "73914286",
                "api.client_key",
            ),
            (
                Some("[api]\nclient_key = [\"Zq8-key\"]\n"),
                &[("LMS_ETL_CLIENT_KEY", "")],
                "Zq8-key",
                "api.client_key",
            ),
            (
                Some("[database]\nurl = { password = \"Zq8-pw\" }\n"),
                &[("DATABASE_URL", "")],
                "Zq8-pw",
                "database.url",
            ),
            (
                Some("[email]\nsmtp_password = 73914286\n"),
                &[],
                "73914286",
                "email.smtp_password",
            ),
            // an unknown key's value
            (
                Some("[api]\nclinet_key = \"Zq8-typo\"\n"),
                &[],
                "Zq8-typo",
                "api.clinet_key",
            ),
        ];
        for (text, vars, secret, key) in cases {
            let written = text.map(file);
            let path = written.as_ref().map(|(_, path)| path.as_path());
            let mut e = env(MINIMAL);
            e.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let err = Config::from_sources(path, &e)
                .map(|_| ())
                .expect_err(key)
                .to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(
                err.starts_with(&format!("config key `{key}` from ")),
                "{err}"
            );
            match path {
                Some(path) if vars.iter().all(|(_, v)| v.is_empty()) => {
                    assert!(err.contains(&path.display().to_string()), "{err}")
                }
                _ => assert!(err.contains("from environment variable LMS_ETL_"), "{err}"),
            }
        }
    }

    #[test]
    fn messages_say_what_was_expected() {
        let err = error_with(None, &[("LMS_ETL_LOAD_MAX_REJECTED_RATIO", "half")]);
        assert!(err.ends_with(": expected a number"), "{err}");
        let err = error_with(None, &[("LMS_ETL_EMAIL_SMTP_PORT", "70000")]);
        assert!(
            err.ends_with(": expected an integer from 0 to 65535"),
            "{err}"
        );
        let err = error_with(None, &[("LMS_ETL_EMAIL_SEND_ON", "sometimes")]);
        assert!(
            err.ends_with(": expected one of success, failure, both, never"),
            "{err}"
        );
        let err = error_with(None, &[("LMS_ETL_EMAIL_TO", "ok@x.org, nobody")]);
        assert_eq!(err, "config key `email.to` from environment variable LMS_ETL_EMAIL_TO: item 2 of the list: not an e-mail address: Invalid input");
        assert_eq!(
            file_error("[email]\nto = [\"a@x.org\", 7]\n"),
            "config key `email.to` from FILE: item 2 of the list: expected a string"
        );
        let (_dir, path) = file("[email]\nto = \"a@x.org\"\n");
        assert!(error_with(Some(&path), &[]).ends_with(": expected a list"));
    }

    #[test]
    fn unknown_file_keys_are_rejected_naming_the_key_and_file() {
        let err = file_error("[api]\nclinet = \"typo\"\n");
        assert!(
            err.starts_with("config key `api.clinet` from FILE: unknown key (known: url, client, "),
            "{err}"
        );
        let err = file_error("[apii]\nclient = \"typo\"\n");
        assert!(
            err.starts_with("config key `apii` from FILE: unknown section (known: database, api, "),
            "{err}"
        );
    }

    #[test]
    fn a_backoff_error_blames_the_key_that_was_set() {
        let err = error_with(None, &[("LMS_ETL_API_BACKOFF_INITIAL_MS", "60000")]);
        assert_eq!(err, "config key `api.backoff_initial_ms` from environment variable LMS_ETL_API_BACKOFF_INITIAL_MS: must not be greater than api.backoff_max_ms");
        let err = error_with(None, &[("LMS_ETL_API_BACKOFF_MAX_MS", "100")]);
        assert_eq!(err, "config key `api.backoff_max_ms` from environment variable LMS_ETL_API_BACKOFF_MAX_MS: must not be less than api.backoff_initial_ms");
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
        assert_eq!(smtp.timeout, Duration::from_secs(30));

        e.insert(
            "LMS_ETL_EMAIL_SMTP_PASSWORD_FILE".into(),
            "/nonexistent/pw".into(),
        );
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `email.smtp_password_file` from environment variable LMS_ETL_EMAIL_SMTP_PASSWORD_FILE: cannot read the file: "),
            "{err}"
        );
    }

    #[test]
    fn every_key_has_its_variable() {
        // The README's table and the example file name these; a renamed field would break them.
        let defaults = Serialized::defaults(Sections::default())
            .data()
            .unwrap()
            .remove(&Profile::Default)
            .unwrap();
        let keys: Vec<String> = defaults
            .iter()
            .flat_map(|(section, fields)| {
                fields
                    .as_dict()
                    .unwrap()
                    .keys()
                    .map(move |field| format!("{section}.{field}"))
            })
            .collect();
        assert_eq!(keys.len(), 45, "{keys:?}");
        let vars: Vec<String> = keys.iter().map(|k| env_var(k)).collect();
        for var in [
            "DATABASE_URL",
            "LMS_ETL_API_URL",
            "LMS_ETL_CLIENT",
            "LMS_ETL_CLIENT_KEY",
            "LMS_ETL_LOG_DIR",
            "LMS_ETL_LOGS_KEEP_DAYS",
            "LMS_ETL_WINDOW_CHUNK_MINUTES",
            "LMS_ETL_EMAIL_SMTP_PASSWORD",
            "LMS_ETL_EMAIL_CA_FILE",
            "LMS_ETL_EMAIL_TO",
        ] {
            assert!(vars.iter().any(|v| v == var), "{var} not in {vars:?}");
        }
    }

    #[test]
    fn the_command_line_ratio_is_checked_without_quoting_it() {
        assert_eq!(rejected_ratio("--max-rejected-ratio", 1.0).unwrap(), 1.0);
        let err = rejected_ratio("--max-rejected-ratio", 7.3914)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--max-rejected-ratio: must be a share between 0 and 1 (e.g. 0.05)"
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let c = Config::from_sources(None, &env(MINIMAL)).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_showing_them() {
        let mut e = env(MINIMAL);
        e.insert(
            "LMS_ETL_API_URL".into(),
            "https://etl:Sup3rSecret@lms.example.org/".into(),
        );
        let err = Config::from_sources(None, &e).unwrap_err().to_string();
        assert!(
            err.contains("must not carry a user name or password"),
            "{err}"
        );
        assert!(
            !err.contains("Sup3rSecret") && !err.contains("etl:"),
            "{err}"
        );
    }
}
