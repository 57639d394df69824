//! Which records one answer holds, as a real server with a naive timestamp column decides it:
//! naive local `created_at` (in `--timezone`) in the naive [start, end), and visible at the clock.

use std::ops::Range;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Offset as _, TimeZone as _};
use chrono_tz::Tz;

use super::generator::{DataSet, Record, BUCKET_MICROS};

const HOUR_MICROS: i64 = 3_600_000_000;
/// Real UTC offsets lie within ±14 h; the instants whose local time can be near a naive
/// bound lie within this distance of it.
const NEAR_MICROS: i64 = 27 * HOUR_MICROS;

/// The records of one answer: a naive window in a zone, at one moment of the clock.
#[derive(Debug, Clone)]
pub struct Selection {
    zone: Tz,
    /// The naive window [start, end), as microseconds of the naive time read as if UTC.
    start: i64,
    end: i64,
    /// The clock's now, an instant (microseconds since the epoch, UTC).
    now: i64,
    /// The instants that can hold a selected record; a superset, the filter decides.
    scan: Range<i64>,
}

impl Selection {
    /// The records whose naive local `created_at` is in [start, end) and whose `visible_at`
    /// is at or before `now` (an instant in microseconds).
    pub fn new(zone: Tz, start: NaiveDateTime, end: NaiveDateTime, now: i64) -> Self {
        Selection::from_naive_micros(zone, naive_micros(start), naive_micros(end), now)
    }

    /// As `new`, with the naive bounds as microseconds of the naive time read as if UTC.
    pub fn from_naive_micros(zone: Tz, start: i64, end: i64, now: i64) -> Self {
        let scan = if start >= end {
            0..0
        } else {
            // u + offset(u) >= start needs u >= start - offset(u) >= start - (largest
            // offset near start); u + offset(u) < end needs u < end - (smallest near end).
            // Around a DST change this scans the hour of both passes; elsewhere nothing extra.
            let (_, largest) = offsets_near(zone, start);
            let (smallest, _) = offsets_near(zone, end);
            let lo = start.saturating_sub(largest);
            // Nothing created after `now` is visible yet: a window into the future costs
            // no more than one that ends now.
            let hi = end.saturating_sub(smallest).min(now.saturating_add(1));
            lo..hi.max(lo)
        };
        Selection {
            zone,
            start,
            end,
            now,
            scan,
        }
    }

    /// The generator's buckets to read.
    pub fn buckets(&self) -> Range<i64> {
        DataSet::buckets(self.scan.start, self.scan.end)
    }

    /// The zone's offset (microseconds) over the whole bucket, or `None` if it changes
    /// inside it; then each record looks its own up.
    pub fn bucket_offset(&self, bucket: i64) -> Option<i64> {
        let first = bucket.saturating_mul(BUCKET_MICROS);
        let last = first.saturating_add(BUCKET_MICROS - 1);
        let offset = offset_micros(self.zone, first);
        (offset == offset_micros(self.zone, last)).then_some(offset)
    }

    /// The naive local `created_at` (microseconds) of a record of `bucket` if the answer
    /// holds it; `bucket_offset` is what [`Selection::bucket_offset`] said for the bucket.
    pub fn local_created_at(&self, r: &Record, bucket_offset: Option<i64>) -> Option<i64> {
        if r.visible_at > self.now {
            return None;
        }
        let offset = bucket_offset.unwrap_or_else(|| offset_micros(self.zone, r.created_at));
        let local = r.created_at.saturating_add(offset);
        (self.start..self.end).contains(&local).then_some(local)
    }
}

/// The generator's buckets whose first instant falls on `day` in `zone` (in order): a
/// calendar day there, 23 or 25 hours long across a DST change.
pub fn local_day_buckets(zone: Tz, day: NaiveDate) -> Vec<i64> {
    let start = naive_micros(day.and_time(NaiveTime::MIN));
    let end = start + 24 * HOUR_MICROS;
    // Instants whose local time can be on that day lie within NEAR_MICROS of its bounds.
    DataSet::buckets(start - NEAR_MICROS, end + NEAR_MICROS)
        .filter(|&bucket| {
            let first = bucket * BUCKET_MICROS;
            (start..end).contains(&(first + offset_micros(zone, first)))
        })
        .collect()
}

/// A naive time as microseconds since 1970-01-01 00:00:00 of the same calendar.
pub fn naive_micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// The zone's UTC offset at an instant, in microseconds; 0 beyond chrono's range.
pub fn offset_micros(zone: Tz, instant: i64) -> i64 {
    DateTime::from_timestamp_micros(instant).map_or(0, |t| {
        let seconds = zone
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc();
        i64::from(seconds) * 1_000_000
    })
}

