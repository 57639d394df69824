//! An in-memory Google Sheets v4 REST emulator (the endpoints the loader calls) plus an
//! OAuth token endpoint, served by axum on 127.0.0.1 so tests can assert exact cells.
//!
//! It behaves like Google where the loader depends on it: tab titles match ignoring case,
//! writes outside a tab's grid are refused ("exceeds grid limits"), a batchUpdate is applied
//! all or nothing, inserted rows move the cells (and chart ranges) below them; failures
//! (429, 5xx, ...) can be scripted.

mod batch_update;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The test-only service-account key in `fixtures/` (see `fixtures/README.md`).
pub const FIXTURE_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/test-service-account.json"
);

/// The fixture key as JSON (for assertions that its private key never leaks).
pub fn fixture_key() -> Value {
    let text = std::fs::read_to_string(FIXTURE_KEY).expect("read the fixture key");
    serde_json::from_str(&text).expect("fixture key is JSON")
}

/// One request to `POST /token`, as decoded from the JWT assertion.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub issuer: String,
    pub audience: String,
    pub scope: String,
}

/// Google's grid for a new sheet.
const DEFAULT_ROWS: usize = 1000;
const DEFAULT_COLUMNS: usize = 26;

#[derive(Debug, Clone)]
struct Tab {
    id: i64,
    title: String,
    cells: Vec<Vec<Value>>,
    /// The grid: cells outside it cannot be written.
    row_count: usize,
    column_count: usize,
    charts: Vec<Chart>,
}

impl Tab {
    fn new(id: i64, title: &str) -> Tab {
        Tab {
            id,
            title: title.to_owned(),
            cells: Vec::new(),
            row_count: DEFAULT_ROWS,
            column_count: DEFAULT_COLUMNS,
            charts: Vec::new(),
        }
    }
}

/// A chart embedded in a tab: its id, spec and position as the API shows them.
#[derive(Debug, Clone)]
struct Chart {
    id: i64,
    spec: Value,
    position: Value,
}

/// A scripted failure: the next Sheets request is answered with this status.
#[derive(Debug, Clone, Copy)]
struct Failure {
    status: u16,
    retry_after_secs: Option<u64>,
}

#[derive(Default)]
struct Inner {
    spreadsheet_id: String,
    token_uri: String,
    tabs: Vec<Tab>,
    next_tab_id: i64,
    next_chart_id: i64,
    tokens: Vec<String>,
    token_requests: Vec<TokenRequest>,
    calls: Vec<String>,
    outage: bool,
    failures: VecDeque<Failure>,
    failures_served: usize,
    reject_grants: bool,
}

impl Inner {
    /// The tab Google would take `title` for: titles compare ignoring case.
    fn tab(&self, title: &str) -> Option<&Tab> {
        self.tabs.iter().find(|t| same_title(&t.title, title))
    }
}

