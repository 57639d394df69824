//! One `lms-etl run`: lock → window → fetch chunks (prefetching) → load each chunk in its
//! own transaction → aggregate the touched days → Sheets → close the run row → e-mail.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::error_chain as chain;
use crate::fetch::{redact, ChunkBody, FetchError, Fetcher};
use crate::load::{ChunkCounts, Database, LoadError};
use crate::report::{email, sheets, Counts, DailyStats, RunReport, RunStatus};
use crate::window::Window;

/// Process exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Loaded (or nothing to do) and every output succeeded.
    Success = 0,
    /// The run failed: nothing after the last committed chunk was loaded.
    Failed = 1,
    /// Bad command line or configuration.
    Config = 2,
    /// Another run holds the lock; this one did nothing.
    LockHeld = 3,
    /// Data loaded, but the Sheets push or the e-mail failed.
    OutputFailed = 4,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub skip_sheets: bool,
    pub skip_email: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Window(#[from] crate::window::WindowError),
    #[error("interrupted by a signal; chunks committed so far are kept")]
    Interrupted,
}

/// Stage name → milliseconds, in order, for the run row, the log and the e-mail.
#[derive(Default)]
struct Stages(Vec<(String, u64)>);

impl Stages {
    fn add(&mut self, name: &str, started: Instant) -> u64 {
        let ms = started.elapsed().as_millis() as u64;
        self.0.push((name.to_owned(), ms));
        ms
    }

