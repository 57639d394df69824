//! `lms_etl.ingest_chunk` and `lms_etl.reprocess`: raw API records in, attempts and
//! quarantined records out, in a few set-based statements (no per-row round trips).
//!
//! Every record meets one fate: inserted, a duplicate (the same record is already loaded or
//! already quarantined), a conflict (its key matches a loaded row, its content does not:
//! quarantined, the loaded row kept), or invalid (quarantined with the reason).

use std::collections::HashMap;

use lms_etl_parse::chrono::{DateTime, NaiveDate, Utc};
use lms_etl_parse::source_time::{self, chrono_tz::Tz};
use lms_etl_parse::{parse_chunk, Attempt, AttemptType};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::passback::over_cap;

/// `sql/ingest.sql`: plain INSERT first, ON CONFLICT DO NOTHING only when the chunk meets
/// loaded rows; returns the count inserted and the positions (1-based) of conflicts.
const INSERT_ATTEMPTS: &str = "SELECT inserted, conflict_positions, conflict_fields
    FROM lms_etl.insert_attempts($1, $2, $3, $4, $5, $6, $7, $8)";

/// Stores each record once, however often it is fetched: the count returned is the new ones.
const QUARANTINE: &str = "
    WITH stored AS (
        INSERT INTO lms_etl.rejected_attempts (run_id, record_index, raw_record, reason, kind)
        SELECT $1, i, raw, why, kind FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS r(i, raw, why, kind)
        ON CONFLICT ((md5(raw_record)::uuid)) DO NOTHING
        RETURNING kind)
    SELECT count(*) FILTER (WHERE kind = $6), count(*) FILTER (WHERE kind <> $6) FROM stored";

const ZONE_OF_RUN: &str =
    "SELECT coalesce($1, (SELECT r.source_timezone FROM lms_etl.runs r WHERE r.run_id = $2),
                                 lms_etl.setting('source_timezone'))";

/// Largest chunk `ingest_chunk` reads: parsing needs up to ~170 bytes per input byte for
/// one-byte records (parse/tests/hostile_input.rs), far less for real ones. The loader's
/// sub-batches (`window.max_batch_bytes`, at most 32 MiB) always fit.
pub const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The `kind` of every conflict in `rejected_attempts`.
const CONFLICT_KIND: &str = "conflict: same key, different content";

/// Loads one chunk (a JSON array of API records): valid records go to `lms_etl.attempts`,
/// invalid ones and conflicts to `lms_etl.rejected_attempts` with the reason. One bad
/// record never fails the chunk; a chunk that is not a JSON array raises SQLSTATE 22P02.
/// `created_at` is read in `source_timezone` (default: the run's zone, else the settings').
/// `first_index` numbers the records in reasons when the chunk is one part of a larger answer.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_chunk(
    records: &str,
    run_id: default!(Option<i64>, "NULL"),
    source_timezone: default!(Option<&str>, "NULL"),
    first_index: default!(i32, 0),
) -> TableIterator<
    'static,
    (
        name!(inserted, i64),
        name!(duplicates, i64),
        name!(conflicts, i64),
        name!(rejected, i64),
        name!(invalid, i64),
    ),
> {
    if records.len() > MAX_CHUNK_BYTES {
        over_cap("a chunk", records.len(), MAX_CHUNK_BYTES);
    }
    let zone = source_zone(source_timezone, run_id);
    let batch = Batch::parse(
        records,
        zone,
        i64::from(first_index.max(0)),
        retention_horizon().as_ref(),
    );
    let loaded = batch.load(run_id);
    let stored = quarantine(&batch.quarantine_rows(&loaded), run_id);
    // Everything neither inserted nor newly quarantined was seen before: a duplicate.
    let duplicates = batch.records as i64 - loaded.inserted - stored.conflicts - stored.invalid;
    TableIterator::once((
        loaded.inserted,
        duplicates,
        stored.conflicts,
        stored.invalid,
        batch.invalid_count(),
    ))
}

/// Re-ingests quarantined records (all, or one run's) under the current rules: records now
/// valid move into `lms_etl.attempts` (or are dropped from the quarantine as duplicates of a
/// loaded row), the rest stay with their reason brought up to date. The days of the moved
/// records are marked for aggregation (`lms_etl.aggregate_pending()`).
#[pg_extern(volatile, parallel_unsafe)]
fn reprocess(
    run_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(examined, i64),
        name!(loaded, i64),
        name!(still_rejected, i64),
    ),
