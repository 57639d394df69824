//! The loader's side of PostgreSQL: the run lock, the `lms_etl.runs` row, one transaction
//! per chunk (sub-batches through `lms_etl.ingest_chunk`, then bookkeeping, committed only
//! while the run holds its lock), the watermark and the aggregation calls.
//! All parsing and validation happens in the extension; this module only moves text.

use chrono::{DateTime, NaiveDate, Utc};
use lms_etl_parse::source_time::{self, chrono_tz::Tz};
use tokio_postgres::{Client, Transaction};

use crate::pg_tls::{SslMode, Target};
use crate::report::{Counts, DailyStats, RejectionGroup, RunStatus};
use crate::window::Window;

/// Seed of the run lock's key: "lms" in ASCII. A run holds, for its length, the advisory
/// lock whose 64-bit key is `hashtextextended(api.client, RUN_LOCK_SEED)` (see
/// [`RUN_LOCK_KEY_SQL`]), so each platform served by the database has its own run lock. A
/// 32-bit key (`hashtext`) was not enough: names that collide there are easy to meet (the
/// birthday bound is about 77 000 names for even odds, and `platform-12428` and
/// `platform-99873` already share one), and the second platform's run then exited 3, which
/// systemd counts as success, blaming "this api.client".
pub const RUN_LOCK_SEED: i64 = 0x006c_6d73;

/// The run lock's key for the client in `$1` and the seed in `$2` ([`RUN_LOCK_SEED`]):
/// `pg_advisory_lock(<this>)`. In `pg_locks` it shows as `objsubid = 1`, `classid` the upper
/// and `objid` the lower 32 bits of the key (each as an unsigned oid).
pub const RUN_LOCK_KEY_SQL: &str = "hashtextextended($1::text, $2::bigint)";

/// The watermark row of a platform: `lms_etl.watermark.source` for `api.client`.
pub fn watermark_source(client: &str) -> String {
    format!("{WATERMARK_PREFIX}:{client}")
}

/// `lms_etl.watermark.source` before the watermark was kept per client; the first client
/// that runs without a row of its own adopts it ([`Database::adopt_legacy_state`]).
pub const WATERMARK_PREFIX: &str = "statistics_api";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Names the server and the sslmode; `message` is scrubbed of the password.
    #[error("cannot connect to PostgreSQL at {server} (sslmode={sslmode}): {message}")]
    Connect {
        server: String,
        sslmode: SslMode,
        message: String,
    },
    #[error("the lms_etl extension is not installed in this database: run `CREATE EXTENSION lms_etl;` (see README)")]
    ExtensionMissing,
    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("run {run_id} no longer holds the run lock (its lock connection was lost, or a later run closed it as abandoned); chunk {chunk} was rolled back")]
    LockLost { run_id: i64, chunk: String },
    #[error("the lms_etl extension in this database is version {installed} and this lms-etl is {binary}: install the {binary} extension files and run `ALTER EXTENSION lms_etl UPDATE;` in the database, or run the lms-etl binary of version {installed}")]
    VersionMismatch { installed: String, binary: String },
    #[error("the lms_etl extension in this database says version {installed} but lacks lms_etl.{missing}, which that version has: it was created by a pre-release build; recreate it (DROP EXTENSION lms_etl CASCADE drops the data) or restore it from a dump")]
    SchemaBehind {
        installed: String,
        missing: &'static str,
    },
    #[error("lms_etl.setting('{name}') holds {value:?}, which is not a time zone")]
    BadSetting { name: &'static str, value: String },
}

impl LoadError {
    /// The batch was not a JSON array (SQLSTATE 22P02 from `ingest_chunk`): the body was
    /// malformed in transit or at the source, which another attempt may cure.
    pub fn is_malformed_body(&self) -> bool {
        matches!(self, LoadError::Query { source, .. }
            if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION))
    }
}

