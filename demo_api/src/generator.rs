//! The demo data set as a pure function of the seed: users, courses and blocks, and the
//! records of each one-minute bucket, so any window, whole or in pieces, holds the same records.
//! Times here are instants (UTC microseconds); time zones are the business of `selection`.

use std::ops::Range;

use super::faults::Malformation;

/// One bucket per minute since the epoch; a window reads the buckets it touches.
pub const BUCKET_MICROS: i64 = 60_000_000;
const MINUTES_PER_DAY: usize = 24 * 60;

/// Largest `--records-per-hour`: even at the daily peak a bucket then holds far fewer
/// records than it has microseconds, which keeps every `created_at` distinct.
pub const MAX_RECORDS_PER_HOUR: u32 = 10_000_000;

const USERS: usize = 4_000;

/// (Org, Course, Run) and how many users call the course home (relative weight).
const COURSES: [(&str, &str, &str, u32); 6] = [
    ("SkillFactory", "DST-3.0", "28FEB2021", 30),
    ("SkillFactory", "PYTHON-11", "2026_T1", 22),
    ("SkillFactory", "SQL-6", "SEP2026", 16),
    ("SkillFactory", "DSPR-2.0", "14JUN2025", 13),
    ("SkillFactory", "MLOPS-1", "2026", 11),
    ("SkillFactory", "FPW-12", "2026_T2", 8),
];

/// Relative activity at hh:30 for hh = 0..24: quiet at night, peak in the evening, as
/// people study after work. Normalised so the daily mean is `--records-per-hour`.
const HOURLY_WEIGHTS: [f64; 24] = [
    0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.2, 0.4, 0.7, 1.0, 1.2, 1.3, //
    1.35, 1.4, 1.5, 1.6, 1.65, 1.7, 1.8, 1.85, 1.75, 1.4, 1.0, 0.6,
];

const SALT_BUCKET: u64 = 0x6275_636b_6574_0001;
const SALT_USER: u64 = 0x7573_6572_0000_0002;
const SALT_COURSE: u64 = 0x636f_7572_7365_0003;
const SALT_LATE: u64 = 0x6c61_7465_0000_0005;
const SALT_DIFFICULTY: u64 = 0x6469_6666_0000_0006;

/// The easiest and the hardest problem's share of correct submits: each block draws its
/// own from this range, so the per-problem statistics have something to tell apart.
pub const SUCCESS_RANGE: Range<f64> = 0.15..0.90;

/// SplitMix64: a tiny, fast generator whose whole state is one `u64`, so seeding it from a
/// hash of (seed, bucket) costs nothing.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 finaliser: a strong 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of two words, for seeding one stream per (seed, thing).
pub fn hash2(a: u64, b: u64) -> u64 {
    mix64(mix64(a).wrapping_add(b.wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ 0x632b_e59b_d9b4_e019)
}

/// Uniform in [0, 1) from the top 53 bits.
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

pub type Hex32 = [u8; 32];

fn hex32(mut rng: SplitMix64) -> Hex32 {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for half in out.chunks_mut(16) {
        let mut bits = rng.next_u64();
        for byte in half {
            *byte = DIGITS[(bits & 0xf) as usize];
            bits >>= 4;
        }
    }
    out
}

pub struct Course {
    /// `Org+Course+Run`, as it appears after `course-v1:` and `block-v1:`.
    pub key: String,
    pub blocks: Vec<Hex32>,
    /// The share of submits on each block that are correct: its difficulty, fixed per seed.
    pub success: Vec<f64>,
}

pub struct User {
    pub id: Hex32,
    /// Home course first; the second equals the first for users who stick to one course.
    pub courses: [u16; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Run,
    Submit { correct: bool },
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Run => "run",
            AttemptKind::Submit { .. } => "submit",
        }
    }

    pub fn is_correct(self) -> Option<bool> {
        match self {
            AttemptKind::Run => None,
            AttemptKind::Submit { correct } => Some(correct),
        }
    }
}

/// One generated attempt; strings are rendered from the indices only when written out.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The instant of the attempt, in microseconds since 1970-01-01 00:00:00 UTC.
    pub created_at: i64,
    /// When the API starts serving the record: `created_at`, or `created_at` plus the
    /// `--late-minutes` delay for the `--late-share` of records that arrive late.
    pub visible_at: i64,
    pub user: u32,
    pub course: u16,
    pub block: u16,
    pub kind: AttemptKind,
    /// False for the share of records whose `lis_outcome_service_url` is `''`.
    pub has_outcome_url: bool,
    /// `Some` for the records the API serves broken (`--malformed`).
    pub malformation: Option<Malformation>,
}