/// Google's comparison of tab titles (see `same_tab_title` in the loader for what we assume).
fn same_title(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

type Shared = Arc<Mutex<Inner>>;

/// A running emulator holding one spreadsheet; stops when dropped.
pub struct SheetsEmulator {
    addr: std::net::SocketAddr,
    inner: Shared,
    task: JoinHandle<()>,
}

impl SheetsEmulator {
    /// Serves spreadsheet `spreadsheet_id` with a single empty tab `Sheet1`.
    pub async fn start(spreadsheet_id: &str) -> SheetsEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            spreadsheet_id: spreadsheet_id.to_owned(),
            token_uri: format!("http://{addr}/token"),
            tabs: vec![Tab::new(0, "Sheet1")],
            next_tab_id: 1_000,
            next_chart_id: 5_000,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route(
                "/v4/spreadsheets/{id}",
                get(spreadsheet_get).post(spreadsheet_post),
            )
            .route(
                "/v4/spreadsheets/{id}/values:batchUpdate",
                post(values_batch_update),
            )
            .route(
                "/v4/spreadsheets/{id}/values/{range}",
                get(values_get).put(values_update).post(values_post),
            )
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SheetsEmulator { addr, inner, task }
    }

    /// For `SheetsConfig::api_root` (ends in `/`).
    pub fn api_root(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn token_uri(&self) -> String {
        self.inner.lock().unwrap().token_uri.clone()
    }

    /// Writes a copy of the fixture key whose `token_uri` is this emulator into `dir`.
    pub fn write_key_file(&self, dir: &Path) -> PathBuf {
        let mut key = fixture_key();
        key["token_uri"] = Value::from(self.token_uri());
        let path = dir.join("service-account.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&key).unwrap())
            .expect("write the key file");
        path
    }

    /// The tab's cells exactly as stored, trailing empty cells and rows trimmed;
    /// empty when the tab does not exist. `sheet` matches titles ignoring case, as Google does.
    pub fn cells(&self, sheet: &str) -> Vec<Vec<Value>> {
        let inner = self.inner.lock().unwrap();
        inner
            .tab(sheet)
            .map(|t| trimmed(&t.cells))
            .unwrap_or_default()
    }

    /// Creates (or overwrites) a tab with these cells, to start from an existing sheet. A new
    /// tab's grid is Google's default (1000 × 26), or as many rows as `cells` if more.
    pub fn set_cells(&self, sheet: &str, cells: Vec<Vec<Value>>) {
        let mut inner = self.inner.lock().unwrap();
        let index = match inner.tabs.iter().position(|t| same_title(&t.title, sheet)) {
            Some(i) => i,
            None => {
                let id = inner.next_tab_id;
                inner.next_tab_id += 1;
                inner.tabs.push(Tab::new(id, sheet));
                inner.tabs.len() - 1
            }
        };
        let tab = &mut inner.tabs[index];
        tab.row_count = tab.row_count.max(cells.len());
        tab.column_count = tab
            .column_count
            .max(cells.iter().map(Vec::len).max().unwrap_or(0));
        tab.cells = cells;
    }

    /// Resizes a tab's grid, as a user deleting or adding rows and columns does; cells
    /// outside the new grid are dropped.
    pub fn set_grid(&self, sheet: &str, rows: usize, columns: usize) {
        let mut inner = self.inner.lock().unwrap();
        let tab = inner
            .tabs
            .iter_mut()
            .find(|t| same_title(&t.title, sheet))
            .expect("set_grid on an existing tab");
        resize(tab, rows, columns);
    }

    /// (rows, columns) of the tab's grid.
    pub fn grid(&self, sheet: &str) -> Option<(usize, usize)> {
        let inner = self.inner.lock().unwrap();
        inner.tab(sheet).map(|t| (t.row_count, t.column_count))
    }

    /// The charts on a tab, as spreadsheets.get shows them (`chartId`, `spec`, `position`).
    pub fn charts(&self, sheet: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .tab(sheet)
            .map(|t| t.charts.iter().map(chart_json).collect())
            .unwrap_or_default()
    }

    pub fn tab_titles(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .tabs
            .iter()
            .map(|t| t.title.clone())
            .collect()
    }

    /// While on, every Sheets endpoint answers 503 UNAVAILABLE (the token endpoint still works).
    pub fn set_outage(&self, on: bool) {
        self.inner.lock().unwrap().outage = on;
    }

    /// The next `times` Sheets requests are answered with HTTP `status` (429 RESOURCE_EXHAUSTED,
    /// 500 INTERNAL, 503 UNAVAILABLE, 403 PERMISSION_DENIED, else INVALID_ARGUMENT), with a
    /// `Retry-After` header when given.
    pub fn fail_next(&self, status: u16, times: usize, retry_after_secs: Option<u64>) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..times {
            inner.failures.push_back(Failure {
                status,
                retry_after_secs,
            });
        }
    }

    /// Sheets requests answered with a scripted failure or the outage so far.
    pub fn failures_served(&self) -> usize {
        self.inner.lock().unwrap().failures_served
    }

    /// While on, the token endpoint answers 400 `invalid_grant`.
    pub fn set_reject_grants(&self, on: bool) {
        self.inner.lock().unwrap().reject_grants = on;
    }

    /// Access tokens handed out so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.inner.lock().unwrap().tokens.clone()
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner.lock().unwrap().token_requests.clone()
    }

    /// Sheets calls served (after auth), e.g. `values.batchUpdate 'daily_stats'!A1:F4` or
    /// `spreadsheets.batchUpdate addSheet daily_stats; insertDimension daily_stats 1..3`.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }
}

