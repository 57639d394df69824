//! What an operator sees of a run on stderr: one line per stage (per-chunk lines only with
//! `-v`, errors only with `-q`), and at a terminal a progress bar and a closing summary table.

use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};
use lms_etl_parse::source_time;
use tracing::{Level, Metadata};

use crate::report::RunReport;

/// Tracing target of the stage lines: the whole of a run's stderr by default.
pub const STAGE: &str = "lms_etl_loader::stage";
/// Tracing target of the per-chunk lines: always in the log file, on stderr only with `-v`.
pub const CHUNK: &str = "lms_etl_loader::chunk";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// A run: its stage lines, warnings and errors. Other commands: everything but chunks.
    #[default]
    Normal,
    /// Everything the log file gets.
    Verbose,
}

/// The stages of a run in the order they run, as the console names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Plan,
    FetchLoad,
    Aggregate,
    Sheets,
    Mail,
    Done,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Plan,
        Stage::FetchLoad,
        Stage::Aggregate,
        Stage::Sheets,
        Stage::Mail,
        Stage::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::FetchLoad => "fetch+load",
            Stage::Aggregate => "aggregate",
            Stage::Sheets => "sheets",
            Stage::Mail => "mail",
            Stage::Done => "done",
        }
    }
}

/// The one line of a stage, `<stage>: <what it did>`, to stderr and to the log file.
pub fn stage(stage: Stage, what: impl Display, elapsed_ms: Option<u64>) {
    tracing::info!(target: STAGE, elapsed_ms, "{}: {what}", stage.name());
}

/// Shared by the log subscriber (which writes around the bar) and the run (which draws it).
#[derive(Clone, Default)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    verbosity: Verbosity,
    /// stderr is a terminal: draw the bar and the summary.
    terminal: bool,
    /// The command is `run`: by default stderr shows its stage lines, not every INFO line.
    run: bool,
    started: Instant,
    bar: Mutex<Option<ProgressBar>>,
    report: Mutex<Option<RunReport>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            verbosity: Verbosity::Normal,
            terminal: false,
            run: false,
            started: Instant::now(),
            bar: Mutex::new(None),
            report: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("verbosity", &self.inner.verbosity)
            .field("terminal", &self.inner.terminal)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// `run`: the command is `lms-etl run` (stage lines by default).
    pub fn new(verbosity: Verbosity, run: bool) -> Console {
        Console {
            inner: Arc::new(Inner {
                verbosity,
                terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                run,
                ..Inner::default()
            }),
        }
    }

    pub fn terminal(&self) -> bool {
        self.inner.terminal
    }

    /// Whether stderr shows an event or span with this metadata (the log file gets all).
    pub fn shows(&self, meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            return true;
        }
        let level = *meta.level();
        match self.inner.verbosity {
            Verbosity::Quiet => level == Level::ERROR,
            Verbosity::Verbose => true,
            Verbosity::Normal if !self.inner.run => meta.target() != CHUNK,
            Verbosity::Normal => {
                meta.target() == STAGE || (level <= Level::WARN && meta.target() != CHUNK)
            }
        }
    }

    /// A bar over `chunks`, drawn only at a terminal and not with `-q`; log lines written
    /// while it is drawn go above it. End it with [`Console::end_progress`].
    pub fn progress(&self, chunks: u64) -> ProgressBar {
        if !self.inner.terminal || self.inner.verbosity == Verbosity::Quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(chunks);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks, eta {eta}",
            )
            .expect("the template is valid"),
        );
        *self.inner.bar.lock().expect("bar lock") = Some(bar.clone());
        bar
    }

    pub fn end_progress(&self) {
        if let Some(bar) = self.inner.bar.lock().expect("bar lock").take() {
            bar.finish_and_clear();
        }
    }

    /// Keeps the run's report for the closing line and the summary table.
    pub fn record(&self, report: &RunReport) {
        *self.inner.report.lock().expect("report lock") = Some(report.clone());
    }

    /// The `done` line, and at a terminal the summary table (not with `-q`).
    pub fn done(&self, exit_code: u8) {
        let report = self.inner.report.lock().expect("report lock").clone();
        let what = match &report {
            Some(r) => format!(
                "{}{}, exit {exit_code}, log file {}",
                r.run_id.map_or_else(String::new, |id| format!("run {id} ")),
                r.status.as_str(),
                r.log_file.display()
            ),
            None => format!("{}, exit {exit_code}", no_run(exit_code)),
        };
        stage(
            Stage::Done,
            what,
            Some(self.inner.started.elapsed().as_millis() as u64),
        );
        if self.inner.terminal && self.inner.verbosity != Verbosity::Quiet {
            if let Some(report) = report {
                let _ = writeln!(std::io::stderr(), "{}", summary(&report, exit_code));
            }
        }
    }
}

/// What a run that made no report did.
fn no_run(exit_code: u8) -> &'static str {
    match exit_code {
        0 => "nothing to load",
        3 => "another run holds the lock, nothing done",
        _ => "stopped before the run started",
    }
}