fn connect_error(target: &Target, e: &tokio_postgres::Error) -> LoadError {
    let mut message = crate::error_chain(e);
    // No server or driver is known to echo it, but a password must not reach a log or mail.
    if let Some(password) = target.password().and_then(|p| std::str::from_utf8(p).ok()) {
        if !password.is_empty() {
            message = message.replace(password, "***");
        }
    }
    LoadError::Connect {
        server: target.server(),
        sslmode: target.sslmode(),
        message,
    }
}

fn query_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Query { what, source }
}

/// What a chunk (or one sub-batch of it) did, as `ingest_chunk` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    pub fetched: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub conflicts: i64,
    /// Invalid records newly quarantined.
    pub rejected: i64,
    /// Every invalid record, newly quarantined or already there: what the ratio judges.
    pub invalid: i64,
}

impl ChunkCounts {
    pub fn add(&mut self, other: &ChunkCounts) {
        self.fetched += other.fetched;
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.rejected += other.rejected;
        self.invalid += other.invalid;
    }
}

/// The zones a run works in.
#[derive(Debug, Clone, Copy)]
pub struct Zones {
    pub source: Tz,
    pub report: Tz,
}

pub struct Database {
    client: Client,
}

impl Database {
    /// Connects (TLS as the target's `sslmode` says) and checks that the extension is there.
    /// Every connection of the program is made here. The connection task runs in the background.
    pub async fn connect(target: &Target) -> Result<Database, LoadError> {
        let db = Database::connect_server(target).await?;
        db.require_extension().await?;
        Ok(db)
    }