impl Drop for SheetsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets a tab's grid; rows and columns outside it lose their cells, as in Google.
fn resize(tab: &mut Tab, rows: usize, columns: usize) {
    tab.row_count = rows;
    tab.column_count = columns;
    tab.cells.truncate(rows);
    for row in &mut tab.cells {
        row.truncate(columns);
    }
}

// ---- OAuth -----------------------------------------------------------------------

async fn token(State(inner): State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_decode(&String::from_utf8_lossy(&body));
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error("unsupported_grant_type", "expected the JWT bearer grant");
    }
    let Some(claims) = form.get("assertion").and_then(|a| jwt_claims(a)) else {
        return oauth_error("invalid_request", "assertion is not a JWT");
    };
    let mut inner = inner.lock().unwrap();
    let request = TokenRequest {
        issuer: claims["iss"].as_str().unwrap_or_default().into(),
        audience: claims["aud"].as_str().unwrap_or_default().into(),
        scope: claims["scope"].as_str().unwrap_or_default().into(),
    };
    inner.token_requests.push(request.clone());
    if inner.reject_grants {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    }
    if request.audience != inner.token_uri {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: aud is not this token endpoint.",
        );
    }
    let token = format!(
        "ya29.emulator-token-{}-{}",
        inner.tokens.len() + 1,
        std::process::id()
    );
    inner.tokens.push(token.clone());
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
    )
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

/// The claims (middle part) of a JWT; the signature is not checked.
fn jwt_claims(jwt: &str) -> Option<Value> {
    let mut parts = jwt.split('.');
    let (_head, claims, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn form_decode(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- Sheets ----------------------------------------------------------------------

/// Google's error body: `{"error": {"code", "message", "status"}}`.
fn api_error(status: StatusCode, google_status: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": google_status}}),
    )
}

/// An error answer, kept small until it becomes a [`Response`].
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    google_status: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Rejection {
    fn invalid(message: impl Into<String>) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            google_status: "INVALID_ARGUMENT",
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = api_error(self.status, self.google_status, &self.message);
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
        }
        response
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// Scripted failures, outage, bearer token and spreadsheet id checks shared by every
/// Sheets endpoint.
fn admit(inner: &mut Inner, headers: &HeaderMap, id: &str) -> Result<(), Rejection> {
    let reject = |status, google_status, message: &str| Rejection {
        status,
        google_status,
        message: message.into(),
        retry_after_secs: None,
    };
    if let Some(failure) = inner.failures.pop_front() {
        inner.failures_served += 1;
        let status = StatusCode::from_u16(failure.status).expect("a valid HTTP status");
        let (google_status, message) = match failure.status {
            429 => ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of service 'sheets.googleapis.com'."),
            500 => ("INTERNAL", "Internal error encountered."),
            503 => ("UNAVAILABLE", "The service is currently unavailable."),
            403 => ("PERMISSION_DENIED", "The caller does not have permission"),
            _ => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        };
        return Err(Rejection {
            retry_after_secs: failure.retry_after_secs,
            ..reject(status, google_status, message)
        });
    }
    if inner.outage {
        inner.failures_served += 1;
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| inner.tokens.iter().any(|issued| issued == t)) {
        return Err(reject(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token.",
        ));
    }
    if id != inner.spreadsheet_id {
        return Err(reject(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
        ));
    }
    Ok(())
}

async fn spreadsheet_get(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Err(r) = admit(&mut inner, &headers, &id) {
        return r.into_response();
    }
    inner.calls.push("spreadsheets.get".into());
    let sheets: Vec<Value> = inner
        .tabs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut sheet = json!({"properties": sheet_properties(t, i)});
            // Google leaves out empty lists.
            if !t.charts.is_empty() {
                sheet["charts"] = t.charts.iter().map(chart_json).collect();
            }
            sheet
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"spreadsheetId": id, "properties": {"title": "lms-etl emulated"}, "sheets": sheets}),
    )
}

fn sheet_properties(tab: &Tab, index: usize) -> Value {
    json!({
        "sheetId": tab.id, "title": tab.title, "index": index, "sheetType": "GRID",
        "gridProperties": {"rowCount": tab.row_count, "columnCount": tab.column_count}
    })
}

