//! The loader's side of PostgreSQL: the run lock, the `lms_etl.runs` row, one transaction
//! per chunk (ingest + bookkeeping + watermark), and the daily aggregation calls.
//! All parsing and validation happens in the extension; this module only moves text.

use chrono::{NaiveDate, NaiveDateTime};
use tokio_postgres::{Client, NoTls};

use crate::report::{Counts, DailyStats, RunStatus};
use crate::window::Window;

/// Advisory-lock key held for the length of a run: "lms_etl" in ASCII.
const RUN_LOCK_KEY: i64 = 0x006c_6d73_5f65_746c;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("the lms_etl extension is not installed in this database: run `CREATE EXTENSION lms_etl;` (see README)")]
    ExtensionMissing,
    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn query_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Query { what, source }
}

/// What one committed chunk added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    pub inserted: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

pub struct Database {
    client: Client,
}

impl Database {
    /// Connects and checks that the extension is there. The connection task runs in the background.
    pub async fn connect(url: &str) -> Result<Database, LoadError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(LoadError::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection closed with an error");
            }
        });
        let db = Database { client };
        let installed = db
            .client
            .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'lms_etl'", &[])
            .await
            .map_err(query_err("checking for the lms_etl extension"))?;
        if installed.is_none() {
            return Err(LoadError::ExtensionMissing);
        }
        Ok(db)
    }

    /// Takes the session-level run lock; false when another run holds it.
    pub async fn try_lock(&self) -> Result<bool, LoadError> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUN_LOCK_KEY])
            .await
            .map_err(query_err("taking the run lock"))?;
        Ok(row.get(0))
    }

    /// End of the last contiguous committed chunk, if any run ever committed one.
    pub async fn watermark(&self) -> Result<Option<NaiveDateTime>, LoadError> {
        let row = self
            .client
            .query_opt(
                "SELECT loaded_until FROM lms_etl.watermark WHERE source = 'statistics_api'",
                &[],
            )
            .await
            .map_err(query_err("reading the watermark"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves the watermark over this run's chunks that are committed and contiguous with it
    /// (chunks loaded on parallel connections can commit out of order).
    pub async fn settle_watermark(&self, run_id: i64) -> Result<(), LoadError> {
        self.client
            .execute(
                "WITH RECURSIVE chain(end_at) AS (
                     SELECT loaded_until FROM lms_etl.watermark WHERE source = 'statistics_api'
                     UNION
                     SELECT c.chunk_end FROM lms_etl.run_chunks c JOIN chain ON c.chunk_start = chain.end_at
                      WHERE c.run_id = $1)
                 UPDATE lms_etl.watermark SET loaded_until = (SELECT max(end_at) FROM chain), updated_at = now()
                  WHERE source = 'statistics_api' AND loaded_until < (SELECT max(end_at) FROM chain)",
                &[&run_id],
            )
            .await
            .map_err(query_err("advancing the watermark"))?;
        Ok(())
    }

    /// Records the start of a run; committed at once so even a crashed run leaves a trace.
    /// The very first run also starts the watermark at its window's start.
    pub async fn start_run(&self, window: &Window) -> Result<i64, LoadError> {
        self.client
            .execute(
                "INSERT INTO lms_etl.watermark (source, loaded_until) VALUES ('statistics_api', $1)
                 ON CONFLICT (source) DO NOTHING",
                &[&window.start],
            )
            .await
            .map_err(query_err("initialising the watermark"))?;
        let row = self
            .client
            .query_one(
                "INSERT INTO lms_etl.runs (window_start, window_end) VALUES ($1, $2) RETURNING run_id",
                &[&window.start, &window.end],
            )
            .await
            .map_err(query_err("recording the run"))?;
        Ok(row.get(0))
    }

    /// Loads one chunk atomically: the records (through `lms_etl.ingest_chunk`), the chunk's
    /// bookkeeping, the run's counters and the watermark commit together or not at all.
    pub async fn load_chunk(
        &mut self,
        run_id: i64,
        chunk: &Window,
        json: &str,
        fetched: i64,
        fetch_ms: i64,
    ) -> Result<ChunkCounts, LoadError> {
        let what = || format!("loading chunk {chunk}");
        let started = std::time::Instant::now();
        let tx = self.client.transaction().await.map_err(query_err(what()))?;
        let row = tx
            .query_one(
                "SELECT inserted, duplicates, rejected FROM lms_etl.ingest_chunk($1, $2)",
                &[&json, &run_id],
            )
            .await
            .map_err(query_err(what()))?;
        let counts = ChunkCounts {
            inserted: row.get(0),
            duplicates: row.get(1),
            rejected: row.get(2),
        };
        let load_ms = started.elapsed().as_millis() as i64;
        tx.execute(
            "INSERT INTO lms_etl.run_chunks (run_id, chunk_start, chunk_end, fetched, inserted, duplicates, rejected, fetch_ms, load_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[&run_id, &chunk.start, &chunk.end, &fetched, &counts.inserted, &counts.duplicates, &counts.rejected, &fetch_ms, &load_ms],
        )
        .await
        .map_err(query_err(what()))?;
        tx.execute(
            "UPDATE lms_etl.runs SET fetched = fetched + $2, inserted = inserted + $3,
                    duplicates = duplicates + $4, rejected = rejected + $5
              WHERE run_id = $1",
            &[
                &run_id,
                &fetched,
                &counts.inserted,
                &counts.duplicates,
                &counts.rejected,
            ],
        )
        .await
        .map_err(query_err(what()))?;
        // Advance only over contiguous data: a back-fill of an old window, or a chunk that
        // commits before the one in front of it, must not move it (settle_watermark does later).
        tx.execute(
            "UPDATE lms_etl.watermark SET loaded_until = $2, updated_at = now()
              WHERE source = 'statistics_api' AND loaded_until >= $1 AND loaded_until < $2",
            &[&chunk.start, &chunk.end],
        )
        .await
        .map_err(query_err(what()))?;
        tx.commit().await.map_err(query_err(what()))?;
        Ok(counts)
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
                "SELECT day, attempts, successful_attempts, unique_users, computed_at
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
        let rows = self
            .client
            .query(
                "SELECT day, attempts, successful_attempts, unique_users, computed_at
                   FROM lms_etl.daily_stats WHERE day BETWEEN $1 AND $2 ORDER BY day",
                &[&from, &to],
            )
            .await
            .map_err(query_err("reading daily_stats"))?;
        Ok(rows.iter().map(daily_stats).collect())
    }

    /// Closes the run row with its outcome.
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
                  WHERE run_id = $1 RETURNING fetched, inserted, duplicates, rejected",
                &[&run_id, &status.as_str(), stage_ms, &error],
            )
            .await
            .map_err(query_err("closing the run"))?;
        Ok(Counts {
            fetched: row.get(0),
            inserted: row.get(1),
            duplicates: row.get(2),
            conflicts: 0,
            rejected: row.get(3),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn daily_stats(row: &tokio_postgres::Row) -> DailyStats {
    DailyStats {
        day: row.get(0),
        attempts: row.get(1),
        successful_attempts: row.get(2),
        unique_users: row.get(3),
        computed_at: row.get(4),
    }
}
