//! What a run produced, and the outputs that publish it: Google Sheets and e-mail.

pub mod chart;
pub mod email;
pub mod problems;
pub mod sheets;

use std::path::PathBuf;

use chrono::{DateTime, Days, NaiveDate, Utc};

/// One row of `lms_etl.daily_stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyStats {
    pub day: NaiveDate,
    pub attempts: i64,
    pub successful_attempts: i64,
    pub unique_users: i64,
    pub computed_at: DateTime<Utc>,
    pub submits: i64,
    /// Share of the submits that were correct; `None` without submits.
    pub submit_success_rate: Option<f64>,
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
    /// Stopped by a signal; chunks committed before it are kept.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub fetched: i64,
    pub inserted: i64,
    pub duplicates: i64,
    /// Records whose key was already loaded with different content.
    pub conflicts: i64,
    pub rejected: i64,
}

/// Quarantined records of one kind: how many, and one example (raw text from the database;
/// always shortened with [`shorten_example`] before display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionGroup {
    pub kind: String,
    pub count: i64,
    pub example: String,
}

/// Everything the outputs need to tell about one run. Holds no secrets.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: Option<i64>,
    pub status: RunStatus,
    /// Window [start, end) as instants.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The `--end` the operator asked for, when it was clamped to now - settle lag.
    pub requested_end: Option<DateTime<Utc>>,
    /// Zone of the API's naive times (the window is shown in it).
    pub source_timezone: chrono_tz::Tz,
    /// Zone whose calendar days `daily_stats` uses.
    pub report_timezone: chrono_tz::Tz,
    pub counts: Counts,
    /// Stage name → milliseconds, in the order the stages ran.
    pub stage_ms: Vec<(String, u64)>,
    /// `daily_stats` of every day the run touched, sorted by day.
    pub days: Vec<DailyStats>,
    /// `daily_stats` rows of the days [`history_span`] names (the chart's last
    /// [`CHART_DAYS`] days and the day [`TREND_DAYS`] before each touched day), sorted by
    /// day; days without a row are absent. Empty when the database could not be read.
    pub history: Vec<DailyStats>,
    /// Grouped quarantine of this run, largest group first (conflicts are one kind among them).
    pub rejections: Vec<RejectionGroup>,
    /// Things an operator should know that did not fail the run (e.g. a clamped `--end`).
    pub warnings: Vec<String>,
    /// The error that failed the run, with its cause chain, already redacted.
    pub error: Option<String>,
    /// Set when the Sheets push failed (the data stays loaded).
    pub sheets_error: Option<String>,
    /// Link to the spreadsheet, when Sheets is configured.
    pub sheets_url: Option<String>,
    /// `lms_etl.health()` read after the run row was closed, worst first; empty when it
    /// could not be read.
    pub checks: Vec<crate::health::Check>,
    /// The day of [`RunReport::hardest`] (yesterday by the run's clock) and its hardest
    /// problems; `None` when they were not read.
    pub hardest_day: Option<NaiveDate>,
    pub hardest: Vec<problems::HardProblem>,
    pub log_file: PathBuf,
    pub finished_at: DateTime<Utc>,
}

/// Days the mail's chart shows, ending with the report's last day.
pub const CHART_DAYS: u64 = 30;
/// A day's trend compares it with the same weekday this many days earlier.
pub const TREND_DAYS: u64 = 7;

/// The days [`RunReport::history`] must cover, first and last: from [`TREND_DAYS`] before
/// the first touched day (or [`CHART_DAYS`] back from `last_day`, if earlier) to `last_day`
/// or the last touched day, whichever is later.
pub fn history_span(days: &[DailyStats], last_day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let chart_start = last_day - Days::new(CHART_DAYS - 1);
    let trend_start = days
        .first()
        .map_or(chart_start, |d| d.day - Days::new(TREND_DAYS));
    let last_touched = days.last().map_or(last_day, |d| d.day);
    (chart_start.min(trend_start), last_day.max(last_touched))
}

impl RunReport {
    /// The last calendar day the window covers, in the report zone (the zone of the days
    /// table, so the subject's date is its last row): `window_end` is exclusive.
    pub fn last_day(&self) -> NaiveDate {
        (self.window_end - chrono::Duration::microseconds(1))
            .with_timezone(&self.report_timezone)
            .date_naive()
    }

