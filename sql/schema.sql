-- lms_etl schema: tables and types of the extension (HEAD, version 0.2.0).
-- Pulled into the install script by extension_sql_file! in pg_ext/src/lib.rs.
-- Released versions are frozen in sql/released/; changes since reach an existing database
-- through lms_etl--<from>--<to>.sql. Columns added after 0.1.0 stand last in each table, in
-- the order the upgrade script adds them, so a fresh install and an upgrade look the same.

-- lms_etl reads text as UTF-8 (sourcedids, passback dicts, JSON): in a database of another
-- encoding its parsers would misread non-ASCII text, so it refuses to install there.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'lms_etl needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0';
    END IF;
END
$$;

CREATE TYPE lms_etl.passback_params AS (
    oauth_consumer_key      text,
    lis_result_sourcedid    text,
    lis_outcome_service_url text
);

-- lis_result_sourcedid split into course, problem (LTI block) and learner (version 0.2.0):
-- what lms_etl.split_sourcedid returns.
CREATE TYPE lms_etl.sourcedid AS (
    course_id  text,
    org        text,
    course     text,
    course_run text,
    block_id   text,
    user_id    text
);

-- A day's statistics per problem (course, block) as parallel arrays, one element per
-- problem: what the aggregate lms_etl.problem_day returns and aggregate_daily unnests into
-- lms_etl.daily_problem_stats (version 0.2.0). NULL course and block: attempts whose
-- sourcedid is NULL or malformed.
CREATE TYPE lms_etl.problem_day AS (
    course_ids                 text[],
    block_ids                  text[],
    attempts                   bigint[],
    runs                       bigint[],
    submits                    bigint[],
    successful_submits         bigint[],
    users                      bigint[],
    submitters                 bigint[],
    users_solved               bigint[],
    users_first_submit_correct bigint[]
);