fn chart_json(chart: &Chart) -> Value {
    json!({"chartId": chart.id, "spec": chart.spec, "position": chart.position})
}

/// `POST /v4/spreadsheets/{id}:batchUpdate`: see [`batch_update`].
async fn spreadsheet_post(
    State(inner): State<Shared>,
    UrlPath(segment): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = segment.strip_suffix(":batchUpdate") else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The emulator only knows :batchUpdate here.",
        );
    };
    let mut inner = inner.lock().unwrap();
    if let Err(r) = admit(&mut inner, &headers, id) {
        return r.into_response();
    }
    let request = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match batch_update::apply(&mut inner, &request) {
        Ok(replies) => json_response(
            StatusCode::OK,
            json!({"spreadsheetId": inner.spreadsheet_id, "replies": replies}),
        ),
        Err(r) => r.into_response(),
    }
}

async fn values_get(
    State(inner): State<Shared>,
    UrlPath((id, range)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Err(r) = admit(&mut inner, &headers, &id) {
        return r.into_response();
    }
    let a1 = match A1::parse(&range, &inner.tabs) {
        Ok(a1) => a1,
        Err(r) => return r.into_response(),
    };
    if query.get("majorDimension").is_some_and(|d| d != "ROWS") {
        return Rejection::invalid("The emulator only supports majorDimension=ROWS.")
            .into_response();
    }
    let tab = &inner.tabs[a1.tab];
    if let Err(r) = within_grid(tab, &range, &a1, 0, 0) {
        return r.into_response();
    }
    let unformatted = query
        .get("valueRenderOption")
        .is_some_and(|o| o == "UNFORMATTED_VALUE");
    let last_row = a1.last_row.unwrap_or(tab.cells.len()).min(tab.cells.len());
    let mut rows = Vec::new();
    for r in a1.first_row..=last_row {
        let Some(row) = r.checked_sub(1).and_then(|i| tab.cells.get(i)) else {
            continue;
        };
        let end = a1.last_col.map_or(row.len(), |c| (c + 1).min(row.len()));
        let cells: Vec<Value> = row
            .get(a1.first_col..end.max(a1.first_col))
            .unwrap_or_default()
            .iter()
            .map(|v| render(v, unformatted))
            .collect();
        rows.push(cells);
    }
    let rows = trimmed(&rows);
    let mut body =
        json!({"range": a1.text(&tab.title, last_row.max(a1.first_row)), "majorDimension": "ROWS"});
    if !rows.is_empty() {
        body["values"] = Value::from(rows);
    }
    inner.calls.push(format!("values.get {range}"));
    json_response(StatusCode::OK, body)
}

/// Refuses a range (and `rows` × `width` values written from its top-left cell) reaching
/// outside the tab's grid, with Google's message.
fn within_grid(
    tab: &Tab,
    range: &str,
    a1: &A1,
    rows: usize,
    width: usize,
) -> Result<(), Rejection> {
    let last_row = a1
        .last_row
        .unwrap_or(0)
        .max((a1.first_row + rows).saturating_sub(1))
        .max(a1.first_row);
    let last_col = a1
        .last_col
        .unwrap_or(0)
        .max((a1.first_col + width).saturating_sub(1))
        .max(a1.first_col);
    if last_row > tab.row_count || last_col >= tab.column_count {
        return Err(Rejection::invalid(format!(
            "Range ({range}) exceeds grid limits. Max rows: {}, max columns: {}",
            tab.row_count, tab.column_count
        )));
    }
    Ok(())
}

/// 200 with the body, or Google's error.
fn respond(answer: Result<Value, Rejection>) -> Response {
    match answer {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(r) => r.into_response(),
    }
}

fn json_body(body: &Bytes) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|_| Rejection::invalid("Invalid JSON payload received."))
}

/// `valueInputOption` must be given, as Google requires.
fn check_input_option(option: Option<&str>) -> Result<(), Rejection> {
    match option {
        Some("RAW" | "USER_ENTERED") => Ok(()),
        _ => Err(Rejection::invalid(
            "'valueInputOption' is required but not specified",
        )),
    }
}

