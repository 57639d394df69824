//! Time windows as instants: reading `--start`/`--end` (naive times of the source's zone),
//! choosing the window a run loads (never past now − settle lag, re-reading an overlap before
//! the watermark), splitting it into chunks, and the naive bounds the API is asked for.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use lms_etl_parse::source_time::{self, chrono_tz::Tz};

/// The API's timestamp format for `start`/`end` and `created_at`.
pub const API_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A half-open interval [start, end) of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("{flag}: cannot read {value:?} as a date (YYYY-MM-DD) or timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])")]
    BadTime { flag: &'static str, value: String },
    #[error("--start ({start}) must be before --end ({end})")]
    Empty {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// Reads a date (midnight) or a timestamp, as the API accepts them; `T` may separate.
pub fn parse_time(flag: &'static str, value: &str) -> Result<NaiveDateTime, WindowError> {
    let v = value.trim();
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Ok(t);
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN))
        .map_err(|_| WindowError::BadTime {
            flag,
            value: value.to_owned(),
        })
}

/// How a run chooses its window.
#[derive(Debug, Clone, Copy)]
pub struct WindowRules {
    /// No run loads past now − settle_lag: the source may still be recording that time.
    pub settle_lag: Duration,
    /// An incremental run re-reads this much before the watermark, for late-visible records.
    pub overlap: Duration,
    /// Length of the very first incremental run's window.
    pub first_run_lookback: Duration,
}

/// The window a run loads, and what the operator asked for when it was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `None`: nothing is settled yet past the start (nothing to do).
    pub window: Option<Window>,
    /// The requested `--end`, when it lay past now − settle lag and was clamped.
    pub requested_end: Option<DateTime<Utc>>,
    /// now − settle lag: the latest instant any run may load.
    pub limit: DateTime<Utc>,
}

/// Chooses the window: `--start`/`--end` if given (the end clamped to now − lag); otherwise
/// from the watermark minus the overlap (first run: `first_run_lookback` before the limit).
pub fn plan(
    rules: &WindowRules,
    now: DateTime<Utc>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    watermark: Option<DateTime<Utc>>,
) -> Plan {
    // Whole minutes: windows and the watermark stay readable, and a clock that reads
    // 11:45:00.013 loads no sliver that the next run must re-read anyway.
    let limit = floor_to_minute(now - rules.settle_lag);
    let requested_end = end.filter(|e| *e > limit);
    let end = end.map_or(limit, |e| e.min(limit));
    let start = start.unwrap_or_else(|| match watermark {
        Some(w) => w.min(limit) - rules.overlap,
        None => end - rules.first_run_lookback,
    });
    Plan {
        window: Window::new(start, end).ok(),
        requested_end,
        limit,
    }
}

fn floor_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap_or(t)
}

impl Window {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Window, WindowError> {
        if start < end {
            Ok(Window { start, end })
        } else {
            Err(WindowError::Empty { start, end })
        }
    }