-- True when PostgreSQL knows the IANA zone name. Declared IMMUTABLE for CHECK
-- constraints: the zone database changes with PostgreSQL releases, not within a session.
CREATE FUNCTION lms_etl.is_time_zone(name text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM now() AT TIME ZONE name;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;
COMMENT ON FUNCTION lms_etl.is_time_zone(text) IS
    'True when the text is a time zone name PostgreSQL knows (IANA, e.g. Europe/Moscow).';

-- The settings lms_etl knows, each with its default (version 0.2.0). The zones are IANA
-- names; the health.* thresholds are read by lms_etl.health(); retention.* by
-- lms_etl.apply_retention() (months 0: keep everything).
CREATE FUNCTION lms_etl.setting_default(name text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE setting_default.name
        WHEN 'report_timezone' THEN 'UTC'
        WHEN 'source_timezone' THEN 'UTC'
        WHEN 'health.max_data_age' THEN '26 hours'
        WHEN 'health.max_run_age' THEN '26 hours'
        WHEN 'health.volume_days' THEN '1'
        WHEN 'health.volume_k' THEN '3'
        WHEN 'health.volume_pct' THEN '25'
        WHEN 'health.max_rejected_share' THEN '0.05'
        WHEN 'retention.months' THEN '0'
        WHEN 'retention.action' THEN 'detach'
        WHEN 'retention.applied_until' THEN '-infinity'
    END
$$;
COMMENT ON FUNCTION lms_etl.setting_default(text) IS
    'Default of an lms_etl setting; NULL for a name lms_etl does not know.';

-- True when `value` is valid for the setting `name` (false for an unknown name). Declared
-- IMMUTABLE for the CHECK constraint, like is_time_zone.
CREATE FUNCTION lms_etl.setting_is_valid(name text, value text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE setting_is_valid.name
        WHEN 'report_timezone', 'source_timezone' THEN
            RETURN lms_etl.is_time_zone(setting_is_valid.value);
        WHEN 'health.max_data_age', 'health.max_run_age' THEN
            RETURN setting_is_valid.value::interval > interval '0';
        WHEN 'health.volume_days' THEN
            RETURN setting_is_valid.value::integer BETWEEN 1 AND 366;
        WHEN 'health.volume_k' THEN
            RETURN setting_is_valid.value::numeric > 0;
        WHEN 'health.volume_pct' THEN
            RETURN setting_is_valid.value::numeric BETWEEN 0 AND 100;
        WHEN 'health.max_rejected_share' THEN
            RETURN setting_is_valid.value::numeric BETWEEN 0 AND 1;
        WHEN 'retention.months' THEN
            RETURN setting_is_valid.value::integer BETWEEN 0 AND 1200;
        WHEN 'retention.action' THEN
            RETURN setting_is_valid.value IN ('detach', 'drop');
        WHEN 'retention.applied_until' THEN
            RETURN setting_is_valid.value::timestamptz IS NOT NULL;
        ELSE
            RETURN false;
    END CASE;
EXCEPTION WHEN data_exception THEN
    RETURN false;
END
$$;
COMMENT ON FUNCTION lms_etl.setting_is_valid(text, text) IS
    'True when the value is valid for the lms_etl setting of that name.';

-- Settings shared by the loader, psql and pg_cron. A table, not a GUC: it travels with
-- pg_dump into any database. Absent rows take the defaults of lms_etl.setting().
CREATE TABLE lms_etl.settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    CONSTRAINT settings_valid CHECK (lms_etl.setting_is_valid(name, value)),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per loader run (or per manual ingest): the window, what happened, how long.
CREATE TABLE lms_etl.runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    -- running → succeeded | partial (an output failed) | failed | interrupted (a signal);
    -- abandoned: the process died and a later run closed the row.
    status          text NOT NULL DEFAULT 'running'
                    CONSTRAINT runs_status_check
                    CHECK (status IN ('running', 'succeeded', 'failed', 'partial', 'interrupted', 'abandoned')),
    fetched         bigint NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    -- {"connect": .., "fetch+load": .., "aggregate": .., ...}
    stage_ms        jsonb NOT NULL DEFAULT '{}',
    error           text,
    -- Records whose key matches a loaded row but whose content differs.
    conflicts       bigint NOT NULL DEFAULT 0,
    -- The --end the operator asked for, when it was clamped to now - settle lag.
    requested_end   timestamptz,
    -- Zone the API's naive times are read in for this run (NULL: the settings' source zone).
    source_timezone text CHECK (lms_etl.is_time_zone(source_timezone)),
    -- Backend of the run's lock-holding connection: chunks commit only while it holds the lock.
    lock_pid        integer,
    -- Whether the run had Google Sheets configured: lms_etl.health() then watches pushes.
    sheets_configured boolean,
    -- The platform (api.client) it loaded from: the lock, the watermark and the history are
    -- kept per platform (NULL: a run of 0.1.0, or of a single-platform database before).
    client          text,
    CONSTRAINT runs_check CHECK (window_start < window_end)
);

-- The loaded attempts. The natural key (on each partition, below) keeps re-loads out; it
-- includes the problem (lis_result_sourcedid, NULL counting as a value) so two submits of one
-- user at the same instant on different problems are two attempts. created_at leads it so
-- the same index serves per-day aggregation scans. Partitioned by month of created_at (sql/partitions.sql):
-- a day's aggregation reads one month, and old months leave by detach or drop, not DELETE.
CREATE TABLE lms_etl.attempts (
    user_id                 text NOT NULL,
    oauth_consumer_key      text,
    lis_result_sourcedid    text,
    lis_outcome_service_url text,
    is_correct              boolean,
    attempt_type            text NOT NULL CHECK (attempt_type IN ('run', 'submit')),
    -- The API's naive time read in the run's source zone.
    created_at              timestamptz NOT NULL,
    -- Which run loaded the row. Deliberately no foreign key: its per-row check cost about a
    -- quarter of the insert time (BENCHMARKS.md), and runs are never deleted by the loader.
    run_id                  bigint,
    loaded_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attempts_is_correct_by_type CHECK (
        (attempt_type = 'run' AND is_correct IS NULL) OR attempt_type = 'submit')
) PARTITION BY RANGE (created_at);
-- Attempts of a month without its own partition (made ahead by lms_etl.create_partitions):
-- a load never fails for want of a partition.
CREATE TABLE lms_etl.attempts_default PARTITION OF lms_etl.attempts DEFAULT;
-- The natural key is each partition's own unique constraint (create_partitions gives every
-- month one), not the parent's: it includes created_at, so equal keys always meet in the
-- same partition. A key on the parent would make pg_dump's restore fail: CREATE EXTENSION
-- makes the parent's index, the dump's ATTACH PARTITION then creates each month's, and the
-- dump's own ADD CONSTRAINT for it finds the name taken.
ALTER TABLE lms_etl.attempts_default ADD CONSTRAINT attempts_default_natural_key
    UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid);

-- Records that could not be loaded, verbatim, with the reason: nothing fetched is lost.
-- A record is kept once however often it is fetched again (by the overlap or a re-run).
CREATE TABLE lms_etl.rejected_attempts (
    rejected_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint REFERENCES lms_etl.runs (run_id) ON DELETE SET NULL,
    record_index integer NOT NULL,          -- position in its chunk, from 0
    raw_record   text NOT NULL,             -- the JSON exactly as received
    reason       text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    -- A stable class of the reason ('created_at: not a timestamp', 'conflict: ...') for
    -- grouping; NULL for rows quarantined by 0.1.0.
    kind         text
);
CREATE INDEX rejected_attempts_run_idx ON lms_etl.rejected_attempts (run_id);
CREATE UNIQUE INDEX rejected_attempts_raw_key ON lms_etl.rejected_attempts ((md5(raw_record)::uuid));