    fn json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// What the loading phase achieved, also when it stopped early.
#[derive(Default)]
struct Progress {
    counts: Counts,
    /// End of the last committed chunk.
    loaded_until: Option<NaiveDateTime>,
    fetch_ms: u64,
    load_ms: u64,
}

pub async fn execute(cfg: &Config, opts: &RunOptions, log_file: PathBuf) -> Exit {
    let total = Instant::now();
    let mut stages = Stages::default();
    let secrets = [cfg.api.client_key.expose_secret().to_owned()];
    let clean =
        |e: &dyn std::error::Error| secrets.iter().fold(chain(e), |text, s| redact(&text, s));

    let started = Instant::now();
    info!("connecting to PostgreSQL");
    let requested = opts
        .start
        .zip(opts.end)
        .map(|(start, end)| Window { start, end });
    let db = match Database::connect(cfg.database.url()).await {
        Ok(db) => db,
        Err(e) => return fail_before_run(cfg, opts, requested, &clean(&e), log_file, stages).await,
    };
    stages.add("connect", started);

    match db.try_lock().await {
        Ok(true) => {}
        Ok(false) => {
            warn!("another lms-etl run holds the lock; exiting without doing anything");
            return Exit::LockHeld;
        }
        Err(e) => return fail_before_run(cfg, opts, requested, &clean(&e), log_file, stages).await,
    }

    let window = match choose_window(cfg, opts, &db).await {
        Ok(Some(w)) => w,
        Ok(None) => {
            info!("window is empty: the data is loaded up to now; nothing to fetch");
            return Exit::Success;
        }
        Err(e) => return fail_before_run(cfg, opts, requested, &clean(&e), log_file, stages).await,
    };
    let run_id = match db.start_run(&window).await {
        Ok(id) => id,
        Err(e) => {
            return fail_before_run(cfg, opts, Some(window), &clean(&e), log_file, stages).await
        }
    };
    let span = info_span!("run", run_id);
    async {
        let chunks = window.chunks(cfg.window.chunk);
        info!(%window, chunks = chunks.len(), chunk_minutes = cfg.window.chunk.num_minutes(), "run started");

        let started = Instant::now();
        let mut progress = Progress::default();
        let outcome = fetch_and_load(cfg, &db, run_id, &chunks, &mut progress).await;
        stages.0.push(("fetch".into(), progress.fetch_ms));
        stages.0.push(("load".into(), progress.load_ms));
        stages.add("fetch_and_load", started);
        let load_error = outcome.err().map(|e| clean(&e));
        match &load_error {
            None => info!(fetched = progress.counts.fetched, inserted = progress.counts.inserted,
                          duplicates = progress.counts.duplicates, rejected = progress.counts.rejected, "load finished"),
            Some(e) => error!(error = %e, committed_until = ?progress.loaded_until, "load failed"),
        }

        // Aggregate what was committed, even after a failure, so the stats match the data.
        let mut days = Vec::new();
        let mut aggregate_error = None;
        if let Some(until) = progress.loaded_until.filter(|u| *u > window.start) {
            let touched = Window { start: window.start, end: until }.days();
            let (from, to) = (touched[0], touched[touched.len() - 1]);
            let started = Instant::now();
            info!(from = %from, to = %to, "aggregation started");
            match db.aggregate(from, to).await {
                Ok(d) => days = d,
                Err(e) => aggregate_error = Some(clean(&e)),
            }
            let ms = stages.add("aggregate", started);
            match &aggregate_error {
                None => info!(days = days.len(), elapsed_ms = ms, "aggregation finished"),
                Some(e) => error!(error = %e, elapsed_ms = ms, "aggregation failed"),
            }
        }
        let error = load_error.or(aggregate_error);

        let mut sheets_error = None;
        let sheets_url = cfg.sheets.as_ref().map(sheets::spreadsheet_url);
        if error.is_none() {
            sheets_error = push_sheets(cfg, opts, &days, &mut stages).await;
        }

        let status = match (&error, &sheets_error) {
            (Some(_), _) => RunStatus::Failed,
            (None, Some(_)) => RunStatus::Partial,
            (None, None) => RunStatus::Succeeded,
        };
        stages.0.push(("total".into(), total.elapsed().as_millis() as u64));
        let counts = match db.finish_run(run_id, status, &stages.json(), error.as_deref().or(sheets_error.as_deref())).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %clean(&e), "cannot close the run row");
                progress.counts
            }
        };
        info!(status = status.as_str(), fetched = counts.fetched, inserted = counts.inserted,
              duplicates = counts.duplicates, rejected = counts.rejected,
              elapsed_ms = total.elapsed().as_millis() as u64, "run finished");

        let tz = cfg.api.source_timezone;
        let report = RunReport {
            run_id: Some(run_id),
            status,
            window_start: instant(tz, window.start),
            window_end: instant(tz, window.end),
            requested_end: None,
            source_timezone: tz,
            report_timezone: tz,
            counts,
            stage_ms: stages.0,
            days,
            rejections: Vec::new(),
            warnings: Vec::new(),
            error,
            sheets_error,
            sheets_url,
            log_file,
            finished_at: Utc::now(),
        };
        let mail_ok = notify(cfg, opts, &report).await;
        match status {
            RunStatus::Failed | RunStatus::Interrupted => Exit::Failed,
            RunStatus::Partial => Exit::OutputFailed,
            RunStatus::Succeeded if !mail_ok => Exit::OutputFailed,
            RunStatus::Succeeded => Exit::Success,
        }
    }
    .instrument(span)
    .await
}

/// `--start/--end` if given; otherwise from the watermark (or `first_run_lookback` ago) to now.
async fn choose_window(
    cfg: &Config,
    opts: &RunOptions,
    db: &Database,
) -> Result<Option<Window>, RunError> {
    let now = Utc::now()
        .with_timezone(&cfg.api.source_timezone)
        .naive_local();
    let end = opts.end.unwrap_or(now);
    let start = match opts.start {
        Some(s) => s,
        None => match db.watermark().await? {
            Some(w) => w,
            None => end - cfg.window.first_run_lookback,
        },
    };
    if opts.start.is_none() && start >= end {
        return Ok(None);
    }
    Ok(Some(Window::new(start, end)?))
}

/// What a load worker reports for one committed chunk.
struct Loaded {
    chunk: Window,
    fetched: i64,
    counts: ChunkCounts,
    fetch_ms: u64,
    load_ms: u64,
}