    /// The `history` row of `day`, if it has one.
    pub fn history_of(&self, day: NaiveDate) -> Option<&DailyStats> {
        self.history
            .binary_search_by_key(&day, |d| d.day)
            .ok()
            .map(|i| &self.history[i])
    }

    /// Change of `day`'s attempts against the same weekday a week earlier, as a fraction
    /// (0.12 = 12 % more); `None` when that day has no row or had no attempts.
    pub fn week_change(&self, day: &DailyStats) -> Option<f64> {
        let before = self.history_of(day.day - Days::new(TREND_DAYS))?;
        (before.attempts > 0)
            .then(|| (day.attempts - before.attempts) as f64 / before.attempts as f64)
    }

    /// The chart's days, oldest first, each with its row if it has one.
    pub fn chart_days(&self) -> Vec<(NaiveDate, Option<&DailyStats>)> {
        let last = self.last_day();
        (0..CHART_DAYS)
            .rev()
            .map(|back| {
                let day = last - Days::new(back);
                (day, self.history_of(day))
            })
            .collect()
    }
}

/// Longest example [`shorten_example`] returns, in characters (`…` included).
pub const EXAMPLE_CHARS: usize = 160;

/// Hex runs at least this long are identifiers (user ids are 32 hex digits) and get masked.
const HEX_RUN_MASKED: usize = 16;
/// What is kept of a masked hex run: enough to tell two ids apart at a glance.
const HEX_RUN_KEPT: usize = 6;

/// A quarantined record's text made fit for an e-mail: every http(s) URL becomes
/// `scheme://host/…`, every run of 16+ hex digits keeps its first 6 and gets `…`, control
/// characters and whitespace runs become one space, and the result is cut to
/// [`EXAMPLE_CHARS`] characters ending in `…`. A mail goes to people who need the shape of
/// the problem, not learners' ids or the LMS's callback URLs.
pub fn shorten_example(text: &str) -> String {
    let masked = mask_hex_runs(&mask_urls(text));
    let mut collapsed = String::with_capacity(masked.len());
    for word in masked
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    if collapsed.chars().count() <= EXAMPLE_CHARS {
        return collapsed;
    }
    let kept: String = collapsed.chars().take(EXAMPLE_CHARS - 1).collect();
    format!("{}…", kept.trim_end())
}

/// `https://user@lms.example.org:8443/courses/x?y#z` → `https://lms.example.org:8443/…`.
/// One pass over the text, so a record full of `://` costs no more than its length.
fn mask_urls(text: &str) -> String {
    // ASCII lowering keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // text[..copied] is already in `out`
    let mut search = 0;
    while let Some(i) = lower[search..].find("://") {
        let colon = search + i;
        search = colon + "://".len();
        let Some(scheme) = ["https", "http"].into_iter().find(|scheme| {
            colon
                .checked_sub(scheme.len())
                .filter(|&start| start >= copied)
                // Equal to an ASCII word, so `start` is a char boundary.
                .filter(|&start| lower.get(start..colon) == Some(*scheme))
                .is_some_and(|start| {
                    text[..start]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !c.is_ascii_alphanumeric())
                })
        }) else {
            continue;
        };
        let start = colon - scheme.len();
        let tail = &text[search..];
        let url_len = tail
            .find(|c: char| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\' | '{' | '}' | '|')
            })
            .unwrap_or(tail.len());
        // Punctuation that ends a sentence or a bracket belongs to the text, not the URL.
        let url = tail[..url_len].trim_end_matches(['.', ',', ';', ':', ')', ']', '!', '?']);
        let authority = url.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        out.push_str(&text[copied..start]);
        out.push_str(scheme);
        out.push_str("://");
        if !host.is_empty() {
            out.push_str(host);
            out.push('/');
        }
        out.push('…');
        copied = search + url.len();
        search = copied;
    }
    out.push_str(&text[copied..]);
    out
}

