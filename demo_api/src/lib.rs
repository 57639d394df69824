//! A deterministic stand-in for the LMS statistics API (`lms-etl demo-api`), for the quick
//! start, the end-to-end tests and the benchmark: same wire format, seeded data, injectable faults.
//!
//! `generator` makes the records, `selection` picks an answer's records by zone and `clock`,
//! `pyrepr` and `render` write them, `faults` breaks some of them on purpose, `server` answers HTTP.
//! A crate of its own so the loader is the product alone; the loader only calls `run` and
//! `write_copy_rows` for its `demo-api` and `export-demo-copy` subcommands.

mod faults;
mod generator;
pub mod pyrepr;
mod render;
mod selection;
mod server;

use std::fmt;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use tokio::net::TcpListener;

use faults::FaultPlan;
use generator::{DataSet, MAX_RECORDS_PER_HOUR};
pub use lms_etl_clock::{parse_instant, Clock};
use selection::Selection;
use server::AppState;

/// `lms-etl demo-api`: serve the demo statistics API.
#[derive(Clone, clap::Args)]
pub struct DemoApiArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The `client` query parameter the API accepts.
    #[arg(long, default_value = "demo")]
    pub client: String,
    /// The `client_key` query parameter the API accepts.
    #[arg(long, default_value = "demo")]
    pub client_key: String,
    /// The data set is a pure function of this seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Daily average of records per hour (quieter at night, busier in the evening).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RECORDS_PER_HOUR)))]
    pub records_per_hour: u32,
    /// Share of requests answered 500, 502 or 503.
    #[arg(long = "fail-5xx", default_value_t = 0.0, value_parser = parse_share)]
    pub fail_5xx: f64,
    /// Share of requests answered 429 with a Retry-After header.
    #[arg(long = "fail-429", default_value_t = 0.0, value_parser = parse_share)]
    pub fail_429: f64,
    /// Seconds in the Retry-After header of a 429.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Delay added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of requests whose connection is dropped in the middle of the body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub drop_connections: f64,
    /// Share of requests answered 200 with a body cut short (not valid JSON).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub truncate_bodies: f64,
    /// Share of records served malformed; always the same records for a given seed.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub malformed: f64,
    /// The first N requests fail with 503.
    #[arg(long, default_value_t = 0)]
    pub fail_first: u64,
    /// Start the API's clock at TIME, then let it run in real time (for tests). TIME is
    /// YYYY-MM-DD HH:MM:SS[.ffffff] in UTC, or RFC 3339 with an offset. Nothing created after
    /// the clock's now is ever served. Default: the real clock.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
    /// Share of records that arrive late: served only --late-minutes after their created_at;
    /// always the same records for a given seed.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_share)]
    pub late_share: f64,
    /// How long a late record stays invisible after its created_at, in minutes.
    #[arg(long, value_name = "M", default_value_t = 30)]
    pub late_minutes: u32,
    /// IANA time zone of the naive times: created_at is written, and start/end are read, as
    /// local time there (e.g. Europe/Moscow). In an hour repeated by a DST change, a naive
    /// window holds the records of both passes; a skipped hour holds none.
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_zone)]
    pub timezone: Tz,
    /// Serve only FACTOR (0 to 1) of the records of calendar day DATE (YYYY-MM-DD in
    /// --timezone), e.g. 2026-11-24:0.37, so the volume alert has a day to catch; repeatable,
    /// one day each. The day keeps a subset of its records, FACTOR × their count rounded
    /// down; other days are unchanged.
    #[arg(long = "volume-dip", value_name = "DATE:FACTOR", value_parser = parse_volume_dip)]
    pub volume_dips: Vec<VolumeDip>,
}

/// `--volume-dip DATE:FACTOR`: the day whose volume is scaled, and by how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeDip {
    pub day: NaiveDate,
    pub factor: f64,
}