/// The closing table at a terminal: outcome, window, counts, days, stage times, log file.
pub fn summary(report: &RunReport, exit_code: u8) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let status = match report.run_id {
        Some(id) => format!("{} (run {id}, exit {exit_code})", report.status.as_str()),
        None => format!("{} (exit {exit_code})", report.status.as_str()),
    };
    let zone = report.source_timezone;
    let naive = |t| source_time::to_naive(zone, t).format("%Y-%m-%d %H:%M:%S");
    let c = &report.counts;
    let days = match (report.days.first(), report.days.last()) {
        (Some(first), Some(last)) => format!(
            "{} .. {} ({} {})",
            first.day,
            last.day,
            report.days.len(),
            if report.days.len() == 1 {
                "day"
            } else {
                "days"
            }
        ),
        _ => "none".to_owned(),
    };
    let stages = report
        .stage_ms
        .iter()
        .map(|(name, ms)| format!("{name} {ms} ms"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rows = vec![
        ("status", status),
        (
            "window",
            format!(
                "{} .. {} ({})",
                naive(report.window_start),
                naive(report.window_end),
                zone.name()
            ),
        ),
        ("fetched", c.fetched.to_string()),
        ("inserted", c.inserted.to_string()),
        ("duplicates", c.duplicates.to_string()),
        ("conflicts", c.conflicts.to_string()),
        ("rejected", c.rejected.to_string()),
        ("days", days),
        ("stages", stages),
        ("log file", report.log_file.display().to_string()),
    ];
    if let Some(e) = &report.error {
        rows.push(("error", e.clone()));
    }
    if let Some(e) = &report.sheets_error {
        rows.push(("sheets error", e.clone()));
    }
    for (key, value) in rows {
        t.add_row(vec![key.to_owned(), value]);
    }
    t.to_string()
}

/// stderr for the log subscriber: a line written while the bar is drawn goes above it.
pub struct StderrWriter {
    bar: Option<ProgressBar>,
}

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    // The formatter hands over a whole line at once: written in one piece, under one suspend.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &self.bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Console {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> StderrWriter {
        StderrWriter {
            bar: self.inner.bar.lock().expect("bar lock").clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Counts, DailyStats, RunStatus};
    use chrono::{TimeZone, Utc};

    fn report() -> RunReport {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        let day = |d: u32, attempts| DailyStats {
            day: chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            attempts,
            successful_attempts: attempts / 2,
            unique_users: 7,
            submits: attempts / 2,
            submit_success_rate: Some(0.5),
            computed_at: at(22, 1),
        };
        RunReport {
            run_id: Some(42),
            status: RunStatus::Partial,
            window_start: at(20, 0),
            window_end: at(22, 0),
            requested_end: None,
            source_timezone: chrono_tz::Europe::Berlin,
            report_timezone: chrono_tz::UTC,
            counts: Counts {
                fetched: 4811,
                inserted: 4700,
                duplicates: 100,
                conflicts: 3,
                rejected: 8,
            },
            stage_ms: vec![
                ("plan".into(), 12),
                ("fetch+load".into(), 1234),
                ("aggregate".into(), 20),
                ("total".into(), 1270),
            ],
            days: vec![day(20, 2400), day(21, 2300)],
            history: Vec::new(),
            checks: Vec::new(),
            hardest_day: None,
            hardest: Vec::new(),
            rejections: Vec::new(),
            warnings: Vec::new(),
            error: None,
            sheets_error: Some("Sheets API spreadsheets.get failed with HTTP 404".into()),
            sheets_url: None,
            log_file: "/var/log/lms-etl/2026-11-22.log".into(),
            finished_at: at(22, 1),
        }
    }

    /// The table's rows as (key, value) pairs, multi-line cells joined by `|`.
    fn rows(table: &str) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for line in table.lines().filter(|l| l.starts_with('│')) {
            let cells: Vec<&str> = line.split(['│', '┆']).map(str::trim).collect();
            let (key, value) = (cells[1], cells[2]);
            match rows.last_mut() {
                Some(last) if key.is_empty() => {
                    last.1.push('|');
                    last.1.push_str(value);
                }
                _ => rows.push((key.to_owned(), value.to_owned())),
            }
        }
        rows
    }

    #[test]
    fn the_summary_table_shows_outcome_window_counts_days_stages_and_log_file() {
        let table = summary(&report(), 4);
        let got = rows(&table);
        let expect: Vec<(String, String)> = [
            ("status", "partial (run 42, exit 4)"),
            (
                "window",
                "2026-11-20 01:00:00 .. 2026-11-22 01:00:00 (Europe/Berlin)",
            ),
            ("fetched", "4811"),
            ("inserted", "4700"),
            ("duplicates", "100"),
            ("conflicts", "3"),
            ("rejected", "8"),
            ("days", "2026-11-20 .. 2026-11-21 (2 days)"),
            (
                "stages",
                "plan 12 ms|fetch+load 1234 ms|aggregate 20 ms|total 1270 ms",
            ),
            ("log file", "/var/log/lms-etl/2026-11-22.log"),
            (
                "sheets error",
                "Sheets API spreadsheets.get failed with HTTP 404",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, expect, "\n{table}");
    }

    #[test]
    fn a_run_without_days_or_id_says_so() {
        let mut r = report();
        r.run_id = None;
        r.status = RunStatus::Failed;
        r.days.clear();
        r.sheets_error = None;
        r.error = Some("cannot connect to PostgreSQL".into());
        let got = rows(&summary(&r, 1));
        assert_eq!(got[0], ("status".into(), "failed (exit 1)".into()));
        assert!(got.contains(&("days".into(), "none".into())), "{got:?}");
        assert_eq!(
            got.last().unwrap(),
            &("error".into(), "cannot connect to PostgreSQL".into())
        );
    }
}
