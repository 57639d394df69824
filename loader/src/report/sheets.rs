//! Publishes `daily_stats` to a Google Sheets tab, one row per day, and a chart tab beside it:
//! new days are inserted as whole rows in date order, known days updated in place, nothing else touched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use chrono_tz::Tz;
use google_sheets4::api::{
    AddChartRequest, AddSheetRequest, AppendDimensionRequest, BasicChartAxis, BasicChartDomain,
    BasicChartSeries, BasicChartSpec, BatchUpdateSpreadsheetRequest, BatchUpdateValuesRequest,
    ChartData, ChartSourceRange, ChartSpec, ClearValuesRequest, DimensionRange, EmbeddedChart,
    EmbeddedObjectPosition, GridCoordinate, GridProperties, GridRange, InsertDimensionRequest,
    OverlayPosition, Request, SheetProperties, UpdateChartSpecRequest, ValueRange,
};
use google_sheets4::Sheets;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::ServiceAccountKey;

use super::problems::ProblemDay;
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

/// Columns A..F hold [`HEADER`]; cells right of F are the users' and are never written.
const LAST_COLUMN: char = 'F';
const COLUMNS: usize = HEADER.len();

/// Grid of a tab the push creates: Google's own default for a new sheet, stated explicitly
/// so the plan does not depend on a default.
const NEW_TAB_ROWS: usize = 1000;
const NEW_TAB_COLUMNS: usize = 26;

/// Bound on every single HTTP exchange, so a hung API cannot hold a run forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// First wait before retrying a 429/5xx answer, doubling per retry up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

type Connector = HttpsConnector<HttpConnector>;

/// What a successful push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetsOutcome {
    /// Days written (each inserted or updated).
    pub days_written: usize,
    /// Of those, days that got a new row.
    pub rows_inserted: usize,
    pub chart: ChartChange,
    /// Link to the spreadsheet, for the run report.
    pub url: String,
}

/// What a push did to the chart tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartChange {
    /// `sheets.chart_sheet` is empty: no chart.
    Off,
    Created,
    /// Its range was moved to cover the day rows.
    Updated,
    Unchanged,
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
        "Sheets API {call} on spreadsheet {spreadsheet_id} failed with HTTP {status}{}: {message}",
        retried(*retries)
    )]
    Api {
        call: &'static str,
        spreadsheet_id: String,
        status: u16,
        /// Retries made before giving up (429/5xx only).
        retries: u32,
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
    #[error("Sheets API {call} on spreadsheet {spreadsheet_id} timed out after {} s", limit.as_secs())]
    Timeout {
        call: &'static str,
        spreadsheet_id: String,
        limit: Duration,
    },
    #[error("Sheets API {call} on spreadsheet {spreadsheet_id} failed: {message}")]
    Other {
        call: &'static str,
        spreadsheet_id: String,
        message: String,
    },
}

fn retried(retries: u32) -> String {
    match retries {
        0 => String::new(),
        1 => " after 1 retry".into(),
        n => format!(" after {n} retries"),
    }
}

/// `https://docs.google.com/spreadsheets/d/<id>`.
pub fn spreadsheet_url(cfg: &SheetsConfig) -> String {
    format!(
        "https://docs.google.com/spreadsheets/d/{}",
        cfg.spreadsheet_id
    )
}