impl Default for DemoApiArgs {
    fn default() -> Self {
        DemoApiArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            client: "demo".to_owned(),
            client_key: "demo".to_owned(),
            seed: 1,
            records_per_hour: 360,
            fail_5xx: 0.0,
            fail_429: 0.0,
            retry_after_secs: 1,
            latency_ms: 0,
            drop_connections: 0.0,
            truncate_bodies: 0.0,
            malformed: 0.0,
            fail_first: 0,
            now: None,
            late_share: 0.0,
            late_minutes: 30,
            timezone: Tz::UTC,
            volume_dips: Vec::new(),
        }
    }
}

/// Hand-written so the key cannot reach a log line through `{:?}`.
impl fmt::Debug for DemoApiArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoApiArgs")
            .field("listen", &self.listen)
            .field("client", &self.client)
            .field("client_key", &"[redacted]")
            .field("seed", &self.seed)
            .field("records_per_hour", &self.records_per_hour)
            .field("fail_5xx", &self.fail_5xx)
            .field("fail_429", &self.fail_429)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("latency_ms", &self.latency_ms)
            .field("drop_connections", &self.drop_connections)
            .field("truncate_bodies", &self.truncate_bodies)
            .field("malformed", &self.malformed)
            .field("fail_first", &self.fail_first)
            .field("now", &self.now)
            .field("late_share", &self.late_share)
            .field("late_minutes", &self.late_minutes)
            .field("timezone", &self.timezone)
            .field("volume_dips", &self.volume_dips)
            .finish()
    }
}

/// Settings that clap would have refused, caught again for callers that build the args in code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DemoApiError {
    #[error("--{flag} must be a share between 0 and 1, found {value}")]
    ShareOutOfRange { flag: &'static str, value: f64 },
    #[error("--records-per-hour must be at most {MAX_RECORDS_PER_HOUR}, found {0}")]
    TooManyRecordsPerHour(u32),
    #[error("--volume-dip {day}: the factor must be between 0 and 1, found {factor}")]
    DipFactorOutOfRange { day: NaiveDate, factor: f64 },
    #[error("--volume-dip names {0} twice; give each day one factor")]
    DipDayTwice(NaiveDate),
}

impl DemoApiArgs {
    /// Checks what the types do not: shares in [0, 1] and the rate ceiling.
    pub fn validate(&self) -> Result<(), DemoApiError> {
        let shares = [
            ("fail-5xx", self.fail_5xx),
            ("fail-429", self.fail_429),
            ("drop-connections", self.drop_connections),
            ("truncate-bodies", self.truncate_bodies),
            ("malformed", self.malformed),
            ("late-share", self.late_share),
        ];
        for (flag, value) in shares {
            if !(0.0..=1.0).contains(&value) {
                return Err(DemoApiError::ShareOutOfRange { flag, value });
            }
        }
        if self.records_per_hour > MAX_RECORDS_PER_HOUR {
            return Err(DemoApiError::TooManyRecordsPerHour(self.records_per_hour));
        }
        for (i, dip) in self.volume_dips.iter().enumerate() {
            if !(0.0..=1.0).contains(&dip.factor) {
                return Err(DemoApiError::DipFactorOutOfRange {
                    day: dip.day,
                    factor: dip.factor,
                });
            }
            if self.volume_dips[..i].iter().any(|d| d.day == dip.day) {
                return Err(DemoApiError::DipDayTwice(dip.day));
            }
        }
        Ok(())
    }

    fn data_set(&self) -> DataSet {
        let data = DataSet::new(self.seed, self.records_per_hour, self.malformed)
            .with_late(self.late_share, i64::from(self.late_minutes) * 60_000_000);
        self.volume_dips.iter().fold(data, |data, dip| {
            data.with_dip(
                selection::local_day_buckets(self.timezone, dip.day),
                dip.factor,
            )
        })
    }

