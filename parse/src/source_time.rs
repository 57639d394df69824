//! The API's naive timestamps as instants: read in the source's IANA time zone, with one
//! rule for the hours a daylight-saving change repeats or skips, shared by the loader's
//! windows and the extension's `created_at`.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

pub use chrono_tz;

/// The instant a naive source time stands for. A time the autumn change repeats maps to the
/// earlier of its two instants; a time the spring change skips maps to the instant of the
/// change itself. The mapping never goes backwards: a later naive time is never an earlier
/// instant, so windows built from it neither overlap wrongly nor leave holes.
pub fn to_instant(zone: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => change_instant(zone, naive),
    }
}

/// For a naive time in a gap: the first instant whose local time is at or after it, which
/// is the instant the clocks jumped. Found by bisection between the two readings of the
/// time with the offsets a day before and a day after (local time only jumps forward there).
fn change_instant(zone: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let offset_at =
        |t: NaiveDateTime| i64::from(zone.offset_from_utc_datetime(&t).fix().local_minus_utc());
    let read_with = |offset: i64| (naive - Duration::seconds(offset)).and_utc();
    let (lo, hi) = {
        let a = read_with(offset_at(naive - Duration::days(1)));
        let b = read_with(offset_at(naive + Duration::days(1)));
        (a.min(b), a.max(b))
    };
    // Invariant: local(lo) < naive <= local(hi), in whole seconds (zone changes fall on
    // whole seconds).
    let (mut lo, mut hi) = (lo.timestamp() - 1, hi.timestamp());
    let local = |secs: i64| DateTime::from_timestamp(secs, 0).map_or(naive, |t| to_naive(zone, t));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local(mid) >= naive {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or_else(|| naive.and_utc())
}

/// The naive source time of an instant (always one answer).
pub fn to_naive(zone: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&zone).naive_local()
}

/// Reads an IANA zone name (`UTC`, `Europe/Moscow`), naming the value when it is not one.
pub fn parse_zone(name: &str) -> Result<Tz, UnknownZone> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| UnknownZone(name.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?}: expected an IANA name such as UTC or Europe/Moscow")]
pub struct UnknownZone(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        naive(s).and_utc()
    }

    #[test]
    fn reads_an_ordinary_time_with_its_offset() {
        let moscow = parse_zone("Europe/Moscow").unwrap();
        assert_eq!(
            to_instant(moscow, naive("2026-11-24 03:00:00")),
            utc("2026-11-24 00:00:00")
        );
        assert_eq!(
            to_naive(moscow, utc("2026-11-24 00:00:00")),
            naive("2026-11-24 03:00:00")
        );
    }

    #[test]
    fn a_repeated_autumn_time_is_the_earlier_instant() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
        let berlin = parse_zone("Europe/Berlin").unwrap();
        assert_eq!(
            to_instant(berlin, naive("2026-10-25 02:30:00")),
            utc("2026-10-25 00:30:00")
        );
        // Both instants of that hour read back as the same naive time.
        assert_eq!(
            to_naive(berlin, utc("2026-10-25 01:30:00")),
            naive("2026-10-25 02:30:00")
        );
    }

    #[test]
    fn a_skipped_spring_time_is_the_instant_of_the_change() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let berlin = parse_zone("Europe/Berlin").unwrap();
        let t = to_instant(berlin, naive("2026-03-29 02:30:00"));
        assert_eq!(t, utc("2026-03-29 01:00:00"));
        assert_eq!(t, to_instant(berlin, naive("2026-03-29 03:00:00")));
        assert!(t > to_instant(berlin, naive("2026-03-29 01:59:59")));
    }

    #[test]
    fn instants_never_go_backwards_across_a_change() {
        let berlin = parse_zone("Europe/Berlin").unwrap();
        for day in ["2026-03-29", "2026-10-25"] {
            let mut last = None;
            let start = naive(&format!("{day} 00:00:00"));
            for minute in 0..(6 * 60) {
                let t = to_instant(berlin, start + Duration::minutes(minute));
                if let Some(previous) = last {
                    assert!(t >= previous, "{day} +{minute} min went back");
                }
                last = Some(t);
            }
        }
    }

    #[test]
    fn unknown_zones_are_named() {
        assert_eq!(
            parse_zone("Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone \"Mars/Olympus\": expected an IANA name such as UTC or Europe/Moscow"
        );
        assert_eq!(parse_zone(" UTC ").unwrap(), Tz::UTC);
    }
}