/// Whether Google takes `a` and `b` for the same tab title, so the push finds `Daily_Stats`
/// when configured with `daily_stats` instead of failing to add a second tab.
///
/// What we assumed of Google: titles compare case-insensitively (addSheet of `DAILY_STATS`
/// beside `daily_stats` is refused, in the UI and the API); leading and trailing spaces are
/// kept in a title and count (` daily_stats` is another tab), so nothing is trimmed; for
/// non-ASCII titles the comparison is Unicode lowercase (`É` = `é`) with no normalisation
/// (a precomposed `é` and `e` + combining accent differ).
pub fn same_tab_title(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Writes `days` (calendar days of `report_timezone`) into the tab `cfg.sheet`, creating the
/// tab if needed, then creates or updates the chart tab `cfg.chart_sheet`.
///
/// Row 1 is the header (A–F rewritten to name `report_timezone`). A day already in column A
/// is updated in place (every row holding it); a missing day gets a new row inserted right
/// below the row of the latest earlier day (or above the earliest later day, or below the
/// header), so notes users keep right of F stay beside their day. Only A–F of the header and
/// of the pushed days are written; other rows, blank rows and rows whose column A is not a
/// date are left where and as they are. At most four calls: spreadsheets.get, values.get of
/// column A, one batchUpdate for rows and chart (only when something changes), one
/// values.batchUpdate.
pub async fn push_days(
    cfg: &SheetsConfig,
    days: &[DailyStats],
    report_timezone: Tz,
) -> Result<SheetsOutcome, SheetsError> {
    let started = Instant::now();
    let session = Session::open(cfg).await?;
    let api = session.api(cfg);

    let tabs = api.tabs().await?;
    let mut taken: Vec<i32> = tabs.iter().map(|t| t.id).collect();
    let mut requests = Vec::new();
    let (data, column_a) = match tabs.iter().find(|t| same_tab_title(&t.title, &cfg.sheet)) {
        Some(tab) => {
            let column_a = api.read_column_a(&tab.title).await?;
            (tab.clone(), column_a)
        }
        None => {
            let tab = Tab {
                id: new_sheet_id(&mut taken),
                title: cfg.sheet.clone(),
                rows: NEW_TAB_ROWS,
                columns: NEW_TAB_COLUMNS,
                charts: Vec::new(),
            };
            requests.push(add_sheet(&tab));
            tracing::info!(sheet = %cfg.sheet, "creating the Sheets tab");
            (tab, Vec::new())
        }
    };
    if data.title != cfg.sheet {
        tracing::info!(configured = %cfg.sheet, found = %data.title, "using the Sheets tab whose title differs only in case");
    }

    let header = header(report_timezone);
    warn_on_zone_change(&column_a, &header[0]);
    let plan = plan(&column_a, data.rows, days, &header);
    requests.extend(plan.structure(data.id, data.columns));
    let (chart_requests, chart) = chart_requests(cfg, &tabs, data.id, &plan, &mut taken);
    requests.extend(chart_requests);

    if !requests.is_empty() {
        api.batch_update(requests).await?;
    }
    api.write_rows(&data.title, LAST_COLUMN, &plan.writes)
        .await?;

    tracing::info!(
        sheet = %data.title,
        days = plan.days_written,
        inserted = plan.rows_inserted,
        chart = ?chart,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pushed daily stats to Google Sheets"
    );
    Ok(SheetsOutcome {
        days_written: plan.days_written,
        rows_inserted: plan.rows_inserted,
        chart,
        url: spreadsheet_url(cfg),
    })
}

/// Row 1 of the problems tab (`sheets.problems_sheet`); A1 names the zone as in [`header`].
pub const PROBLEM_HEADER: [&str; 10] = [
    "date",
    "course_id",
    "block_id",
    "attempts",
    "runs",
    "submits",
    "successful_submits",
    "users",
    "users_solved",
    "users_first_submit_correct",
];
const PROBLEM_LAST_COLUMN: char = 'J';

/// Rewrites the tab `tab` with `rows` (`daily_problem_stats` rows, calendar days of
/// `report_timezone`) below a header: the tab is created if needed (found ignoring case),
/// its grid grown to fit, columns A–J cleared, then written in one call. Columns right of J
/// are the users'. Returns the rows written below the header.
pub async fn push_problems(
    cfg: &SheetsConfig,
    tab: &str,
    rows: &[ProblemDay],
    report_timezone: Tz,
) -> Result<usize, SheetsError> {
    let started = Instant::now();
    let session = Session::open(cfg).await?;
    let api = session.api(cfg);
    let tabs = api.tabs().await?;
    let needed_rows = rows.len() + 1;
    let needed_columns = PROBLEM_HEADER.len();
    let mut requests = Vec::new();
    let target = match tabs.iter().find(|t| same_tab_title(&t.title, tab)) {
        Some(found) => found.clone(),
        None => {
            let mut taken: Vec<i32> = tabs.iter().map(|t| t.id).collect();
            let new = Tab {
                id: new_sheet_id(&mut taken),
                title: tab.to_owned(),
                rows: NEW_TAB_ROWS.max(needed_rows),
                columns: NEW_TAB_COLUMNS.max(needed_columns),
                charts: Vec::new(),
            };
            requests.push(add_sheet(&new));
            tracing::info!(sheet = %tab, "creating the Sheets problems tab");
            new
        }
    };
    for (dimension, have, need) in [
        ("ROWS", target.rows, needed_rows),
        ("COLUMNS", target.columns, needed_columns),
    ] {
        if have < need {
            requests.push(Request {
                append_dimension: Some(AppendDimensionRequest {
                    dimension: Some(dimension.into()),
                    length: Some((need - have) as i32),
                    sheet_id: Some(target.id),
                }),
                ..Default::default()
            });
        }
    }
    if !requests.is_empty() {
        api.batch_update(requests).await?;
    }
    api.clear(&format!(
        "{}!A:{PROBLEM_LAST_COLUMN}",
        quote_title(&target.title)
    ))
    .await?;
    let mut header: Vec<Value> = PROBLEM_HEADER.iter().map(|h| Value::from(*h)).collect();
    header[0] = Value::from(format!("date ({})", report_timezone.name()));
    let writes: Vec<(usize, Vec<Value>)> = std::iter::once(header)
        .chain(rows.iter().map(problem_row))
        .enumerate()
        .map(|(i, cells)| (i + 1, cells))
        .collect();
    api.write_rows(&target.title, PROBLEM_LAST_COLUMN, &writes)
        .await?;
    tracing::info!(
        sheet = %target.title,
        rows = rows.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pushed per-problem stats to Google Sheets"
    );
    Ok(rows.len())
}

/// The cells of one problem row, in [`PROBLEM_HEADER`] order; the row of attempts without a
/// well-formed sourcedid has empty course and block.
pub fn problem_row(p: &ProblemDay) -> Vec<Value> {
    vec![
        Value::from(p.day.format("%Y-%m-%d").to_string()),
        Value::from(p.course_id.clone().unwrap_or_default()),
        Value::from(p.block_id.clone().unwrap_or_default()),
        Value::from(p.attempts),
        Value::from(p.runs),
        Value::from(p.submits),
        Value::from(p.successful_submits),
        Value::from(p.users),
        Value::from(p.users_solved),
        Value::from(p.users_first_submit_correct),
    ]
}

/// An authenticated Sheets client for one push.
struct Session {
    hub: Sheets<Connector>,
    key: ServiceAccountKey,
    token: String,
    /// No retry starts after this instant: the whole push shares one budget.
    retry_deadline: Instant,
}

impl Session {
    async fn open(cfg: &SheetsConfig) -> Result<Session, SheetsError> {
        check_api_root(&cfg.api_root)?;
        let key = read_key(cfg).await?;
        let connector = connector()?;

        let auth = authenticator(cfg, &key, connector.clone()).await?;
        let token = access_token(&auth, &key).await?;

        let client =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        let mut hub = Sheets::new(client, auth);
        hub.root_url(cfg.api_root.clone());
        hub.base_url(cfg.api_root.clone());
        Ok(Session {
            hub,
            key,
            token,
            retry_deadline: Instant::now() + cfg.retry_budget,
        })
    }

    fn api<'a>(&'a self, cfg: &'a SheetsConfig) -> Api<'a> {
        Api {
            hub: &self.hub,
            cfg,
            key: &self.key,
            token: &self.token,
            retry_deadline: self.retry_deadline,
        }
    }
}

fn warn_on_zone_change(column_a: &[Value], new: &str) {
    let old = column_a.first().and_then(Value::as_str).unwrap_or_default();
    if old.starts_with("date (") && old != new {
        // Rows kept from before are days of the old zone; say so once, in the log.
        tracing::warn!(old, new, "Sheets tab's days change time zone");
    }
}

/// What `lms-etl doctor` found: a token for this account, and the spreadsheet readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetsAccess {
    pub client_email: String,
    /// The tab exists already (else the first push creates it).
    pub tab_exists: bool,
}