-- Chunks committed by a run, written in the same transaction as the chunk's rows.
CREATE TABLE lms_etl.run_chunks (
    run_id      bigint NOT NULL REFERENCES lms_etl.runs (run_id) ON DELETE CASCADE,
    chunk_start timestamptz NOT NULL,
    chunk_end   timestamptz NOT NULL,
    fetched     bigint NOT NULL,
    inserted    bigint NOT NULL,
    duplicates  bigint NOT NULL,
    rejected    bigint NOT NULL,
    fetch_ms    bigint NOT NULL,
    load_ms     bigint NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    conflicts   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, chunk_start)
);

-- Where the next default window starts (before the overlap): the end of the last contiguous
-- committed chunk. Never past now - settle lag.
CREATE TABLE lms_etl.watermark (
    source      text PRIMARY KEY DEFAULT 'statistics_api',
    loaded_until timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per calendar day of created_at in the report zone (lms_etl.setting('report_timezone')).
CREATE TABLE lms_etl.daily_stats (
    day                 date PRIMARY KEY,
    attempts            bigint NOT NULL,
    successful_attempts bigint NOT NULL,
    unique_users        bigint NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    -- When a statistic of the day last took a new value (computed_at moves on every
    -- recomputation, changed_at only when a number differs), and the changed_at of the
    -- version last written to Google Sheets: a day is due for a push while the two differ
    -- (lms_etl.sheets_pending()).
    changed_at          timestamptz NOT NULL DEFAULT now(),
    sheets_pushed_at    timestamptz,
    -- Submits, and the share of them that were correct (NULL without submits): runs never
    -- succeed, so successful_attempts / attempts understates how often learners get it right.
    submits             bigint NOT NULL DEFAULT 0,
    submit_success_rate double precision
);

-- Per report-zone day, course and problem (LTI block), from lis_result_sourcedid. Attempts
-- whose sourcedid is NULL or malformed share one row with NULL course and block, so each
-- day's rows add up to its daily_stats. Refreshed with daily_stats by lms_etl.aggregate_daily.
-- submitters: learners with a submit; users_first_submit_correct: learners whose first
-- submit on the block that day was correct (first-submit success = that / submitters).
CREATE TABLE lms_etl.daily_problem_stats (
    day                        date NOT NULL,
    course_id                  text,
    block_id                   text,
    attempts                   bigint NOT NULL,
    runs                       bigint NOT NULL,
    submits                    bigint NOT NULL,
    successful_submits         bigint NOT NULL,
    users                      bigint NOT NULL,
    submitters                 bigint NOT NULL,
    users_solved               bigint NOT NULL,
    users_first_submit_correct bigint NOT NULL,
    computed_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT daily_problem_stats_key UNIQUE NULLS NOT DISTINCT (day, course_id, block_id)
);

-- Report-zone days whose attempts changed since they were last aggregated. Marked in the
-- transaction that changes them, cleared by lms_etl.aggregate_daily: a run that dies before
-- aggregating leaves them to the next run or to pg_cron (lms_etl.aggregate_pending()). Each
-- transaction adds rows of its own (the key includes it), so loads running in parallel never
-- wait on each other's marks; an aggregation deletes the marks it can see, and a mark still
-- uncommitted then survives it.
CREATE TABLE lms_etl.pending_days (
    day       date NOT NULL,
    marked_by xid8 NOT NULL DEFAULT pg_current_xact_id(),
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, marked_by)
);

-- Chunks refused for their share of invalid records. A refusal sticks: a later run that
-- reads any part of a held chunk again refuses it again while it still holds an invalid
-- record, whatever its size, until an operator passes a run (--max-rejected-ratio).
CREATE TABLE lms_etl.held_chunks (
    chunk_start timestamptz NOT NULL,
    chunk_end   timestamptz NOT NULL,
    run_id      bigint,
    fetched     bigint NOT NULL,
    invalid     bigint NOT NULL,
    held_at     timestamptz NOT NULL DEFAULT now(),
    -- The platform (api.client) whose chunk it is: one database can serve several.
    client      text NOT NULL DEFAULT '',
    CONSTRAINT held_chunks_pkey PRIMARY KEY (client, chunk_start, chunk_end)
);

SELECT pg_catalog.pg_extension_config_dump('lms_etl.runs', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.attempts_default', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.rejected_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.run_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.watermark', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.daily_stats', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.settings', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.pending_days', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.held_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.daily_problem_stats', '');
-- The identity sequences too: without this, a restored database restarts them at 1 and
-- every later run collides with a restored run_id.
SELECT pg_catalog.pg_extension_config_dump('lms_etl.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.rejected_attempts_rejected_id_seq', '');
