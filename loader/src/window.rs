//! Time windows in the API's own (naive) time: parsing `--start`/`--end`, splitting a
//! window into chunks, and the calendar days a window touches.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

/// The API's timestamp format for `start`/`end` and `created_at`.
pub const API_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A half-open interval [start, end) of source-time-zone naive timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("{flag}: cannot read {value:?} as a date (YYYY-MM-DD) or timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])")]
    BadTime { flag: &'static str, value: String },
    #[error("--start ({start}) must be before --end ({end})")]
    Empty {
        start: NaiveDateTime,
        end: NaiveDateTime,
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

impl Window {
    pub fn new(start: NaiveDateTime, end: NaiveDateTime) -> Result<Window, WindowError> {
        if start < end {
            Ok(Window { start, end })
        } else {
            Err(WindowError::Empty { start, end })
        }
    }

    /// Consecutive chunks of at most `size`, covering the window exactly. Boundaries are
    /// aligned to multiples of `size` since midnight so that re-runs reuse the same chunks.
    pub fn chunks(&self, size: Duration) -> Vec<Window> {
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let midnight = start.date().and_time(NaiveTime::MIN);
            let since = start - midnight;
            let steps = since.num_microseconds().unwrap_or(0)
                / size.num_microseconds().unwrap_or(i64::MAX).max(1);
            let aligned_end = midnight + size * (steps as i32 + 1);
            let end = aligned_end.min(self.end);
            out.push(Window { start, end });
            start = end;
        }
        out
    }

    /// Every calendar day with at least one instant in the window, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        let last = (self.end - Duration::microseconds(1)).date();
        self.start
            .date()
            .iter_days()
            .take_while(|d| *d <= last)
            .collect()
    }

    pub fn api_start(&self) -> String {
        self.start.format(API_TIME_FORMAT).to_string()
    }

    pub fn api_end(&self) -> String {
        self.end.format(API_TIME_FORMAT).to_string()
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.format("%Y-%m-%d %H:%M:%S%.f"),
            self.end.format("%Y-%m-%d %H:%M:%S%.f")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_time("--start", s).unwrap()
    }

    #[test]
    fn parses_dates_and_timestamps() {
        assert_eq!(
            t("2026-11-24"),
            NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_time(NaiveTime::MIN)
        );
        assert_eq!(
            t("2026-11-24 10:11:12.5").to_string(),
            "2026-11-24 10:11:12.500"
        );
        assert_eq!(t("2026-11-24T10:11").to_string(), "2026-11-24 10:11:00");
        assert_eq!(
            parse_time("--end", "tomorrow"),
            Err(WindowError::BadTime {
                flag: "--end",
                value: "tomorrow".into()
            })
        );
    }

    #[test]
    fn chunks_cover_the_window_on_aligned_boundaries() {
        let w = Window::new(t("2026-11-24 10:30"), t("2026-11-24 13:00")).unwrap();
        let c = w.chunks(Duration::hours(1));
        let bounds: Vec<String> = c.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            bounds,
            [
                "[2026-11-24 10:30:00, 2026-11-24 11:00:00)",
                "[2026-11-24 11:00:00, 2026-11-24 12:00:00)",
                "[2026-11-24 12:00:00, 2026-11-24 13:00:00)"
            ]
        );
        let multi_day = Window::new(t("2026-11-22"), t("2026-11-25")).unwrap();
        assert_eq!(multi_day.chunks(Duration::hours(6)).len(), 12);
        assert_eq!(multi_day.chunks(Duration::days(7)).len(), 1);
    }

    #[test]
    fn days_touched_exclude_the_end_instant() {
        let w = Window::new(t("2026-11-23 22:00"), t("2026-11-25")).unwrap();
        assert_eq!(
            w.days(),
            [
                NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
            ]
        );
    }

    #[test]
    fn an_empty_window_is_an_error() {
        assert!(Window::new(t("2026-11-24"), t("2026-11-24")).is_err());
    }

    #[test]
    fn formats_for_the_api() {
        let w = Window::new(t("2026-11-24"), t("2026-11-24 01:00")).unwrap();
        assert_eq!(
            (w.api_start(), w.api_end()),
            (
                "2026-11-24 00:00:00.000000".into(),
                "2026-11-24 01:00:00.000000".into()
            )
        );
    }
}