    /// The clock `--now` asks for, started now; the real clock without it.
    pub fn clock(&self) -> Clock {
        self.now.map_or_else(Clock::system, Clock::starting_at)
    }
}

fn parse_zone(text: &str) -> Result<Tz, String> {
    text.trim().parse::<Tz>().map_err(|_| {
        format!("expected an IANA time zone name (e.g. UTC, Europe/Moscow), found {text:?}")
    })
}

fn parse_volume_dip(text: &str) -> Result<VolumeDip, String> {
    let expected = "expected DATE:FACTOR, a day YYYY-MM-DD and a factor between 0 and 1 (e.g. 2026-11-24:0.37)";
    let (day, factor) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{expected}, found {text:?}"))?;
    let day = NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{expected}, found the day {day:?}"))?;
    match factor.trim().parse::<f64>() {
        Ok(factor) if (0.0..=1.0).contains(&factor) => Ok(VolumeDip { day, factor }),
        _ => Err(format!("{expected}, found the factor {factor:?}")),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        Ok(value) => Err(format!(
            "expected a share between 0 and 1 (e.g. 0.05), found {value}"
        )),
        Err(_) => Err(format!(
            "expected a share between 0 and 1 (e.g. 0.05), found {text:?}"
        )),
    }
}

/// A bound, not yet serving, demo API.
pub struct DemoApi {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AppState>,
}

/// Validates the args and binds the listener. Prints nothing; logs with tracing.
pub async fn bind(args: DemoApiArgs) -> io::Result<DemoApi> {
    args.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(args.listen).await?;
    let local_addr = listener.local_addr()?;
    let state = AppState {
        data: Arc::new(args.data_set()),
        faults: FaultPlan::new(
            args.seed,
            args.fail_first,
            args.fail_5xx,
            args.fail_429,
            args.drop_connections,
            args.truncate_bodies,
        ),
        clock: args.clock(),
        zone: args.timezone,
        latency: Duration::from_millis(args.latency_ms),
        retry_after_secs: args.retry_after_secs,
        client: args.client,
        client_key: args.client_key,
    };
    tracing::info!(
        addr = %local_addr,
        seed = args.seed,
        records_per_hour = args.records_per_hour,
        now = %state.clock.now(),
        timezone = %args.timezone,
        late_share = args.late_share,
        late_minutes = args.late_minutes,
        volume_dips = ?args.volume_dips,
        "demo API bound"
    );
    Ok(DemoApi {
        listener,
        local_addr,
        state: Arc::new(state),
    })
}

impl DemoApi {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets open answers finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        axum::serve(self.listener, server::router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// What `lms-etl demo-api` runs: bind, announce the address on stdout (tests read it to
/// learn the port), serve until Ctrl-C or SIGTERM.
pub async fn run(args: DemoApiArgs) -> io::Result<()> {
    let api = bind(args).await?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "demo API listening on http://{}", api.local_addr())?;
    stdout.flush()?;
    drop(stdout);
    api.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a handler, only SIGTERM (or killing the process) stops the server.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("demo API shutting down");
}

/// The valid records the API would serve for the naive window [start, end) (read in
/// `--timezone`) at `--now` exactly (default: the real time of the call), as PostgreSQL COPY
/// text rows (user_id, oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url,
/// is_correct, attempt_type, created_at). `created_at` is the UTC instant with `+00`
/// (`2026-11-20 10:00:00.123456+00`). Returns the row count.
pub fn write_copy_rows(
    args: &DemoApiArgs,
    start: NaiveDateTime,
    end: NaiveDateTime,
    out: &mut impl io::Write,
) -> io::Result<u64> {
    args.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let data = args.data_set();
    // The export is one moment: the clock's start, so the same --now gives the same bytes.
    let now = args.clock().start().timestamp_micros();
    let selection = Selection::new(args.timezone, start, end, now);
    render::write_copy_window(&data, &selection, out)
}

#[cfg(test)]
mod tests;