/// One ValueRange of a write, checked against the tab and ready to apply.
struct Write {
    tab: usize,
    a1: A1,
    values: Vec<Vec<Value>>,
    width: usize,
}

/// Checks one ValueRange (`range` from the URL for values.update, from the body for
/// values.batchUpdate) without writing anything.
fn check_write(inner: &Inner, range: &str, value_range: &Value) -> Result<Write, Rejection> {
    let a1 = A1::parse(range, &inner.tabs)?;
    if let Some(body_range) = value_range["range"].as_str() {
        if body_range != range {
            return Err(Rejection::invalid(format!(
                "Requested writing within range [{range}], but tried writing to [{body_range}]"
            )));
        }
    }
    if value_range["majorDimension"]
        .as_str()
        .is_some_and(|d| d != "ROWS")
    {
        return Err(Rejection::invalid(
            "The emulator only supports majorDimension=ROWS.",
        ));
    }
    let values: Vec<Vec<Value>> =
        serde_json::from_value(value_range["values"].clone()).unwrap_or_default();
    let width = values.iter().map(Vec::len).max().unwrap_or(0);
    let fits_rows = a1
        .last_row
        .is_none_or(|last| a1.first_row + values.len() <= last + 1);
    let fits_cols = a1
        .last_col
        .is_none_or(|last| a1.first_col + width <= last + 1);
    if !fits_rows || !fits_cols {
        return Err(Rejection::invalid(format!(
            "Requested writing within range [{range}], but tried writing {} rows of {width} columns",
            values.len()
        )));
    }
    within_grid(&inner.tabs[a1.tab], range, &a1, values.len(), width)?;
    Ok(Write {
        tab: a1.tab,
        a1,
        values,
        width,
    })
}

/// Applies a checked write; returns Google's UpdateValuesResponse for it.
fn apply_write(inner: &mut Inner, id: &str, write: &Write) -> Value {
    let tab = &mut inner.tabs[write.tab];
    let mut cells_written = 0;
    for (i, row) in write.values.iter().enumerate() {
        for (j, value) in row.iter().enumerate() {
            // A JSON null means "leave this cell alone".
            if value.is_null() {
                continue;
            }
            set_cell(
                &mut tab.cells,
                write.a1.first_row - 1 + i,
                write.a1.first_col + j,
                value.clone(),
            );
            cells_written += 1;
        }
    }
    let last_row = write.a1.first_row + write.values.len().max(1) - 1;
    json!({
        "spreadsheetId": id,
        "updatedRange": write.a1.text_bounded(&tab.title, last_row, write.a1.first_col + write.width.max(1) - 1),
        "updatedRows": write.values.len(),
        "updatedColumns": write.width,
        "updatedCells": cells_written,
    })
}