/// The smallest and largest offsets at instants within `NEAR_MICROS` of `naive` (read as
/// if UTC), sampled hourly: no zone keeps an offset for less than an hour.
fn offsets_near(zone: Tz, naive: i64) -> (i64, i64) {
    let mut range: Option<(i64, i64)> = None;
    let mut at = naive.saturating_sub(NEAR_MICROS);
    let last = naive.saturating_add(NEAR_MICROS);
    while at <= last {
        let offset = offset_micros(zone, at);
        range = Some(match range {
            None => (offset, offset),
            Some((lo, hi)) => (lo.min(offset), hi.max(offset)),
        });
        match at.checked_add(HOUR_MICROS) {
            Some(next) => at = next,
            None => break,
        }
    }
    range.unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn naive(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn instant(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        naive_micros(naive(y, m, d, h, min))
    }

    #[test]
    fn offsets_follow_the_zone_and_its_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let moscow: Tz = "Europe/Moscow".parse().unwrap();
        assert_eq!(offset_micros(Tz::UTC, instant(2026, 7, 1, 0, 0)), 0);
        assert_eq!(
            offset_micros(moscow, instant(2026, 7, 1, 0, 0)),
            3 * HOUR_MICROS
        );
        assert_eq!(
            offset_micros(moscow, instant(2026, 1, 1, 0, 0)),
            3 * HOUR_MICROS
        );
        // CEST until 2026-10-25 01:00 UTC, CET from then on.
        let change = instant(2026, 10, 25, 1, 0);
        assert_eq!(offset_micros(berlin, change - 1), 2 * HOUR_MICROS);
        assert_eq!(offset_micros(berlin, change), HOUR_MICROS);
    }

    #[test]
    fn the_scan_covers_both_passes_of_the_repeated_hour_and_nothing_more_elsewhere() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let far = i64::MAX;
        let autumn = Selection::new(
            berlin,
            naive(2026, 10, 25, 2, 0),
            naive(2026, 10, 25, 3, 0),
            far,
        );
        // 02:00 CEST = 00:00 UTC; 03:00 CET = 02:00 UTC.
        assert_eq!(
            autumn.scan,
            instant(2026, 10, 25, 0, 0)..instant(2026, 10, 25, 2, 0)
        );
        let plain = Selection::new(
            berlin,
            naive(2026, 11, 20, 10, 0),
            naive(2026, 11, 20, 11, 0),
            far,
        );
        assert_eq!(
            plain.scan,
            instant(2026, 11, 20, 9, 0)..instant(2026, 11, 20, 10, 0)
        );
        assert_eq!(plain.buckets().count(), 60);
    }

    #[test]
    fn the_scan_stops_at_the_clock() {
        let now = instant(2026, 11, 20, 10, 30);
        let s = Selection::new(
            Tz::UTC,
            naive(2026, 11, 20, 10, 0),
            naive(2030, 1, 1, 0, 0),
            now,
        );
        assert_eq!(s.scan, instant(2026, 11, 20, 10, 0)..now + 1);
        let future = Selection::new(
            Tz::UTC,
            naive(2026, 12, 1, 0, 0),
            naive(2026, 12, 2, 0, 0),
            now,
        );
        assert!(future.buckets().is_empty());
    }

    #[test]
    fn a_record_is_selected_by_its_local_time_and_its_visibility() {
        let moscow: Tz = "Europe/Moscow".parse().unwrap();
        let created_at = instant(2026, 11, 20, 10, 0) + 17;
        let record = Record {
            created_at,
            visible_at: created_at + 30 * 60_000_000,
            user: 0,
            course: 0,
            block: 0,
            kind: crate::generator::AttemptKind::Run,
            has_outcome_url: true,
            malformation: None,
        };
        let window = |now| {
            Selection::new(
                moscow,
                naive(2026, 11, 20, 13, 0),
                naive(2026, 11, 20, 14, 0),
                now,
            )
        };
        let bucket = created_at.div_euclid(BUCKET_MICROS);
        let on_time = window(record.visible_at);
        let offset = on_time.bucket_offset(bucket);
        assert_eq!(offset, Some(3 * HOUR_MICROS));
        assert_eq!(
            on_time.local_created_at(&record, offset),
            Some(instant(2026, 11, 20, 13, 0) + 17)
        );
        assert_eq!(
            on_time.local_created_at(&record, None),
            Some(instant(2026, 11, 20, 13, 0) + 17)
        );
        assert_eq!(
            window(record.visible_at - 1).local_created_at(&record, offset),
            None
        );
        let utc_hour = Selection::new(
            Tz::UTC,
            naive(2026, 11, 20, 13, 0),
            naive(2026, 11, 20, 14, 0),
            i64::MAX,
        );
        assert_eq!(utc_hour.local_created_at(&record, Some(0)), None);
    }

    #[test]
    fn a_bucket_holding_an_offset_change_has_no_single_offset() {
        // Today's changes fall on a bucket edge.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Selection::new(
            berlin,
            naive(2026, 10, 25, 0, 0),
            naive(2026, 10, 26, 0, 0),
            i64::MAX,
        );
        let change = instant(2026, 10, 25, 1, 0) / BUCKET_MICROS;
        assert_eq!(s.bucket_offset(change - 1), Some(2 * HOUR_MICROS));
        assert_eq!(s.bucket_offset(change), Some(HOUR_MICROS));
        // Berlin left local mean time (+00:53:28) at 1893-03-31 23:06:32 UTC: mid-bucket.
        let lmt_end = Selection::new(
            berlin,
            naive(1893, 3, 31, 0, 0),
            naive(1893, 4, 2, 0, 0),
            i64::MAX,
        );
        let lmt_change = naive_micros(naive(1893, 3, 31, 23, 6)) + 32_000_000;
        let bucket = lmt_change.div_euclid(BUCKET_MICROS);
        assert_eq!(lmt_end.bucket_offset(bucket), None);
    }
}