> {
    const PAGE: i64 = 5_000;
    let (mut examined, mut loaded, mut kept) = (0_i64, 0_i64, 0_i64);
    let mut after = 0_i64;
    loop {
        let page = quarantined_page(run_id, after, PAGE);
        let Some(last) = page.last() else { break };
        after = last.rejected_id;
        let mut by_zone: HashMap<String, Vec<&Quarantined>> = HashMap::new();
        for row in &page {
            by_zone.entry(row.zone.clone()).or_default().push(row);
        }
        let horizon = retention_horizon();
        for (zone, rows) in by_zone {
            let json = format!(
                "[{}]",
                rows.iter()
                    .map(|r| r.raw.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let batch = Batch::parse(&json, parse_zone(&zone), 0, horizon.as_ref());
            // Loaded by reprocess, not by a run: run_id stays NULL, loaded_at tells when.
            let fates = batch.fates(&batch.load(None));
            let mut gone = Vec::new();
            let mut still = (Vec::new(), Vec::new(), Vec::new());
            for (row, fate) in rows.iter().zip(fates) {
                match fate {
                    Fate::Loaded => gone.push(row.rejected_id),
                    Fate::Quarantined { kind, reason } => {
                        still.0.push(row.rejected_id);
                        still
                            .1
                            .push(format!("record {}: {reason}", row.record_index));
                        still.2.push(kind);
                    }
                }
            }
            examined += rows.len() as i64;
            loaded += gone.len() as i64;
            kept += still.0.len() as i64;
            Spi::run_with_args(
                "DELETE FROM lms_etl.rejected_attempts WHERE rejected_id = ANY($1)",
                &[gone.into()],
            )
            .unwrap_or_else(|e| error!("reprocess: removing loaded records: {e}"));
            Spi::run_with_args(
                "UPDATE lms_etl.rejected_attempts q SET reason = r.why, kind = r.kind
                   FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r(id, why, kind)
                  WHERE q.rejected_id = r.id",
                &[still.0.into(), still.1.into(), still.2.into()],
            )
            .unwrap_or_else(|e| error!("reprocess: updating reasons: {e}"));
        }
        pgrx::check_for_interrupts!();
    }
    TableIterator::once((examined, loaded, kept))
}

struct Quarantined {
    rejected_id: i64,
    record_index: i32,
    raw: String,
    zone: String,
}

fn quarantined_page(run_id: Option<i64>, after: i64, limit: i64) -> Vec<Quarantined> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT q.rejected_id, q.record_index, q.raw_record,
                    coalesce(r.source_timezone, lms_etl.setting('source_timezone'))
               FROM lms_etl.rejected_attempts q LEFT JOIN lms_etl.runs r ON r.run_id = q.run_id
              WHERE ($1::bigint IS NULL OR q.run_id = $1) AND q.rejected_id > $2
              ORDER BY q.rejected_id LIMIT $3",
            None,
            &[run_id.into(), after.into(), limit.into()],
        )?;
        rows.map(|row| {
            Ok(Quarantined {
                rejected_id: row.get::<i64>(1)?.unwrap_or_default(),
                record_index: row.get::<i32>(2)?.unwrap_or_default(),
                raw: row.get::<String>(3)?.unwrap_or_default(),
                zone: row.get::<String>(4)?.unwrap_or_else(|| "UTC".into()),
            })
        })
        .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| error!("reprocess: reading the quarantine: {e}"))
}

/// The first instant retention keeps (`lms_etl.retention_horizon()`): µs since 2000, and as
/// text for reasons. None while everything is kept.
struct Horizon {
    micros: i64,
    text: String,
}

fn retention_horizon() -> Option<Horizon> {
    let (micros, text) = Spi::get_two::<i64, String>(
        "SELECT (extract(epoch FROM h) * 1000000)::bigint - 946684800000000,
                to_char(h AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
           FROM lms_etl.retention_horizon() AS h",
    )
    .unwrap_or_else(|e| error!("reading the retention horizon: {e}"));
    Some(Horizon {
        micros: micros?,
        text: text?,
    })
}

/// The `kind` of a record dated before the retention horizon.
const BEFORE_RETENTION_KIND: &str = "created_at: before the retention horizon";

/// The zone `created_at` is read in: the argument, else the run's, else the settings'.
fn source_zone(given: Option<&str>, run_id: Option<i64>) -> Tz {
    let name = Spi::get_one_with_args::<String>(ZONE_OF_RUN, &[given.into(), run_id.into()])
        .unwrap_or_else(|e| error!("reading the source time zone: {e}"))
        .unwrap_or_else(|| "UTC".into());
    parse_zone(&name)
}

fn parse_zone(name: &str) -> Tz {
    source_time::parse_zone(name).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("source_timezone: {e}")
        );
    })
}

/// A valid record's natural key: (created_at µs since 2000, user, type, sourcedid).
type Key<'a> = (i64, &'a str, AttemptType, Option<&'a str>);