/// Downloads chunks in order, `window.prefetch` ahead, and loads them on
/// `window.parallel_loads` connections: inserting is the slow part and one backend uses one
/// core. Each chunk commits on its own; the watermark only moves over a contiguous prefix.
async fn fetch_and_load(
    cfg: &Config,
    db: &Database,
    run_id: i64,
    chunks: &[Window],
    progress: &mut Progress,
) -> Result<(), RunError> {
    let fetcher = Arc::new(Fetcher::new(&cfg.api)?);
    let (body_tx, body_rx) =
        mpsc::channel::<(Window, Result<ChunkBody, FetchError>)>(cfg.window.prefetch);
    let producer = {
        let chunks = chunks.to_vec();
        let fetcher = fetcher.clone();
        tokio::spawn(
            async move {
                for chunk in chunks {
                    info!(chunk = %chunk, url = %fetcher.display_url(&chunk), "download started");
                    let result = fetcher.fetch(&chunk).await;
                    let failed = result.is_err();
                    if body_tx.send((chunk, result)).await.is_err() || failed {
                        break;
                    }
                }
            }
            .in_current_span(),
        )
    };
    let body_rx = Arc::new(tokio::sync::Mutex::new(body_rx));
    let (done_tx, mut done_rx) =
        mpsc::channel::<Result<Loaded, RunError>>(cfg.window.parallel_loads);
    let mut workers = Vec::with_capacity(cfg.window.parallel_loads);
    for _ in 0..cfg.window.parallel_loads {
        let mut conn = Database::connect(cfg.database.url()).await?;
        let (body_rx, done_tx) = (body_rx.clone(), done_tx.clone());
        workers.push(tokio::spawn(
            async move {
                loop {
                    let next = body_rx.lock().await.recv().await;
                    let Some((chunk, body)) = next else { break };
                    let result = load_one(&mut conn, run_id, chunk, body).await;
                    let failed = result.is_err();
                    if done_tx.send(result).await.is_err() || failed {
                        break;
                    }
                }
            }
            .in_current_span(),
        ));
    }
    drop(done_tx);

    let bar = progress_bar(chunks.len() as u64);
    let result = async {
        loop {
            let next = tokio::select! {
                next = done_rx.recv() => next,
                _ = shutdown_signal() => return Err(RunError::Interrupted),
            };
            let Some(loaded) = next else { return Ok(()) };
            let loaded = loaded?;
            info!(chunk = %loaded.chunk, inserted = loaded.counts.inserted, duplicates = loaded.counts.duplicates,
                  rejected = loaded.counts.rejected, elapsed_ms = loaded.load_ms, "chunk loaded");
            progress.counts.fetched += loaded.fetched;
            progress.counts.inserted += loaded.counts.inserted;
            progress.counts.duplicates += loaded.counts.duplicates;
            progress.counts.rejected += loaded.counts.rejected;
            progress.fetch_ms += loaded.fetch_ms;
            progress.load_ms += loaded.load_ms;
            progress.loaded_until = progress.loaded_until.max(Some(loaded.chunk.end));
            // Chunks may commit out of order; catch the watermark up over the contiguous ones.
            db.settle_watermark(run_id).await?;
            bar.inc(1);
        }
    }
    .await;
    bar.finish_and_clear();
    producer.abort();
    workers.iter().for_each(|w| w.abort());
    result
}

async fn load_one(
    conn: &mut Database,
    run_id: i64,
    chunk: Window,
    body: Result<ChunkBody, FetchError>,
) -> Result<Loaded, RunError> {
    let body = body?;
    let fetch_ms = body.elapsed.as_millis() as u64;
    info!(chunk = %chunk, records = body.records, bytes = body.bytes, attempts = body.attempts,
          elapsed_ms = fetch_ms, "download finished");
    let started = Instant::now();
    let fetched = body.records as i64;
    let counts = conn
        .load_chunk(run_id, &chunk, &body.json, fetched, fetch_ms as i64)
        .await?;
    Ok(Loaded {
        chunk,
        fetched,
        counts,
        fetch_ms,
        load_ms: started.elapsed().as_millis() as u64,
    })
}