/// Obtains a token and reads the spreadsheet's tab list (spreadsheets.get); writes nothing.
pub async fn check_access(cfg: &SheetsConfig) -> Result<SheetsAccess, SheetsError> {
    let session = Session::open(cfg).await?;
    let tabs = session.api(cfg).tabs().await?;
    Ok(SheetsAccess {
        client_email: session.key.client_email.clone(),
        tab_exists: tabs.iter().any(|t| same_tab_title(&t.title, &cfg.sheet)),
    })
}

// ---- set-up ----------------------------------------------------------------------

/// Fetches the token up front: an auth failure is reported as such, not as an API error,
/// and knowing the token lets us scrub it from any error text a server echoes back.
async fn access_token(
    auth: &Authenticator<Connector>,
    key: &ServiceAccountKey,
) -> Result<String, SheetsError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, auth.token(&[SCOPE])).await {
        Err(_) => Err(auth_error(
            key,
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        )),
        Ok(Err(e)) => Err(auth_error(key, error_chain(&e))),
        Ok(Ok(t)) => t
            .token()
            .map(str::to_owned)
            .ok_or_else(|| auth_error(key, "no access token in the response".into())),
    }
}

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

/// A tab as spreadsheets.get shows it.
#[derive(Debug, Clone)]
struct Tab {
    id: i32,
    title: String,
    /// Grid size: writes outside it are refused ("exceeds grid limits").
    rows: usize,
    columns: usize,
    charts: Vec<EmbeddedChart>,
}

struct Api<'a> {
    hub: &'a Sheets<Connector>,
    cfg: &'a SheetsConfig,
    key: &'a ServiceAccountKey,
    token: &'a str,
    /// No retry starts after this instant: the whole push shares one budget.
    retry_deadline: Instant,
}

