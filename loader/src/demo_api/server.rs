//! The HTTP side: `GET /api/statistics` answered like the real API (bare JSON array, plain
//! text 400/401), streamed chunk by chunk, with the request faults of `--fail-*` on top.

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
use futures_util::stream;

use super::faults::{FaultPlan, RequestFault};
use super::generator::DataSet;
use super::render::JsonChunks;

pub struct AppState {
    pub client: String,
    pub client_key: String,
    pub data: Arc<DataSet>,
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
        Err(response) => {
            tracing::info!(
                request,
                status = response.status().as_u16(),
                "rejected request"
            );
            return response;
        }
    };
    let (start_us, end_us) = (
        start.and_utc().timestamp_micros(),
        end.and_utc().timestamp_micros(),
    );
    let mut chunks = JsonChunks::new(state.data.clone(), start_us, end_us);
    let fault = state.faults.on_body(&mut draw);
    tracing::info!(request, %start, %end, ?fault, "serving window");
    let body = match fault {
        None => Body::from_stream(json_stream(chunks, request)),
        Some(fault) => {
            // The first chunk always holds at least the opening bracket.
            let first = chunks.next().unwrap_or_default();
            let part = first.slice(..draw.cut(first.len()));
            if fault == RequestFault::DropConnection {
                // A body stream that fails makes hyper abort the connection mid-response.
                let broken = stream::iter([
                    Ok(part),
                    Err(io::Error::other("demo API: connection dropped on purpose")),
                ]);
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
        // Body faults are applied while answering, never here.
        RequestFault::DropConnection | RequestFault::Truncate => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, String::new())
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

/// Presence first, then credentials, then the window: the order a client fixes them in.
#[allow(clippy::result_large_err)]
fn check_request(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(NaiveDateTime, NaiveDateTime), Response> {
    let required = |name: &str| {
        params.get(name).ok_or_else(|| {
            plain(
                StatusCode::BAD_REQUEST,
                format!("missing query parameter `{name}`"),
            )
        })
    };
    let client = required("client")?;
    let client_key = required("client_key")?;
    // The message never repeats the key: it would end up in the caller's logs.
    if *client != state.client || *client_key != state.client_key {
        return Err(plain(
            StatusCode::UNAUTHORIZED,
            "unknown client or wrong client_key".to_owned(),
        ));
    }
    let timestamp = |name: &str| {
        let text = required(name)?;
        parse_timestamp(text).ok_or_else(|| {
            plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "query parameter `{name}`: expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS.ffffff, found {:?}",
                    shortened(text)
                ),
            )
        })
    };
    let (start, end) = (timestamp("start")?, timestamp("end")?);
    if start >= end {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            format!("query parameter `end` ({end}) must be later than `start` ({start}): the window is [start, end)"),
        ));
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
