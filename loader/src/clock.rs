//! The loader's idea of "now": the system clock, or for tests a clock that starts at a given
//! instant and runs at real speed (`--now`), so lag and late-arrival tests take seconds.

use std::time::Instant;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// (the instant the clock read at `started`, when that was); `None` = the system clock.
    offset: Option<(DateTime<Utc>, Instant)>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { offset: None }
    }

    /// A clock that reads `at` now and advances with real time from here.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock {
            offset: Some((at, Instant::now())),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.offset {
            None => Utc::now(),
            Some((at, started)) => {
                at + chrono::Duration::from_std(started.elapsed()).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_starts_where_told_and_runs_forward() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::starting_at(at);
        let first = clock.now();
        assert!(first >= at && first - at < chrono::Duration::seconds(5));
        assert!(clock.now() >= first);
        assert!(Clock::system().now() > at);
    }
}