/// Every maximal run of at least [`HEX_RUN_MASKED`] ASCII hex digits → its first
/// [`HEX_RUN_KEPT`] digits and `…`.
fn mask_hex_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= HEX_RUN_MASKED {
            out.push_str(&run[..HEX_RUN_KEPT]);
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "3f4a9b8c7d6e5f4a3b2c1d0e9f8a7b6c";
    const COURSE_RUN: &str = "9c1e0d2f3a4b5c6d7e8f90a1b2c3d4e5";

    #[test]
    fn a_validation_reason_stays_readable() {
        let reason = "record 3: field `created_at`: expected a timestamp \
                      YYYY-MM-DD HH:MM:SS[.ffffff], found \"2026-11-24T10:00:00Z\"";
        assert_eq!(shorten_example(reason), reason);
    }

    #[test]
    fn a_conflict_reason_loses_its_ids_and_url_path() {
        let reason = format!(
            "record 12: conflict: sourcedid \
             'course-v1:SF+DST+1:lms.skillfactory.ru-{USER}:{COURSE_RUN}' vs \
             'https://lms.skillfactory.ru/courses/course-v1:SF+DST+1/xblock/block-v1:{COURSE_RUN}/handler/grade'"
        );
        let short = shorten_example(&reason);
        assert_eq!(
            short,
            "record 12: conflict: sourcedid \
             'course-v1:SF+DST+1:lms.skillfactory.ru-3f4a9b…:9c1e0d…' vs \
             'https://lms.skillfactory.ru/…'"
        );
        assert!(
            !short.contains(USER) && !short.contains(COURSE_RUN) && !short.contains("/courses")
        );
        assert!(short.chars().count() <= EXAMPLE_CHARS);
    }

    #[test]
    fn a_raw_record_is_masked_collapsed_and_cut_to_160_chars() {
        let raw = format!(
            "{{\"lti_user_id\": \"{USER}\",\n\t\"passback_params\": \"{{'oauth_consumer_key': '', \
             'lis_result_sourcedid': 'course-v1:SF+DST+1:lms.skillfactory.ru-{USER}:{COURSE_RUN}', \
             'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/x/handler_noauth/grade'}}\", \
             \"is_correct\": null, \"attempt_type\": \"run\", \"created_at\": \"2026-11-24 10:00:00\"}}"
        );
        let short = shorten_example(&raw);
        assert_eq!(short.chars().count(), EXAMPLE_CHARS);
        assert!(short.ends_with('…'), "{short}");
        assert!(
            short.starts_with(
                "{\"lti_user_id\": \"3f4a9b…\", \"passback_params\": \"{'oauth_consumer_key'"
            ),
            "{short}"
        );
        assert!(!short.contains(USER) && !short.contains('\n') && !short.contains('\t'));
        assert!(!short.contains("  "), "whitespace collapsed: {short}");
    }

    #[test]
    fn urls_keep_scheme_and_host_only() {
        assert_eq!(
            shorten_example("see HTTPS://user:pw@LMS.example.org:8443/a/b?token=1#f, then"),
            "see https://LMS.example.org:8443/…, then"
        );
        assert_eq!(
            shorten_example("(http://h.example/x) and http://h2.example"),
            "(http://h.example/…) and http://h2.example/…"
        );
        assert_eq!(shorten_example("bare https:// here"), "bare https://… here");
        assert_eq!(
            shorten_example("xhttp://not-a-url.example/p is left"),
            "xhttp://not-a-url.example/p is left"
        );
    }

    #[test]
    fn only_runs_of_16_or_more_hex_digits_are_masked() {
        assert_eq!(shorten_example("abcdef0123456789"), "abcdef…");
        assert_eq!(shorten_example("abcdef012345678"), "abcdef012345678");
        assert_eq!(
            shorten_example("id=ABCDEF0123456789abcdef; n=1234567890123456789"),
            "id=ABCDEF…; n=123456…"
        );
        // A UUID's groups are shorter than 16 digits each.
        assert_eq!(
            shorten_example("3f4a9b8c-7d6e-5f4a-3b2c-1d0e9f8a7b6c"),
            "3f4a9b8c-7d6e-5f4a-3b2c-1d0e9f8a7b6c"
        );
    }

    #[test]
    fn the_cut_falls_on_a_char_boundary() {
        let text = "ж".repeat(400);
        let short = shorten_example(&text);
        assert_eq!(short.chars().count(), EXAMPLE_CHARS);
        assert_eq!(short, format!("{}…", "ж".repeat(EXAMPLE_CHARS - 1)));
        assert_eq!(
            shorten_example(&"x".repeat(EXAMPLE_CHARS)),
            "x".repeat(EXAMPLE_CHARS)
        );
    }

    #[test]
    fn empty_and_blank_text_stay_empty() {
        assert_eq!(shorten_example(""), "");
        assert_eq!(shorten_example(" \n\t\u{1b} "), "");
        assert_eq!(shorten_example("a\u{1b}[31mb"), "a [31mb");
    }
}
