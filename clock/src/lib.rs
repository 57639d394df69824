//! "Now" for the loader and the demo API: the real clock, or one that starts at `--now` and
//! then runs in real time, so a test can put both at a fixed moment (settle lag, late
//! records) and still watch time pass.

use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};

/// A start instant and the monotonic moment it was taken; `now` is the start plus the time
/// elapsed since. Monotonic, so a later request never sees an earlier "now" (the same
/// request at a later clock returns a superset), even if the system clock is set back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    /// Follows the real clock from now on.
    pub fn system() -> Clock {
        Clock::starting_at(Utc::now())
    }

    /// Reads `start` now, then advances in real time.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock {
            start,
            started: Instant::now(),
        }
    }

    /// The instant the clock was started at.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.started.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
        self.start
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// `now` in microseconds since 1970-01-01 00:00:00 UTC.
    pub fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// `--now`: `YYYY-MM-DD HH:MM:SS[.ffffff]` read as UTC, or RFC 3339 with an offset
/// (`2026-11-20T13:00:00+03:00`, `2026-11-20 10:00:00Z`).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| {
            format!(
                "expected YYYY-MM-DD HH:MM:SS[.ffffff] (UTC) or RFC 3339 with an offset \
                 (e.g. 2026-11-20T13:00:00+03:00), found {text:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
    }

    #[test]
    fn now_accepts_naive_utc_and_rfc3339_with_an_offset() {
        assert_eq!(
            parse_instant("2026-11-20 10:00:00"),
            Ok(utc("2026-11-20 10:00:00"))
        );
        assert_eq!(
            parse_instant("2026-11-20 10:00:00.123456"),
            Ok(utc("2026-11-20 10:00:00.123456"))
        );
        assert_eq!(
            parse_instant("2026-11-20T13:00:00+03:00"),
            Ok(utc("2026-11-20 10:00:00"))
        );
        assert_eq!(
            parse_instant("2026-11-20 10:00:00.5Z"),
            Ok(utc("2026-11-20 10:00:00.5"))
        );
        assert_eq!(
            parse_instant("2026-10-25T02:30:00-01:00"),
            Ok(utc("2026-10-25 03:30:00"))
        );
        for bad in [
            "",
            "now",
            "2026-11-20",
            "2026-11-20T10:00:00",
            "2026-13-01 00:00:00",
        ] {
            let err = parse_instant(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_clock_starts_at_its_instant_and_runs_in_real_time() {
        let start = utc("2026-11-20 10:00:00");
        let clock = Clock::starting_at(start);
        let first = clock.now();
        assert!(first >= start && first < start + chrono::Duration::seconds(5));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let later = clock.now();
        assert!(later - first >= chrono::Duration::milliseconds(30));
        assert_eq!(clock.start(), start);
        assert!(clock.now_micros() >= later.timestamp_micros());
    }

    #[test]
    fn the_system_clock_is_close_to_the_real_time() {
        let clock = Clock::system();
        let gap = (Utc::now() - clock.now()).num_milliseconds().abs();
        assert!(gap < 1_000, "{gap} ms");
    }
}