/// A parsed chunk: valid attempts in rounds (round k holds the k-th record of each key, so
/// no round repeats a key), and the invalid records.
struct Batch<'a> {
    records: usize,
    /// Position of the first record in the whole answer, for `record N` and `record_index`.
    first_index: i64,
    rounds: Vec<Vec<Staged<'a>>>,
    /// Invalid records: (index, raw, kind, reason).
    rejected: Vec<Rejected<'a>>,
}

struct Staged<'a> {
    index: usize,
    raw: &'a str,
    attempt: Attempt<'a>,
    created_at: i64,
}

struct Rejected<'a> {
    index: usize,
    raw: &'a str,
    kind: &'static str,
    reason: String,
}

/// What the insert reported: rows inserted, and (round, position, differing fields) of
/// the staged records that conflict with a loaded row.
struct Loaded {
    inserted: i64,
    conflicts: Vec<(usize, usize, String)>,
}

enum Fate {
    /// In `attempts` now: inserted, or the same record was there.
    Loaded,
    Quarantined {
        kind: String,
        reason: String,
    },
}

impl<'a> Batch<'a> {
    /// Records dated before `horizon` are quarantined: their month was detached or dropped
    /// by retention, and loaded they would sit in the default partition beside it.
    fn parse(json: &'a str, zone: Tz, first_index: i64, horizon: Option<&Horizon>) -> Batch<'a> {
        let parsed = parse_chunk(json).unwrap_or_else(|e| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                e.to_string()
            );
        });
        let raws = lms_etl_parse::split_records(json).unwrap_or_default();
        let records = parsed.len();
        let mut rejected = Vec::new();
        let mut staged = Vec::with_capacity(records);
        for (index, result) in parsed.into_iter().enumerate() {
            if index % 4096 == 0 {
                pgrx::check_for_interrupts!();
            }
            match result {
                Err(r) => rejected.push(Rejected {
                    index: r.index,
                    raw: r.raw,
                    kind: r.kind,
                    reason: format!("record {}: {}", first_index + r.index as i64, r.reason),
                }),
                Ok(attempt) => {
                    let raw = raws.get(index).map_or("", |r| r.get());
                    let created_at = pg_micros(source_time::to_instant(zone, attempt.created_at));
                    match horizon {
                        Some(h) if created_at < h.micros => rejected.push(Rejected {
                            index,
                            raw,
                            kind: BEFORE_RETENTION_KIND,
                            reason: format!(
                                "record {}: field `created_at`: {} is before the retention horizon {}: its month was detached or dropped (retention.months)",
                                first_index + index as i64,
                                attempt.created_at,
                                h.text
                            ),
                        }),
                        _ => staged.push(Staged {
                            index,
                            raw,
                            created_at,
                            attempt,
                        }),
                    }
                }
            }
        }
        // Round k holds the k-th record of each key. The first round inserts; a later
        // round meets the row the first one stored, so a repeat is judged against what is
        // loaded (a duplicate, or a conflict) exactly like a record fetched again later.
        let mut seen: HashMap<Key<'_>, usize> = HashMap::with_capacity(staged.len());
        let round_of: Vec<usize> = staged
            .iter()
            .map(|s| {
                let key = (
                    s.created_at,
                    s.attempt.user_id.as_ref(),
                    s.attempt.attempt_type,
                    s.attempt.passback.lis_result_sourcedid.as_deref(),
                );
                let n = seen.entry(key).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect();
        drop(seen);
        let mut rounds: Vec<Vec<Staged<'a>>> = Vec::new();
        for (s, round) in staged.into_iter().zip(round_of) {
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Vec::new);
            }
            rounds[round].push(s);
        }
        Batch {
            records,
            first_index,
            rounds,
            rejected,
        }
    }

    fn invalid_count(&self) -> i64 {
        self.rejected.len() as i64
    }

    /// A record's position in the whole answer, as stored in `record_index`.
    fn number(&self, index: usize) -> i32 {
        i32::try_from(self.first_index + index as i64).unwrap_or(i32::MAX)
    }

    /// Inserts the staged attempts round by round; conflicts with loaded rows come back by
    /// (round, position).
    fn load(&self, run_id: Option<i64>) -> Loaded {
        let mut loaded = Loaded {
            inserted: 0,
            conflicts: Vec::new(),
        };
        for (round, staged) in self.rounds.iter().enumerate() {
            let (inserted, conflicts) = insert(staged, run_id);
            loaded.inserted += inserted;
            loaded.conflicts.extend(
                conflicts
                    .into_iter()
                    .map(|(pos, fields)| (round, pos, fields)),
            );
        }
        loaded
    }

    /// Rows for the quarantine: invalid records, in-chunk conflicts and conflicts with loaded rows.
    fn quarantine_rows(&self, loaded: &Loaded) -> Vec<(i32, &'a str, String, &'static str)> {
        let mut rows: Vec<(i32, &'a str, String, &'static str)> = self
            .rejected
            .iter()
            .map(|r| (self.number(r.index), r.raw, r.reason.clone(), r.kind))
            .collect();
        for (round, pos, fields) in &loaded.conflicts {
            let Some(staged) = self.rounds[*round].get(*pos) else {
                continue;
            };
            rows.push((
                self.number(staged.index),
                staged.raw,
                conflict_with_loaded(i64::from(self.number(staged.index)), fields),
                CONFLICT_KIND,
            ));
        }
        rows
    }

    /// One fate per record, in record order (for `reprocess`).
    fn fates(&self, loaded: &Loaded) -> Vec<Fate> {
        let mut fates: Vec<Option<Fate>> = (0..self.records).map(|_| None).collect();
        for r in &self.rejected {
            fates[r.index] = Some(Fate::Quarantined {
                kind: r.kind.to_owned(),
                reason: strip_record_prefix(&r.reason),
            });
        }
        for (round, pos, fields) in &loaded.conflicts {
            if let Some(staged) = self.rounds[*round].get(*pos) {
                fates[staged.index] = Some(Fate::Quarantined {
                    kind: CONFLICT_KIND.to_owned(),
                    reason: strip_record_prefix(&conflict_with_loaded(0, fields)),
                });
            }
        }
        fates
            .into_iter()
            .map(|f| f.unwrap_or(Fate::Loaded))
            .collect()
    }
}

