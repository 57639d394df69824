//! A statistics API that serves records a test writes by hand (raw JSON, any shape), for the
//! edges the demo API does not produce: conflicting re-sends, two problems at one instant,
//! over-precise or ISO timestamps. Filters by the naive `created_at` like the real API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;

/// One served record: the naive time the server filters on, and the record's raw JSON.
#[derive(Clone)]
pub struct Served {
    pub at: String,
    pub raw: String,
}

/// What the API answers from: its records, and the requests it refuses.
#[derive(Default)]
struct Script {
    records: Vec<Served>,
    /// Requests whose `start` begins with one of these get HTTP 400 (a fatal answer).
    refuse_starts: Vec<String>,
    /// Every request gets a 302 to this address (with the request's query string appended).
    redirect_to: Option<String>,
}

pub struct FixtureApi {
    pub url: String,
    script: Arc<Mutex<Script>>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(serde::Deserialize)]
struct Params {
    start: String,
    end: String,
}

impl FixtureApi {
    pub fn start(records: Vec<Served>) -> FixtureApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let script = Arc::new(Mutex::new(Script {
            records,
            ..Script::default()
        }));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/api/statistics", get(answer))
            .with_state(script.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        FixtureApi {
            url: format!("http://{addr}"),
            script,
            _runtime: runtime,
        }
    }

    /// What later requests are answered from (the source changed its mind, or grew).
    pub fn replace(&self, records: Vec<Served>) {
        self.script.lock().unwrap().records = records;
    }

    /// Answer every request with a redirect to `base` + the request's own query string.
    pub fn redirect(&self, base: &str) {
        self.script.lock().unwrap().redirect_to = Some(base.to_owned());
    }

    /// Refuse (HTTP 400) the requests whose `start` begins with one of these.
    pub fn refuse(&self, starts: &[&str]) {
        self.script.lock().unwrap().refuse_starts = starts.iter().map(|s| s.to_string()).collect();
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    Query(p): Query<Params>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let s = script.lock().unwrap();
    if let Some(base) = &s.redirect_to {
        let location = format!("{base}?{}", uri.query().unwrap_or_default());
        return (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, location)],
            "moved",
        )
            .into_response();
    }
    if s.refuse_starts
        .iter()
        .any(|r| p.start.starts_with(r.as_str()))
    {
        return (axum::http::StatusCode::BAD_REQUEST, "refused for the test").into_response();
    }
    let cut = |s: &str| s.get(..19).unwrap_or(s).to_owned();
    let (start, end) = (cut(&p.start), cut(&p.end));
    let inside: Vec<&str> = s
        .records
        .iter()
        .filter(|r| cut(&r.at) >= start && cut(&r.at) < end)
        .map(|r| r.raw.as_str())
        .collect();
    (
        axum::http::StatusCode::OK,
        format!("[{}]", inside.join(", ")),
    )
        .into_response()
}

/// A record in the API's shape. `created_at` is written as given (any text).
pub fn record(user: &str, created_at: &str, kind: &str, is_correct: &str, block: &str) -> Served {
    let raw = format!(
        r#"{{"lti_user_id": "{user}", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SF+DST+1:lms.skillfactory.ru-{block}:{user}', 'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/x/handler_noauth/grade_handler'}}", "is_correct": {is_correct}, "attempt_type": "{kind}", "created_at": "{created_at}"}}"#
    );
    Served {
        at: created_at.replace('T', " "),
        raw,
    }
}
