//! The HTTP side: `GET /api/statistics` answered like the real API (bare JSON array, plain
//! text 400/401, only what is visible at the clock's now), streamed chunk by chunk, with
//! the request faults of `--fail-*` on top.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use futures_util::{stream, StreamExt as _};

use super::faults::{BodyFault, FaultPlan, RequestFault};
use super::generator::DataSet;
use super::render::JsonChunks;
use super::selection::Selection;
use lms_etl_clock::Clock;

pub struct AppState {
    pub client: String,
    pub client_key: String,
    pub data: Arc<DataSet>,
    /// Asked on every request: the answer holds what is visible at that moment.
    pub clock: Clock,
    /// The zone of the naive times in `created_at`, `start` and `end`.
    pub zone: Tz,
    pub faults: FaultPlan,
    pub latency: Duration,
    pub retry_after_secs: u64,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/statistics", get(statistics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found: this demo API serves GET /api/statistics".to_owned(),
    )
}

async fn statistics(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let (request, mut draw) = state.faults.next_request();
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    if let Some(fault) = state.faults.before_auth(request, &mut draw) {
        tracing::info!(request, ?fault, "injected fault");
        return fault_response(&state, fault);
    }
    let params = match query {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("bad query string: {}", rejection.body_text()),
            )
        }
    };
    let (start, end) = match check_request(&state, &params) {
        Ok(window) => window,
        Err(rejected) => {
            tracing::info!(request, status = rejected.status().as_u16(), reason = %rejected, "rejected request");
            return rejected.into_response();
        }
    };
    let now = state.clock.now();
    let selection = Selection::new(state.zone, start, end, now.timestamp_micros());
    let mut chunks = JsonChunks::new(state.data.clone(), selection);
    let fault = state.faults.on_body(&mut draw);
    tracing::info!(request, %start, %end, %now, ?fault, "serving window");
    let body = match fault {
        None => Body::from_stream(json_stream(chunks, request)),
        Some(fault) => {
            // The first chunk always holds at least the opening bracket.
            let first = chunks.next().unwrap_or_default();
            let part = first.slice(..draw.cut(first.len()));
            if fault == BodyFault::DropConnection {
                // A body stream that fails makes hyper abort the connection. The pause in
                // between lets hyper flush the headers and the first bytes, so the client
                // sees a 200 whose body breaks off, as when a long download dies.
                let broken = stream::iter([Some(part), None]).then(|part| async move {
                    match part {
                        Some(part) => Ok(part),
                        None => {
                            tokio::task::yield_now().await;
                            Err(io::Error::other("demo API: connection dropped on purpose"))
                        }
                    }
                });
                Body::from_stream(broken)
            } else {
                Body::from(part)
            }
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Rendering never blocks for long: empty chunks (quiet stretches) hand the thread back.
fn json_stream(
    chunks: JsonChunks,
    request: u64,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(chunks, move |mut chunks| async move {
        loop {
            match chunks.next() {
                Some(chunk) if chunk.is_empty() => tokio::task::yield_now().await,
                Some(chunk) => return Some((Ok(chunk), chunks)),
                None => {
                    tracing::debug!(request, records = chunks.records(), "window sent");
                    return None;
                }
            }
        }
    })
}

fn fault_response(state: &AppState, fault: RequestFault) -> Response {
    match fault {
        RequestFault::Burst => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "demo API: failing the first {} requests on purpose (--fail-first)",
                state.faults.fail_first
            ),
        ),
        RequestFault::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            plain(status, format!("demo API: injected {status} (--fail-5xx)"))
        }
        RequestFault::TooManyRequests => {
            let mut response = plain(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "demo API: too many requests, retry after {} s (--fail-429)",
                    state.retry_after_secs
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, state.retry_after_secs.into());
            response
        }
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// Why a request gets no data; the message is the plain-text body.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("missing query parameter `{0}`")]
    Missing(&'static str),
    // Never repeats the key: the message ends up in the caller's logs.
    #[error("unknown client or wrong client_key")]
    Unauthorized,
    #[error(
        "query parameter `{name}`: expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or \
         YYYY-MM-DD HH:MM:SS.ffffff, found {found:?}"
    )]
    BadTimestamp { name: &'static str, found: String },
    #[error("query parameter `end` ({end}) must be later than `start` ({start}): the window is [start, end)")]
    EmptyWindow {
        start: NaiveDateTime,
        end: NaiveDateTime,
    },
}

impl Rejected {
    fn status(&self) -> StatusCode {
        match self {
            Rejected::Unauthorized => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        plain(self.status(), self.to_string())
    }
}

/// Presence first, then credentials, then the window: the order a client fixes them in.
fn check_request(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(NaiveDateTime, NaiveDateTime), Rejected> {
    let required = |name: &'static str| params.get(name).ok_or(Rejected::Missing(name));
    let client = required("client")?;
    let client_key = required("client_key")?;
    if *client != state.client || *client_key != state.client_key {
        return Err(Rejected::Unauthorized);
    }
    let timestamp = |name: &'static str| {
        let text = required(name)?;
        parse_timestamp(text).ok_or_else(|| Rejected::BadTimestamp {
            name,
            found: shortened(text).to_owned(),
        })
    };
    let (start, end) = (timestamp("start")?, timestamp("end")?);
    if start >= end {
        return Err(Rejected::EmptyWindow { start, end });
    }
    Ok((start, end))
}

/// The three forms the real API accepts; `%.f` also takes a missing fraction.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

fn shortened(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_timestamp_forms() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(parse_timestamp("2026-11-24"), day.and_hms_opt(0, 0, 0));
        assert_eq!(
            parse_timestamp("2026-11-24 10:11:12"),
            day.and_hms_opt(10, 11, 12)
        );
        assert_eq!(
            parse_timestamp("2026-11-24 10:11:12.000042"),
            day.and_hms_micro_opt(10, 11, 12, 42)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-24 25:00:00",
            "2026-11-24T10:11:12x",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }
}