impl Api<'_> {
    fn id(&self) -> String {
        encode_segment(&self.cfg.spreadsheet_id)
    }

    fn backoff(&self, call: &'static str) -> Backoff {
        Backoff {
            call,
            max_retries: self.cfg.max_retries,
            deadline: self.retry_deadline,
            retries: Arc::new(AtomicU32::new(0)),
        }
    }

    async fn tabs(&self) -> Result<Vec<Tab>, SheetsError> {
        const CALL: &str = "spreadsheets.get";
        let mut backoff = self.backoff(CALL);
        let retries = backoff.retries.clone();
        let call = self
            .hub
            .spreadsheets()
            .get(&self.id())
            .param(
                "fields",
                "sheets(properties(sheetId,title,gridProperties(rowCount,columnCount)),charts(chartId,spec))",
            )
            .add_scope(SCOPE)
            .delegate(&mut backoff)
            .doit();
        let (_, spreadsheet) = self.finish(CALL, &retries, call).await?;
        Ok(spreadsheet
            .sheets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|sheet| {
                let properties = sheet.properties?;
                let grid = properties.grid_properties.unwrap_or_default();
                Some(Tab {
                    id: properties.sheet_id?,
                    title: properties.title?,
                    rows: grid.row_count.map_or(0, |n| n.max(0) as usize),
                    columns: grid.column_count.map_or(0, |n| n.max(0) as usize),
                    charts: sheet.charts.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Column A, unformatted (dates typed by hand come back as serial numbers).
    async fn read_column_a(&self, title: &str) -> Result<Vec<Value>, SheetsError> {
        const CALL: &str = "spreadsheets.values.get";
        let mut backoff = self.backoff(CALL);
        let retries = backoff.retries.clone();
        let range = encode_segment(&format!("{}!A1:A", quote_title(title)));
        let call = self
            .hub
            .spreadsheets()
            .values_get(&self.id(), &range)
            .value_render_option("UNFORMATTED_VALUE")
            .major_dimension("ROWS")
            .add_scope(SCOPE)
            .delegate(&mut backoff)
            .doit();
        let (_, values) = self.finish(CALL, &retries, call).await?;
        Ok(values
            .values
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.into_iter().next().unwrap_or(Value::Null))
            .collect())
    }

    /// One batchUpdate: applied by Google all or nothing.
    async fn batch_update(&self, requests: Vec<Request>) -> Result<(), SheetsError> {
        const CALL: &str = "spreadsheets.batchUpdate";
        let mut backoff = self.backoff(CALL);
        let retries = backoff.retries.clone();
        let request = BatchUpdateSpreadsheetRequest {
            requests: Some(requests),
            ..Default::default()
        };
        let call = self
            .hub
            .spreadsheets()
            .batch_update(request, &self.id())
            .add_scope(SCOPE)
            .delegate(&mut backoff)
            .doit();
        self.finish(CALL, &retries, call).await.map(drop)
    }

    /// One values.batchUpdate with a range per run of consecutive rows, A to `last_column` only.
    async fn write_rows(
        &self,
        title: &str,
        last_column: char,
        writes: &[(usize, Vec<Value>)],
    ) -> Result<(), SheetsError> {
        const CALL: &str = "spreadsheets.values.batchUpdate";
        let mut data = Vec::new();
        for run in writes.chunk_by(|a, b| a.0 + 1 == b.0) {
            let (first, last) = (run[0].0, run[run.len() - 1].0);
            data.push(ValueRange {
                range: Some(format!(
                    "{}!A{first}:{last_column}{last}",
                    quote_title(title)
                )),
                major_dimension: Some("ROWS".into()),
                values: Some(run.iter().map(|(_, cells)| cells.clone()).collect()),
            });
        }
        let mut backoff = self.backoff(CALL);
        let retries = backoff.retries.clone();
        let request = BatchUpdateValuesRequest {
            data: Some(data),
            value_input_option: Some("RAW".into()),
            ..Default::default()
        };
        let call = self
            .hub
            .spreadsheets()
            .values_batch_update(request, &self.id())
            .add_scope(SCOPE)
            .delegate(&mut backoff)
            .doit();
        self.finish(CALL, &retries, call).await.map(drop)
    }

    /// values.clear of `range` (A1 notation, title quoted).
    async fn clear(&self, range: &str) -> Result<(), SheetsError> {
        const CALL: &str = "spreadsheets.values.clear";
        let mut backoff = self.backoff(CALL);
        let retries = backoff.retries.clone();
        let call = self
            .hub
            .spreadsheets()
            .values_clear(
                ClearValuesRequest::default(),
                &self.id(),
                &encode_segment(range),
            )
            .add_scope(SCOPE)
            .delegate(&mut backoff)
            .doit();
        self.finish(CALL, &retries, call).await.map(drop)
    }

    /// Runs one call (its retries included) under a time limit and turns its error into a
    /// [`SheetsError`].
    async fn finish<T>(
        &self,
        call: &'static str,
        retries: &AtomicU32,
        future: impl std::future::Future<Output = google_sheets4::Result<T>>,
    ) -> Result<T, SheetsError> {
        let spreadsheet_id = self.cfg.spreadsheet_id.clone();
        // Each exchange gets REQUEST_TIMEOUT; the waits between retries end by the deadline.
        let limit = REQUEST_TIMEOUT * (self.cfg.max_retries + 1)
            + self
                .retry_deadline
                .saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(limit, future).await {
            Err(_) => {
                return Err(SheetsError::Timeout {
                    call,
                    spreadsheet_id,
                    limit,
                })
            }
            Ok(r) => r,
        };
        let error = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let retries = retries.load(Ordering::SeqCst);
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
                    retries,
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
                    retries,
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

/// `'tab'` with quotes doubled, as A1 notation wants a title.
fn quote_title(title: &str) -> String {
    format!("'{}'", title.replace('\'', "''"))
}

/// google-sheets4's hook for failed answers: retries 429 and 5xx with exponential backoff
/// and jitter (at least the server's `Retry-After`), `max_retries` times per call, never
/// past the push's deadline; anything else fails at once.
struct Backoff {
    call: &'static str,
    max_retries: u32,
    deadline: Instant,
    retries: Arc<AtomicU32>,
}

impl google_sheets4::common::Delegate for Backoff {
    fn http_failure(
        &mut self,
        response: &google_sheets4::common::Response,
        _: Option<&Value>,
    ) -> google_sheets4::common::Retry {
        use google_sheets4::common::Retry;
        let status = response.status();
        if status.as_u16() != 429 && !status.is_server_error() {
            return Retry::Abort;
        }
        let done = self.retries.load(Ordering::SeqCst);
        if done >= self.max_retries {
            return Retry::Abort;
        }
        let wait = crate::fetch::backoff(BACKOFF_INITIAL, BACKOFF_MAX, done + 1)
            .max(crate::fetch::retry_after(response.headers()).unwrap_or_default());
        if Instant::now() + wait > self.deadline {
            tracing::warn!(
                call = self.call,
                status = status.as_u16(),
                wait_ms = wait.as_millis() as u64,
                "Sheets retry budget (sheets.retry_budget_secs) would be exceeded; giving up"
            );
            return Retry::Abort;
        }
        self.retries.store(done + 1, Ordering::SeqCst);
        tracing::warn!(
            call = self.call,
            status = status.as_u16(),
            retry = done + 1,
            wait_ms = wait.as_millis() as u64,
            "Sheets API answered busy or failing; retrying"
        );
        Retry::After(wait)
    }
}

// ---- the plan --------------------------------------------------------------------

/// A row the push inserts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NewRow<'a> {
    /// Row 1 held a day (someone sorted the header away): a header goes above it.
    Header,
    Day(&'a DailyStats),
}

/// What one push does to the tab, worked out from column A as read, before any change.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Blocks of new rows as (0-based index in the tab as read, count), highest index first:
    /// applied in that order, each index still means the row it meant when read.
    inserts: Vec<(usize, usize)>,
    /// Grid rows when read; an insert at this index is an append.
    grid_rows: usize,
    /// 1-based rows (after the inserts) and their A–F cells, ascending: the header and the
    /// pushed days, nothing else.
    writes: Vec<(usize, Vec<Value>)>,
    /// Last 1-based row holding a day after the push (1 when there is none): the chart's end.
    last_day_row: usize,
    days_written: usize,
    rows_inserted: usize,
}

/// Plans the push of `days` into a tab whose column A is `column_a` (row 1 first, trailing
/// blanks trimmed) and whose grid has `grid_rows` rows.
fn plan(
    column_a: &[Value],
    grid_rows: usize,
    days: &[DailyStats],
    header: &[String; COLUMNS],
) -> Plan {
    // Row 1 is the header unless it holds a day.
    let header_missing = column_a.first().and_then(cell_day).is_some();
    let first_data = usize::from(!header_missing);
    let dated: Vec<(usize, NaiveDate)> = column_a
        .iter()
        .enumerate()
        .skip(first_data)
        .filter_map(|(i, cell)| Some((i, cell_day(cell)?)))
        .collect();

    let mut by_day = BTreeMap::new();
    for day in days {
        by_day.insert(day.day, day);
    }
    let mut groups: BTreeMap<usize, Vec<NewRow>> = BTreeMap::new();
    if header_missing {
        groups.entry(0).or_default().push(NewRow::Header);
    }
    let mut updates: Vec<(usize, &DailyStats)> = Vec::new();
    for day in by_day.into_values() {
        let held: Vec<usize> = dated
            .iter()
            .filter(|(_, d)| *d == day.day)
            .map(|(i, _)| *i)
            .collect();
        if !held.is_empty() {
            // Duplicates (a user copied a row) are all kept current rather than deleted.
            updates.extend(held.into_iter().map(|i| (i, day)));
            continue;
        }
        let below_earlier = dated
            .iter()
            .filter(|(_, d)| *d < day.day)
            .max_by_key(|(i, d)| (*d, *i))
            .map(|(i, _)| i + 1);
        let above_later = || {
            dated
                .iter()
                .filter(|(_, d)| *d > day.day)
                .min_by_key(|(i, d)| (*d, *i))
                .map(|(i, _)| *i)
        };
        let at = below_earlier.or_else(above_later).unwrap_or(1);
        groups.entry(at).or_default().push(NewRow::Day(day));
    }

    // Where a row read at index r ends up, and where the k-th row of the block at p goes.
    let inserted_through = |r: usize| -> usize {
        groups
            .range(..=r)
            .map(|(_, block)| block.len())
            .sum::<usize>()
    };
    let moved = |r: usize| r + inserted_through(r);
    let placed = |p: usize, k: usize| p + k + p.checked_sub(1).map_or(0, inserted_through);

    let header_cells = || header.iter().map(|h| Value::from(h.as_str())).collect();
    let mut writes: Vec<(usize, Vec<Value>)> = Vec::new();
    if !header_missing {
        writes.push((0, header_cells()));
    }
    let mut last_day = None;
    for (&p, block) in &groups {
        for (k, row) in block.iter().enumerate() {
            let at = placed(p, k);
            match row {
                NewRow::Header => writes.push((at, header_cells())),
                NewRow::Day(day) => {
                    writes.push((at, day_row(day)));
                    last_day = last_day.max(Some(at));
                }
            }
        }
    }
    for &(i, day) in &updates {
        writes.push((moved(i), day_row(day)));
    }
    for &(i, _) in &dated {
        last_day = last_day.max(Some(moved(i)));
    }
    writes.sort_by_key(|(at, _)| *at);

    let rows_inserted = groups
        .values()
        .flatten()
        .filter(|r| matches!(r, NewRow::Day(_)))
        .count();
    Plan {
        inserts: groups.iter().rev().map(|(&p, b)| (p, b.len())).collect(),
        grid_rows,
        writes: writes.into_iter().map(|(at, c)| (at + 1, c)).collect(),
        last_day_row: last_day.map_or(1, |at| at + 1),
        days_written: rows_inserted
            + updates
                .iter()
                .map(|(_, d)| d.day)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        rows_inserted,
    }
}

impl Plan {
    /// The batchUpdate requests that make room for [`Plan::writes`] in sheet `sheet_id`.
    fn structure(&self, sheet_id: i32, grid_columns: usize) -> Vec<Request> {
        let mut requests = Vec::new();
        if grid_columns < COLUMNS {
            requests.push(Request {
                append_dimension: Some(AppendDimensionRequest {
                    dimension: Some("COLUMNS".into()),
                    length: Some((COLUMNS - grid_columns) as i32),
                    sheet_id: Some(sheet_id),
                }),
                ..Default::default()
            });
        }
        for &(at, count) in &self.inserts {
            let request = if at >= self.grid_rows {
                // Past the last row of the grid: insertDimension has no row to inherit from.
                Request {
                    append_dimension: Some(AppendDimensionRequest {
                        dimension: Some("ROWS".into()),
                        length: Some(count as i32),
                        sheet_id: Some(sheet_id),
                    }),
                    ..Default::default()
                }
            } else {
                Request {
                    insert_dimension: Some(InsertDimensionRequest {
                        // New days take the format of the day above them; right below the
                        // header they take the row below instead, not the header's bold.
                        inherit_from_before: Some(at > 1),
                        range: Some(DimensionRange {
                            dimension: Some("ROWS".into()),
                            sheet_id: Some(sheet_id),
                            start_index: Some(at as i32),
                            end_index: Some((at + count) as i32),
                        }),
                    }),
                    ..Default::default()
                }
            };
            requests.push(request);
        }
        requests
    }
}

fn add_sheet(tab: &Tab) -> Request {
    Request {
        add_sheet: Some(AddSheetRequest {
            properties: Some(SheetProperties {
                sheet_id: Some(tab.id),
                title: Some(tab.title.clone()),
                grid_properties: Some(GridProperties {
                    row_count: Some(tab.rows as i32),
                    column_count: Some(tab.columns as i32),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// A sheet id no tab has: we choose it so the chart can name its tab in the same batch.
fn new_sheet_id(taken: &mut Vec<i32>) -> i32 {
    loop {
        let id = rand::random_range(1..i32::MAX);
        if !taken.contains(&id) {
            taken.push(id);
            return id;
        }
    }
}

// ---- the chart -------------------------------------------------------------------

/// Requests that make the chart tab hold one line chart over the day rows: the tab and chart
/// are created once, found again by the tab's title (case-insensitively) and the chart on it
/// (ours by its title, else the first), and its spec updated only when its ranges changed.
fn chart_requests(
    cfg: &SheetsConfig,
    tabs: &[Tab],
    data_sheet_id: i32,
    plan: &Plan,
    taken: &mut Vec<i32>,
) -> (Vec<Request>, ChartChange) {
    let Some(name) = &cfg.chart_sheet else {
        return (Vec::new(), ChartChange::Off);
    };
    let title = chart_title(&cfg.sheet);
    let spec = chart_spec(data_sheet_id, plan.last_day_row, &title);
    let add_chart = |sheet_id: i32| Request {
        add_chart: Some(AddChartRequest {
            chart: Some(EmbeddedChart {
                spec: Some(spec.clone()),
                position: Some(EmbeddedObjectPosition {
                    overlay_position: Some(OverlayPosition {
                        anchor_cell: Some(GridCoordinate {
                            sheet_id: Some(sheet_id),
                            row_index: Some(0),
                            column_index: Some(0),
                        }),
                        width_pixels: Some(960),
                        height_pixels: Some(480),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let Some(tab) = tabs.iter().find(|t| same_tab_title(&t.title, name)) else {
        let tab = Tab {
            id: new_sheet_id(taken),
            title: name.clone(),
            rows: NEW_TAB_ROWS,
            columns: NEW_TAB_COLUMNS,
            charts: Vec::new(),
        };
        return (
            vec![add_sheet(&tab), add_chart(tab.id)],
            ChartChange::Created,
        );
    };
    let ours = tab
        .charts
        .iter()
        .find(|c| c.spec.as_ref().and_then(|s| s.title.as_deref()) == Some(title.as_str()))
        .or_else(|| tab.charts.first());
    match ours {
        None => (vec![add_chart(tab.id)], ChartChange::Created),
        Some(chart) if chart.spec.as_ref().map(sources) == Some(sources(&spec)) => {
            (Vec::new(), ChartChange::Unchanged)
        }
        Some(chart) => (
            vec![Request {
                update_chart_spec: Some(UpdateChartSpecRequest {
                    chart_id: chart.chart_id,
                    spec: Some(spec),
                }),
                ..Default::default()
            }],
            ChartChange::Updated,
        ),
    }
}

fn chart_title(sheet: &str) -> String {
    format!("{sheet}: attempts and success rate")
}

/// A line chart of attempts (left axis) and success rate (right axis) by date, over rows
/// 1..=`last_row` of the data tab (the header gives the series their names).
fn chart_spec(data_sheet_id: i32, last_row: usize, title: &str) -> ChartSpec {
    let column = |c: i32| ChartData {
        source_range: Some(ChartSourceRange {
            sources: Some(vec![GridRange {
                sheet_id: Some(data_sheet_id),
                start_row_index: Some(0),
                end_row_index: Some(last_row as i32),
                start_column_index: Some(c),
                end_column_index: Some(c + 1),
            }]),
        }),
        ..Default::default()
    };
    let axis = |position: &str, title: &str| BasicChartAxis {
        position: Some(position.into()),
        title: Some(title.into()),
        ..Default::default()
    };
    let series = |c: i32, axis: &str| BasicChartSeries {
        series: Some(column(c)),
        target_axis: Some(axis.into()),
        type_: Some("LINE".into()),
        ..Default::default()
    };
    ChartSpec {
        title: Some(title.into()),
        basic_chart: Some(BasicChartSpec {
            chart_type: Some("LINE".into()),
            legend_position: Some("BOTTOM_LEGEND".into()),
            header_count: Some(1),
            axis: Some(vec![
                axis("BOTTOM_AXIS", HEADER[0]),
                axis("LEFT_AXIS", HEADER[1]),
                axis("RIGHT_AXIS", HEADER[4]),
            ]),
            domains: Some(vec![BasicChartDomain {
                domain: Some(column(0)),
                reversed: None,
            }]),
            series: Some(vec![series(1, "LEFT_AXIS"), series(4, "RIGHT_AXIS")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every source range of a basic chart (domains, then series), to compare two specs.
fn sources(spec: &ChartSpec) -> Vec<Value> {
    let Some(basic) = &spec.basic_chart else {
        return Vec::new();
    };
    let domains = basic
        .domains
        .iter()
        .flatten()
        .filter_map(|d| d.domain.as_ref());
    let series = basic
        .series
        .iter()
        .flatten()
        .filter_map(|s| s.series.as_ref());
    domains
        .chain(series)
        .filter_map(|data| data.source_range.as_ref()?.sources.as_ref())
        .flatten()
        .map(|range| serde_json::to_value(range).unwrap_or_default())
        .collect()
}

// ---- cells -----------------------------------------------------------------------

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
/// Anything else (text, a count, a blank) is not a day: the push leaves that row alone.
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
            submits: 0,
            submit_success_rate: None,
        }
    }

    fn column(cells: &[Value]) -> Vec<Value> {
        cells.to_vec()
    }

    /// Requests as google-sheets4 sends them (unset fields dropped).
    fn sent(requests: Vec<Request>) -> Value {
        let mut value = serde_json::to_value(requests).unwrap();
        google_sheets4::common::remove_json_null_values(&mut value);
        value
    }

    /// Row number → column A of what the plan writes there.
    fn written(plan: &Plan) -> Vec<(usize, Value)> {
        plan.writes
            .iter()
            .map(|(at, cells)| (*at, cells[0].clone()))
            .collect()
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
    fn an_empty_tab_gets_the_header_and_the_days_inserted_below_it() {
        let header = header(chrono_tz::UTC);
        let plan = plan(
            &[],
            1000,
            &[day("2026-11-24", 1, 1), day("2026-11-23", 2, 1)],
            &header,
        );
        assert_eq!(plan.inserts, [(1, 2)]);
        assert_eq!(
            written(&plan),
            [
                (1, Value::from("date (UTC)")),
                (2, Value::from("2026-11-23")),
                (3, Value::from("2026-11-24"))
            ]
        );
        assert_eq!(
            (plan.last_day_row, plan.days_written, plan.rows_inserted),
            (3, 2, 2)
        );
    }

    #[test]
    fn new_days_go_below_their_predecessor_and_known_days_are_updated_where_they_are() {
        let a = column(&[
            "date (UTC)".into(),
            "2026-11-20".into(),
            "2026-11-22".into(),
            "Total".into(),
        ]);
        let plan = plan(
            &a,
            1000,
            &[
                day("2026-11-25", 1, 1),
                day("2026-11-22", 5, 5),
                day("2026-11-21", 3, 3),
            ],
            &header(chrono_tz::UTC),
        );
        // Applied bottom-up, so each index is still the row it was read as.
        assert_eq!(plan.inserts, [(3, 1), (2, 1)]);
        assert_eq!(
            written(&plan),
            [
                (1, Value::from("date (UTC)")),
                (3, Value::from("2026-11-21")),
                (4, Value::from("2026-11-22")),
                (5, Value::from("2026-11-25")),
            ],
            "2026-11-20 (row 2) and Total (now row 6) are not written"
        );
        assert_eq!(plan.writes[2].1[1], Value::from(5));
        assert_eq!(
            (plan.last_day_row, plan.days_written, plan.rows_inserted),
            (5, 3, 2)
        );
    }

    #[test]
    fn non_dates_blanks_and_serials_in_column_a_keep_their_rows() {
        let a = column(&[
            "date".into(),
            "my note".into(),
            Value::from(46_350), // 2026-11-24 typed by hand
            "".into(),
            Value::from(12), // a count, not a date
            "2026-11-26".into(),
        ]);
        let plan = plan(
            &a,
            6,
            &[
                day("2026-11-24", 1, 1),
                day("2026-11-25", 1, 0),
                day("2026-11-27", 2, 2),
            ],
            &header(chrono_tz::UTC),
        );
        // 11-25 right below 11-24 (row 3), 11-27 below 11-26, the last grid row: an append.
        assert_eq!(plan.inserts, [(6, 1), (3, 1)]);
        assert_eq!(
            written(&plan),
            [
                (1, Value::from("date (UTC)")),
                (3, Value::from("2026-11-24")),
                (4, Value::from("2026-11-25")),
                (8, Value::from("2026-11-27")),
            ]
        );
        let requests = sent(plan.structure(7, 26));
        assert_eq!(
            requests,
            serde_json::json!([
                {"appendDimension": {"dimension": "ROWS", "length": 1, "sheetId": 7}},
                {"insertDimension": {"inheritFromBefore": true, "range":
                    {"dimension": "ROWS", "sheetId": 7, "startIndex": 3, "endIndex": 4}}}
            ])
        );
    }

    #[test]
    fn a_day_in_row_1_gets_a_header_inserted_above_it() {
        let a = column(&["2026-11-20".into(), "date (UTC)".into()]);
        let plan = plan(
            &a,
            1000,
            &[day("2026-11-19", 1, 1)],
            &header(chrono_tz::UTC),
        );
        assert_eq!(plan.inserts, [(0, 2)]);
        assert_eq!(
            written(&plan),
            [
                (1, Value::from("date (UTC)")),
                (2, Value::from("2026-11-19"))
            ]
        );
        assert_eq!(plan.last_day_row, 3, "2026-11-20 moved to row 3");
        let requests = sent(plan.structure(7, 3));
        assert_eq!(requests[0]["appendDimension"]["dimension"], "COLUMNS");
        assert_eq!(requests[0]["appendDimension"]["length"], 3);
        assert_eq!(requests[1]["insertDimension"]["inheritFromBefore"], false);
    }

    #[test]
    fn a_duplicated_day_is_updated_in_every_row_holding_it() {
        let a = column(&[
            "date (UTC)".into(),
            "2026-11-24".into(),
            "2026-11-24".into(),
        ]);
        let plan = plan(&a, 3, &[day("2026-11-24", 9, 9)], &header(chrono_tz::UTC));
        assert!(plan.inserts.is_empty());
        assert_eq!(
            plan.writes.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(plan.days_written, 1);
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
    fn tab_titles_match_ignoring_case_but_not_spaces() {
        assert!(same_tab_title("Daily_Stats", "daily_stats"));
        assert!(same_tab_title("ÉTÉ", "été"));
        assert!(!same_tab_title(" daily_stats", "daily_stats"));
        assert!(!same_tab_title("daily_stats chart", "daily_stats"));
    }

    #[test]
    fn the_chart_spans_header_to_last_day_with_rate_on_the_right_axis() {
        let spec = serde_json::to_value(chart_spec(42, 8, "t")).unwrap();
        let basic = &spec["basicChart"];
        assert_eq!(basic["chartType"], "LINE");
        assert_eq!(basic["headerCount"], 1);
        let range = &basic["domains"][0]["domain"]["sourceRange"]["sources"][0];
        assert_eq!(
            (
                &range["sheetId"],
                &range["startRowIndex"],
                &range["endRowIndex"]
            ),
            (&Value::from(42), &Value::from(0), &Value::from(8))
        );
        assert_eq!(basic["series"][0]["targetAxis"], "LEFT_AXIS");
        assert_eq!(
            basic["series"][0]["series"]["sourceRange"]["sources"][0]["startColumnIndex"],
            1
        );
        assert_eq!(basic["series"][1]["targetAxis"], "RIGHT_AXIS");
        assert_eq!(
            basic["series"][1]["series"]["sourceRange"]["sources"][0]["startColumnIndex"],
            4
        );
        assert_eq!(
            sources(&chart_spec(42, 8, "t")),
            sources(&chart_spec(42, 8, "other"))
        );
        assert_ne!(
            sources(&chart_spec(42, 8, "t")),
            sources(&chart_spec(42, 9, "t"))
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
