//! The command line: every clap type lives here, turned into typed options once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::demo_api::DemoApiArgs;

#[derive(Debug, Parser)]
#[command(
    name = "lms-etl",
    version,
    about = "Load LMS attempt records into PostgreSQL, aggregate per day, report"
)]
pub struct Cli {
    /// TOML configuration file; environment variables override it (see lms-etl.example.toml).
    #[arg(long, short, global = true, env = "LMS_ETL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Also show every chunk's lines on stderr (the log file always has them).
    #[arg(long, short, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Print errors only (for cron: no output, no mail from cron, unless something failed).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a window from the API, load it, aggregate the touched days, report.
    Run(RunArgs),
    /// Show the last runs, the last days' statistics and the health checks.
    Status(StatusArgs),
    /// Print the health checks (lms_etl.health()) as a Nagios plugin does and exit with its
    /// code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (worst check wins; CRITICAL > WARNING >
    /// UNKNOWN > OK).
    Health,
    /// Serve the bundled demo statistics API.
    DemoApi(DemoApiArgs),
    /// (Re)push the daily statistics of a date range to Google Sheets.
    SheetsSync(RangeArgs),
    /// Recompute lms_etl.daily_stats for a date range (same as lms_etl.refresh_daily_stats).
    Aggregate(RangeArgs),
    /// Check the configuration, PostgreSQL, the API, e-mail and Google Sheets without writing
    /// or sending anything; exit 1 if any check fails.
    Doctor,
    /// Re-ingest quarantined records under the current rules (after a fix or an upgrade):
    /// records now valid move into lms_etl.attempts; the touched days are re-aggregated.
    Reprocess(ReprocessArgs),
    /// Write the valid records the demo API would serve for a window at --now as COPY text,
    /// created_at as a UTC instant (the benchmark's baseline).
    #[command(hide = true)]
    ExportDemoCopy(ExportArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Window start (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS[.ffffff], source time zone).
    /// Default: the watermark minus window.overlap_minutes (first run: 24 hours before the end).
    #[arg(long)]
    pub start: Option<String>,
    /// Window end, exclusive. Default, and at the latest: now minus window.settle_lag_minutes.
    #[arg(long)]
    pub end: Option<String>,
    /// Accept this share of invalid records for this run only (overrides load.max_rejected_ratio),
    /// e.g. 1 to load past a chunk an operator has inspected.
    #[arg(long)]
    pub max_rejected_ratio: Option<f64>,
    /// Clock override for tests: "now" starts at this UTC time (YYYY-MM-DD HH:MM:SS or
    /// RFC 3339) and runs forward from there.
    #[arg(long, env = "LMS_ETL_NOW", hide = true, value_parser = crate::clock::parse_instant)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Chunk length in minutes (overrides window.chunk_minutes).
    #[arg(long)]
    pub chunk_minutes: Option<i64>,
    /// Do not push to Google Sheets this time.
    #[arg(long)]
    pub no_sheets: bool,
    /// Do not send or write the e-mail this time.
    #[arg(long)]
    pub no_email: bool,
}

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// Only the records quarantined by this run (default: all).
    #[arg(long = "run")]
    pub run_id: Option<i64>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many runs to show.
    #[arg(long, default_value_t = 10)]
    pub runs: i64,
    /// How many days of statistics to show.
    #[arg(long, default_value_t = 14)]
    pub days: i64,
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// First day (YYYY-MM-DD).
    #[arg(long)]
    pub from: chrono::NaiveDate,
    /// Last day, included (YYYY-MM-DD).
    #[arg(long)]
    pub to: chrono::NaiveDate,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Window start (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS[.ffffff]), naive in --timezone.
    #[arg(long)]
    pub start: String,
    /// Window end, exclusive (same forms).
    #[arg(long)]
    pub end: String,
    #[command(flatten)]
    pub demo: DemoApiArgs,
}

impl Cli {
    /// How much of the run the console shows (`-q`, default, `-v`).
    pub fn verbosity(&self) -> crate::console::Verbosity {
        use crate::console::Verbosity;
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}
