//! One `lms-etl run`: lock → close dead runs → window (never past now − settle lag) →
//! chunks streamed from the API into the database on parallel connections, each in one
//! transaction → aggregate every changed day → Sheets → close the run row → e-mail.
//! A failure or a signal at any stage still waits for the chunks in flight, aggregates what
//! committed, and closes the run as `failed` or `interrupted`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, Utc};
use futures_util::StreamExt;
use lms_etl_parse::source_time::{self, chrono_tz::Tz};
use lms_etl_parse::{Batch, BatchSplitter};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tracing::{error, info, info_span, warn, Instrument};

use crate::clock::Clock;
use crate::config::{Config, SheetsConfig};
use crate::console::{self, Console, Stage, CHUNK};
use crate::error_chain as chain;
use crate::fetch::{scrub, Failure, FetchError, Fetcher};
use crate::health;
use crate::load::{ChunkCounts, Database, DayVersion, LoadError, Verdict, Zones};
use crate::report::problems;
use crate::report::sheets::{self, SheetsError, SheetsOutcome};
use crate::report::{email, history_span, Counts, DailyStats, RunReport, RunStatus};
use crate::signals::Interrupt;
use crate::window::{plan, Window, WindowRules};

/// Process exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Loaded (or nothing to do) and every output succeeded.
    Success = 0,
    /// The run failed or was interrupted: nothing after the last committed chunk was loaded.
    Failed = 1,
    /// Bad command line or configuration.
    Config = 2,
    /// Another run holds the lock; this one did nothing.
    LockHeld = 3,
    /// Data loaded, but the Sheets push or the e-mail failed.
    OutputFailed = 4,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--start`/`--end`, naive times of the source zone.
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub skip_sheets: bool,
    pub skip_email: bool,
    /// `--max-rejected-ratio`: overrides `load.max_rejected_ratio` for this run.
    pub max_rejected_ratio: Option<f64>,
    pub clock: Clock,
    /// Where the run shows its stages, its progress bar and its summary.
    pub console: Console,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            start: None,
            end: None,
            skip_sheets: false,
            skip_email: false,
            max_rejected_ratio: None,
            clock: Clock::system(),
            console: Console::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("interrupted by a signal; chunks committed so far are kept")]
    Interrupted,
    #[error("every one of the {fetched} records this run fetched is invalid (see the reasons): the source's format may have changed; fix it, or pass a run with --max-rejected-ratio")]
    AllInvalid { fetched: i64 },
    #[error("{scope} has {invalid} invalid records of {fetched} ({share:.1}%), above load.max_rejected_ratio {max:.1}%: its records are kept (valid ones loaded, the rest quarantined) but chunk {chunk} is held and the watermark stays before it; fix the source, or pass a run with --max-rejected-ratio")]
    TooManyRejected {
        scope: &'static str,
        chunk: String,
        invalid: i64,
        fetched: i64,
        share: f64,
        max: f64,
    },
}

/// Wall-clock stages of one run, in order, for the run row, the log and the e-mail. Every
/// stage is an interval of one clock started with the run, read in whole milliseconds since
/// that start, so stages never overlap (fetch and load run interleaved on parallel
/// connections and are one stage) and, with `other` for the time between them, add up to
/// `total` exactly. Per-chunk times go to the log only: summed, they exceed the wall clock.
struct Stages {
    origin: Instant,
    list: Vec<(String, u64)>,
}

impl Stages {
    fn start() -> Stages {
        Stages {
            origin: Instant::now(),
            list: Vec::new(),
        }
    }

    /// Milliseconds from the run's start to `at`.
    fn offset_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Records the stage that ran from `started` until now; returns its milliseconds.
    fn add(&mut self, name: &str, started: Instant) -> u64 {
        let ms = self
            .offset_ms(Instant::now())
            .saturating_sub(self.offset_ms(started));
        self.list.push((name.to_owned(), ms));
        ms
    }

    /// Closes the list: `other` (the time no stage covers, when there is any) and `total`.
    fn finish(&mut self) -> Vec<(String, u64)> {
        let total = self.offset_ms(Instant::now());
        let covered: u64 = self.list.iter().map(|(_, ms)| ms).sum();
        let other = total.saturating_sub(covered);
        if other > 0 {
            self.list.push(("other".into(), other));
        }
        self.list.push(("total".into(), total));
        std::mem::take(&mut self.list)
    }
}

fn stages_json(stages: &[(String, u64)]) -> serde_json::Value {
    stages
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Judges the share of invalid records: a chunk alone once it is large enough, smaller
/// chunks by the run's running total (a quiet hour with 1 bad record in 10 passes). A chunk
/// refused before and still held is refused again while it holds any invalid record,
/// unless the operator set this run's ratio (`--max-rejected-ratio`).
struct RatioJudge {
    max: f64,
    min_records: i64,
    /// The operator passed this run's ratio: holds are judged by it like any chunk.
    operator_ratio: bool,
    run_fetched: i64,
    run_invalid: i64,
}

impl RatioJudge {
    fn judge(&mut self, chunk: &Window, held: bool, counts: &ChunkCounts) -> Result<(), RunError> {
        self.run_fetched += counts.fetched;
        self.run_invalid += counts.invalid;
        let refuse = |scope: &'static str, invalid: i64, fetched: i64| RunError::TooManyRejected {
            scope,
            chunk: chunk.to_string(),
            invalid,
            fetched,
            share: if fetched == 0 {
                0.0
            } else {
                100.0 * invalid as f64 / fetched as f64
            },
            max: 100.0 * self.max,
        };
        if held && !self.operator_ratio && counts.invalid > 0 {
            return Err(refuse(
                "the chunk, refused before and read again,",
                counts.invalid,
                counts.fetched,
            ));
        }
        let over = |invalid: i64, fetched: i64| invalid as f64 > self.max * fetched as f64;
        if counts.fetched >= self.min_records {
            if over(counts.invalid, counts.fetched) {
                return Err(refuse("the chunk", counts.invalid, counts.fetched));
            }
        } else if self.run_fetched >= self.min_records && over(self.run_invalid, self.run_fetched) {
            return Err(refuse("the run so far", self.run_invalid, self.run_fetched));
        }
        Ok(())
    }

    /// After the last chunk: a run whose every record was invalid is not a success, however
    /// few they were (a format change on a quiet night).
    fn judge_run(&self) -> Result<(), RunError> {
        if self.run_fetched > 0 && self.run_invalid == self.run_fetched && !self.operator_ratio {
            return Err(RunError::AllInvalid {
                fetched: self.run_fetched,
            });
        }
        Ok(())
    }
}

pub async fn execute(cfg: &Config, opts: &RunOptions, log_file: PathBuf, stop: Interrupt) -> Exit {
    let mut stages = Stages::start();
    let total = stages.origin;
    let key = cfg.api.client_key.expose_secret().to_owned();
    let clean = |e: &dyn std::error::Error| scrub(&chain(e), &key);
    let early = |message: String, zone: Option<Tz>, stages: Stages| {
        let zone = zone.unwrap_or(Tz::UTC);
        // The window asked for, if any, so the mail names the days the failed run was for.
        let requested = opts.start.zip(opts.end).and_then(|(s, e)| {
            Window::new(
                source_time::to_instant(zone, s),
                source_time::to_instant(zone, e),
            )
            .ok()
        });
        fail_before_run(
            cfg,
            opts,
            zone,
            requested,
            message,
            log_file.clone(),
            stages,
        )
    };

    info!("connecting to PostgreSQL");
    let mut db = match Database::connect(&cfg.database.target).await {
        Ok(db) => db,
        Err(e) => return early(clean(&e), cfg.api.source_timezone, stages).await,
    };
    // The lock, the watermark, the holds and the run history are this platform's.
    let client = cfg.api.client.as_str();
    if let Err(e) = db.check_version(env!("CARGO_PKG_VERSION")).await {
        // A deployment mistake, not a failed load: the configuration's exit code.
        let message = clean(&e);
        if let LoadError::Query { .. } = e {
            return early(message, cfg.api.source_timezone, stages).await;
        }
        fail_before_run(cfg, opts, Tz::UTC, None, message, log_file.clone(), stages).await;
        return Exit::Config;
    }
    let lock_pid = match db.try_lock(client).await {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            warn!(client, "another lms-etl run holds the lock of this api.client; exiting without doing anything");
            return Exit::LockHeld;
        }
        Err(e) => return early(clean(&e), cfg.api.source_timezone, stages).await,
    };
    match db.abandon_dead_runs(client).await {
        Ok(ids) => ids.iter().for_each(|id| {
            warn!(run_id = id, "run {id} was left running by a process that died; closed it as abandoned (its committed chunks are kept and its days are aggregated now)")
        }),
        Err(e) => return early(clean(&e), cfg.api.source_timezone, stages).await,
    }
    let zones = match db.zones(cfg.api.source_timezone).await {
        Ok(z) => z,
        Err(e) => return early(clean(&e), cfg.api.source_timezone, stages).await,
    };
    match db.adopt_legacy_state(client).await {
        Ok(true) => info!(client, "this client adopted the watermark, the runs and the holds kept before they were per client"),
        Ok(false) => {}
        Err(e) => return early(clean(&e), Some(zones.source), stages).await,
    }
    let watermark = match db.watermark(client).await {
        Ok(w) => w,
        Err(e) => return early(clean(&e), Some(zones.source), stages).await,
    };

    let mut warnings = Vec::new();
    // After a change of the source zone, an incremental run continues from the naive time the
    // old zone had reached, read in the new zone, without the overlap: every naive time is
    // then read once. (From the watermark's instant instead, a zone further west would re-read
    // and double what was loaded; one further east would skip hours.)
    let continued_from = match db.last_source_zone(client).await {
        Ok(Some(last)) if last != zones.source.name() && opts.start.is_none() => {
            match (source_time::parse_zone(&last), watermark) {
                (Ok(old), Some(w)) => {
                    let naive = source_time::to_naive(old, w);
                    let start = source_time::to_instant(zones.source, naive);
                    let message = format!(
                        "the source zone changed from {last} to {} since the last run that loaded data: this run continues from the naive time the old zone reached, {}, read in the new zone, without the overlap",
                        zones.source.name(),
                        naive.format("%Y-%m-%d %H:%M:%S")
                    );
                    warn!("{message}");
                    warnings.push(message);
                    Some(start)
                }
                _ => None,
            }
        }
        Ok(_) => None,
        Err(e) => return early(clean(&e), Some(zones.source), stages).await,
    };
    let rules = WindowRules {
        settle_lag: cfg.window.settle_lag,
        overlap: cfg.window.overlap,
        first_run_lookback: cfg.window.first_run_lookback,
    };
    let at = |naive: NaiveDateTime| source_time::to_instant(zones.source, naive);
    let plan = plan(
        &rules,
        opts.clock.now(),
        opts.start.map(at).or(continued_from),
        opts.end.map(at),
        watermark,
    );
    // A continuation past the watermark: the naive times between were loaded in the old zone.
    if let Some(start) = continued_from.filter(|s| watermark.is_some_and(|w| *s > w)) {
        if let Err(e) = db.raise_watermark(client, start.min(plan.limit)).await {
            return early(clean(&e), Some(zones.source), stages).await;
        }
    }
    if let Some(requested) = plan.requested_end {
        let message = format!(
            "the requested end {} is past now minus the settle lag ({} min); loading up to {}",
            show(requested, zones.source),
            rules.settle_lag.num_minutes(),
            show(plan.limit, zones.source)
        );
        warn!(requested_end = %requested, effective_end = %plan.limit, "{message}");
        warnings.push(message);
    }
    let Some(window) = plan.window else {
        console::stage(
            Stage::Plan,
            format_args!(
                "nothing settled to load (settled until {})",
                show(plan.limit, zones.source)
            ),
            Some(total.elapsed().as_millis() as u64),
        );
        if opts.start.is_some() || opts.end.is_some() {
            warn!(settled_until = %plan.limit, watermark = ?watermark,
                  "the window asked for is empty once its end is clamped to now minus the settle lag (or its end lies before the start the watermark gives): nothing to fetch");
        } else {
            info!(settled_until = %plan.limit, "window is empty: nothing settled to load past its start yet; nothing to fetch");
        }
        return Exit::Success;
    };
    if stop.is_set() {
        return early(
            RunError::Interrupted.to_string(),
            Some(zones.source),
            stages,
        )
        .await;
    }
    let run_id = match db
        .start_run(
            client,
            &window,
            plan.requested_end,
            zones.source,
            lock_pid,
            // health() watches Sheets pushes only where a run was told to push.
            cfg.sheets.is_some() && !opts.skip_sheets,
        )
        .await
    {
        Ok(id) => id,
        Err(e) => return early(clean(&e), Some(zones.source), stages).await,
    };

    let span = info_span!("run", run_id);
    async {
        match db.prepare_partitions(&window).await {
            Ok(0) => {}
            Ok(made) => info!(partitions = made, "monthly partitions created for the window"),
            // Not fatal: the default partition takes the rows (and create_partitions moves
            // them out when their month is made later).
            Err(e) => warn!(error = %clean(&e), "could not create the window's monthly partitions; its rows go to the default partition"),
        }
        let chunks = window.chunks(cfg.window.chunk);
        info!(%window, source_timezone = zones.source.name(), report_timezone = zones.report.name(),
              chunks = chunks.len(), chunk_minutes = cfg.window.chunk.num_minutes(), "run started");
        // Connecting, locking, the window and the run row: everything before the first chunk.
        let ms = stages.add(Stage::Plan.name(), total);
        console::stage(
            Stage::Plan,
            format_args!(
                "window {} .. {} ({}), {} chunks of {} min",
                source_time::to_naive(zones.source, window.start),
                source_time::to_naive(zones.source, window.end),
                zones.source.name(),
                chunks.len(),
                cfg.window.chunk.num_minutes()
            ),
            Some(ms),
        );
        let started = Instant::now();
        let outcome = fetch_and_load(cfg, opts, &db, run_id, zones, &chunks, &stop).await;
        let ms = stages.add(Stage::FetchLoad.name(), started);
        let c = &outcome.counts;
        console::stage(
            Stage::FetchLoad,
            format_args!(
                "{}{} fetched, {} inserted, {} duplicates, {} conflicts, {} rejected",
                if outcome.error.is_some() {
                    "failed after "
                } else {
                    ""
                },
                c.fetched,
                c.inserted,
                c.duplicates,
                c.conflicts,
                c.rejected
            ),
            Some(ms),
        );
        let load_error = outcome.error.as_ref().map(|e| clean(e));
        match &load_error {
            None => info!(
                fetched = outcome.counts.fetched,
                inserted = outcome.counts.inserted,
                duplicates = outcome.counts.duplicates,
                conflicts = outcome.counts.conflicts,
                rejected = outcome.counts.rejected,
                "load finished"
            ),
            Some(e) => error!(error = %e, "load failed"),
        }

        // Aggregate what committed (the marked days), also after a failure or a signal.
        let started = Instant::now();
        info!("aggregation started");
        let (days, aggregate_error) = match aggregated_days(&db, &window, zones.report).await {
            Ok(days) => (days, None),
            Err(e) => (Vec::new(), Some(clean(&e))),
        };
        // The trend's and the chart's days, for the mail; without them it still goes out.
        let (from, to) = history_span(&days, window.days_in(zones.report).1);
        let history = db.daily_stats(from, to).await.unwrap_or_else(|e| {
            warn!(error = %clean(&e), "cannot read the days before the run for the mail's trend and chart");
            Vec::new()
        });
        let ms = stages.add(Stage::Aggregate.name(), started);
        console::stage(
            Stage::Aggregate,
            match &aggregate_error {
                None if days.len() == 1 => "1 day".to_owned(),
                None => format!("{} days", days.len()),
                Some(_) => "failed".to_owned(),
            },
            Some(ms),
        );
        match &aggregate_error {
            None => info!(days = days.len(), elapsed_ms = ms, "aggregation finished"),
            Some(e) => error!(error = %e, elapsed_ms = ms, "aggregation failed"),
        }
        let error = load_error.or(aggregate_error);
        let interrupted = stop.is_set() || matches!(outcome.error, Some(RunError::Interrupted));

        let mut sheets_error = None;
        let sheets_url = cfg.sheets.as_ref().map(sheets::spreadsheet_url);
        if error.is_none() && !interrupted {
            sheets_error = push_sheets(cfg, opts, &db, &days, zones.report, &mut stages).await;
        } else {
            console::stage(
                Stage::Sheets,
                "skipped (the run did not load cleanly)",
                None,
            );
        }
        let yesterday = opts.clock.now().with_timezone(&zones.report).date_naive() - Days::new(1);
        if error.is_none() && !interrupted && sheets_error.is_none() {
            sheets_error = push_problems(cfg, opts, &db, yesterday, zones.report, &mut stages).await;
        }

        let status = match (&error, &sheets_error) {
            _ if interrupted || stop.is_set() => RunStatus::Interrupted,
            (Some(_), _) => RunStatus::Failed,
            (None, Some(_)) => RunStatus::Partial,
            (None, None) => RunStatus::Succeeded,
        };
        let error = match (status, error) {
            (RunStatus::Interrupted, None) => Some(RunError::Interrupted.to_string()),
            (_, e) => e,
        };
        let stage_ms = stages.finish();
        let counts = match db
            .finish_run(
                run_id,
                status,
                &stages_json(&stage_ms),
                error.as_deref().or(sheets_error.as_deref()),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                error!(error = %clean(&e), "cannot close the run row");
                outcome.counts
            }
        };
        let rejections = db.rejection_groups(run_id).await.unwrap_or_else(|e| {
            error!(error = %clean(&e), "cannot summarise the rejected records");
            Vec::new()
        });
        // Read after the run row is closed, so the freshness of runs counts this one.
        let checks = health::checks(&db).await.unwrap_or_else(|e| {
            warn!(error = %clean(&e), "cannot read lms_etl.health() for the mail");
            Vec::new()
        });
        let (hardest_day, hardest) = if cfg.report.hardest_count > 0 {
            match problems::hardest(&db, yesterday, cfg.report.hardest_min_submitters, cfg.report.hardest_count).await {
                Ok(list) => (Some(yesterday), list),
                Err(e) => {
                    warn!(error = %clean(&e), "cannot read the hardest problems for the mail");
                    (None, Vec::new())
                }
            }
        } else {
            (None, Vec::new())
        };
        info!(
            status = status.as_str(),
            fetched = counts.fetched,
            inserted = counts.inserted,
            duplicates = counts.duplicates,
            conflicts = counts.conflicts,
            rejected = counts.rejected,
            elapsed_ms = total.elapsed().as_millis() as u64,
            "run finished"
        );

        let report = RunReport {
            run_id: Some(run_id),
            status,
            window_start: window.start,
            window_end: window.end,
            requested_end: plan.requested_end,
            source_timezone: zones.source,
            report_timezone: zones.report,
            counts,
            stage_ms,
            days,
            history,
            rejections,
            warnings,
            error,
            sheets_error,
            sheets_url,
            checks,
            hardest_day,
            hardest,
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

fn show(t: DateTime<Utc>, zone: Tz) -> String {
    format!(
        "{} ({})",
        source_time::to_naive(zone, t).format("%Y-%m-%d %H:%M:%S"),
        zone.name()
    )
}

/// Aggregates every marked day, then returns the statistics of the window's report-zone
/// days together with any other day aggregated now (days a dead run left), sorted.
async fn aggregated_days(
    db: &Database,
    window: &Window,
    report_zone: Tz,
) -> Result<Vec<DailyStats>, LoadError> {
    let aggregated = db.aggregate_pending().await?;
    let (first, last) = window.days_in(report_zone);
    let mut days = db.daily_stats(first, last).await?;
    days.extend(
        aggregated
            .into_iter()
            .filter(|d| d.day < first || d.day > last),
    );
    days.sort_by_key(|d| d.day);
    Ok(days)
}

/// What the loading phase achieved, also when it stopped early.
struct Outcome {
    counts: Counts,
    error: Option<RunError>,
}

/// What a loading connection reports for one committed chunk.
struct Loaded {
    chunk: Window,
    counts: ChunkCounts,
}

/// Everything the loading connections share.
struct Loading<'a> {
    cfg: &'a Config,
    run_id: i64,
    zones: Zones,
    fetcher: Fetcher,
    queue: Mutex<VecDeque<Window>>,
    /// Set on the first failure: no new chunk is started.
    halt: AtomicBool,
    judge: Mutex<RatioJudge>,
    stop: Interrupt,
}

/// Loads the chunks on `window.parallel_loads` connections (inserting is the slow part and
/// one backend uses one core). Each chunk commits on its own; the watermark only moves over
/// a contiguous prefix. On the first failure or a signal no new chunk starts, and this
/// returns once every chunk in flight has committed or rolled back.
async fn fetch_and_load(
    cfg: &Config,
    opts: &RunOptions,
    db: &Database,
    run_id: i64,
    zones: Zones,
    chunks: &[Window],
    stop: &Interrupt,
) -> Outcome {
    let mut outcome = Outcome {
        counts: Counts::default(),
        error: None,
    };
    let fetcher = match Fetcher::new(&cfg.api) {
        Ok(f) => f,
        Err(e) => {
            outcome.error = Some(e.into());
            return outcome;
        }
    };
    let loading = Loading {
        cfg,
        run_id,
        zones,
        fetcher,
        queue: Mutex::new(chunks.iter().copied().collect()),
        halt: AtomicBool::new(false),
        judge: Mutex::new(RatioJudge {
            max: opts
                .max_rejected_ratio
                .unwrap_or(cfg.load.max_rejected_ratio),
            min_records: cfg.load.ratio_min_records,
            operator_ratio: opts.max_rejected_ratio.is_some(),
            run_fetched: 0,
            run_invalid: 0,
        }),
        stop: stop.clone(),
    };
    let mut connections = Vec::with_capacity(cfg.window.parallel_loads);
    for _ in 0..cfg.window.parallel_loads {
        match Database::connect(&cfg.database.target).await {
            Ok(c) => connections.push(c),
            Err(e) => {
                outcome.error = Some(e.into());
                return outcome;
            }
        }
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Loaded, RunError>>();
    let senders: Vec<_> = connections.iter().map(|_| done_tx.clone()).collect();
    drop(done_tx);
    let loading = &loading;
    let workers = connections
        .into_iter()
        .zip(senders)
        .map(|(conn, done_tx)| async move {
            let mut conn = conn;
            loop {
                if loading.halt.load(Ordering::SeqCst) || loading.stop.is_set() {
                    break;
                }
                let Some(chunk) = loading.queue.lock().expect("queue lock").pop_front() else {
                    break;
                };
                let result = load_chunk(loading, &mut conn, chunk).await;
                if result.is_err() {
                    loading.halt.store(true, Ordering::SeqCst);
                }
                let _ = done_tx.send(result);
            }
        });
    let workers = futures_util::future::join_all(workers);

    let bar = opts.console.progress(chunks.len() as u64);
    let settle = async {
        while let Some(result) = done_rx.recv().await {
            match result {
                Ok(loaded) => {
                    info!(target: CHUNK, chunk = %loaded.chunk, records = loaded.counts.fetched, inserted = loaded.counts.inserted,
                          duplicates = loaded.counts.duplicates, conflicts = loaded.counts.conflicts,
                          rejected = loaded.counts.rejected, "chunk loaded");
                    add_counts(&mut outcome.counts, &loaded.counts);
                    // Chunks may commit out of order; catch the watermark up over the contiguous ones.
                    if let Err(e) = db.settle_watermark(&cfg.api.client, run_id).await {
                        loading.halt.store(true, Ordering::SeqCst);
                        outcome.error.get_or_insert(e.into());
                    }
                    bar.inc(1);
                }
                // The first failure is the run's; what fails after it is its consequence.
                Err(e) => {
                    outcome.error.get_or_insert(e);
                }
            }
        }
    };
    tokio::join!(workers, settle);
    opts.console.end_progress();
    if outcome.error.is_none() && stop.is_set() {
        outcome.error = Some(RunError::Interrupted);
    }
    if outcome.error.is_none() {
        outcome.error = loading.judge.lock().expect("judge lock").judge_run().err();
    }
    outcome
}

fn add_counts(total: &mut Counts, chunk: &ChunkCounts) {
    total.fetched += chunk.fetched;
    total.inserted += chunk.inserted;
    total.duplicates += chunk.duplicates;
    total.conflicts += chunk.conflicts;
    total.rejected += chunk.rejected;
}

/// Why one attempt at a chunk ended without a commit.
enum Stop {
    Retry(Failure),
    Fatal(RunError),
}

impl From<LoadError> for Stop {
    fn from(e: LoadError) -> Stop {
        Stop::Fatal(e.into())
    }
}

/// Loads one chunk, retrying transient API failures (a fresh transaction each attempt).
async fn load_chunk(
    loading: &Loading<'_>,
    conn: &mut Database,
    chunk: Window,
) -> Result<Loaded, RunError> {
    let Some(bounds) = chunk.api_bounds(loading.zones.source) else {
        // A chunk whose naive bounds fold away (autumn change): nothing to ask for.
        let counts = ChunkCounts::default();
        let tx = conn.begin_chunk().await?;
        tx.commit(
            &loading.cfg.api.client,
            loading.run_id,
            &chunk,
            &counts,
            0,
            0,
            Verdict::Completed,
        )
        .await?;
        return Ok(Loaded { chunk, counts });
    };
    info!(target: CHUNK, chunk = %chunk, url = %loading.fetcher.display_url(&bounds), "download started");
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match try_chunk(loading, conn, &chunk, &bounds, attempt).await {
            Ok(loaded) => return Ok(loaded),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Retry(Failure::Fatal(e))) => return Err(e.into()),
            Err(Stop::Retry(Failure::Retry {
                reason,
                wait_at_least,
            })) => {
                if loading.stop.is_set() {
                    return Err(RunError::Interrupted);
                }
                tokio::select! {
                    r = loading.fetcher.before_retry(&bounds, attempt, reason, wait_at_least) => r?,
                    _ = loading.stop.wait() => return Err(RunError::Interrupted),
                }
            }
        }
    }
}

/// One attempt: the request, then the body streamed in sub-batches of at most
/// `window.max_batch_bytes` into one transaction, judged, and committed.
async fn try_chunk(
    loading: &Loading<'_>,
    conn: &mut Database,
    chunk: &Window,
    bounds: &(String, String),
    attempt: u32,
) -> Result<Loaded, Stop> {
    let started = Instant::now();
    let response = tokio::select! {
        r = loading.fetcher.open(bounds) => r.map_err(Stop::Retry)?,
        _ = loading.stop.wait() => return Err(Stop::Fatal(RunError::Interrupted)),
    };
    let tx = conn.begin_chunk().await?;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(loading.cfg.window.prefetch);
    let fetcher = &loading.fetcher;
    let stop = &loading.stop;

    let download = async move {
        let mut splitter = BatchSplitter::new(loading.cfg.window.max_batch_bytes);
        let mut body = response.bytes_stream();
        loop {
            let piece = tokio::select! {
                p = body.next() => p,
                _ = stop.wait() => return Err(Stop::Fatal(RunError::Interrupted)),
            };
            let batches = match piece {
                None => break,
                Some(Err(e)) => {
                    return Err(Stop::Retry(Failure::retry(format!(
                        "body cut off: {}",
                        fetcher.scrub(&chain(&e.without_url()))
                    ))))
                }
                Some(Ok(bytes)) => splitter.push(&bytes).map_err(|e| {
                    Stop::Retry(Failure::retry(format!("incomplete or invalid body: {e}")))
                })?,
            };
            for batch in batches {
                if batch_tx.send(batch).await.is_err() {
                    return Ok(0); // the loading side stopped; its error tells why
                }
            }
        }
        let bytes = splitter.bytes_seen();
        if let Some(last) = splitter
            .finish()
            .map_err(|e| Stop::Retry(Failure::retry(format!("incomplete or invalid body: {e}"))))?
        {
            let _ = batch_tx.send(last).await;
        }
        Ok(bytes)
    };
    let zone = loading.zones.source;
    let run_id = loading.run_id;
    let tx_ref = &tx;
    let ingest = async move {
        let mut counts = ChunkCounts::default();
        while let Some(batch) = batch_rx.recv().await {
            if stop.is_set() {
                return Err(Stop::Fatal(RunError::Interrupted));
            }
            let part = tx_ref
                .ingest(&batch.json, batch.records, batch.first_index, run_id, zone)
                .await
                .map_err(|e| {
                    if e.is_malformed_body() {
                        Stop::Retry(Failure::retry(format!(
                            "a record of the body is not JSON: {}",
                            chain(&e)
                        )))
                    } else {
                        Stop::from(e)
                    }
                })?;
            counts.add(&part);
        }
        Ok(counts)
    };
    let (downloaded, ingested) = tokio::join!(download, ingest);
    let fetch_ms = started.elapsed().as_millis() as i64;
    let (bytes, counts) = match (downloaded, ingested) {
        (Ok(bytes), Ok(counts)) => (bytes, counts),
        // The database's error first: a download error after it is its consequence.
        (_, Err(e)) | (Err(e), _) => {
            tx.rollback().await;
            return Err(e);
        }
    };
    info!(target: CHUNK, chunk = %chunk, records = counts.fetched, bytes, attempts = attempt, elapsed_ms = fetch_ms,
          "download finished");
    let held = match tx.is_held(&loading.cfg.api.client, chunk).await {
        Ok(h) => h,
        Err(e) => {
            tx.rollback().await;
            return Err(e.into());
        }
    };
    let verdict = loading
        .judge
        .lock()
        .expect("judge lock")
        .judge(chunk, held, &counts);
    tx.commit(
        &loading.cfg.api.client,
        run_id,
        chunk,
        &counts,
        fetch_ms,
        started.elapsed().as_millis() as i64,
        if verdict.is_ok() {
            Verdict::Completed
        } else {
            Verdict::Refused
        },
    )
    .await?;
    verdict.map_err(Stop::Fatal)?;
    Ok(Loaded {
        chunk: *chunk,
        counts,
    })
}

/// Pushes the run's days, and every day still due from an earlier push that failed, to
/// Sheets when configured; returns the error text on failure.
async fn push_sheets(
    cfg: &Config,
    opts: &RunOptions,
    db: &Database,
    days: &[DailyStats],
    report_zone: Tz,
    stages: &mut Stages,
) -> Option<String> {
    let Some(sheets_cfg) = cfg.sheets.as_ref().filter(|_| !opts.skip_sheets) else {
        if cfg.sheets.is_none() {
            info!("Google Sheets not configured (set sheets.spreadsheet_id and sheets.key_file); skipping");
            console::stage(Stage::Sheets, "not configured, skipped", None);
        } else {
            console::stage(Stage::Sheets, "skipped (--no-sheets)", None);
        }
        return None;
    };
    let started = Instant::now();
    let touched: Vec<NaiveDate> = days.iter().map(|d| d.day).collect();
    let due = match db.sheets_due(&touched).await {
        Ok(due) => due,
        Err(e) => {
            let message = chain(&e);
            error!(error = %message, "cannot read the days due in Google Sheets");
            console::stage(Stage::Sheets, "failed", None);
            return Some(message);
        }
    };
    if due.is_empty() {
        console::stage(Stage::Sheets, "no days due", None);
        return None;
    }
    let caught_up = due
        .iter()
        .filter(|d| !touched.contains(&d.stats.day))
        .count();
    info!(sheet = %sheets_cfg.sheet, days = due.len(), caught_up, "sheets push started");
    let result = push_and_mark(db, sheets_cfg, &due, report_zone).await;
    let ms = stages.add(Stage::Sheets.name(), started);
    console::stage(
        Stage::Sheets,
        match &result {
            Ok(outcome) => format!(
                "{} days written ({} rows inserted) in tab {}",
                outcome.days_written, outcome.rows_inserted, sheets_cfg.sheet
            ),
            Err(_) => "failed".to_owned(),
        },
        Some(ms),
    );
    match result {
        Ok(outcome) => {
            info!(days = outcome.days_written, inserted = outcome.rows_inserted, chart = ?outcome.chart,
                  url = %outcome.url, elapsed_ms = ms, "sheets push finished");
            None
        }
        Err(e) => {
            let message = chain(&e);
            error!(error = %message, elapsed_ms = ms, "sheets push failed; the loaded data is kept and the next run pushes these days again");
            Some(message)
        }
    }
}

/// Rewrites the problems tab (`sheets.problems_sheet`) with the per-problem rows of the
/// [`PROBLEM_DAYS`] complete days ending `last_day`; returns the error text on failure.
async fn push_problems(
    cfg: &Config,
    opts: &RunOptions,
    db: &Database,
    last_day: NaiveDate,
    report_zone: Tz,
    stages: &mut Stages,
) -> Option<String> {
    let sheets_cfg = cfg.sheets.as_ref().filter(|_| !opts.skip_sheets)?;
    let tab = sheets_cfg.problems_sheet.as_deref()?;
    let started = Instant::now();
    let first_day = last_day - Days::new(PROBLEM_DAYS - 1);
    let result = match problems::problem_days(db, first_day, last_day).await {
        Ok(rows) => sheets::push_problems(sheets_cfg, tab, &rows, report_zone)
            .await
            .map_err(|e| chain(&e)),
        Err(e) => Err(chain(&e)),
    };
    let ms = stages.add("problems", started);
    match result {
        Ok(rows) => {
            info!(sheet = tab, rows, from = %first_day, to = %last_day, elapsed_ms = ms, "problems tab rewritten");
            None
        }
        Err(message) => {
            error!(error = %message, elapsed_ms = ms, "pushing the problems tab failed; the next run rewrites it");
            Some(message)
        }
    }
}

/// Complete days the problems tab holds, ending yesterday.
const PROBLEM_DAYS: u64 = 7;

/// Pushes `due` to Sheets and, once Google has them, records each day's version as pushed,
/// so `lms_etl.sheets_pending()` forgets it until its numbers change again.
pub async fn push_and_mark(
    db: &Database,
    cfg: &SheetsConfig,
    due: &[DayVersion],
    report_zone: Tz,
) -> Result<SheetsOutcome, SheetsError> {
    let stats: Vec<DailyStats> = due.iter().map(|d| d.stats.clone()).collect();
    let outcome = sheets::push_days(cfg, &stats, report_zone).await?;
    match db.mark_sheets_pushed(due).await {
        Ok(marked) => info!(marked, "days recorded as pushed to Google Sheets"),
        // The sheet is right; unmarked days stay due and the next run writes them once more.
        Err(e) => {
            warn!(error = %chain(&e), "cannot record the days pushed to Google Sheets; the next run pushes them again")
        }
    }
    Ok(outcome)
}

/// Sends (or writes to the outbox) the run's e-mail; false if that failed.
async fn notify(cfg: &Config, opts: &RunOptions, report: &RunReport) -> bool {
    opts.console.record(report);
    if opts.skip_email {
        console::stage(Stage::Mail, "skipped (--no-email)", None);
        return true;
    }
    let started = Instant::now();
    let result = email::send_report(&cfg.email, report).await;
    let ms = Some(started.elapsed().as_millis() as u64);
    match result {
        Ok(email::Delivery::Sent { recipients }) => {
            info!(recipients, elapsed_ms = ms, "e-mail sent");
            console::stage(
                Stage::Mail,
                format_args!("sent to {recipients} recipients"),
                ms,
            );
            true
        }
        Ok(email::Delivery::WrittenToOutbox(path)) => {
            // email.rs logs the path
            console::stage(
                Stage::Mail,
                format_args!("written to {}", path.display()),
                ms,
            );
            true
        }
        Ok(email::Delivery::Skipped) => {
            info!(send_on = ?cfg.email.send_on, "e-mail not wanted for this outcome");
            console::stage(
                Stage::Mail,
                format_args!(
                    "not wanted for this outcome (email.send_on = {:?})",
                    cfg.email.send_on
                ),
                ms,
            );
            true
        }
        Err(e) => {
            error!(error = %chain(&e), "e-mail failed; the loaded data is kept");
            console::stage(Stage::Mail, "failed", ms);
            false
        }
    }
}

/// A failure before the run row exists: logged and e-mailed, nothing to close.
async fn fail_before_run(
    cfg: &Config,
    opts: &RunOptions,
    zone: Tz,
    window: Option<Window>,
    message: String,
    log_file: PathBuf,
    mut stages: Stages,
) -> Exit {
    error!(error = %message, "run failed");
    console::stage(Stage::Plan, "failed", None);
    let now = Utc::now();
    // It failed while planning: the time so far is the plan's.
    stages.add(Stage::Plan.name(), stages.origin);
    let report = RunReport {
        run_id: None,
        status: RunStatus::Failed,
        window_start: window.map_or(now, |w| w.start),
        window_end: window.map_or(now, |w| w.end),
        requested_end: None,
        source_timezone: zone,
        report_timezone: zone,
        counts: Counts::default(),
        stage_ms: stages.finish(),
        days: Vec::new(),
        history: Vec::new(),
        rejections: Vec::new(),
        warnings: Vec::new(),
        error: Some(message),
        sheets_error: None,
        sheets_url: None,
        checks: Vec::new(),
        hardest_day: None,
        hardest: Vec::new(),
        log_file,
        finished_at: now,
    };
    notify(cfg, opts, &report).await;
    Exit::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(fetched: i64, invalid: i64) -> ChunkCounts {
        ChunkCounts {
            fetched,
            invalid,
            ..ChunkCounts::default()
        }
    }

    fn judge() -> RatioJudge {
        RatioJudge {
            max: 0.05,
            min_records: 100,
            operator_ratio: false,
            run_fetched: 0,
            run_invalid: 0,
        }
    }

    fn chunk() -> Window {
        let t = |h: i64| DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap();
        Window::new(t(0), t(1)).unwrap()
    }

    #[test]
    fn stages_never_overlap_and_with_other_add_up_to_the_total() {
        let nap = |ms| std::thread::sleep(std::time::Duration::from_millis(ms));
        let mut stages = Stages::start();
        nap(3);
        stages.add("plan", stages.origin);
        let started = Instant::now();
        nap(7);
        stages.add("fetch+load", started);
        nap(4); // between stages: `other`
        let started = Instant::now();
        nap(2);
        stages.add("aggregate", started);
        let list = stages.finish();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["plan", "fetch+load", "aggregate", "other", "total"]);
        let total = list.last().unwrap().1;
        let sum: u64 = list[..list.len() - 1].iter().map(|(_, ms)| ms).sum();
        assert_eq!(sum, total);
        assert!(list[3].1 >= 3, "the gap is counted: {list:?}");
    }

    #[test]
    fn a_large_chunk_is_judged_alone() {
        let mut j = judge();
        assert!(j.judge(&chunk(), false, &counts(1000, 50)).is_ok());
        let err = j
            .judge(&chunk(), false, &counts(1000, 51))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("the chunk has 51 invalid records of 1000 (5.1%), above load.max_rejected_ratio 5.0%"), "{err}");
    }

    #[test]
    fn a_quiet_hour_with_one_bad_record_in_ten_passes() {
        let mut j = judge();
        assert!(j.judge(&chunk(), false, &counts(10, 1)).is_ok());
        // ... but small chunks add up, and the running total is judged once it is large enough.
        for _ in 0..8 {
            assert!(j.judge(&chunk(), false, &counts(10, 1)).is_ok());
        }
        let err = j
            .judge(&chunk(), false, &counts(10, 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the run so far has 10 invalid records of 100"),
            "{err}"
        );
    }

    #[test]
    fn a_share_of_one_passes_everything() {
        let mut j = RatioJudge {
            max: 1.0,
            operator_ratio: true,
            ..judge()
        };
        assert!(j.judge(&chunk(), true, &counts(500, 500)).is_ok());
        assert!(j.judge_run().is_ok());
    }

    #[test]
    fn a_held_chunk_read_again_is_refused_while_it_holds_an_invalid_record() {
        let mut j = judge();
        let err = j
            .judge(&chunk(), true, &counts(80, 20))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "the chunk, refused before and read again, has 20 invalid records of 80"
            ),
            "{err}"
        );
        // Read again once the source is fixed: it passes, and the hold is lifted.
        assert!(judge().judge(&chunk(), true, &counts(80, 0)).is_ok());
    }

    #[test]
    fn a_run_whose_every_record_is_invalid_fails_however_small() {
        let mut j = judge();
        assert!(j.judge(&chunk(), false, &counts(60, 60)).is_ok());
        assert!(j
            .judge_run()
            .unwrap_err()
            .to_string()
            .starts_with("every one of the 60 records"));
        assert!(j.judge(&chunk(), false, &counts(1, 0)).is_ok());
        assert!(j.judge_run().is_ok());
    }
}
