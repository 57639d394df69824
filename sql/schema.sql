-- lms_etl schema: tables and types of the extension (version 0.1.0).
-- Pulled into the install script by extension_sql_file! in pg_ext/src/lib.rs.
-- Released versions are never edited: changes go into lms_etl--<from>--<to>.sql.

CREATE TYPE lms_etl.passback_params AS (
    oauth_consumer_key      text,
    lis_result_sourcedid    text,
    lis_outcome_service_url text
);

-- One row per loader run (or per manual ingest): the window, what happened, how long.
CREATE TABLE lms_etl.runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    window_start    timestamp NOT NULL,
    window_end      timestamp NOT NULL,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'failed', 'partial')),
    fetched         bigint NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    -- {"fetch_ms": .., "load_ms": .., "aggregate_ms": .., ...}
    stage_ms        jsonb NOT NULL DEFAULT '{}',
    error           text,
    CHECK (window_start < window_end)
);

-- The loaded attempts. The primary key is the natural key: re-loading a record is a no-op.
-- created_at leads it so the same index serves per-day aggregation scans.
CREATE TABLE lms_etl.attempts (
    user_id                 text NOT NULL,
    oauth_consumer_key      text,
    lis_result_sourcedid    text,
    lis_outcome_service_url text,
    is_correct              boolean,
    attempt_type            text NOT NULL CHECK (attempt_type IN ('run', 'submit')),
    created_at              timestamp NOT NULL,
    -- Which run loaded the row. Deliberately no foreign key: its per-row check cost about a
    -- quarter of the insert time (BENCHMARKS.md), and runs are never deleted by the loader.
    run_id                  bigint,
    loaded_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attempts_natural_key PRIMARY KEY (created_at, user_id, attempt_type),
    CONSTRAINT attempts_is_correct_by_type CHECK (
        (attempt_type = 'run' AND is_correct IS NULL) OR attempt_type = 'submit')
);

-- Records that could not be loaded, verbatim, with the reason: nothing fetched is lost.
CREATE TABLE lms_etl.rejected_attempts (
    rejected_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint REFERENCES lms_etl.runs (run_id) ON DELETE SET NULL,
    record_index integer NOT NULL,          -- position in its chunk, from 0
    raw_record   text NOT NULL,             -- the JSON exactly as received
    reason       text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_attempts_run_idx ON lms_etl.rejected_attempts (run_id);

-- Chunks committed by a run, written in the same transaction as the chunk's rows.
CREATE TABLE lms_etl.run_chunks (
    run_id      bigint NOT NULL REFERENCES lms_etl.runs (run_id) ON DELETE CASCADE,
    chunk_start timestamp NOT NULL,
    chunk_end   timestamp NOT NULL,
    fetched     bigint NOT NULL,
    inserted    bigint NOT NULL,
    duplicates  bigint NOT NULL,
    rejected    bigint NOT NULL,
    fetch_ms    bigint NOT NULL,
    load_ms     bigint NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, chunk_start)
);

-- Where the next default window starts: the end of the last contiguous committed chunk.
CREATE TABLE lms_etl.watermark (
    source      text PRIMARY KEY DEFAULT 'statistics_api',
    loaded_until timestamp NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per calendar day of created_at (the source's own time zone): the daily report.
CREATE TABLE lms_etl.daily_stats (
    day                 date PRIMARY KEY,
    attempts            bigint NOT NULL,
    successful_attempts bigint NOT NULL,
    unique_users        bigint NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('lms_etl.runs', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.rejected_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.run_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.watermark', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.daily_stats', '');