async fn values_update(
    State(inner): State<Shared>,
    UrlPath((id, range)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let mut answer = || -> Result<Value, Rejection> {
        admit(&mut inner, &headers, &id)?;
        check_input_option(query.get("valueInputOption").map(String::as_str))?;
        let write = check_write(&inner, &range, &json_body(&body)?)?;
        inner.calls.push(format!("values.update {range}"));
        Ok(apply_write(&mut inner, &id, &write))
    };
    respond(answer())
}

/// `POST .../values:batchUpdate`: every range is checked before any is written.
async fn values_batch_update(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let mut answer = || -> Result<Value, Rejection> {
        admit(&mut inner, &headers, &id)?;
        let request = json_body(&body)?;
        check_input_option(request["valueInputOption"].as_str())?;
        let mut writes = Vec::new();
        let mut ranges = Vec::new();
        for (i, value_range) in request["data"].as_array().into_iter().flatten().enumerate() {
            let range = value_range["range"].as_str().ok_or_else(|| {
                Rejection::invalid(format!("Invalid data[{i}]: range is required"))
            })?;
            writes.push(check_write(&inner, range, value_range)?);
            ranges.push(range.to_owned());
        }
        inner
            .calls
            .push(format!("values.batchUpdate {}", ranges.join(" ")));
        let responses: Vec<Value> = writes
            .iter()
            .map(|w| apply_write(&mut inner, &id, w))
            .collect();
        let total = |key: &str| {
            responses
                .iter()
                .filter_map(|r| r[key].as_u64())
                .sum::<u64>()
        };
        let sheets: std::collections::BTreeSet<_> = writes.iter().map(|w| w.tab).collect();
        Ok(json!({
            "spreadsheetId": id,
            "totalUpdatedRows": total("updatedRows"),
            "totalUpdatedCells": total("updatedCells"),
            "totalUpdatedSheets": sheets.len(),
            "responses": responses,
        }))
    };
    respond(answer())
}

/// `POST .../values/{range}:clear`.
async fn values_post(
    State(inner): State<Shared>,
    UrlPath((id, segment)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(range) = segment.strip_suffix(":clear") else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The emulator only knows values/{range}:clear here.",
        );
    };
    let mut inner = inner.lock().unwrap();
    if let Err(r) = admit(&mut inner, &headers, &id) {
        return r.into_response();
    }
    let a1 = match A1::parse(range, &inner.tabs) {
        Ok(a1) => a1,
        Err(r) => return r.into_response(),
    };
    inner.calls.push(format!("values.clear {range}"));
    let tab = &mut inner.tabs[a1.tab];
    let last_row = a1.last_row.unwrap_or(tab.cells.len()).min(tab.cells.len());
    for r in a1.first_row..=last_row {
        let Some(row) = r.checked_sub(1).and_then(|i| tab.cells.get_mut(i)) else {
            continue;
        };
        let end = a1.last_col.map_or(row.len(), |c| (c + 1).min(row.len()));
        for cell in row.iter_mut().take(end).skip(a1.first_col) {
            *cell = Value::Null;
        }
    }
    json_response(
        StatusCode::OK,
        json!({"spreadsheetId": id, "clearedRange": range}),
    )
}

/// `FORMATTED_VALUE` (the default) shows every cell as text, as Google does.
fn render(v: &Value, unformatted: bool) -> Value {
    match v {
        Value::Null => Value::from(""),
        Value::Number(n) if !unformatted => Value::from(n.to_string()),
        Value::Bool(b) if !unformatted => Value::from(if *b { "TRUE" } else { "FALSE" }),
        other => other.clone(),
    }
}

fn set_cell(cells: &mut Vec<Vec<Value>>, row: usize, col: usize, value: Value) {
    if cells.len() <= row {
        cells.resize(row + 1, Vec::new());
    }
    let r = &mut cells[row];
    if r.len() <= col {
        r.resize(col + 1, Value::Null);
    }
    r[col] = value;
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

/// Drops trailing empty cells of each row and trailing empty rows, as the API does.
fn trimmed(cells: &[Vec<Value>]) -> Vec<Vec<Value>> {
    let mut rows: Vec<Vec<Value>> = cells
        .iter()
        .map(|row| {
            let keep = row.iter().rposition(|v| !is_empty(v)).map_or(0, |i| i + 1);
            row[..keep].to_vec()
        })
        .collect();
    while rows.last().is_some_and(Vec::is_empty) {
        rows.pop();
    }
    rows
}

/// A parsed A1 range: tab index, 1-based rows, 0-based columns, open ends as `None`.
#[derive(Debug)]
struct A1 {
    tab: usize,
    first_row: usize,
    last_row: Option<usize>,
    first_col: usize,
    last_col: Option<usize>,
}

impl A1 {
    fn parse(range: &str, tabs: &[Tab]) -> Result<A1, Rejection> {
        let bad = || Rejection::invalid(format!("Unable to parse range: {range}"));
        let (title, cells) = if let Some(quoted) = range.strip_prefix('\'') {
            // 'It''s a tab'!A1:F
            let mut title = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|&(_, n)| n) == Some('\'') {
                        title.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    title.push(c);
                }
            }
            let rest = &quoted[end.ok_or_else(bad)?..];
            match rest.strip_prefix('!') {
                Some(cells) => (title, Some(cells)),
                None if rest.is_empty() => (title, None),
                None => return Err(bad()),
            }
        } else if let Some((title, cells)) = range.rsplit_once('!') {
            (title.to_owned(), Some(cells))
        } else if tabs.iter().any(|t| same_title(&t.title, range)) {
            (range.to_owned(), None)
        } else {
            (
                tabs.first().map(|t| t.title.clone()).unwrap_or_default(),
                Some(range),
            )
        };
        let tab = tabs
            .iter()
            .position(|t| same_title(&t.title, &title))
            .ok_or_else(bad)?;
        let Some(cells) = cells else {
            return Ok(A1 {
                tab,
                first_row: 1,
                last_row: None,
                first_col: 0,
                last_col: None,
            });
        };
        let (start, end) = match cells.split_once(':') {
            Some((s, e)) => (s, Some(e)),
            None => (cells, None),
        };
        let (start_col, start_row) = cell_ref(start).ok_or_else(bad)?;
        let first_col = start_col.ok_or_else(bad)?;
        let first_row = start_row.unwrap_or(1);
        let (last_col, last_row) = match end {
            None => (Some(first_col), Some(first_row)),
            Some(e) => {
                let (c, r) = cell_ref(e).ok_or_else(bad)?;
                (c, r)
            }
        };
        if last_row.is_some_and(|r| r < first_row) || last_col.is_some_and(|c| c < first_col) {
            return Err(bad());
        }
        Ok(A1 {
            tab,
            first_row,
            last_row,
            first_col,
            last_col,
        })
    }

    fn text(&self, title: &str, last_row: usize) -> String {
        let last_col = self.last_col.unwrap_or(25);
        self.text_bounded(title, last_row, last_col)
    }

    fn text_bounded(&self, title: &str, last_row: usize, last_col: usize) -> String {
        format!(
            "'{}'!{}{}:{}{}",
            title.replace('\'', "''"),
            col_name(self.first_col),
            self.first_row,
            col_name(last_col),
            last_row
        )
    }
}