    /// Consecutive chunks of at most `size`, covering the window exactly. Boundaries are
    /// aligned to multiples of `size` since midnight UTC, so re-runs reuse the same chunks
    /// and a daylight-saving change of the source zone cannot stretch or fold one.
    pub fn chunks(&self, size: Duration) -> Vec<Window> {
        let size_us = size.num_microseconds().unwrap_or(i64::MAX).max(1);
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let midnight = start.date_naive().and_time(NaiveTime::MIN).and_utc();
            let steps = (start - midnight).num_microseconds().unwrap_or(0) / size_us;
            let aligned_end = midnight + Duration::microseconds(size_us.saturating_mul(steps + 1));
            let end = aligned_end.min(self.end);
            out.push(Window { start, end });
            start = end;
        }
        out
    }

    /// The first and last calendar day of `zone` with an instant in the window.
    pub fn days_in(&self, zone: Tz) -> (NaiveDate, NaiveDate) {
        let day = |t: DateTime<Utc>| source_time::to_naive(zone, t).date();
        (day(self.start), day(self.end - Duration::microseconds(1)))
    }

    /// The window's bounds as the API reads them: naive times of the source zone; `None`
    /// when they are empty or inverted, which happens only to a chunk shorter than an autumn
    /// change's fold that straddles it. Nothing is lost then: the naive times it would cover
    /// are those of the repeated hour, which the chunks of its other pass ask for (the
    /// naive bounds of consecutive chunks meet, so their upward runs cover every naive time
    /// of the window), and the key absorbs records fetched twice.
    pub fn api_bounds(&self, zone: Tz) -> Option<(String, String)> {
        let (start, end) = (
            source_time::to_naive(zone, self.start),
            source_time::to_naive(zone, self.end),
        );
        (start < end).then(|| {
            (
                start.format(API_TIME_FORMAT).to_string(),
                end.format(API_TIME_FORMAT).to_string(),
            )
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S%.fZ").to_string();
        write!(f, "[{}, {})", show(&self.start), show(&self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time("--start", s).unwrap().and_utc()
    }

    fn rules() -> WindowRules {
        WindowRules {
            settle_lag: Duration::minutes(15),
            overlap: Duration::minutes(60),
            first_run_lookback: Duration::hours(24),
        }
    }

    #[test]
    fn parses_dates_and_timestamps() {
        assert_eq!(
            parse_time("--start", "2026-11-24").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_time(NaiveTime::MIN)
        );
        assert_eq!(
            parse_time("--start", "2026-11-24 10:11:12.5")
                .unwrap()
                .to_string(),
            "2026-11-24 10:11:12.500"
        );
        assert_eq!(
            parse_time("--end", "tomorrow"),
            Err(WindowError::BadTime {
                flag: "--end",
                value: "tomorrow".into()
            })
        );
    }

    #[test]
    fn an_end_past_the_settle_lag_is_clamped_and_remembered() {
        let now = t("2026-11-24 12:00");
        let p = plan(
            &rules(),
            now,
            Some(t("2026-11-23")),
            Some(t("2026-11-25")),
            None,
        );
        assert_eq!(p.limit, t("2026-11-24 11:45"));
        assert_eq!(p.requested_end, Some(t("2026-11-25")));
        assert_eq!(
            p.window,
            Some(Window {
                start: t("2026-11-23"),
                end: t("2026-11-24 11:45")
            })
        );
        // An end inside the limit is kept as asked.
        let p = plan(
            &rules(),
            now,
            Some(t("2026-11-23")),
            Some(t("2026-11-24")),
            None,
        );
        assert_eq!(
            (p.requested_end, p.window.unwrap().end),
            (None, t("2026-11-24"))
        );
        // A window wholly in the unsettled future is nothing to do.
        let p = plan(
            &rules(),
            now,
            Some(t("2026-11-24 11:50")),
            Some(t("2026-11-25")),
            None,
        );
        assert_eq!(p.window, None);
    }

    #[test]
    fn the_limit_is_a_whole_minute() {
        let p = plan(&rules(), t("2026-11-24 12:00:59.999"), None, None, None);
        assert_eq!(p.limit, t("2026-11-24 11:45"));
    }

    #[test]
    fn an_incremental_run_re_reads_the_overlap_and_stops_at_the_lag() {
        let now = t("2026-11-24 12:00");
        let p = plan(&rules(), now, None, None, Some(t("2026-11-24 10:47")));
        assert_eq!(
            p.window,
            Some(Window {
                start: t("2026-11-24 09:47"),
                end: t("2026-11-24 11:45")
            })
        );
        // The first run looks back from the limit.
        let p = plan(&rules(), now, None, None, None);
        assert_eq!(p.window.unwrap().start, t("2026-11-23 11:45"));
        // A watermark past the limit (set by an older release) never pushes the start past it.
        let p = plan(&rules(), now, None, None, Some(t("2026-11-25")));
        assert_eq!(p.window.unwrap().start, t("2026-11-24 10:45"));
    }

    #[test]
    fn chunks_cover_the_window_on_aligned_utc_boundaries() {
        let w = Window::new(t("2026-11-24 10:30"), t("2026-11-24 13:00")).unwrap();
        let bounds: Vec<String> = w
            .chunks(Duration::hours(1))
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            bounds,
            [
                "[2026-11-24 10:30:00Z, 2026-11-24 11:00:00Z)",
                "[2026-11-24 11:00:00Z, 2026-11-24 12:00:00Z)",
                "[2026-11-24 12:00:00Z, 2026-11-24 13:00:00Z)"
            ]
        );
        let multi_day = Window::new(t("2026-11-22"), t("2026-11-25")).unwrap();
        assert_eq!(multi_day.chunks(Duration::hours(6)).len(), 12);
        assert_eq!(multi_day.chunks(Duration::days(7)).len(), 1);
    }

    #[test]
    fn the_api_is_asked_in_naive_source_time_and_an_autumn_hour_twice() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25 00:00Z-02:00Z is 02:00-03:00 local twice (CEST, then CET).
        let w = Window::new(t("2026-10-25 00:00"), t("2026-10-25 02:00")).unwrap();
        let asked: Vec<Option<(String, String)>> = w
            .chunks(Duration::hours(1))
            .iter()
            .map(|c| c.api_bounds(berlin))
            .collect();
        // The first chunk's naive bounds meet (02:00 CEST to 02:00 CET): nothing to ask;
        // the second asks for the naive hour that holds both passes.
        assert_eq!(
            asked,
            [
                None,
                Some((
                    "2026-10-25 02:00:00.000000".to_owned(),
                    "2026-10-25 03:00:00.000000".to_owned()
                )),
            ]
        );
    }

    #[test]
    fn days_are_those_of_the_report_zone() {
        let moscow: Tz = "Europe/Moscow".parse().unwrap();
        let w = Window::new(t("2026-11-23 22:00"), t("2026-11-25")).unwrap();
        assert_eq!(
            w.days_in(Tz::UTC),
            (
                NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
            )
        );
        assert_eq!(
            w.days_in(moscow),
            (
                NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
            )
        );
    }

    #[test]
    fn an_empty_window_is_an_error() {
        assert!(Window::new(t("2026-11-24"), t("2026-11-24")).is_err());
    }
}