/// A day whose volume `--volume-dip` scales: its buckets (in order), the records of the
/// normal data set in the buckets before each one, and the share kept.
struct Dip {
    buckets: Vec<i64>,
    before: Vec<u64>,
    factor: f64,
}

/// Everything the records derive from: the population and the per-minute rates.
pub struct DataSet {
    seed: u64,
    malformed_share: f64,
    late_share: f64,
    late_delay_micros: i64,
    dips: Vec<Dip>,
    /// Expected records in the bucket starting at each minute of the day.
    per_minute: Box<[f64; MINUTES_PER_DAY]>,
    pub courses: Vec<Course>,
    pub users: Vec<User>,
}

impl DataSet {
    pub fn new(seed: u64, records_per_hour: u32, malformed_share: f64) -> Self {
        let courses = COURSES
            .iter()
            .enumerate()
            .map(|(i, (org, course, run, _))| {
                let mut rng = SplitMix64::new(hash2(seed ^ SALT_COURSE, i as u64));
                let count = 24 + rng.below(40) as usize;
                let blocks = (0..count)
                    .map(|_| hex32(SplitMix64::new(rng.next_u64())))
                    .collect();
                // A stream of its own, so the blocks' ids stay what they were before.
                let mut difficulty = SplitMix64::new(hash2(seed ^ SALT_DIFFICULTY, i as u64));
                let success = (0..count)
                    .map(|_| {
                        SUCCESS_RANGE.start
                            + (SUCCESS_RANGE.end - SUCCESS_RANGE.start) * difficulty.unit()
                    })
                    .collect();
                Course {
                    key: format!("{org}+{course}+{run}"),
                    blocks,
                    success,
                }
            })
            .collect();

        let total_weight: u32 = COURSES.iter().map(|c| c.3).sum();
        let pick_course = |r: u64| {
            let mut target = (r % u64::from(total_weight)) as u32;
            for (i, c) in COURSES.iter().enumerate() {
                if target < c.3 {
                    return i as u16;
                }
                target -= c.3;
            }
            0
        };
        let users = (0..USERS)
            .map(|i| {
                let mut rng = SplitMix64::new(hash2(seed ^ SALT_USER, i as u64));
                let id = hex32(SplitMix64::new(rng.next_u64()));
                let home = pick_course(rng.next_u64());
                // About a third of the users also take a second course.
                let second = if rng.below(3) == 0 {
                    pick_course(rng.next_u64())
                } else {
                    home
                };
                User {
                    id,
                    courses: [home, second],
                }
            })
            .collect();

        let mean = HOURLY_WEIGHTS.iter().sum::<f64>() / 24.0;
        let base = f64::from(records_per_hour.min(MAX_RECORDS_PER_HOUR)) / 60.0 / mean;
        let mut per_minute = Box::new([0.0; MINUTES_PER_DAY]);
        for (minute, rate) in per_minute.iter_mut().enumerate() {
            // Linear between the hourly weights at hh:30, so the rate has no steps; the
            // mean of this curve over a day equals the mean of the weights.
            let t = (minute as f64 + 0.5) / 60.0 - 0.5;
            let h0 = t.floor();
            let f = t - h0;
            let i0 = (h0 as i64).rem_euclid(24) as usize;
            let i1 = (i0 + 1) % 24;
            *rate = base * (HOURLY_WEIGHTS[i0] * (1.0 - f) + HOURLY_WEIGHTS[i1] * f);
        }

        DataSet {
            seed,
            malformed_share,
            late_share: 0.0,
            late_delay_micros: 0,
            dips: Vec::new(),
            per_minute,
            courses,
            users,
        }
    }

    /// Makes a `share` of the records (always the same ones for a seed, whatever the share of
    /// the others) visible only `delay_micros` after their `created_at`.
    pub fn with_late(mut self, share: f64, delay_micros: i64) -> Self {
        self.late_share = share;
        self.late_delay_micros = delay_micros.max(0);
        self
    }

