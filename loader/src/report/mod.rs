//! What a run produced, and the outputs that publish it: Google Sheets and e-mail.

pub mod email;
pub mod sheets;

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// One row of `lms_etl.daily_stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyStats {
    pub day: NaiveDate,
    pub attempts: i64,
    pub successful_attempts: i64,
    pub unique_users: i64,
    pub computed_at: DateTime<Utc>,
}

impl DailyStats {
    /// Share of successful attempts, 0 when there were none.
    pub fn success_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.successful_attempts as f64 / self.attempts as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    /// Data loaded, but an output (Sheets) failed.
    Partial,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub fetched: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// Everything the outputs need to tell about one run. Holds no secrets.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: Option<i64>,
    pub status: RunStatus,
    /// Requested window [start, end) in the source's time zone.
    pub window_start: NaiveDateTime,
    pub window_end: NaiveDateTime,
    pub counts: Counts,
    /// Stage name → milliseconds, in the order the stages ran.
    pub stage_ms: Vec<(String, u64)>,
    /// `daily_stats` of every day the run touched, sorted by day.
    pub days: Vec<DailyStats>,
    /// The error that failed the run, with its cause chain, already redacted.
    pub error: Option<String>,
    /// Set when the Sheets push failed (the data stays loaded).
    pub sheets_error: Option<String>,
    /// Link to the spreadsheet, when Sheets is configured.
    pub sheets_url: Option<String>,
    pub log_file: PathBuf,
    pub finished_at: DateTime<Utc>,
}
