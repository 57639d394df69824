//! Publishes `daily_stats` to a Google Sheets tab: one row per day, merged by date so a
//! re-run updates its days in place. The database stays the source of truth.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use chrono_tz::Tz;
use google_sheets4::api::{
    AddSheetRequest, BatchUpdateSpreadsheetRequest, ClearValuesRequest, Request, SheetProperties,
    ValueRange,
};
use google_sheets4::Sheets;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::ServiceAccountKey;

use super::DailyStats;
use crate::config::SheetsConfig;
use crate::error_chain;

/// The only OAuth scope asked for: read and write spreadsheets.
pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";

/// Row 1 of the tab, but for A1, which is [`header`]'s `date (<zone>)`.
pub const HEADER: [&str; 6] = [
    "date",
    "attempts",
    "successful_attempts",
    "unique_users",
    "success_rate",
    "updated_at",
];

/// Row 1 as written: [`HEADER`] with A1 naming the zone whose calendar days the rows are,
/// `date (UTC)`, so a reader does not take them for their own local days.
pub fn header(report_timezone: Tz) -> [String; 6] {
    let mut row = HEADER.map(str::to_owned);
    row[0] = format!("date ({})", report_timezone.name());
    row
}

/// Columns A..F hold [`HEADER`]; cells right of F are left alone.
const LAST_COLUMN: char = 'F';

/// Bound on every single HTTP exchange, so a hung API cannot hold a run forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type Connector = HttpsConnector<HttpConnector>;

/// What a successful push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetsOutcome {
    /// Day rows now in the tab (the whole block below the header was written).
    pub rows_written: usize,
    /// Link to the spreadsheet, for the run report.
    pub url: String,
}

/// A failed push. Messages name the file, call and spreadsheet; never the key or token.
#[derive(Debug, thiserror::Error)]
pub enum SheetsError {
    #[error("cannot read the Sheets service-account key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Sheets service-account key file {path} is not a usable key: {message}")]
    KeyInvalid { path: PathBuf, message: String },
    #[error("sheets.api_root {root:?} is not an http:// or https:// URL ending in `/`")]
    ApiRoot { root: String },
    #[error("cannot set up TLS for the Sheets client: {message}")]
    Tls { message: String },
    #[error(
        "Google authentication as {client_email} (token endpoint {token_uri}) failed: {message}"
    )]
    Auth {
        client_email: String,
        token_uri: String,
        message: String,
    },
    #[error(
        "Sheets API {call} on spreadsheet {spreadsheet_id} failed with HTTP {status}: {message}"
    )]
    Api {
        call: &'static str,
        spreadsheet_id: String,
        status: u16,
        message: String,
    },
    #[error(
        "Sheets API {call} on spreadsheet {spreadsheet_id}: cannot reach {api_root}: {message}"
    )]
    Connect {
        call: &'static str,
        spreadsheet_id: String,
        api_root: String,
        message: String,
    },
    #[error("Sheets API {call} on spreadsheet {spreadsheet_id} timed out after {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        call: &'static str,
        spreadsheet_id: String,
    },
    #[error("Sheets API {call} on spreadsheet {spreadsheet_id} failed: {message}")]
    Other {
        call: &'static str,
        spreadsheet_id: String,
        message: String,
    },
}

/// `https://docs.google.com/spreadsheets/d/<id>`.
pub fn spreadsheet_url(cfg: &SheetsConfig) -> String {
    format!(
        "https://docs.google.com/spreadsheets/d/{}",
        cfg.spreadsheet_id
    )
}