fn progress_bar(chunks: u64) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(chunks);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks, eta {eta}",
        )
        .expect("the template is valid"),
    );
    bar
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Pushes the touched days to Sheets when configured; returns the error text on failure.
async fn push_sheets(
    cfg: &Config,
    opts: &RunOptions,
    days: &[DailyStats],
    stages: &mut Stages,
) -> Option<String> {
    let Some(sheets_cfg) = cfg.sheets.as_ref().filter(|_| !opts.skip_sheets) else {
        if cfg.sheets.is_none() {
            info!("Google Sheets not configured (set sheets.spreadsheet_id and sheets.key_file); skipping");
        }
        return None;
    };
    if days.is_empty() {
        return None;
    }
    let started = Instant::now();
    info!(sheet = %sheets_cfg.sheet, days = days.len(), "sheets push started");
    let result = sheets::push_days(sheets_cfg, days, cfg.api.source_timezone).await;
    let ms = stages.add("sheets", started);
    match result {
        Ok(outcome) => {
            info!(rows = outcome.rows_written, url = %outcome.url, elapsed_ms = ms, "sheets push finished");
            None
        }
        Err(e) => {
            let message = chain(&e);
            error!(error = %message, elapsed_ms = ms, "sheets push failed; the loaded data is kept");
            Some(message)
        }
    }
}

/// Sends (or writes to the outbox) the run's e-mail; false if that failed.
async fn notify(cfg: &Config, opts: &RunOptions, report: &RunReport) -> bool {
    if opts.skip_email {
        return true;
    }
    let started = Instant::now();
    match email::send_report(&cfg.email, report).await {
        Ok(email::Delivery::Sent { recipients }) => {
            info!(
                recipients,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "e-mail sent"
            );
            true
        }
        Ok(email::Delivery::WrittenToOutbox(_)) => true, // email.rs logs the path
        Ok(email::Delivery::Skipped) => {
            info!(send_on = ?cfg.email.send_on, "e-mail not wanted for this outcome");
            true
        }
        Err(e) => {
            error!(error = %chain(&e), "e-mail failed; the loaded data is kept");
            false
        }
    }
}

/// A failure before the run row exists: logged and e-mailed, nothing to close.
async fn fail_before_run(
    cfg: &Config,
    opts: &RunOptions,
    window: Option<Window>,
    message: &str,
    log_file: PathBuf,
    stages: Stages,
) -> Exit {
    error!(error = %message, "run failed");
    notify(
        cfg,
        opts,
        &failure_report(cfg.api.source_timezone, window, message, log_file, stages),
    )
    .await;
    Exit::Failed
}

fn failure_report(
    tz: chrono_tz::Tz,
    window: Option<Window>,
    message: &str,
    log_file: PathBuf,
    mut stages: Stages,
) -> RunReport {
    let now = Utc::now();
    stages.0.push(("total".into(), 0));
    RunReport {
        run_id: None,
        status: RunStatus::Failed,
        window_start: window.map_or(now, |w| instant(tz, w.start)),
        window_end: window.map_or(now, |w| instant(tz, w.end)),
        requested_end: None,
        source_timezone: tz,
        report_timezone: tz,
        counts: Counts::default(),
        stage_ms: stages.0,
        days: Vec::new(),
        rejections: Vec::new(),
        warnings: Vec::new(),
        error: Some(message.to_owned()),
        sheets_error: None,
        sheets_url: None,
        log_file,
        finished_at: Utc::now(),
    }
}

/// A naive source-zone time as an instant (the earlier one in a DST fold; a time in a DST
/// gap is read as UTC). Stop-gap for the report until the window carries instants.
fn instant(tz: chrono_tz::Tz, at: NaiveDateTime) -> DateTime<Utc> {
    at.and_local_timezone(tz)
        .earliest()
        .map_or_else(|| at.and_utc(), |t| t.with_timezone(&Utc))
}