    /// Connects without looking for the extension (`lms-etl doctor` checks it apart).
    pub async fn connect_server(target: &Target) -> Result<Database, LoadError> {
        let (client, connection) = target
            .config()
            .connect(target.tls())
            .await
            .map_err(|e| connect_error(target, &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection closed with an error");
            }
        });
        Ok(Database { client })
    }

    pub async fn require_extension(&self) -> Result<(), LoadError> {
        let installed = self
            .client
            .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'lms_etl'", &[])
            .await
            .map_err(query_err("checking for the lms_etl extension"))?;
        if installed.is_none() {
            return Err(LoadError::ExtensionMissing);
        }
        Ok(())
    }

    /// The installed extension must be this binary's version, with its newest table.
    pub async fn check_version(&self, binary: &str) -> Result<(), LoadError> {
        const NEWEST: &str = "held_chunks";
        let row = self
            .client
            .query_one(
                "SELECT extversion, to_regclass('lms_etl.' || $1) IS NOT NULL
                   FROM pg_extension WHERE extname = 'lms_etl'",
                &[&NEWEST],
            )
            .await
            .map_err(query_err("reading the lms_etl extension's version"))?;
        let installed: String = row.get(0);
        if installed != binary {
            return Err(LoadError::VersionMismatch {
                installed,
                binary: binary.to_owned(),
            });
        }
        if !row.get::<_, bool>(1) {
            return Err(LoadError::SchemaBehind {
                installed,
                missing: NEWEST,
            });
        }
        Ok(())
    }

    /// Takes `client`'s session-level run lock; None when another run of that client holds
    /// it. Returns the backend pid that holds it, for the chunks' lock check.
    pub async fn try_lock(&self, client: &str) -> Result<Option<i32>, LoadError> {
        let row = self
            .client
            .query_one(
                &format!("SELECT pg_try_advisory_lock({RUN_LOCK_KEY_SQL}), pg_backend_pid()"),
                &[&client, &RUN_LOCK_SEED],
            )
            .await
            .map_err(query_err("taking the run lock"))?;
        Ok(row.get::<_, bool>(0).then(|| row.get(1)))
    }

    /// Closes the rows of `client`'s runs whose process died, and of runs from before the
    /// client was recorded (only called while holding the client's lock, so no such run is
    /// alive; another client's running run is alive under its own lock and is left alone).
    /// A zombie chunk transaction of such a run finishes first: this update waits for its
    /// row lock, and once it commits, no chunk of that run can commit.
    pub async fn abandon_dead_runs(&self, client: &str) -> Result<Vec<i64>, LoadError> {
        let rows = self
            .client
            .query(
                "UPDATE lms_etl.runs SET status = 'abandoned', finished_at = now(),
                        error = coalesce(error, 'the process ended without closing its run; closed by a later run')
                  WHERE status = 'running' AND (client = $1 OR client IS NULL) RETURNING run_id",
                &[&client],
            )
            .await
            .map_err(query_err("closing abandoned runs"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The report zone from the settings, and the source zone (configured, else settings).
    pub async fn zones(&self, configured_source: Option<Tz>) -> Result<Zones, LoadError> {
        let row = self
            .client
            .query_one(
                "SELECT lms_etl.setting('report_timezone'), lms_etl.setting('source_timezone')",
                &[],
            )
            .await
            .map_err(query_err("reading lms_etl.settings"))?;
        let zone = |name: &'static str, value: String| {
            source_time::parse_zone(&value).map_err(|_| LoadError::BadSetting { name, value })
        };
        Ok(Zones {
            report: zone("report_timezone", row.get(0))?,
            source: match configured_source {
                Some(z) => z,
                None => zone("source_timezone", row.get(1))?,
            },
        })
    }

    /// The source zone `client`'s last run that loaded anything read its times in.
    pub async fn last_source_zone(&self, client: &str) -> Result<Option<String>, LoadError> {
        let row = self
            .client
            .query_opt(
                "SELECT source_timezone FROM lms_etl.runs
                  WHERE (client = $1 OR client IS NULL) AND inserted > 0 AND source_timezone IS NOT NULL
                  ORDER BY run_id DESC LIMIT 1",
                &[&client],
            )
            .await
            .map_err(query_err("reading the last run's source zone"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves `client`'s watermark forward to `to` (never back).
    pub async fn raise_watermark(&self, client: &str, to: DateTime<Utc>) -> Result<(), LoadError> {
        self.client
            .execute(
                "UPDATE lms_etl.watermark SET loaded_until = $1, updated_at = now()
                  WHERE source = $2 AND loaded_until < $1",
                &[&to, &watermark_source(client)],
            )
            .await
            .map_err(query_err("moving the watermark"))?;
        Ok(())
    }

    /// A database loaded before the watermark was kept per client has one row,
    /// `statistics_api`, runs without a client and held chunks of client `''`. The first
    /// client that runs without a watermark of its own adopts all three, in one transaction,
    /// so a single-platform install carries on exactly where it was. Returns whether this
    /// client adopted them. Two clients starting at once: the second waits for the first's
    /// row lock and then finds no legacy row left.
    pub async fn adopt_legacy_state(&mut self, client: &str) -> Result<bool, LoadError> {
        let what = "adopting the watermark kept before it was per client";
        let tx = self.client.transaction().await.map_err(query_err(what))?;
        let adopted = tx
            .execute(
                "UPDATE lms_etl.watermark SET source = $1
                  WHERE source = $2
                    AND NOT EXISTS (SELECT 1 FROM lms_etl.watermark WHERE source = $1)",
                &[&watermark_source(client), &WATERMARK_PREFIX],
            )
            .await
            .map_err(query_err(what))?;
        if adopted > 0 {
            tx.execute(
                "UPDATE lms_etl.held_chunks SET client = $1 WHERE client = ''",
                &[&client],
            )
            .await
            .map_err(query_err(what))?;
            tx.execute(
                "UPDATE lms_etl.runs SET client = $1 WHERE client IS NULL",
                &[&client],
            )
            .await
            .map_err(query_err(what))?;
        }
        tx.commit().await.map_err(query_err(what))?;
        Ok(adopted > 0)
    }

    /// End of `client`'s last contiguous committed chunk, if any of its runs committed one.
    pub async fn watermark(&self, client: &str) -> Result<Option<DateTime<Utc>>, LoadError> {
        let row = self
            .client
            .query_opt(
                "SELECT loaded_until FROM lms_etl.watermark WHERE source = $1",
                &[&watermark_source(client)],
            )
            .await
            .map_err(query_err("reading the watermark"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves the run's client's watermark to the end of this run's contiguous committed prefix: the chain of
    /// its chunks from the window's start with no hole (chunks loaded on parallel
    /// connections commit out of order). Only a run whose window starts at or before the
    /// watermark moves it (a back-fill after a gap never does), and a chunk that failed or
    /// was refused stops the chain, so no later chunk can carry the watermark past it.
    pub async fn settle_watermark(&self, client: &str, run_id: i64) -> Result<(), LoadError> {
        self.client
            .execute(
                "WITH RECURSIVE chain(end_at) AS (
                     SELECT window_start FROM lms_etl.runs WHERE run_id = $1
                     UNION
                     SELECT c.chunk_end FROM lms_etl.run_chunks c JOIN chain ON c.chunk_start = chain.end_at
                      WHERE c.run_id = $1)
                 UPDATE lms_etl.watermark SET loaded_until = (SELECT max(end_at) FROM chain), updated_at = now()
                  WHERE source = $2
                    AND loaded_until >= (SELECT window_start FROM lms_etl.runs WHERE run_id = $1)
                    AND loaded_until < (SELECT max(end_at) FROM chain)",
                &[&run_id, &watermark_source(client)],
            )
            .await
            .map_err(query_err("advancing the watermark"))?;
        Ok(())
    }

    /// Records the start of `client`'s run; committed at once so even a crashed run leaves a
    /// trace. The client's very first run also starts its watermark at its window's start.
    pub async fn start_run(
        &self,
        client: &str,
        window: &Window,
        requested_end: Option<DateTime<Utc>>,
        source_zone: Tz,
        lock_pid: i32,
        sheets_configured: bool,
    ) -> Result<i64, LoadError> {
        self.client
            .execute(
                "INSERT INTO lms_etl.watermark (source, loaded_until) VALUES ($1, $2)
                 ON CONFLICT (source) DO NOTHING",
                &[&watermark_source(client), &window.start],
            )
            .await
            .map_err(query_err("initialising the watermark"))?;
        let row = self
            .client
            .query_one(
                "INSERT INTO lms_etl.runs (window_start, window_end, requested_end, source_timezone, lock_pid,
                                           sheets_configured, client)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING run_id",
                &[
                    &window.start,
                    &window.end,
                    &requested_end,
                    &source_zone.name(),
                    &lock_pid,
                    &sheets_configured,
                    &client,
                ],
            )
            .await
            .map_err(query_err("recording the run"))?;
        Ok(row.get(0))
    }

    /// Makes the monthly partitions of `lms_etl.attempts` that the window's rows and the next
    /// month's go to (`lms_etl.create_partitions`, allowed to the loader role); returns how
    /// many were new. Without them rows still load, into the default partition.
    pub async fn prepare_partitions(&self, window: &Window) -> Result<i64, LoadError> {
        let row = self
            .client
            .query_one(
                // A backfill reaching back more than 10 years leaves its oldest rows in the
                // default partition rather than make a table per month.
                "SELECT count(*) FROM lms_etl.create_partitions(
                     greatest($1::timestamptz, $2::timestamptz + interval '1 month' - interval '10 years'),
                     $2::timestamptz + interval '1 month')",
                &[&window.start, &window.end],
            )
            .await
            .map_err(query_err("creating the window's monthly partitions"))?;
        Ok(row.get(0))
    }

    /// Opens one chunk's transaction.
    pub async fn begin_chunk(&mut self) -> Result<ChunkTx<'_>, LoadError> {
        Ok(ChunkTx {
            tx: self
                .client
                .transaction()
                .await
                .map_err(query_err("opening a chunk transaction"))?,
        })
    }

    /// Aggregates every day marked as changed (this run's, and any a dead run left).
    pub async fn aggregate_pending(&self) -> Result<Vec<DailyStats>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT day, attempts, successful_attempts, unique_users, computed_at, submits, submit_success_rate
                   FROM lms_etl.aggregate_pending()",
                &[],
            )
            .await
            .map_err(query_err("aggregating the changed days"))?;
        Ok(rows.iter().map(daily_stats).collect())
    }

    /// Recomputes `daily_stats` for every day in [from, to] with `lms_etl.refresh_daily_stats`.
    pub async fn aggregate(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyStats>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT day, attempts, successful_attempts, unique_users, computed_at, submits, submit_success_rate
                   FROM lms_etl.refresh_daily_stats($1, $2)",
                &[&from, &to],
            )
            .await
            .map_err(query_err(format!("aggregating days {from}..{to}")))?;
        Ok(rows.iter().map(daily_stats).collect())
    }

    /// Stored `daily_stats` for [from, to], without recomputing.
    pub async fn daily_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyStats>, LoadError> {
        let days = self.daily_stats_versions(from, to).await?;
        Ok(days.into_iter().map(|d| d.stats).collect())
    }

    /// What a run pushes to Sheets: the `touched` days, and every day whose numbers changed
    /// since it was last pushed (`lms_etl.sheets_pending()`), each with its version.
    pub async fn sheets_due(&self, touched: &[NaiveDate]) -> Result<Vec<DayVersion>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT day, attempts, successful_attempts, unique_users, computed_at, changed_at, submits, submit_success_rate
                   FROM lms_etl.daily_stats WHERE day = ANY($1)
                 UNION
                 SELECT day, attempts, successful_attempts, unique_users, computed_at, changed_at, submits, submit_success_rate
                   FROM lms_etl.sheets_pending()
                 ORDER BY 1",
                &[&touched],
            )
            .await
            .map_err(query_err("reading the days due in Google Sheets"))?;
        Ok(rows.iter().map(day_version).collect())
    }

    /// Stored `daily_stats` for [from, to] with their versions (a forced Sheets re-push marks them).
    pub async fn daily_stats_versions(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayVersion>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT day, attempts, successful_attempts, unique_users, computed_at, changed_at, submits, submit_success_rate
                   FROM lms_etl.daily_stats WHERE day BETWEEN $1 AND $2 ORDER BY day",
                &[&from, &to],
            )
            .await
            .map_err(query_err("reading daily_stats"))?;
        Ok(rows.iter().map(day_version).collect())
    }

    /// Records that `days` are in Google Sheets with the numbers of their versions; a day
    /// recomputed since it was read stays due. Returns the days marked.
    pub async fn mark_sheets_pushed(&self, days: &[DayVersion]) -> Result<i64, LoadError> {
        let dates: Vec<NaiveDate> = days.iter().map(|d| d.stats.day).collect();
        let versions: Vec<DateTime<Utc>> = days.iter().map(|d| d.changed_at).collect();
        let row = self
            .client
            .query_one(
                "SELECT lms_etl.mark_sheets_pushed($1, $2)",
                &[&dates, &versions],
            )
            .await
            .map_err(query_err("marking the days pushed to Google Sheets"))?;
        Ok(row.get(0))
    }

    /// Closes the run row with its outcome; returns the run's committed counters.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        stage_ms: &serde_json::Value,
        error: Option<&str>,
    ) -> Result<Counts, LoadError> {
        let row = self
            .client
            .query_one(
                "UPDATE lms_etl.runs SET status = $2, stage_ms = $3, error = $4, finished_at = now()
                  WHERE run_id = $1 RETURNING fetched, inserted, duplicates, conflicts, rejected",
                &[&run_id, &status.as_str(), stage_ms, &error],
            )
            .await
            .map_err(query_err("closing the run"))?;
        Ok(Counts {
            fetched: row.get(0),
            inserted: row.get(1),
            duplicates: row.get(2),
            conflicts: row.get(3),
            rejected: row.get(4),
        })
    }

    /// This run's quarantine grouped by kind, largest first, with one reason as the example.
    pub async fn rejection_groups(&self, run_id: i64) -> Result<Vec<RejectionGroup>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT coalesce(kind, 'unclassified'), count(*), min(reason)
                   FROM lms_etl.rejected_attempts WHERE run_id = $1
                  GROUP BY 1 ORDER BY 2 DESC, 1",
                &[&run_id],
            )
            .await
            .map_err(query_err("summarising the rejected records"))?;
        Ok(rows
            .iter()
            .map(|r| RejectionGroup {
                kind: r.get(0),
                count: r.get(1),
                example: r.get(2),
            })
            .collect())
    }

    /// `lms_etl.reprocess`: (examined, loaded, still rejected).
    pub async fn reprocess(&self, run_id: Option<i64>) -> Result<(i64, i64, i64), LoadError> {
        let row = self
            .client
            .query_one(
                "SELECT examined, loaded, still_rejected FROM lms_etl.reprocess($1)",
                &[&run_id],
            )
            .await
            .map_err(query_err("re-ingesting quarantined records"))?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// One chunk's transaction: its sub-batches, then its bookkeeping, then commit.
pub struct ChunkTx<'a> {
    tx: Transaction<'a>,
}