/// One round through `lms_etl.insert_attempts`: (rows inserted, (position, fields) of conflicts).
fn insert(a: &[Staged<'_>], run_id: Option<i64>) -> (i64, Vec<(usize, String)>) {
    if a.is_empty() {
        return (0, Vec::new());
    }
    let user_id: Vec<&str> = a.iter().map(|s| s.attempt.user_id.as_ref()).collect();
    let consumer_key: Vec<Option<&str>> = a
        .iter()
        .map(|s| s.attempt.passback.oauth_consumer_key.as_deref())
        .collect();
    let sourcedid: Vec<Option<&str>> = a
        .iter()
        .map(|s| s.attempt.passback.lis_result_sourcedid.as_deref())
        .collect();
    let outcome_url: Vec<Option<&str>> = a
        .iter()
        .map(|s| s.attempt.passback.lis_outcome_service_url.as_deref())
        .collect();
    let attempt_type: Vec<&str> = a.iter().map(|s| s.attempt.attempt_type.as_str()).collect();
    let is_correct: Vec<Option<bool>> = a.iter().map(|s| s.attempt.is_correct).collect();
    let created_at: Vec<TimestampWithTimeZone> = a
        .iter()
        .map(|s| {
            TimestampWithTimeZone::try_from(s.created_at)
                .unwrap_or_else(|e| error!("created_at out of range: {e:?}"))
        })
        .collect();
    let (inserted, positions, fields) = Spi::get_three_with_args::<i64, Vec<i32>, Vec<String>>(
        INSERT_ATTEMPTS,
        &[
            user_id.into(),
            consumer_key.into(),
            sourcedid.into(),
            outcome_url.into(),
            is_correct.into(),
            attempt_type.into(),
            created_at.into(),
            run_id.into(),
        ],
    )
    .unwrap_or_else(|e| error!("inserting attempts: {e}"));
    let conflicts = positions
        .unwrap_or_default()
        .into_iter()
        .zip(fields.unwrap_or_default())
        .filter_map(|(pos, f)| usize::try_from(pos - 1).ok().map(|p| (p, f)))
        .collect();
    (inserted.unwrap_or(0), conflicts)
}

fn conflict_with_loaded(index: i64, fields: &str) -> String {
    format!(
        "record {index}: conflict: an attempt with the same key (created_at, lti_user_id, attempt_type, lis_result_sourcedid) is already loaded with a different {fields}; the loaded row is kept"
    )
}

/// `record N: why` → `why`, for reasons re-numbered by their original position.
fn strip_record_prefix(reason: &str) -> String {
    reason
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("record "))
        .map_or(reason, |(_, rest)| rest)
        .to_owned()
}

struct Stored {
    conflicts: i64,
    invalid: i64,
}