/// `B12` → (Some(1), Some(12)); `B` → (Some(1), None); `12` → (None, Some(12)).
fn cell_ref(s: &str) -> Option<(Option<usize>, Option<usize>)> {
    let s = s.trim().replace('$', "");
    let split = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let (letters, digits) = s.split_at(split);
    if !letters.chars().all(|c| c.is_ascii_alphabetic())
        || (letters.is_empty() && digits.is_empty())
    {
        return None;
    }
    let col = if letters.is_empty() {
        None
    } else {
        let n = letters
            .to_ascii_uppercase()
            .bytes()
            .fold(0usize, |n, b| n * 26 + (b - b'A' + 1) as usize);
        Some(n - 1)
    };
    let row = if digits.is_empty() {
        None
    } else {
        Some(digits.parse::<usize>().ok().filter(|&r| r >= 1)?)
    };
    Some((col, row))
}

fn col_name(mut col: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tabs() -> Vec<Tab> {
        vec![Tab::new(0, "Sheet1"), Tab::new(1, "It's stats")]
    }

    #[test]
    fn a1_ranges_parse() {
        let a = A1::parse("'It''s stats'!A1:F10", &tabs()).unwrap();
        assert_eq!(
            (a.tab, a.first_row, a.last_row, a.first_col, a.last_col),
            (1, 1, Some(10), 0, Some(5))
        );
        let a = A1::parse("Sheet1!B:C", &tabs()).unwrap();
        assert_eq!(
            (a.tab, a.first_row, a.last_row, a.first_col, a.last_col),
            (0, 1, None, 1, Some(2))
        );
        let a = A1::parse("'It''s stats'!A5:F", &tabs()).unwrap();
        assert_eq!((a.first_row, a.last_row), (5, None));
        assert!(A1::parse("'Nope'!A1", &tabs()).is_err());
        let a = A1::parse("'IT''S STATS'!A1", &tabs()).unwrap();
        assert_eq!(a.tab, 1, "titles match ignoring case");
        assert_eq!(col_name(0), "A");
        assert_eq!(col_name(25), "Z");
        assert_eq!(col_name(26), "AA");
    }

    #[test]
    fn trailing_empties_are_trimmed() {
        let cells = vec![
            vec![json!("a"), Value::Null],
            vec![],
            vec![json!(1), json!(""), json!(2)],
            vec![Value::Null],
        ];
        assert_eq!(
            trimmed(&cells),
            vec![
                vec![json!("a")],
                vec![],
                vec![json!(1), json!(""), json!(2)]
            ]
        );
    }
}