    /// Keeps only a `factor` (0 to 1) of the records of `buckets` (a day, in order): always a
    /// subset of the normal records, `floor(factor × normal count)` of them over the buckets
    /// together, spread evenly. Other buckets are unchanged.
    pub fn with_dip(mut self, mut buckets: Vec<i64>, factor: f64) -> Self {
        buckets.sort_unstable();
        buckets.dedup();
        let mut before = Vec::with_capacity(buckets.len());
        let mut seen = 0;
        for &bucket in &buckets {
            before.push(seen);
            seen += self.bucket_stream(bucket).1;
        }
        self.dips.push(Dip {
            buckets,
            before,
            factor: factor.clamp(0.0, 1.0),
        });
        self
    }

    /// Whether the record created at `created_at` arrives late. A hash of the seed and the
    /// timestamp (distinct within a data set), not a draw from the bucket's stream, so the
    /// records and their order stay what they were before lateness existed.
    fn is_late(&self, created_at: i64) -> bool {
        self.late_share > 0.0
            && unit(hash2(self.seed ^ SALT_LATE, created_at as u64)) < self.late_share
    }

    /// The buckets that hold records of [start, end) (microseconds); empty if start >= end.
    pub fn buckets(start: i64, end: i64) -> Range<i64> {
        if start >= end {
            return 0..0;
        }
        start.div_euclid(BUCKET_MICROS)..(end - 1).div_euclid(BUCKET_MICROS) + 1
    }

    /// The bucket's random stream, and the number of records it holds without a dip (the
    /// stream's first draw).
    fn bucket_stream(&self, bucket: i64) -> (SplitMix64, u64) {
        let mut rng = SplitMix64::new(hash2(self.seed ^ SALT_BUCKET, bucket as u64));
        let lambda = self.per_minute[bucket.rem_euclid(MINUTES_PER_DAY as i64) as usize];
        let n = poisson(lambda, &mut rng).min(BUCKET_MICROS as u64);
        (rng, n)
    }

    /// Replaces `out` with the records of one bucket, in the (shuffled) order the API sends them.
    pub fn fill_bucket(&self, bucket: i64, out: &mut Vec<Record>) {
        out.clear();
        let (mut rng, n) = self.bucket_stream(bucket);
        if n == 0 {
            return;
        }
        // One slot per record, a random microsecond inside each: distinct timestamps that
        // still look irregular.
        let slot = (BUCKET_MICROS as u64) / n;
        let bucket_start = bucket * BUCKET_MICROS;
        let users = self.users.len() as f64;
        out.reserve(n as usize);
        for i in 0..n {
            let created_at = bucket_start + (i * slot + rng.below(slot)) as i64;
            // Squaring skews activity towards a core of busy users.
            let u = rng.unit();
            let user = ((u * u * users) as u32).min(self.users.len() as u32 - 1);
            let picks = rng.next_u64();
            let courses = self.users[user as usize].courses;
            // Mostly the home course.
            let course = if picks & 0xff < 205 {
                courses[0]
            } else {
                courses[1]
            };
            let picked_course = &self.courses[usize::from(course)];
            let blocks = picked_course.blocks.len() as f64;
            // Earlier blocks of a course see more attempts than later ones.
            let b = unit(picks);
            let block = ((b * b.sqrt() * blocks) as u16).min(blocks as u16 - 1);
            let bits = rng.next_u64();
            let kind = if share_bits(bits) < 0.6 {
                AttemptKind::Run
            } else {
                AttemptKind::Submit {
                    correct: share_bits(bits >> 16) < picked_course.success[usize::from(block)],
                }
            };
            let has_outcome_url = share_bits(bits >> 32) >= 0.05;
            // Always drawn, so the record itself does not depend on the malformed share.
            let fault = rng.next_u64();
            let malformation =
                (unit(fault) < self.malformed_share).then(|| Malformation::pick(fault));
            let visible_at = if self.is_late(created_at) {
                created_at.saturating_add(self.late_delay_micros)
            } else {
                created_at
            };
            out.push(Record {
                created_at,
                visible_at,
                user,
                course,
                block,
                kind,
                has_outcome_url,
                malformation,
            });
        }
        self.thin_for_dip(bucket, out);
        // The real API does not sort its answer.
        for i in (1..out.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            out.swap(i, j);
        }
    }
}