fn quarantine(rows: &[(i32, &str, String, &'static str)], run_id: Option<i64>) -> Stored {
    if rows.is_empty() {
        return Stored {
            conflicts: 0,
            invalid: 0,
        };
    }
    let index: Vec<i32> = rows.iter().map(|r| r.0).collect();
    let raw: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let reason: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.3).collect();
    let (conflicts, invalid) = Spi::get_two_with_args::<i64, i64>(
        QUARANTINE,
        &[
            run_id.into(),
            index.into(),
            raw.into(),
            reason.into(),
            kind.into(),
            CONFLICT_KIND.into(),
        ],
    )
    .unwrap_or_else(|e| error!("quarantining records: {e}"));
    Stored {
        conflicts: conflicts.unwrap_or(0),
        invalid: invalid.unwrap_or(0),
    }
}

/// PostgreSQL's timestamptz: microseconds since 2000-01-01 00:00 UTC. The parser limits
/// years to 1..=9999, well inside PostgreSQL's range.
fn pg_micros(t: DateTime<Utc>) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("a valid time")
        .and_utc();
    (t - epoch)
        .num_microseconds()
        .expect("years 1..=9999 fit in i64 microseconds")
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn record_for(
        user: &str,
        created_at: &str,
        kind: &str,
        is_correct: &str,
        problem: &str,
    ) -> String {
        format!(
            r#"{{"lti_user_id": "{user}", "passback_params": "{{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:Org+C+R:lms-{problem}:{user}', 'lis_outcome_service_url': 'https://lms/x'}}", "is_correct": {is_correct}, "attempt_type": "{kind}", "created_at": "{created_at}"}}"#
        )
    }

    fn record(user: &str, created_at: &str, kind: &str, is_correct: &str) -> String {
        record_for(user, created_at, kind, is_correct, "b")
    }

    /// (inserted, duplicates, conflicts, rejected, invalid)
    fn ingest(chunk: &str) -> (i64, i64, i64, i64, i64) {
        Spi::connect(|c| {
            let row = c
                .select(
                    "SELECT inserted, duplicates, conflicts, rejected, invalid FROM lms_etl.ingest_chunk($1)",
                    None,
                    &[chunk.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<i64>(1)?.unwrap(),
                row.get::<i64>(2)?.unwrap(),
                row.get::<i64>(3)?.unwrap(),
                row.get::<i64>(4)?.unwrap(),
                row.get::<i64>(5)?.unwrap(),
            ))
        })
        .expect("ingest runs")
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    fn text(sql: &str) -> String {
        Spi::get_one::<String>(sql)
            .expect("query runs")
            .unwrap_or_default()
    }

    #[pg_test]
    fn loads_valid_records_and_skips_reloads() {
        let chunk = format!(
            "[{}, {}, {}]",
            record("u1", "2026-11-24 10:00:00.000001", "run", "null"),
            record("u1", "2026-11-24 10:00:05.5", "submit", "1"),
            record("u2", "2026-11-24 11:00:00", "submit", "false"),
        );
        assert_eq!(ingest(&chunk), (3, 0, 0, 0, 0));
        assert_eq!(ingest(&chunk), (0, 3, 0, 0, 0));
        // Only this test's users: the pg_cron test commits rows of its own on the side.
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id IN ('u1', 'u2')"),
            3
        );
        let (kind, correct) = Spi::get_two::<String, bool>(
            "SELECT attempt_type, is_correct FROM lms_etl.attempts WHERE created_at = '2026-11-24 10:00:05.5+00'",
        )
        .unwrap();
        assert_eq!((kind.as_deref(), correct), (Some("submit"), Some(true)));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE lis_result_sourcedid = 'course-v1:Org+C+R:lms-b:u2' AND oauth_consumer_key = ''"),
            1
        );
    }

    #[pg_test]
    fn a_chunk_mixing_new_and_loaded_records_inserts_only_the_new() {
        let old = record("u1", "2026-11-24 10:00:00", "run", "null");
        let new = record("u2", "2026-11-24 10:00:00", "submit", "0");
        assert_eq!(ingest(&format!("[{old}]")), (1, 0, 0, 0, 0));
        // The plain insert hits the existing row, rolls back its subtransaction and the
        // ON CONFLICT path loads the rest.
        assert_eq!(ingest(&format!("[{new}, {old}, {new}]")), (1, 2, 0, 0, 0));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id IN ('u1', 'u2')"),
            2
        );
    }

    #[pg_test]
    fn duplicates_inside_one_chunk_load_once() {
        let r = record("u1", "2026-11-24 10:00:00", "run", "null");
        assert_eq!(ingest(&format!("[{r}, {r}]")), (1, 1, 0, 0, 0));
    }

    #[pg_test]
    fn two_problems_at_the_same_instant_are_two_attempts() {
        let a = record_for("u1", "2026-11-24 10:00:00", "submit", "1", "p1");
        let b = record_for("u1", "2026-11-24 10:00:00", "submit", "0", "p2");
        assert_eq!(ingest(&format!("[{a}, {b}]")), (2, 0, 0, 0, 0));
        // A null sourcedid is a value of its own, and counts once.
        let none = r#"{"lti_user_id": "u1", "passback_params": null, "is_correct": 1, "attempt_type": "submit", "created_at": "2026-11-24 10:00:00"}"#;
        assert_eq!(ingest(&format!("[{none}]")), (1, 0, 0, 0, 0));
        assert_eq!(ingest(&format!("[{none}, {a}, {b}]")), (0, 3, 0, 0, 0));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u1'"),
            3
        );
    }

    #[pg_test]
    fn a_changed_record_is_a_conflict_and_the_loaded_row_wins() {
        let first = record("u1", "2026-11-24 10:00:00", "submit", "1");
        let changed = record("u1", "2026-11-24 10:00:00", "submit", "0");
        assert_eq!(ingest(&format!("[{first}]")), (1, 0, 0, 0, 0));
        assert_eq!(ingest(&format!("[{changed}]")), (0, 0, 1, 0, 0));
        assert!(Spi::get_one::<bool>(
            "SELECT is_correct FROM lms_etl.attempts WHERE user_id = 'u1'"
        )
        .unwrap()
        .unwrap());
        assert_eq!(
            text("SELECT kind || ' | ' || reason FROM lms_etl.rejected_attempts"),
            "conflict: same key, different content | record 0: conflict: an attempt with the same key (created_at, lti_user_id, attempt_type, lis_result_sourcedid) is already loaded with a different is_correct; the loaded row is kept"
        );
        // Fetched again (the overlap, a re-run): stored once, now a duplicate.
        assert_eq!(ingest(&format!("[{changed}, {first}]")), (0, 2, 0, 0, 0));
        assert_eq!(count("SELECT count(*) FROM lms_etl.rejected_attempts"), 1);
    }

    /// A chunk fetched again within a day's span is compared with the loaded rows of its
    /// range in one read (sql/ingest.sql); with an outlier it spans more and takes the
    /// general path. Both tell new records, duplicates and conflicts apart alike.
    #[pg_test]
    fn a_chunk_fetched_again_tells_new_duplicate_and_conflict_apart() {
        for (outlier, at) in [("", "2026-11-24"), ("u0", "2026-11-14")] {
            let a = record("u1", &format!("{at} 10:00:00"), "submit", "1");
            let b = record("u2", &format!("{at} 10:30:00"), "submit", "1");
            let b_changed = record("u2", &format!("{at} 10:30:00"), "submit", "0");
            let c = record("u3", &format!("{at} 10:45:00"), "run", "null");
            let mut first = vec![a.clone(), b];
            let mut again = vec![c, b_changed, a];
            if !outlier.is_empty() {
                let far = record(outlier, "2026-11-11 09:00:00", "run", "null");
                first.push(far.clone());
                again.push(far);
            }
            let loaded = ingest(&format!("[{}]", first.join(", ")));
            assert_eq!(loaded.0, first.len() as i64);
            let dups = again.len() as i64 - 2;
            Spi::run("DELETE FROM lms_etl.pending_days").unwrap();
            assert_eq!(
                ingest(&format!("[{}]", again.join(", "))),
                (1, dups, 1, 0, 0),
                "{at}"
            );
            assert!(
                Spi::get_one::<bool>(&format!(
                    "SELECT is_correct FROM lms_etl.attempts WHERE user_id = 'u2' AND created_at::date = '{at}'"
                ))
                .unwrap()
                .unwrap(),
                "the loaded row wins"
            );
            assert_eq!(
                count(&format!(
                    "SELECT count(*) FROM lms_etl.attempts WHERE created_at::date = '{at}'"
                )),
                3
            );
            assert!(text(&format!(
                "SELECT reason FROM lms_etl.rejected_attempts WHERE raw_record::text LIKE '%{at}%'"
            ))
            .starts_with("record 1: conflict: an attempt with the same key"));
            // A chunk found partly loaded marks the days of its records (not of its range),
            // so rows a failed run committed on some Citus workers only get counted too.
            let days = if outlier.is_empty() {
                at.to_string()
            } else {
                format!("2026-11-11,{at}")
            };
            let marked = "SELECT string_agg(day::text, ',' ORDER BY day) FROM lms_etl.pending_days";
            assert_eq!(text(marked), days);
            // Fetched a third time, nothing is new: the same days are marked.
            Spi::run("DELETE FROM lms_etl.pending_days").unwrap();
            assert_eq!(
                ingest(&format!("[{}]", again.join(", "))),
                (0, again.len() as i64, 0, 0, 0)
            );
            assert_eq!(text(marked), days);
        }
    }

    /// A month retention detached or dropped is not loaded again: a record dated before the
    /// horizon would sit in the default partition beside its archived month (and count as
    /// new). It is quarantined with the reason instead.
    #[pg_test]
    fn a_record_before_the_retention_horizon_is_quarantined() {
        Spi::run("SELECT lms_etl.set_setting('retention.months', '12')").unwrap();
        let old = record("u1", "2024-01-10 10:00:00", "submit", "1");
        let recent = record("u1", "2026-11-24 10:00:00", "submit", "1");
        assert_eq!(ingest(&format!("[{old}, {recent}]")), (1, 0, 0, 1, 1));
        assert_eq!(
            text("SELECT kind FROM lms_etl.rejected_attempts"),
            "created_at: before the retention horizon"
        );
        let reason = text("SELECT reason FROM lms_etl.rejected_attempts");
        assert!(
            reason.starts_with("record 0: field `created_at`: 2024-01-10 10:00:00 is before the retention horizon ")
                && reason.ends_with(" UTC: its month was detached or dropped (retention.months)"),
            "{reason}"
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u1'"),
            1
        );
    }

    #[pg_test]
    fn a_changed_repeat_inside_one_chunk_is_a_conflict() {
        let first = record("u1", "2026-11-24 10:00:00", "submit", "1");
        let changed = record("u1", "2026-11-24 10:00:00", "submit", "0");
        assert_eq!(ingest(&format!("[{first}, {changed}]")), (1, 0, 1, 0, 0));
        assert!(text("SELECT reason FROM lms_etl.rejected_attempts")
            .starts_with("record 1: conflict: an attempt with the same key"));
        // The row loaded first is the reference: the same record again is a duplicate
        // wherever it stands in the answer.
        assert_eq!(
            ingest(&format!("[{changed}, {first}, {first}]")),
            (0, 3, 0, 0, 0)
        );
    }

    #[pg_test]
    fn bad_records_are_quarantined_with_reason_index_and_kind() {
        let chunk = format!(
            "[{}, {}, {}, 17, {}]",
            record("u1", "2026-11-24 10:00:00", "run", "null"),
            record("u2", "2026-11-24 10:00:00", "peek", "null"),
            r#"{"lti_user_id": null, "attempt_type": "run", "created_at": "2026-11-24 10:00:00"}"#,
            record("u3", "yesterday", "run", "null"),
        );
        assert_eq!(ingest(&chunk), (1, 0, 0, 4, 4));
        let reasons = text(
            "SELECT string_agg(reason, ' | ' ORDER BY record_index) FROM lms_etl.rejected_attempts",
        );
        assert_eq!(
            reasons,
            "record 1: field `attempt_type`: expected 'run' or 'submit', found \"peek\" | \
             record 2: field `lti_user_id`: missing or null | \
             record 3: expected a JSON object with the attempt fields: invalid type: integer `17`, expected struct WireRecord at line 1 column 2 | \
             record 4: field `created_at`: expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found \"yesterday\""
        );
        assert_eq!(
            text("SELECT string_agg(kind, ', ' ORDER BY record_index) FROM lms_etl.rejected_attempts"),
            "attempt_type: not run or submit, lti_user_id: missing, record: not an attempt object, created_at: not a timestamp"
        );
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.rejected_attempts WHERE raw_record = '17'"),
            1
        );
        // Re-read: stored and counted once; still invalid for the rejected-ratio judge.
        assert_eq!(ingest(&chunk), (0, 5, 0, 0, 4));
        assert_eq!(count("SELECT count(*) FROM lms_etl.rejected_attempts"), 4);
    }

    #[pg_test]
    fn a_later_part_numbers_its_records_from_first_index() {
        let bad = record("u3", "yesterday", "run", "null");
        Spi::run_with_args(
            "SELECT * FROM lms_etl.ingest_chunk($1, first_index => 4000)",
            &[format!("[{bad}]").as_str().into()],
        )
        .unwrap();
        assert!(text("SELECT reason FROM lms_etl.rejected_attempts").starts_with("record 4000: "));
    }

    #[pg_test]
    fn created_at_is_read_in_the_source_zone() {
        let r = record("u1", "2026-11-24 03:00:00", "run", "null");
        Spi::run_with_args(
            "SELECT * FROM lms_etl.ingest_chunk($1, source_timezone => 'Europe/Moscow')",
            &[format!("[{r}]").as_str().into()],
        )
        .unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM lms_etl.attempts WHERE created_at = '2026-11-24 00:00:00+00'"
            ),
            1
        );
        // The settings' zone is the default, and a run's recorded zone wins over it.
        Spi::run("SELECT lms_etl.set_setting('source_timezone', 'Asia/Tokyo')").unwrap();
        let r2 = record("u2", "2026-11-24 09:00:00", "run", "null");
        assert_eq!(ingest(&format!("[{r2}]")).0, 1);
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u2' AND created_at = '2026-11-24 00:00:00+00'"),
            1
        );
        let run = count("INSERT INTO lms_etl.runs (window_start, window_end, source_timezone) VALUES (now(), now() + interval '1 hour', 'America/New_York') RETURNING run_id");
        let r3 = record("u3", "2026-11-23 19:00:00", "run", "null");
        Spi::run_with_args(
            "SELECT * FROM lms_etl.ingest_chunk($1, $2)",
            &[format!("[{r3}]").as_str().into(), run.into()],
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u3' AND created_at = '2026-11-24 00:00:00+00'"),
            1
        );
    }

    #[pg_test(
        error = "source_timezone: unknown time zone \"Mars/Olympus\": expected an IANA name such as UTC or Europe/Moscow"
    )]
    fn an_unknown_zone_is_an_error() {
        Spi::run("SELECT * FROM lms_etl.ingest_chunk('[]', source_timezone => 'Mars/Olympus')")
            .unwrap();
    }

    #[pg_test]
    fn an_autumn_hour_read_twice_loads_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25; both passes' records carry the
        // same naive times and map to the earlier instant, so a second fetch adds nothing.
        let a = record("u1", "2026-10-25 02:30:00", "run", "null");
        let b = record("u2", "2026-10-25 02:30:00", "run", "null");
        let chunk = format!("[{a}, {b}]");
        let call =
            "SELECT inserted FROM lms_etl.ingest_chunk($1, source_timezone => 'Europe/Berlin')";
        assert_eq!(
            Spi::get_one_with_args::<i64>(call, &[chunk.as_str().into()]),
            Ok(Some(2))
        );
        assert_eq!(
            Spi::get_one_with_args::<i64>(call, &[chunk.as_str().into()]),
            Ok(Some(0))
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM lms_etl.attempts WHERE created_at = '2026-10-25 00:30:00+00'"
            ),
            2
        );
    }

    #[pg_test]
    fn the_days_of_inserted_rows_are_marked_for_aggregation() {
        Spi::run("DELETE FROM lms_etl.pending_days").unwrap();
        let chunk = format!(
            "[{}, {}]",
            record("u1", "2026-11-24 23:30:00", "run", "null"),
            record("u1", "2026-11-25 00:30:00", "run", "null"),
        );
        ingest(&chunk);
        assert_eq!(
            text("SELECT string_agg(day::text, ',' ORDER BY day) FROM lms_etl.pending_days"),
            "2026-11-24,2026-11-25"
        );
        Spi::run("SELECT count(*) FROM lms_etl.aggregate_pending()").unwrap();
        assert_eq!(count("SELECT count(*) FROM lms_etl.pending_days"), 0);
        // A re-load inserts nothing but marks the chunk's days again (it spans less than a
        // day): rows a failed run left on some Citus workers without their mark get counted.
        ingest(&chunk);
        assert_eq!(
            text("SELECT string_agg(day::text, ',' ORDER BY day) FROM lms_etl.pending_days"),
            "2026-11-24,2026-11-25"
        );
    }

    #[pg_test]
    fn reprocess_moves_records_a_rule_change_made_valid() {
        // Simulate records quarantined under an older rule: valid today, stored as rejected.
        let valid = record("u7", "2026-11-24 10:00:00", "submit", "1");
        let still_bad = record("u8", "yesterday", "run", "null");
        Spi::run_with_args(
            "INSERT INTO lms_etl.rejected_attempts (record_index, raw_record, reason, kind)
             VALUES (3, $1, 'record 3: old rule', 'old'), (4, $2, 'record 4: old rule', 'old')",
            &[valid.as_str().into(), still_bad.as_str().into()],
        )
        .unwrap();
        Spi::run("DELETE FROM lms_etl.pending_days").unwrap();
        let (examined, loaded, kept) = Spi::get_three::<i64, i64, i64>(
            "SELECT examined, loaded, still_rejected FROM lms_etl.reprocess()",
        )
        .unwrap();
        assert_eq!((examined, loaded, kept), (Some(2), Some(1), Some(1)));
        assert_eq!(
            count("SELECT count(*) FROM lms_etl.attempts WHERE user_id = 'u7'"),
            1
        );
        assert_eq!(
            text("SELECT kind || ' | ' || reason FROM lms_etl.rejected_attempts"),
            "created_at: not a timestamp | record 4: field `created_at`: expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found \"yesterday\""
        );
        assert_eq!(
            text("SELECT string_agg(day::text, ',') FROM lms_etl.pending_days"),
            "2026-11-24"
        );
    }

    #[pg_test(
        error = "chunk is not a JSON array of records: EOF while parsing a list at line 1 column 1"
    )]
    fn a_truncated_chunk_is_an_error() {
        ingest("[");
    }

    #[pg_test]
    fn an_empty_chunk_is_fine() {
        assert_eq!(ingest("[]"), (0, 0, 0, 0, 0));
    }
}