/// Writes `days` (calendar days of `report_timezone`) into the tab `cfg.sheet`, creating the
/// tab if needed. Days already in the tab are replaced, new days are added, other days are
/// kept; rows stay sorted by date; the header is rewritten to name `report_timezone`.
pub async fn push_days(
    cfg: &SheetsConfig,
    days: &[DailyStats],
    report_timezone: Tz,
) -> Result<SheetsOutcome, SheetsError> {
    let started = Instant::now();
    check_api_root(&cfg.api_root)?;
    let key = read_key(cfg).await?;
    let connector = connector()?;

    let auth = authenticator(cfg, &key, connector.clone()).await?;
    // Fetch the token up front: an auth failure is reported as such, not as an API error,
    // and knowing the token lets us scrub it from any error text a server echoes back.
    let token = match tokio::time::timeout(REQUEST_TIMEOUT, auth.token(&[SCOPE])).await {
        Err(_) => {
            return Err(auth_error(
                &key,
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            ))
        }
        Ok(Err(e)) => return Err(auth_error(&key, error_chain(&e))),
        Ok(Ok(t)) => t
            .token()
            .map(str::to_owned)
            .ok_or_else(|| auth_error(&key, "no access token in the response".into()))?,
    };

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let mut hub = Sheets::new(client, auth);
    hub.root_url(cfg.api_root.clone());
    hub.base_url(cfg.api_root.clone());
    let api = Api {
        hub: &hub,
        cfg,
        key: &key,
        token: &token,
    };

    if !api.tab_exists().await? {
        api.add_tab().await?;
        tracing::info!(sheet = %cfg.sheet, "created the Sheets tab");
    }
    let existing = api.read_rows().await?;
    let block = merge(&existing, days, report_timezone);
    api.write_rows(&block).await?;
    // Rows that merged away (blank rows, duplicate dates) would otherwise linger below the block.
    if existing.len() > block.len() {
        api.clear_rows(block.len() + 1, existing.len()).await?;
    }

    let rows = block.len() - 1;
    tracing::info!(
        sheet = %cfg.sheet,
        rows,
        days = days.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pushed daily stats to Google Sheets"
    );
    Ok(SheetsOutcome {
        rows_written: rows,
        url: spreadsheet_url(cfg),
    })
}

// ---- set-up ----------------------------------------------------------------------

fn check_api_root(root: &str) -> Result<(), SheetsError> {
    let ok = root.ends_with('/')
        && reqwest::Url::parse(root)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if ok {
        Ok(())
    } else {
        Err(SheetsError::ApiRoot {
            root: root.to_owned(),
        })
    }
}

async fn read_key(cfg: &SheetsConfig) -> Result<ServiceAccountKey, SheetsError> {
    let path = &cfg.key_file;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| SheetsError::KeyFile {
            path: path.clone(),
            source,
        })?;
    // Not `yup_oauth2::parse_service_account_key`: serde's message can quote the offending
    // value, which may be the private key. Only the position is reported.
    serde_json::from_slice::<ServiceAccountKey>(&bytes).map_err(|e| SheetsError::KeyInvalid {
        path: path.clone(),
        message: format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "read error",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "a field is missing or has the wrong type",
                serde_json::error::Category::Eof => "the JSON ends early",
            },
            e.line(),
            e.column()
        ),
    })
}

fn connector() -> Result<Connector, SheetsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            // A machine without CA certificates can still talk to an http:// emulator.
            tracing::warn!(error = %e, "no native root certificates; https to Google will fail");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| SheetsError::Tls {
                    message: e.to_string(),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

async fn authenticator(
    cfg: &SheetsConfig,
    key: &ServiceAccountKey,
    connector: Connector,
) -> Result<Authenticator<Connector>, SheetsError> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, String>(connector);
    yup_oauth2::ServiceAccountAuthenticator::with_client(
        key.clone(),
        yup_oauth2::CustomHyperClientBuilder::from(client),
    )
    .build()
    .await
    // The message is yup-oauth2's own ("Error reading key from PEM"), never the key.
    .map_err(|e| SheetsError::KeyInvalid {
        path: cfg.key_file.clone(),
        message: e.to_string(),
    })
}

fn auth_error(key: &ServiceAccountKey, message: String) -> SheetsError {
    SheetsError::Auth {
        client_email: key.client_email.clone(),
        token_uri: key.token_uri.clone(),
        message,
    }
}