impl DataSet {
    /// Drops the records a dip day does not keep: record k of the day (in generation order)
    /// stays when `floor(factor × k)` steps up, so the day keeps `floor(factor × count)`.
    fn thin_for_dip(&self, bucket: i64, out: &mut Vec<Record>) {
        for dip in &self.dips {
            let Ok(j) = dip.buckets.binary_search(&bucket) else {
                continue;
            };
            let kept = |k: u64| (dip.factor * k as f64).floor() as u64;
            let mut k = dip.before[j];
            out.retain(|_| {
                k += 1;
                kept(k) > kept(k - 1)
            });
            return;
        }
    }
}

/// A share in [0, 1) from the low 16 bits.
fn share_bits(bits: u64) -> f64 {
    (bits & 0xffff) as f64 / 65536.0
}

/// A Poisson-distributed count; the normal approximation above 30 keeps busy buckets cheap.
fn poisson(lambda: f64, rng: &mut SplitMix64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = rng.unit();
        while p > limit {
            k += 1;
            p *= rng.unit();
        }
        return k;
    }
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (lambda + lambda.sqrt() * z).round().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MICROS: i64 = 24 * 60 * BUCKET_MICROS;

    #[test]
    fn the_same_seed_gives_the_same_population_and_records() {
        let (a, b) = (DataSet::new(7, 360, 0.1), DataSet::new(7, 360, 0.1));
        assert_eq!(
            a.users.iter().map(|u| u.id).collect::<Vec<_>>(),
            b.users.iter().map(|u| u.id).collect::<Vec<_>>()
        );
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        for bucket in 29_000_000..29_000_100 {
            a.fill_bucket(bucket, &mut ra);
            b.fill_bucket(bucket, &mut rb);
            assert_eq!(ra, rb);
        }
    }

    #[test]
    fn another_seed_gives_other_users() {
        let (a, b) = (DataSet::new(1, 360, 0.0), DataSet::new(2, 360, 0.0));
        assert_ne!(a.users[0].id, b.users[0].id);
        assert_eq!(a.courses[0].key, "SkillFactory+DST-3.0+28FEB2021");
    }

    #[test]
    fn timestamps_stay_in_their_bucket_and_are_distinct() {
        let data = DataSet::new(3, 2_000_000, 0.0);
        let mut records = Vec::new();
        let bucket = 29_000_000 + 18 * 60;
        data.fill_bucket(bucket, &mut records);
        assert!(records.len() > 10_000);
        let mut times: Vec<i64> = records.iter().map(|r| r.created_at).collect();
        assert!(times.iter().all(|t| t.div_euclid(BUCKET_MICROS) == bucket));
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), records.len());
    }

    #[test]
    fn a_day_holds_about_24_times_the_hourly_rate() {
        let data = DataSet::new(1, 360, 0.0);
        let mut records = Vec::new();
        let first = 20_000 * DAY_MICROS / BUCKET_MICROS;
        let mut total = 0;
        for bucket in first..first + 24 * 60 {
            data.fill_bucket(bucket, &mut records);
            total += records.len();
        }
        assert!((7_800..9_500).contains(&total), "{total} records in a day");
    }

    #[test]
    fn late_records_are_a_fixed_share_delayed_by_the_set_minutes() {
        let delay = 30 * BUCKET_MICROS;
        let late = DataSet::new(5, 20_000, 0.0).with_late(0.2, delay);
        let more = DataSet::new(5, 20_000, 0.0).with_late(0.5, delay);
        let none = DataSet::new(5, 20_000, 0.0);
        let (mut rl, mut rm, mut rn) = (Vec::new(), Vec::new(), Vec::new());
        let (mut all, mut delayed) = (0.0, 0.0);
        for bucket in 29_000_000..29_000_100 {
            late.fill_bucket(bucket, &mut rl);
            more.fill_bucket(bucket, &mut rm);
            none.fill_bucket(bucket, &mut rn);
            assert_eq!(rl.len(), rn.len());
            for ((l, m), n) in rl.iter().zip(&rm).zip(&rn) {
                // Only the visibility differs; the late ones at 0.2 are late at 0.5 too.
                assert_eq!(
                    Record {
                        visible_at: n.visible_at,
                        ..l.clone()
                    },
                    *n
                );
                assert_eq!(n.visible_at, n.created_at);
                assert!(l.visible_at == l.created_at || l.visible_at == l.created_at + delay);
                if l.visible_at != l.created_at {
                    assert_eq!(m.visible_at, m.created_at + delay);
                    delayed += 1.0;
                }
                all += 1.0;
            }
        }
        assert!(all > 20_000.0);
        assert!((0.18..0.22).contains(&(delayed / all)), "{}", delayed / all);
    }

    #[test]
    fn buckets_cover_a_half_open_window() {
        assert_eq!(DataSet::buckets(0, BUCKET_MICROS), 0..1);
        assert_eq!(DataSet::buckets(-1, 1), -1..1);
        assert!(DataSet::buckets(5, 5).is_empty());
    }

    #[test]
    fn shares_of_runs_correct_submits_and_empty_urls_are_realistic() {
        let data = DataSet::new(11, 20_000, 0.0);
        let mut records = Vec::new();
        let (mut runs, mut submits, mut correct, mut no_url, mut all) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for bucket in 29_000_000..29_000_200 {
            data.fill_bucket(bucket, &mut records);
            for r in &records {
                all += 1.0;
                match r.kind {
                    AttemptKind::Run => runs += 1.0,
                    AttemptKind::Submit { correct: c } => {
                        submits += 1.0;
                        correct += f64::from(u8::from(c));
                    }
                }
                no_url += f64::from(u8::from(!r.has_outcome_url));
            }
        }
        assert!((0.57..0.63).contains(&(runs / all)));
        assert!(SUCCESS_RANGE.contains(&(correct / submits)));
        assert!((0.03..0.07).contains(&(no_url / all)));
    }

    #[test]
    fn each_block_succeeds_at_its_own_rate_drawn_from_the_range_per_seed() {
        let data = DataSet::new(13, 200_000, 0.0);
        let mut records = Vec::new();
        // (submits, correct) per (course, block).
        let mut tally = std::collections::HashMap::<(u16, u16), (f64, f64)>::new();
        for bucket in 29_000_000..29_000_240 {
            data.fill_bucket(bucket, &mut records);
            for r in &records {
                if let AttemptKind::Submit { correct } = r.kind {
                    let t = tally.entry((r.course, r.block)).or_default();
                    t.0 += 1.0;
                    t.1 += f64::from(u8::from(correct));
                }
            }
        }
        let mut checked = 0;
        for ((course, block), (submits, correct)) in tally {
            let rate = data.courses[usize::from(course)].success[usize::from(block)];
            assert!(SUCCESS_RANGE.contains(&rate));
            if submits >= 1_000.0 {
                // Five binomial standard deviations at the worst rate, 0.5.
                assert!(
                    (correct / submits - rate).abs() < 5.0 * (0.25 / submits).sqrt(),
                    "course {course} block {block}: {correct}/{submits} against {rate}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 20, "{checked} blocks with enough submits");
        let same = DataSet::new(13, 360, 0.0);
        let other = DataSet::new(14, 360, 0.0);
        assert_eq!(same.courses[0].success, data.courses[0].success);
        assert_ne!(other.courses[0].success, data.courses[0].success);
        // The difficulty has a stream of its own: the blocks' ids did not move.
        assert_eq!(same.courses[0].blocks, data.courses[0].blocks);
    }

    #[test]
    fn a_dip_keeps_a_spread_subset_of_factor_times_the_records_of_its_buckets() {
        let first = 29_000_000;
        let day: Vec<i64> = (first..first + 24 * 60).collect();
        let normal = DataSet::new(17, 2_000, 0.0);
        let dipped = DataSet::new(17, 2_000, 0.0).with_dip(day.clone(), 0.37);
        let (mut rn, mut rd) = (Vec::new(), Vec::new());
        let (mut all, mut kept, mut first_half) = (0, 0, 0);
        for &bucket in &day {
            normal.fill_bucket(bucket, &mut rn);
            dipped.fill_bucket(bucket, &mut rd);
            assert!(rd.iter().all(|r| rn.contains(r)), "bucket {bucket}");
            all += rn.len();
            kept += rd.len();
            if bucket < first + 12 * 60 {
                first_half += rd.len();
            }
        }
        assert!(all > 40_000);
        assert_eq!(kept, (0.37 * all as f64).floor() as usize);
        // Spread over the day as the normal records are, not cut off at some hour.
        assert!(first_half > kept / 5 && first_half < kept * 4 / 5);
        // The minutes around the day are the normal ones.
        for bucket in [first - 1, first + 24 * 60] {
            normal.fill_bucket(bucket, &mut rn);
            dipped.fill_bucket(bucket, &mut rd);
            assert_eq!(rn, rd);
        }
    }
}