/// What the judge decided about a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The chunk counts: recorded in `run_chunks`, any hold on its time lifted.
    Completed,
    /// Refused for its invalid records: its rows stay, it is held, the watermark stays before it.
    Refused,
}

impl ChunkTx<'_> {
    /// Whether any part of `client`'s `chunk` was refused before and is still held.
    pub async fn is_held(&self, client: &str, chunk: &Window) -> Result<bool, LoadError> {
        let row = self
            .tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM lms_etl.held_chunks
                                 WHERE client = $3 AND chunk_start < $2 AND chunk_end > $1)",
                &[&chunk.start, &chunk.end, &client],
            )
            .await
            .map_err(query_err(format!("checking holds on chunk {chunk}")))?;
        Ok(row.get(0))
    }

    /// One sub-batch (a JSON array of whole records) through `lms_etl.ingest_chunk`.
    pub async fn ingest(
        &self,
        json: &str,
        records: usize,
        first_index: usize,
        run_id: i64,
        zone: Tz,
    ) -> Result<ChunkCounts, LoadError> {
        let first_index = i32::try_from(first_index).unwrap_or(i32::MAX);
        let row = self
            .tx
            .query_one(
                "SELECT inserted, duplicates, conflicts, rejected, invalid
                   FROM lms_etl.ingest_chunk($1, $2, $3, $4)",
                &[&json, &run_id, &zone.name(), &first_index],
            )
            .await
            .map_err(query_err(format!(
                "loading records {first_index}..{}",
                first_index as usize + records
            )))?;
        Ok(ChunkCounts {
            fetched: records as i64,
            inserted: row.get(0),
            duplicates: row.get(1),
            conflicts: row.get(2),
            rejected: row.get(3),
            invalid: row.get(4),
        })
    }

    /// Adds the chunk to the run's counters and, when completed, records it in `run_chunks`
    /// (the watermark moves over it in `settle_watermark`) and lifts any hold on its time;
    /// then commits. A refused chunk commits its rows but is held instead, so the watermark
    /// stays before it and later runs judge it strictly.
    /// Commits only while the run still holds its lock: the counters' update finds the
    /// run's row `running` with its lock-holding backend still holding the lock of the run's
    /// client, or rolls back. Holds are `client`'s (the run's).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        self,
        client: &str,
        run_id: i64,
        chunk: &Window,
        counts: &ChunkCounts,
        fetch_ms: i64,
        load_ms: i64,
        verdict: Verdict,
    ) -> Result<(), LoadError> {
        let what = || format!("committing chunk {chunk}");
        if verdict == Verdict::Refused {
            self.tx
                .execute(
                    "INSERT INTO lms_etl.held_chunks (client, chunk_start, chunk_end, run_id, fetched, invalid)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT ON CONSTRAINT held_chunks_pkey DO UPDATE
                        SET run_id = EXCLUDED.run_id, fetched = EXCLUDED.fetched,
                            invalid = EXCLUDED.invalid, held_at = now()",
                    &[&client, &chunk.start, &chunk.end, &run_id, &counts.fetched, &counts.invalid],
                )
                .await
                .map_err(query_err(what()))?;
        } else {
            self.tx
                .execute(
                    "DELETE FROM lms_etl.held_chunks WHERE client = $3 AND chunk_start < $2 AND chunk_end > $1",
                    &[&chunk.start, &chunk.end, &client],
                )
                .await
                .map_err(query_err(what()))?;
            self.tx
                .execute(
                    "INSERT INTO lms_etl.run_chunks (run_id, chunk_start, chunk_end, fetched, inserted, duplicates,
                                                     rejected, fetch_ms, load_ms, conflicts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[&run_id, &chunk.start, &chunk.end, &counts.fetched, &counts.inserted, &counts.duplicates,
                      &counts.rejected, &fetch_ms, &load_ms, &counts.conflicts],
                )
                .await
                .map_err(query_err(what()))?;
        }
        // Last before the commit: it holds the run row's lock until then. The one-key (bigint)
        // form of an advisory lock shows its key's upper and lower 32 bits as classid and
        // objid (unsigned, as oid) with objsubid 1.
        let held = self
            .tx
            .execute(
                "UPDATE lms_etl.runs r SET fetched = fetched + $2, inserted = inserted + $3,
                        duplicates = duplicates + $4, conflicts = conflicts + $5, rejected = rejected + $6
                  WHERE r.run_id = $1 AND r.status = 'running'
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l,
                                       LATERAL (SELECT hashtextextended(r.client, $7::bigint) AS key) k
                                 WHERE l.locktype = 'advisory' AND l.granted AND l.pid = r.lock_pid
                                   AND l.classid = ((k.key >> 32) & 4294967295)::oid
                                   AND l.objid = (k.key & 4294967295)::oid
                                   AND l.objsubid = 1)",
                &[&run_id, &counts.fetched, &counts.inserted, &counts.duplicates, &counts.conflicts,
                  &counts.rejected, &RUN_LOCK_SEED],
            )
            .await
            .map_err(query_err(what()))?;
        if held == 0 {
            let _ = self.tx.rollback().await;
            return Err(LoadError::LockLost {
                run_id,
                chunk: chunk.to_string(),
            });
        }
        self.tx.commit().await.map_err(query_err(what()))
    }

    pub async fn rollback(self) {
        // A failed rollback leaves the transaction to die with its connection.
        let _ = self.tx.rollback().await;
    }
}

/// A day's statistics with `changed_at`, the version they were read at.
#[derive(Debug, Clone, PartialEq)]
pub struct DayVersion {
    pub stats: DailyStats,
    pub changed_at: DateTime<Utc>,
}

fn day_version(row: &tokio_postgres::Row) -> DayVersion {
    DayVersion {
        stats: daily_stats(row),
        changed_at: row.get(5),
    }
}

fn daily_stats(row: &tokio_postgres::Row) -> DailyStats {
    DailyStats {
        day: row.get(0),
        attempts: row.get(1),
        successful_attempts: row.get(2),
        unique_users: row.get(3),
        computed_at: row.get(4),
        submits: row.get("submits"),
        submit_success_rate: row.get("submit_success_rate"),
    }
}