// ---- the calls -------------------------------------------------------------------

struct Api<'a> {
    hub: &'a Sheets<Connector>,
    cfg: &'a SheetsConfig,
    key: &'a ServiceAccountKey,
    token: &'a str,
}

impl Api<'_> {
    fn id(&self) -> String {
        encode_segment(&self.cfg.spreadsheet_id)
    }

    /// `'tab'!A{first}:F{last}` (open-ended when `last` is None), percent-encoded for the path.
    fn range(&self, first: usize, last: Option<usize>) -> (String, String) {
        let tab = format!("'{}'", self.cfg.sheet.replace('\'', "''"));
        let a1 = match last {
            Some(last) => format!("{tab}!A{first}:{LAST_COLUMN}{last}"),
            None => format!("{tab}!A{first}:{LAST_COLUMN}"),
        };
        let encoded = encode_segment(&a1);
        (a1, encoded)
    }

    async fn tab_exists(&self) -> Result<bool, SheetsError> {
        let call = self
            .hub
            .spreadsheets()
            .get(&self.id())
            .param("fields", "sheets.properties(sheetId,title)")
            .add_scope(SCOPE)
            .doit();
        let (_, spreadsheet) = self.finish("spreadsheets.get", call).await?;
        Ok(spreadsheet
            .sheets
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.properties.as_ref()?.title.as_deref())
            .any(|title| title == self.cfg.sheet))
    }

    async fn add_tab(&self) -> Result<(), SheetsError> {
        let request = BatchUpdateSpreadsheetRequest {
            requests: Some(vec![Request {
                add_sheet: Some(AddSheetRequest {
                    properties: Some(SheetProperties {
                        title: Some(self.cfg.sheet.clone()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let call = self
            .hub
            .spreadsheets()
            .batch_update(request, &self.id())
            .add_scope(SCOPE)
            .doit();
        self.finish("spreadsheets.batchUpdate(addSheet)", call)
            .await
            .map(drop)
    }

    /// Columns A..F of every row, numbers as numbers (UNFORMATTED_VALUE).
    async fn read_rows(&self) -> Result<Vec<Vec<Value>>, SheetsError> {
        let (_, range) = self.range(1, None);
        let call = self
            .hub
            .spreadsheets()
            .values_get(&self.id(), &range)
            .value_render_option("UNFORMATTED_VALUE")
            .major_dimension("ROWS")
            .add_scope(SCOPE)
            .doit();
        let (_, values) = self.finish("spreadsheets.values.get", call).await?;
        Ok(values.values.unwrap_or_default())
    }

    async fn write_rows(&self, rows: &[Vec<Value>]) -> Result<(), SheetsError> {
        let (a1, range) = self.range(1, Some(rows.len()));
        let body = ValueRange {
            range: Some(a1),
            major_dimension: Some("ROWS".into()),
            values: Some(rows.to_vec()),
        };
        let call = self
            .hub
            .spreadsheets()
            .values_update(body, &self.id(), &range)
            .value_input_option("RAW")
            .add_scope(SCOPE)
            .doit();
        self.finish("spreadsheets.values.update", call)
            .await
            .map(drop)
    }

    async fn clear_rows(&self, first: usize, last: usize) -> Result<(), SheetsError> {
        let (_, range) = self.range(first, Some(last));
        let call = self
            .hub
            .spreadsheets()
            .values_clear(ClearValuesRequest::default(), &self.id(), &range)
            .add_scope(SCOPE)
            .doit();
        self.finish("spreadsheets.values.clear", call)
            .await
            .map(drop)
    }

    /// Runs one call under [`REQUEST_TIMEOUT`] and turns its error into a [`SheetsError`].
    async fn finish<T>(
        &self,
        call: &'static str,
        future: impl std::future::Future<Output = google_sheets4::Result<T>>,
    ) -> Result<T, SheetsError> {
        let spreadsheet_id = self.cfg.spreadsheet_id.clone();
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
            Err(_) => {
                return Err(SheetsError::Timeout {
                    call,
                    spreadsheet_id,
                })
            }
            Ok(r) => r,
        };
        let error = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let scrub = |s: String| s.replace(self.token, "[redacted]");
        Err(match error {
            google_sheets4::Error::BadRequest(body) => {
                // Google's JSON error body: {"error": {"code", "message", "status"}}.
                let e = &body["error"];
                let status = e["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(0);
                let mut message = e["message"].as_str().unwrap_or("(no message)").to_owned();
                if let Some(s) = e["status"].as_str() {
                    message = format!("{s}: {message}");
                }
                SheetsError::Api {
                    call,
                    spreadsheet_id,
                    status,
                    message: scrub(message),
                }
            }
            google_sheets4::Error::Failure(response) => {
                let status = response.status().as_u16();
                let bytes = google_sheets4::common::to_bytes(response.into_body())
                    .await
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                let mut message: String = text.trim().chars().take(200).collect();
                if message.is_empty() {
                    message = "(empty body)".into();
                }
                SheetsError::Api {
                    call,
                    spreadsheet_id,
                    status,
                    message: scrub(message),
                }
            }
            google_sheets4::Error::HttpError(e) => SheetsError::Connect {
                call,
                spreadsheet_id,
                api_root: self.cfg.api_root.clone(),
                message: scrub(error_chain(&e)),
            },
            google_sheets4::Error::MissingToken(e) => auth_error(
                self.key,
                scrub(format!("while calling {call}: {}", error_chain(&*e))),
            ),
            other => SheetsError::Other {
                call,
                spreadsheet_id,
                message: scrub(error_chain(&other).trim().to_owned()),
            },
        })
    }
}

// ---- the merge -------------------------------------------------------------------

/// Header + one row per day sorted by date (pushed days replace stored ones), then any
/// non-blank rows whose first cell is not a date, kept as they were.
fn merge(existing: &[Vec<Value>], days: &[DailyStats], report_timezone: Tz) -> Vec<Vec<Value>> {
    let mut rows = existing;
    if let Some(first) = rows.first() {
        if first.first().and_then(cell_day).is_none() {
            rows = &rows[1..]; // the old header; rewritten below
            let old = first.first().and_then(Value::as_str).unwrap_or_default();
            let new = &header(report_timezone)[0];
            if old.starts_with("date (") && old != new {
                // Rows kept from before are days of the old zone; say so once, in the log.
                tracing::warn!(old, new = %new, "Sheets tab's days change time zone");
            }
        }
    }
    let mut by_day: BTreeMap<NaiveDate, Vec<Value>> = BTreeMap::new();
    let mut unrecognised = Vec::new();
    for row in rows {
        if row.iter().all(is_blank) {
            continue;
        }
        match row.first().and_then(cell_day) {
            Some(day) => {
                by_day.insert(day, row.clone());
            }
            None => unrecognised.push(row.clone()),
        }
    }
    if !unrecognised.is_empty() {
        tracing::warn!(
            rows = unrecognised.len(),
            "Sheets tab has rows without a date in column A; kept below the days"
        );
    }
    for day in days {
        by_day.insert(day.day, day_row(day));
    }
    let mut block = Vec::with_capacity(1 + by_day.len() + unrecognised.len());
    block.push(header(report_timezone).map(Value::from).to_vec());
    block.extend(by_day.into_values());
    block.extend(unrecognised);
    block
}

/// The cells of one day, in [`HEADER`] order.
pub fn day_row(day: &DailyStats) -> Vec<Value> {
    vec![
        Value::from(day.day.format("%Y-%m-%d").to_string()),
        Value::from(day.attempts),
        Value::from(day.successful_attempts),
        Value::from(day.unique_users),
        Value::from((day.success_rate() * 10_000.0).round() / 10_000.0),
        Value::from(day.computed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
    ]
}

/// A date cell: our `YYYY-MM-DD` string, or a Sheets date serial if someone retyped it.
fn cell_day(cell: &Value) -> Option<NaiveDate> {
    match cell {
        Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
        Value::Number(n) => {
            let serial = n.as_f64()?;
            // Serial 1 is 1899-12-31; accept 1970..2200 only, so counts are never taken for dates.
            if !(25_569.0..=109_574.0).contains(&serial) {
                return None;
            }
            NaiveDate::from_ymd_opt(1899, 12, 30)?
                .checked_add_signed(chrono::Duration::days(serial.floor() as i64))
        }
        _ => None,
    }
}

fn is_blank(cell: &Value) -> bool {
    match cell {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: google-sheets4 pastes
/// path parameters into the URL as they are, so a `#`, `?` or `/` in a tab name would break it.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn day(d: &str, attempts: i64, ok: i64) -> DailyStats {
        DailyStats {
            day: d.parse().unwrap(),
            attempts,
            successful_attempts: ok,
            unique_users: 7,
            computed_at: Utc.with_ymd_and_hms(2026, 11, 25, 3, 4, 5).unwrap(),
        }
    }

    #[test]
    fn day_row_has_header_order_and_rounded_rate() {
        let row = day_row(&day("2026-11-24", 3, 2));
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"["2026-11-24",3,2,7,0.6667,"2026-11-25 03:04:05 UTC"]"#
        );
    }

    #[test]
    fn merge_replaces_same_day_keeps_others_and_sorts() {
        let existing = vec![
            vec![Value::from("date"), Value::from("attempts")],
            vec![Value::from("2026-11-23"), Value::from(1)],
            vec![],
            vec![Value::from("2026-11-21"), Value::from(5)],
        ];
        let block = merge(
            &existing,
            &[day("2026-11-23", 9, 9), day("2026-11-22", 4, 0)],
            chrono_tz::UTC,
        );
        let dates: Vec<_> = block.iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            dates,
            ["date (UTC)", "2026-11-21", "2026-11-22", "2026-11-23"].map(Value::from)
        );
        assert_eq!(block[3][1], Value::from(9));
        assert_eq!(block[1], existing[3], "a day not pushed is kept as it was");
    }

    #[test]
    fn merge_keeps_undated_rows_below_and_reads_date_serials() {
        let existing = vec![
            vec![Value::from(46_350)],
            vec![Value::from("note"), Value::from("x")],
        ];
        let block = merge(&existing, &[], chrono_tz::Europe::Moscow);
        assert_eq!(block.len(), 3);
        assert_eq!(block[0][0], Value::from("date (Europe/Moscow)"));
        assert_eq!(cell_day(&block[1][0]), "2026-11-24".parse().ok());
        assert_eq!(block[2][0], Value::from("note"));
    }

    #[test]
    fn header_names_the_zone_in_a1_only() {
        assert_eq!(
            header(chrono_tz::UTC),
            [
                "date (UTC)",
                "attempts",
                "successful_attempts",
                "unique_users",
                "success_rate",
                "updated_at"
            ]
        );
        assert_eq!(
            header(chrono_tz::America::Sao_Paulo)[0],
            "date (America/Sao_Paulo)"
        );
    }

    #[test]
    fn range_segments_are_percent_encoded() {
        assert_eq!(encode_segment("'a b'!A1:F"), "%27a%20b%27%21A1%3AF");
        assert_eq!(encode_segment("1AbC-_x"), "1AbC-_x");
    }

    #[test]
    fn api_root_must_be_an_http_url_ending_in_slash() {
        assert!(check_api_root("https://sheets.googleapis.com/").is_ok());
        assert!(check_api_root("http://127.0.0.1:9/").is_ok());
        assert!(check_api_root("http://127.0.0.1:9").is_err());
        assert!(check_api_root("ftp://x/").is_err());
        assert!(check_api_root("nonsense/").is_err());
    }
}
