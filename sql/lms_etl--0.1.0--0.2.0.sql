-- lms_etl upgrade script 0.1.0 -> 0.2.0, run by ALTER EXTENSION lms_etl UPDATE.
--
-- Why: 0.2.0 reworks the schema (below) and is the first release whose shared library is
-- versioned: the control file has no module_pathname, so cargo-pgrx installs
-- lms_etl-0.2.0.so beside 0.1.0's lms_etl.so, and a database still on 0.1.0 keeps working
-- with its own library until it is updated.
--
-- This script may change until 0.2.0 is released; from then on it is frozen like every
-- released script (sql/released/RELEASES) and the next change goes into
-- lms_etl--0.2.0--<next>.sql. tests/upgrade/upgrade_test.sh (`make test-upgrade`) checks that
-- 0.1.0 with data, after this script, has the catalog of a fresh 0.2.0 install.
--
-- cargo pgrx install copies this file with @CARGO_VERSION@ replaced by the version being
-- installed (Cargo.toml); MODULE_PATHNAME is NOT replaced (no module_pathname in the control
-- file), so never write it here.

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

-- == library: re-point C functions to the 0.2.0 library ==
-- The C-language functions of 0.1.0 whose signatures stay the same, re-created exactly as a
-- fresh 0.2.0 install creates them: probin 'lms_etl-<version>' (found in $libdir), same
-- symbol, volatility, strictness, parallel safety and (default) cost. CREATE OR REPLACE keeps
-- each function's OID, privileges, comment and dependants. ingest_chunk changes signature:
-- the schema section below replaces it.
CREATE OR REPLACE FUNCTION lms_etl.pyrepr_to_json_text("literal" text)
RETURNS text
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'pyrepr_to_json_text_wrapper';

CREATE OR REPLACE FUNCTION lms_etl.parse_passback_params("passback_params" text)
RETURNS lms_etl.passback_params
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'parse_passback_params_wrapper';

CREATE OR REPLACE FUNCTION lms_etl.try_parse_passback_params("passback_params" text)
RETURNS lms_etl.passback_params
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'try_parse_passback_params_wrapper';

-- == schema: 0.2.0 changes ==
-- Data safety (the exactly-once contract at its edges): times become instants, the natural
-- key includes the problem, conflicts and a deduplicated quarantine, days to aggregate are
-- marked in the loading transaction, and a settings table holds the zones.
--
-- The naive timestamps 0.1.0 stored are read in one zone: UTC, unless the operator names
-- the zone the API's times were in before updating, in the same session:
--     SET lms_etl.upgrade_source_timezone = 'Europe/Moscow';
--     ALTER EXTENSION lms_etl UPDATE;
-- A NOTICE says which zone was used. A zone given that way also becomes the source and the
-- report zone in lms_etl.settings, so daily_stats keeps meaning what it meant in 0.1.0.
-- Changing created_at's type rewrites lms_etl.attempts and rebuilds its key: on a large
-- table this takes a while and an exclusive lock; run it in a quiet hour.

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

-- The zone is read where it is needed: an object made for it would become a member.
DO $$
DECLARE
    zone text := coalesce(nullif(current_setting('lms_etl.upgrade_source_timezone', true), ''), 'UTC');
    given boolean := nullif(current_setting('lms_etl.upgrade_source_timezone', true), '') IS NOT NULL;
BEGIN
    IF NOT lms_etl.is_time_zone(zone) THEN
        RAISE EXCEPTION 'lms_etl.upgrade_source_timezone = "%" is not a time zone', zone
            USING HINT = 'Use an IANA name such as UTC or Europe/Moscow, or RESET it to read the stored times as UTC.';
    END IF;
    -- PostgreSQL runs extension scripts with client_min_messages at WARNING; this NOTICE is
    -- meant for the operator running the update, so let it through (for this statement).
    PERFORM set_config('client_min_messages', 'notice', true);
    IF given THEN
        RAISE NOTICE 'lms_etl 0.2.0: reading the timestamps stored by 0.1.0 as % (lms_etl.upgrade_source_timezone); source and report zone set to %', zone, zone;
    ELSE
        RAISE NOTICE 'lms_etl 0.2.0: reading the timestamps stored by 0.1.0 as UTC (SET lms_etl.upgrade_source_timezone before ALTER EXTENSION ... UPDATE to name another zone)';
    END IF;
END
$$;

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

INSERT INTO lms_etl.settings (name, value)
SELECT n, current_setting('lms_etl.upgrade_source_timezone')
  FROM unnest(ARRAY['source_timezone', 'report_timezone']) AS n
 WHERE nullif(current_setting('lms_etl.upgrade_source_timezone', true), '') IS NOT NULL;

-- The loader's rule for reading a naive time as an instant (autumn: the earlier instant;
-- spring gap: the instant of the change), as a fresh 0.2.0 install creates it. The stored
-- times are converted with it, not with AT TIME ZONE (which takes the later instant and the
-- old offset), so a record re-read after the update meets its own row.
CREATE FUNCTION lms_etl."source_instant"(
	"naive" timestamp,
	"zone" TEXT
) RETURNS timestamp with time zone
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'source_instant_wrapper';

-- Every stored naive timestamp becomes an instant in the chosen zone, by lms_etl.source_instant.
-- A USING clause takes no subquery, so the zone goes in as a literal through EXECUTE.
DO $$
DECLARE
    zone text := coalesce(nullif(current_setting('lms_etl.upgrade_source_timezone', true), ''), 'UTC');
BEGIN
    ALTER TABLE lms_etl.runs DROP CONSTRAINT runs_status_check;
    ALTER TABLE lms_etl.attempts DROP CONSTRAINT attempts_natural_key;
    EXECUTE format('ALTER TABLE lms_etl.runs
        ALTER COLUMN window_start TYPE timestamptz USING lms_etl.source_instant(window_start, %1$L),
        ALTER COLUMN window_end TYPE timestamptz USING lms_etl.source_instant(window_end, %1$L)', zone);
    EXECUTE format('ALTER TABLE lms_etl.attempts
        ALTER COLUMN created_at TYPE timestamptz USING lms_etl.source_instant(created_at, %L)', zone);
    EXECUTE format('ALTER TABLE lms_etl.run_chunks
        ALTER COLUMN chunk_start TYPE timestamptz USING lms_etl.source_instant(chunk_start, %1$L),
        ALTER COLUMN chunk_end TYPE timestamptz USING lms_etl.source_instant(chunk_end, %1$L)', zone);
    EXECUTE format('ALTER TABLE lms_etl.watermark
        ALTER COLUMN loaded_until TYPE timestamptz USING lms_etl.source_instant(loaded_until, %L)', zone);
END
$$;

-- runs: the new statuses, and the columns 0.2.0 records.
ALTER TABLE lms_etl.runs
    ADD CONSTRAINT runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'partial', 'interrupted', 'abandoned')),
    ADD COLUMN conflicts bigint NOT NULL DEFAULT 0,
    ADD COLUMN requested_end timestamptz,
    ADD COLUMN source_timezone text CHECK (lms_etl.is_time_zone(source_timezone)),
    ADD COLUMN lock_pid integer,
    ADD COLUMN sheets_configured boolean,
    ADD COLUMN client text;
UPDATE lms_etl.runs SET source_timezone = coalesce(nullif(current_setting('lms_etl.upgrade_source_timezone', true), ''), 'UTC');

-- attempts: its new key (the problem included, NULL counting as a value) is built on the
-- partitioned table that takes its rows (== partitions ==).

-- rejected_attempts: a kind for grouping, and each record kept once (0.1.0 could store a
-- re-fetched bad record again: keep the first copy).
ALTER TABLE lms_etl.rejected_attempts ADD COLUMN kind text;
DO $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM lms_etl.rejected_attempts r
     USING lms_etl.rejected_attempts first
     WHERE md5(first.raw_record) = md5(r.raw_record) AND first.raw_record = r.raw_record
       AND first.rejected_id < r.rejected_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed > 0 THEN
        RAISE NOTICE 'lms_etl 0.2.0: % repeated copies of quarantined records removed (the first copy of each is kept)', removed;
    END IF;
END
$$;
CREATE UNIQUE INDEX rejected_attempts_raw_key ON lms_etl.rejected_attempts ((md5(raw_record)::uuid));

ALTER TABLE lms_etl.run_chunks ADD COLUMN conflicts bigint NOT NULL DEFAULT 0;

-- daily_stats: when the numbers last changed, and which version is in Google Sheets. Every
-- existing day starts as changed now and never pushed, so the first 0.2.0 run writes each
-- day once more (the push is idempotent) and records it.
ALTER TABLE lms_etl.daily_stats
    ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN sheets_pushed_at timestamptz;

-- Insight: submits and their success rate per day, and statistics per problem. The existing
-- days get their numbers at the end of this script (== recompute ==).
ALTER TABLE lms_etl.daily_stats
    ADD COLUMN submits bigint NOT NULL DEFAULT 0,
    ADD COLUMN submit_success_rate double precision;

CREATE TYPE lms_etl.sourcedid AS (
    course_id  text,
    org        text,
    course     text,
    course_run text,
    block_id   text,
    user_id    text
);

CREATE FUNCTION lms_etl."split_sourcedid"(
	"sourcedid" TEXT
) RETURNS lms_etl.sourcedid
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'split_sourcedid_wrapper';

CREATE FUNCTION lms_etl."try_split_sourcedid"(
	"sourcedid" TEXT
) RETURNS lms_etl.sourcedid
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'try_split_sourcedid_wrapper';

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

CREATE FUNCTION lms_etl.learner_day_accum(
    "state" internal, "sourcedid" text, "attempt_type" text, "is_correct" boolean,
    "created_at" timestamp with time zone)
RETURNS internal
PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'learner_day_accum_wrapper';

CREATE FUNCTION lms_etl."learner_day_final"(
	"state" internal
) RETURNS bytea
PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'learner_day_final_wrapper';

CREATE FUNCTION lms_etl."learner_day_combine"(
	"state" internal,
	"other" internal
) RETURNS internal
PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'learner_day_combine_wrapper';

CREATE FUNCTION lms_etl."learner_day_serialize"(
	"state" internal
) RETURNS bytea
STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'learner_day_serialize_wrapper';

CREATE FUNCTION lms_etl."learner_day_deserialize"(
	"encoded" bytea,
	"_unused" internal
) RETURNS internal
STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'learner_day_deserialize_wrapper';

CREATE FUNCTION lms_etl."problem_day_accum"(
	"state" internal,
	"learner_day" bytea
) RETURNS internal
PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'problem_day_accum_wrapper';

CREATE FUNCTION lms_etl."problem_day_final"(
	"state" internal
) RETURNS lms_etl.problem_day
PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'problem_day_final_wrapper';

-- The two aggregates behind per-problem statistics (version 0.2.0), in Rust
-- (pg_ext/src/learner_day.rs, problem_day.rs). aggregate_daily groups a day's attempts by
-- learner with learner_day (one bytea per learner: its tallies per problem), then folds those
-- with problem_day into one lms_etl.problem_day row. Their support functions take
-- `internal` and are not for direct use: EXECUTE on them stays with the owner (CREATE
-- AGGREGATE requires it).
CREATE AGGREGATE lms_etl.learner_day(sourcedid text, attempt_type text, is_correct boolean,
                                     created_at timestamptz) (
    SFUNC = lms_etl.learner_day_accum,
    STYPE = internal,
    -- A learner's state is a few KB (tallies of a few dozen problems): the planner's guess
    -- for an internal state (8 KB) would make it sort a day of attempts instead of hashing.
    SSPACE = 2048,
    FINALFUNC = lms_etl.learner_day_final,
    -- Parallel workers each tally their share; the leader merges a learner's parts.
    COMBINEFUNC = lms_etl.learner_day_combine,
    SERIALFUNC = lms_etl.learner_day_serialize,
    DESERIALFUNC = lms_etl.learner_day_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE lms_etl.learner_day(text, text, boolean, timestamptz) IS
    'One learner''s attempts tallied per problem (an internal bytea encoding, read by lms_etl.problem_day); group by user_id.';
CREATE AGGREGATE lms_etl.problem_day(learner_day bytea) (
    SFUNC = lms_etl.problem_day_accum,
    STYPE = internal,
    FINALFUNC = lms_etl.problem_day_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE lms_etl.problem_day(bytea) IS
    'Per-problem statistics of a day from one lms_etl.learner_day value per learner, as lms_etl.problem_day arrays.';
REVOKE EXECUTE ON FUNCTION lms_etl.learner_day_accum(internal, text, text, boolean, timestamptz),
                           lms_etl.learner_day_final(internal),
                           lms_etl.learner_day_combine(internal, internal),
                           lms_etl.learner_day_serialize(internal),
                           lms_etl.learner_day_deserialize(bytea, internal),
                           lms_etl.problem_day_accum(internal, bytea),
                           lms_etl.problem_day_final(internal)
    FROM PUBLIC;

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
SELECT pg_catalog.pg_extension_config_dump('lms_etl.daily_problem_stats', '');

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

SELECT pg_catalog.pg_extension_config_dump('lms_etl.settings', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.pending_days', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.held_chunks', '');
-- The identity sequences too: without this, a restored database restarts them at 1 and
-- every later run collides with a restored run_id.
SELECT pg_catalog.pg_extension_config_dump('lms_etl.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.rejected_attempts_rejected_id_seq', '');

-- == functions: settings, aggregation, ingest ==
-- Copied from sql/settings.sql, sql/aggregate.sql and sql/ingest.sql as of 0.2.0.

-- The value of a setting, or its default (lms_etl.setting_default).
CREATE FUNCTION lms_etl.setting(name text)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT s.value FROM lms_etl.settings s WHERE s.name = setting.name),
                    lms_etl.setting_default(setting.name))
$$;
COMMENT ON FUNCTION lms_etl.setting(text) IS
    'Value of an lms_etl setting, or its default (lms_etl.setting_default) when unset.';

-- Sets a setting. Changing the report zone moves every day boundary, so every day that
-- has statistics or attempts is marked for re-aggregation (lms_etl.aggregate_pending()).
CREATE FUNCTION lms_etl.set_setting(name text, value text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous text := lms_etl.setting(set_setting.name);
BEGIN
    IF lms_etl.setting_default(set_setting.name) IS NULL THEN
        RAISE EXCEPTION 'unknown lms_etl setting "%"', set_setting.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known: report_timezone, source_timezone, health.max_data_age, health.max_run_age, health.volume_days, health.volume_k, health.volume_pct, health.max_rejected_share, retention.months, retention.action.';
    END IF;
    IF set_setting.name IN ('report_timezone', 'source_timezone')
       AND NOT lms_etl.is_time_zone(set_setting.value) THEN
        RAISE EXCEPTION 'invalid value for lms_etl setting %: unknown time zone "%"', set_setting.name, set_setting.value
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an IANA name such as UTC or Europe/Moscow (see pg_timezone_names).';
    END IF;
    IF NOT lms_etl.setting_is_valid(set_setting.name, set_setting.value) THEN
        RAISE EXCEPTION 'invalid value for lms_etl setting %: "%"', set_setting.name, set_setting.value
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'health.*_age: a positive interval (''26 hours''); volume_days: 1-366; volume_k: > 0; volume_pct: 0-100; max_rejected_share: 0-1; retention.months: 0-1200; retention.action: detach or drop.';
    END IF;
    -- updated_at from EXCLUDED, not now(): on Citus (settings a reference table) an upsert
    -- may only use IMMUTABLE functions in its DO UPDATE.
    INSERT INTO lms_etl.settings AS s (name, value, updated_at)
    VALUES (set_setting.name, set_setting.value, now())
    ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE
       SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
    IF set_setting.name = 'report_timezone' AND previous IS DISTINCT FROM set_setting.value THEN
        INSERT INTO lms_etl.pending_days (day)
        SELECT d::date
          FROM (SELECT least(min(st.day), (SELECT (min(created_at) AT TIME ZONE set_setting.value)::date FROM lms_etl.attempts)) AS lo,
                       greatest(max(st.day), (SELECT (max(created_at) AT TIME ZONE set_setting.value)::date FROM lms_etl.attempts)) AS hi
                  FROM lms_etl.daily_stats st) AS r,
               generate_series(r.lo, r.hi, interval '1 day') AS d
         WHERE r.lo IS NOT NULL
        ON CONFLICT ON CONSTRAINT pending_days_pkey DO NOTHING;
    END IF;
END
$$;
COMMENT ON FUNCTION lms_etl.set_setting(text, text) IS
    'Set an lms_etl setting (zones, health thresholds); a new report zone marks every day for re-aggregation.';

-- aggregate_daily and refresh_daily_stats keep their signatures (CREATE OR REPLACE keeps
-- their OIDs and grants) but become PL/pgSQL, over report-zone days.

-- Marks the report-zone days of [first, last] as changed, in the caller's transaction
-- (a row per day and transaction: no lock shared with another load).
CREATE FUNCTION lms_etl.mark_days(first timestamptz, last timestamptz)
RETURNS void
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO lms_etl.pending_days AS p (day)
    SELECT d::date
      FROM generate_series((first AT TIME ZONE lms_etl.setting('report_timezone'))::date,
                           (last AT TIME ZONE lms_etl.setting('report_timezone'))::date,
                           interval '1 day') AS d
    ON CONFLICT ON CONSTRAINT pending_days_pkey DO NOTHING;
$$;
COMMENT ON FUNCTION lms_etl.mark_days(timestamptz, timestamptz) IS
    'Mark the report-zone days spanned by [first, last] for re-aggregation (lms_etl.pending_days).';

-- Recomputes one day of the report zone from lms_etl.attempts: its daily_stats row (zeros
-- for a day without attempts) and its daily_problem_stats rows. Clears the day's marks
-- first, in its own statement: a load that committed before that statement is seen by the
-- next one (READ COMMITTED takes a new snapshot per statement); the mark of one still
-- uncommitted is invisible to the DELETE, so it survives and the day is aggregated again.
CREATE OR REPLACE FUNCTION lms_etl.aggregate_daily(day date)
RETURNS lms_etl.daily_stats
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    zone constant text := lms_etl.setting('report_timezone');
    day_start constant timestamptz := aggregate_daily.day::timestamp AT TIME ZONE zone;
    day_end constant timestamptz := (aggregate_daily.day + 1)::timestamp AT TIME ZONE zone;
    result lms_etl.daily_stats;
BEGIN
    -- One aggregation of a day at a time (the loader, pg_cron, psql): a second one waits,
    -- then reads a snapshot that includes what the first one saw.
    PERFORM pg_advisory_xact_lock(1819112292, aggregate_daily.day - date '2000-01-01');
    DELETE FROM lms_etl.pending_days p WHERE p.day = aggregate_daily.day;
    -- A day older than retention keeps the statistics it was last computed with: its
    -- attempts may be detached or dropped, and zeros would be a lie. (NULL when never
    -- computed; refresh_daily_stats and aggregate_pending then skip it.)
    IF day_start < lms_etl.retention_horizon() THEN
        SELECT d.* INTO result FROM lms_etl.daily_stats d WHERE d.day = aggregate_daily.day;
        RETURN result;
    END IF;
    DELETE FROM lms_etl.daily_problem_stats p WHERE p.day = aggregate_daily.day;
    -- One scan of the day grouped by learner: as few groups as learners, and on Citus the
    -- whole pass runs on the workers (user_id is the distribution column). learner_day
    -- tallies each learner's attempts per sourcedid; problem_day merges those per problem,
    -- counting each learner once per problem. Both tables come from this one pass.
    WITH learners AS (
        SELECT lms_etl.learner_day(a.lis_result_sourcedid, a.attempt_type, a.is_correct,
                                   a.created_at) AS tallies
          FROM lms_etl.attempts a
         WHERE a.created_at >= day_start
           AND a.created_at < day_end
         GROUP BY a.user_id),
    whole_day AS (
        SELECT lms_etl.problem_day(l.tallies) AS p, count(*) AS users FROM learners l),
    per_problem AS (
        INSERT INTO lms_etl.daily_problem_stats
               (day, course_id, block_id, attempts, runs, submits, successful_submits, users,
                submitters, users_solved, users_first_submit_correct, computed_at)
        SELECT aggregate_daily.day, x.*, now()
          FROM whole_day w,
               unnest((w.p).course_ids, (w.p).block_ids, (w.p).attempts, (w.p).runs,
                      (w.p).submits, (w.p).successful_submits, (w.p).users, (w.p).submitters,
                      (w.p).users_solved, (w.p).users_first_submit_correct) AS x
        RETURNING attempts, submits, successful_submits)
    INSERT INTO lms_etl.daily_stats AS d
           (day, attempts, successful_attempts, unique_users, computed_at, changed_at,
            submits, submit_success_rate)
    SELECT aggregate_daily.day,
           coalesce(sum(t.attempts), 0),
           coalesce(sum(t.successful_submits), 0),
           (SELECT w.users FROM whole_day w),
           now(),
           -- The version Sheets bookkeeping compares: distinct even for two changes made in
           -- one transaction, where now() stands still.
           clock_timestamp(),
           coalesce(sum(t.submits), 0),
           sum(t.successful_submits)::double precision / nullif(sum(t.submits), 0)
      FROM per_problem t
    ON CONFLICT ON CONSTRAINT daily_stats_pkey DO UPDATE
       SET attempts = EXCLUDED.attempts,
           successful_attempts = EXCLUDED.successful_attempts,
           unique_users = EXCLUDED.unique_users,
           submits = EXCLUDED.submits,
           submit_success_rate = EXCLUDED.submit_success_rate,
           computed_at = EXCLUDED.computed_at,
           -- Only a new number makes the day due for Sheets again (every statistic of the
           -- row belongs in this comparison; the rate follows from the counts).
           changed_at = CASE
               WHEN (d.attempts, d.successful_attempts, d.unique_users, d.submits)
                    IS DISTINCT FROM
                    (EXCLUDED.attempts, EXCLUDED.successful_attempts, EXCLUDED.unique_users,
                     EXCLUDED.submits)
               THEN EXCLUDED.changed_at
               ELSE d.changed_at
           END
    RETURNING d.* INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION lms_etl.aggregate_daily(date) IS
    'Recompute and upsert lms_etl.daily_stats for one calendar day of created_at in the report zone; returns the row.';

-- Recomputes every day in [from_day, to_day], both ends included.
CREATE OR REPLACE FUNCTION lms_etl.refresh_daily_stats(from_day date, to_day date)
RETURNS SETOF lms_etl.daily_stats
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d date := from_day;
    stats lms_etl.daily_stats;
BEGIN
    WHILE d <= to_day LOOP
        stats := lms_etl.aggregate_daily(d);
        IF stats.day IS NOT NULL THEN
            RETURN NEXT stats;
        END IF;
        d := d + 1;
    END LOOP;
END
$$;
COMMENT ON FUNCTION lms_etl.refresh_daily_stats(date, date) IS
    'Recompute lms_etl.daily_stats for every day from from_day to to_day inclusive.';

-- Recomputes every day marked in lms_etl.pending_days, oldest first: what the loader runs
-- after loading (also after a failure), and what pg_cron can run to heal a dead run.
CREATE FUNCTION lms_etl.aggregate_pending()
RETURNS SETOF lms_etl.daily_stats
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d date;
    stats lms_etl.daily_stats;
BEGIN
    FOR d IN SELECT DISTINCT p.day FROM lms_etl.pending_days p ORDER BY p.day LOOP
        stats := lms_etl.aggregate_daily(d);
        IF stats.day IS NOT NULL THEN
            RETURN NEXT stats;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION lms_etl.aggregate_pending() IS
    'Recompute lms_etl.daily_stats for every day marked in lms_etl.pending_days; returns the rows.';

-- insert_attempts takes instants and reports conflicts: a new signature.
DROP FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[], timestamp[], bigint);
-- Insert half of lms_etl.ingest_chunk, as in sql/ingest.sql (which says why it has three paths).
CREATE FUNCTION lms_etl.insert_attempts(
    user_ids text[], consumer_keys text[], sourcedids text[], outcome_urls text[],
    corrects boolean[], attempt_types text[], created timestamptz[], run bigint,
    OUT inserted bigint, OUT conflict_positions integer[], OUT conflict_fields text[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_at timestamptz;
    last_at timestamptz;
    chunk_first timestamptz;
    chunk_last timestamptz;
    -- Per position: not loaded yet (the second path).
    fresh boolean[];
    settled boolean := false;
    report_zone text;
    unfit regclass;
    unfit_problem text;
BEGIN
    -- Wait for a create_partitions in progress before the INSERT is planned: it then routes
    -- to the new month, not into the default partition that month has just left.
    LOCK TABLE lms_etl.attempts IN ROW EXCLUSIVE MODE;
    -- The key lives on each partition (sql/schema.sql); a partition made or changed by hand
    -- could let a record in twice, or skip a new one as a duplicate.
    SELECT u.partition, u.problem INTO unfit, unfit_problem
      FROM lms_etl.unfit_partitions() u LIMIT 1;
    IF unfit IS NOT NULL THEN
        RAISE EXCEPTION 'partition % of lms_etl.attempts has %, so loading could not be exactly once', unfit, unfit_problem
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Each partition needs exactly one unique index: UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid) (ALTER TABLE %s ...); make months with lms_etl.create_partitions.', unfit);
    END IF;
    SELECT min(ts), max(ts) INTO chunk_first, chunk_last FROM unnest(created) AS ts;
    BEGIN
        INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                      lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
        SELECT u, k, s, url, c, t, ts, run
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               AS r(u, k, s, url, c, t, ts);
        GET DIAGNOSTICS inserted = ROW_COUNT;
        first_at := chunk_first;
        last_at := chunk_last;
        settled := true;
    EXCEPTION WHEN unique_violation OR internal_error THEN
        -- On Citus a shard's unique violation in a multi-shard INSERT ... SELECT arrives as
        -- XX000, with the worker's message in the worker's language and no constraint name:
        -- it cannot be told apart. Going on is safe: the next paths insert only rows that
        -- meet no loaded key (the only unique index, unfit_partitions() sees to it), and any
        -- other cause fails their INSERT again.
        NULL;
    END;
    -- A range over a day (an outlier in the chunk) could hold far more loaded rows than the
    -- chunk has records: that case takes the general path, which looks rows up by key.
    IF NOT settled AND chunk_last - chunk_first <= interval '1 day' THEN
        WITH loaded AS MATERIALIZED (
            SELECT a.created_at, a.user_id, a.attempt_type, a.lis_result_sourcedid,
                   a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url
              FROM lms_etl.attempts a
             WHERE a.created_at BETWEEN chunk_first AND chunk_last)
        SELECT array_agg(a.created_at IS NULL ORDER BY r.pos),
               array_agg(r.pos ORDER BY r.pos)
                   FILTER (WHERE (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
                                 IS DISTINCT FROM (r.c, r.k, r.url)
                             AND a.created_at IS NOT NULL),
               array_agg(concat_ws(', ',
                   CASE WHEN a.is_correct IS DISTINCT FROM r.c THEN 'is_correct' END,
                   CASE WHEN a.oauth_consumer_key IS DISTINCT FROM r.k THEN 'oauth_consumer_key' END,
                   CASE WHEN a.lis_outcome_service_url IS DISTINCT FROM r.url THEN 'lis_outcome_service_url' END)
                   ORDER BY r.pos)
                   FILTER (WHERE (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
                                 IS DISTINCT FROM (r.c, r.k, r.url)
                             AND a.created_at IS NOT NULL)
          INTO fresh, conflict_positions, conflict_fields
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               WITH ORDINALITY AS r(u, k, s, url, c, t, ts, pos)
          LEFT JOIN loaded a
            ON a.created_at = r.ts AND a.user_id = r.u AND a.attempt_type = r.t
           AND a.lis_result_sourcedid IS NOT DISTINCT FROM r.s;
        -- The key is unique across the table (it holds created_at, and each partition or
        -- shard has it), so each position met at most one loaded row.
        IF cardinality(fresh) IS DISTINCT FROM cardinality(created) THEN
            RAISE EXCEPTION 'lms_etl.insert_attempts: % positions compared, % records: a loaded key is not unique',
                cardinality(fresh), cardinality(created)
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF true = ANY (fresh) THEN
            BEGIN
                INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                              lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
                SELECT u, k, s, url, c, t, ts, run
                  FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created, fresh)
                       AS r(u, k, s, url, c, t, ts, new)
                 WHERE new;
                GET DIAGNOSTICS inserted = ROW_COUNT;
                SELECT min(ts), max(ts) INTO first_at, last_at
                  FROM unnest(created, fresh) AS r(ts, new) WHERE new;
                settled := true;
            EXCEPTION WHEN unique_violation OR internal_error THEN
                -- A row loaded by another transaction since the read: the general path.
                NULL;
            END;
        ELSE
            inserted := 0;
            settled := true;
        END IF;
    END IF;
    IF NOT settled THEN
        WITH ins AS (
            INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                          lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
            SELECT u, k, s, url, c, t, ts, run
              FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
                   AS r(u, k, s, url, c, t, ts)
            -- No conflict target: the key is each partition's (sql/schema.sql), and it is
            -- the only unique constraint a partition has.
            ON CONFLICT DO NOTHING
            RETURNING created_at)
        SELECT count(*), min(created_at), max(created_at) INTO inserted, first_at, last_at FROM ins;
        -- A new statement sees the rows just inserted; they match themselves, so only rows
        -- loaded before with other content come out. Positions are 1-based, as in the arrays.
        -- The chunk's time range lets each partition (and Citus shard) read only its slice of
        -- the key instead of joining the whole table.
        SELECT array_agg(r.pos ORDER BY r.pos),
               array_agg(concat_ws(', ',
                   CASE WHEN a.is_correct IS DISTINCT FROM r.c THEN 'is_correct' END,
                   CASE WHEN a.oauth_consumer_key IS DISTINCT FROM r.k THEN 'oauth_consumer_key' END,
                   CASE WHEN a.lis_outcome_service_url IS DISTINCT FROM r.url THEN 'lis_outcome_service_url' END)
                   ORDER BY r.pos)
          INTO conflict_positions, conflict_fields
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               WITH ORDINALITY AS r(u, k, s, url, c, t, ts, pos)
          JOIN lms_etl.attempts a
            ON a.created_at = r.ts AND a.user_id = r.u AND a.attempt_type = r.t
           AND a.lis_result_sourcedid IS NOT DISTINCT FROM r.s
         WHERE a.created_at BETWEEN chunk_first AND chunk_last
           AND (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
               IS DISTINCT FROM (r.c, r.k, r.url);
    END IF;
    IF inserted < cardinality(created) THEN
        -- Some of the chunk was loaded before: maybe rows a Citus worker committed without
        -- a mark for their day (a worker lost during a chunk's commit: README, "Scaling").
        -- Marking the days of the chunk's records (not its range: an outlier can make that
        -- long) gets them counted.
        report_zone := lms_etl.setting('report_timezone');
        INSERT INTO lms_etl.pending_days AS p (day)
        SELECT DISTINCT (ts AT TIME ZONE report_zone)::date FROM unnest(created) AS ts
        ON CONFLICT ON CONSTRAINT pending_days_pkey DO NOTHING;
    ELSIF inserted > 0 THEN
        PERFORM lms_etl.mark_days(first_at, last_at);
    END IF;
END
$$;
COMMENT ON FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[], timestamptz[], bigint) IS
    'Internal to lms_etl.ingest_chunk: inserts parsed attempts, never overwriting a loaded row; returns the number inserted and the positions of conflicting records.';

-- ingest_chunk gains the source zone, the first record's position, and the conflicts and
-- invalid counts; reprocess is new. Both as a fresh 0.2.0 install generates them.
DROP FUNCTION lms_etl.ingest_chunk(text, bigint);
CREATE FUNCTION lms_etl."ingest_chunk"(
	"records" TEXT,
	"run_id" bigint DEFAULT NULL,
	"source_timezone" TEXT DEFAULT NULL,
	"first_index" INT DEFAULT 0
) RETURNS TABLE (
	"inserted" bigint,
	"duplicates" bigint,
	"conflicts" bigint,
	"rejected" bigint,
	"invalid" bigint
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'ingest_chunk_wrapper';

CREATE FUNCTION lms_etl."reprocess"(
	"run_id" bigint DEFAULT NULL
) RETURNS TABLE (
	"examined" bigint,
	"loaded" bigint,
	"still_rejected" bigint
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'reprocess_wrapper';

-- Google Sheets bookkeeping, as in sql/aggregate.sql.
-- Days whose statistics changed since they were last written to Google Sheets, or that were
-- never written: what a run pushes besides the days it touched, so a Sheets outage heals
-- on the next run.
CREATE FUNCTION lms_etl.sheets_pending()
RETURNS SETOF lms_etl.daily_stats
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.* FROM lms_etl.daily_stats d
     WHERE d.sheets_pushed_at IS DISTINCT FROM d.changed_at
     ORDER BY d.day;
$$;
COMMENT ON FUNCTION lms_etl.sheets_pending() IS
    'Rows of lms_etl.daily_stats not yet in Google Sheets with their current numbers, oldest day first.';

-- Records a push: days[i] was written with the numbers of its version versions[i] (the
-- changed_at read with them). Optimistic: a day recomputed to new numbers since that read
-- has another changed_at and stays pending, whatever the clocks and commit order did.
-- Returns the number of days marked.
CREATE FUNCTION lms_etl.mark_sheets_pushed(days date[], versions timestamptz[])
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    WITH pushed AS (
        SELECT * FROM unnest(days, versions) AS u(day, version)),
    marked AS (
        UPDATE lms_etl.daily_stats d
           SET sheets_pushed_at = pushed.version
          FROM pushed
         WHERE d.day = pushed.day
           AND d.changed_at = pushed.version
        RETURNING 1)
    SELECT count(*) FROM marked;
$$;
COMMENT ON FUNCTION lms_etl.mark_sheets_pushed(date[], timestamptz[]) IS
    'Record that days[i] was written to Google Sheets with the numbers of version versions[i] (its changed_at).';

-- == partitions: attempts by month, as in sql/partitions.sql ==
-- 0.1.0's attempts, a plain table, becomes a table partitioned by month of created_at: its
-- rows move unchanged into a new partitioned lms_etl.attempts (same columns, the 0.2.0 key),
-- one partition per month that holds data plus the current month and the next two. Like the
-- created_at rewrite above, this copies the table under an exclusive lock: a quiet hour.
ALTER TABLE lms_etl.attempts RENAME TO attempts_0_1_0;
-- Generated constraint names are unique per schema: free the one the new table takes.
ALTER TABLE lms_etl.attempts_0_1_0
    RENAME CONSTRAINT attempts_attempt_type_check TO attempts_0_1_0_attempt_type_check;

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

-- Monthly partitions of lms_etl.attempts and their retention (version 0.2.0).
--
-- attempts is partitioned by range of created_at, one partition per calendar month in UTC
-- (lms_etl.attempts_YYYY_MM), plus lms_etl.attempts_default for anything else, so a load
-- never fails for want of a partition. Months are made ahead of the data by
-- lms_etl.create_partitions: the loader calls it for each run's window, pg_cron can call it
-- (sql/pg_cron.sql). Made at run time, they are not extension members: pg_dump keeps them
-- and their rows like any table, and CREATE EXTENSION on restore makes only the parent and
-- the default partition.

-- Creates the monthly partitions that cover [from_time, to_time] and do not exist yet, and
-- returns them; only months from 10 years ago to a year ahead. A month whose attempts waited
-- in the default partition gets them moved in.
-- SECURITY DEFINER: the loader role may not create tables, but may ask for its months.
CREATE FUNCTION lms_etl.create_partitions(from_time timestamptz, to_time timestamptz)
RETURNS SETOF regclass
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    month_start timestamptz := date_trunc('month', from_time, 'UTC');
    month_end timestamptz;
    part_name text;
    made regclass;
    -- Months are made only from 10 years back to a year ahead: whatever the callers pass,
    -- the catalog stays small, and far outliers wait in the default partition.
    earliest constant timestamptz := date_trunc('month', now() - interval '10 years', 'UTC');
    latest constant timestamptz := now() + interval '1 year';
BEGIN
    IF to_time < from_time THEN
        RAISE EXCEPTION 'lms_etl.create_partitions: to_time % is before from_time %', to_time, from_time
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A typo must not make thousands of tables: far outliers belong in the default partition.
    IF to_time - from_time > interval '10 years' THEN
        RAISE EXCEPTION 'lms_etl.create_partitions: % to % spans more than 10 years', from_time, to_time
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Create the months in steps of at most 10 years.';
    END IF;
    month_start := greatest(month_start, earliest);
    WHILE month_start <= least(to_time, latest) LOOP
        month_end := ((month_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        part_name := 'attempts_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(format('lms_etl.%I', part_name)) IS NULL
           AND NOT EXISTS (
               -- A month already covered by a partition of another name (made by hand).
               SELECT 1 FROM pg_catalog.pg_inherits i
                 JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'lms_etl.attempts'::regclass
                  AND pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                      = format('FOR VALUES FROM (%L) TO (%L)', month_start, month_end)) THEN
            -- Until the ATTACH, no new row of the month may land in the default partition.
            -- The parent first (ATTACH needs it), as DETACH takes it: one order, no deadlock.
            LOCK TABLE lms_etl.attempts IN SHARE UPDATE EXCLUSIVE MODE;
            LOCK TABLE lms_etl.attempts_default IN EXCLUSIVE MODE;
            EXECUTE format('CREATE TABLE lms_etl.%I (LIKE lms_etl.attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           part_name);
            -- The month's natural key (the parent has none: see sql/schema.sql).
            EXECUTE format('ALTER TABLE lms_etl.%I ADD CONSTRAINT %I
                                UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid)',
                           part_name, part_name || '_natural_key');
            EXECUTE format('WITH moved AS (DELETE FROM lms_etl.attempts_default
                                            WHERE created_at >= $1 AND created_at < $2
                                        RETURNING *)
                            INSERT INTO lms_etl.%I SELECT * FROM moved', part_name)
                USING month_start, month_end;
            EXECUTE format('ALTER TABLE lms_etl.attempts ATTACH PARTITION lms_etl.%I FOR VALUES FROM (%L) TO (%L)',
                           part_name, month_start, month_end);
            made := format('lms_etl.%I', part_name)::regclass;
            RETURN NEXT made;
        END IF;
        month_start := month_end;
    END LOOP;
END
$$;
COMMENT ON FUNCTION lms_etl.create_partitions(timestamptz, timestamptz) IS
    'Create the monthly (UTC) partitions of lms_etl.attempts covering [from_time, to_time] that are missing, moving their rows out of the default partition; returns the new partitions.';
REVOKE EXECUTE ON FUNCTION lms_etl.create_partitions(timestamptz, timestamptz) FROM PUBLIC;

-- Partitions of lms_etl.attempts (at every level, for a month partitioned again by hand)
-- that would break exactly-once: one without the natural key lets a record in twice; one
-- with another unique index or exclusion constraint makes insert_attempts' ON CONFLICT DO
-- NOTHING (no target: the key is per partition) skip a new record as if it were a
-- duplicate. The key counts only as made by create_partitions: checked at once (not
-- deferrable), comparing each column as the column does (its collation, default operator
-- class), as insert_attempts' joins do. insert_attempts refuses to load while there is one.
CREATE FUNCTION lms_etl.unfit_partitions()
RETURNS TABLE (partition regclass, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH parts AS (
        SELECT t.relid AS part
          FROM pg_catalog.pg_partition_tree('lms_etl.attempts'::regclass) t
         WHERE t.level > 0),
    unique_indexes AS (
        SELECT p.part, x.indexrelid,
               x.indisunique AND x.indnullsnotdistinct AND x.indimmediate AND x.indnkeyatts = 4
               AND x.indnatts = 4 AND x.indpred IS NULL AND x.indexprs IS NULL
               AND ARRAY(SELECT a.attname::text
                           FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                           JOIN pg_catalog.pg_attribute a
                             ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                          ORDER BY k.ord)
                   = ARRAY['created_at', 'user_id', 'attempt_type', 'lis_result_sourcedid']
               -- each key column compared as the column compares (= in insert_attempts' joins)
               AND NOT EXISTS (
                   SELECT 1
                     FROM unnest(x.indkey::int2[], x.indcollation::oid[], x.indclass::oid[])
                          AS k(attnum, coll, opc)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                     JOIN pg_catalog.pg_opclass o ON o.oid = k.opc
                    WHERE k.coll <> a.attcollation OR NOT o.opcdefault) AS is_key
          FROM parts p
          JOIN pg_catalog.pg_index x
            ON x.indrelid = p.part AND (x.indisunique OR x.indisexclusion))
    SELECT p.part::regclass, 'no natural key'
      FROM parts p
     WHERE NOT EXISTS (SELECT 1 FROM unique_indexes u WHERE u.part = p.part AND u.is_key)
    UNION ALL
    SELECT u.part::regclass, format('unique index or exclusion constraint %s besides the natural key',
                                    u.indexrelid::regclass)
      FROM unique_indexes u
     WHERE NOT u.is_key
$$;
COMMENT ON FUNCTION lms_etl.unfit_partitions() IS
    'Partitions of lms_etl.attempts on which loading could not be exactly once: without the natural key UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid), or with another unique index or exclusion constraint.';

-- The first instant retention keeps: the start of the UTC month retention.months before
-- the current one, or the end of the last month retention detached or dropped if later.
-- NULL while neither is set (the default: keep everything).
CREATE FUNCTION lms_etl.retention_horizon()
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The further of: what the setting keeps now, and what retention already took away
    -- (retention.applied_until: switching retention off or keeping more brings no month back).
    SELECT nullif(greatest(
               CASE WHEN m.months > 0
                    THEN ((date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC')
                          - make_interval(months => m.months)) AT TIME ZONE 'UTC'
               END,
               lms_etl.setting('retention.applied_until')::timestamptz), '-infinity')
      FROM (SELECT lms_etl.setting('retention.months')::integer AS months) m
$$;
COMMENT ON FUNCTION lms_etl.retention_horizon() IS
    'First instant of created_at that retention keeps (NULL: retention.months not set, everything is kept).';

-- Detaches (retention.action = 'detach', the default) or drops ('drop') every monthly
-- partition of lms_etl.attempts that ends at or before the retention horizon. Does nothing
-- while retention.months is 0 (the default). A detached month stays in schema lms_etl as a plain
-- table, out of every statistic, for the operator to archive or drop. Rows in the default
-- partition are never touched. Returns what it did.
CREATE FUNCTION lms_etl.apply_retention()
RETURNS TABLE (partition_name text, action text, rows_estimate bigint)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- retention.applied_until is written as text: ISO, readable whatever the reader's DateStyle.
SET datestyle = 'ISO, YMD'
AS $$
DECLARE
    horizon constant timestamptz := lms_etl.retention_horizon();
    how constant text := lms_etl.setting('retention.action');
    part record;
    applied timestamptz;
BEGIN
    IF horizon IS NULL THEN
        RETURN;
    END IF;
    FOR part IN
        SELECT c.oid::regclass AS rel, c.relname, c.reltuples,
               substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                         FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'lms_etl.attempts'::regclass
         ORDER BY 4
    LOOP
        CONTINUE WHEN part.upper_bound IS NULL OR part.upper_bound > horizon;
        IF how = 'drop' THEN
            EXECUTE format('DROP TABLE %s', part.rel);
        ELSE
            EXECUTE format('ALTER TABLE lms_etl.attempts DETACH PARTITION %s', part.rel);
        END IF;
        -- What is gone stays gone for aggregation, whatever the settings say later. (The
        -- value is computed first: on Citus an upsert's DO UPDATE takes no casts.)
        applied := greatest(lms_etl.setting('retention.applied_until')::timestamptz, part.upper_bound);
        INSERT INTO lms_etl.settings AS s (name, value, updated_at)
        VALUES ('retention.applied_until', applied::text, now())
        ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE
           SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
        partition_name := part.relname;
        action := CASE how WHEN 'drop' THEN 'dropped' ELSE 'detached' END;
        -- NULL for a month never analysed (reltuples -1): unknown, not zero.
        rows_estimate := CASE WHEN part.reltuples >= 0 THEN part.reltuples::bigint END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION lms_etl.apply_retention() IS
    'Detach or drop (retention.action) the monthly partitions of lms_etl.attempts older than retention.months; nothing unless retention.months is set.';
REVOKE EXECUTE ON FUNCTION lms_etl.apply_retention() FROM PUBLIC;

-- The months of the data and the next ones; made here, they would be extension members, so
-- pg_dump would skip them and their rows: they leave the extension like run-time ones.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT lms_etl.create_partitions(m.month, m.month)
          FROM (SELECT DISTINCT date_trunc('month', a.created_at, 'UTC') AS month
                  FROM lms_etl.attempts_0_1_0 a
                 UNION
                SELECT now() UNION SELECT now() + interval '2 months') AS m
         ORDER BY 1
    LOOP
        EXECUTE format('ALTER EXTENSION lms_etl DROP TABLE %s', part);
    END LOOP;
END
$$;
INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                              lis_outcome_service_url, is_correct, attempt_type, created_at,
                              run_id, loaded_at)
SELECT user_id, oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url,
       is_correct, attempt_type, created_at, run_id, loaded_at
  FROM lms_etl.attempts_0_1_0;
ALTER EXTENSION lms_etl DROP TABLE lms_etl.attempts_0_1_0;
DROP TABLE lms_etl.attempts_0_1_0;
SELECT pg_catalog.pg_extension_config_dump('lms_etl.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('lms_etl.attempts_default', '');

-- == citus: as in sql/citus.sql ==
-- lms_etl on Citus (version 0.2.0). Install Citus and lms_etl on every node, add the workers,
-- then on the coordinator: SELECT * FROM lms_etl.citus_distribute(); (README, "Scaling").
--
-- Layout: attempts is distributed on user_id (so a day's aggregation, grouped by learner,
-- runs on the workers); settings is a reference table (the workers read the zones); the
-- bookkeeping (runs, run_chunks, watermark, pending_days, held_chunks, rejected_attempts)
-- and the statistics tables stay on the coordinator: as reference tables every chunk commit
-- would become a two-phase commit on all nodes.
CREATE FUNCTION lms_etl.citus_distribute()
RETURNS TABLE (table_name text, layout text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'lms_etl.citus_distribute: the citus extension is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add citus first in shared_preload_libraries (''citus,pg_cron''), then CREATE EXTENSION citus.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                    WHERE p.logicalrelid = 'lms_etl.settings'::regclass) THEN
        PERFORM pg_catalog.create_reference_table('lms_etl.settings');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                    WHERE p.logicalrelid = 'lms_etl.attempts'::regclass) THEN
        -- Shards as citus.shard_count says (README: about twice the workers' cores).
        PERFORM pg_catalog.create_distributed_table('lms_etl.attempts', 'user_id');
    END IF;
    -- A chunk's INSERT ... SELECT would open a connection per shard on each worker (and a TLS
    -- handshake each): one per worker is 3x faster for a chunk's few thousand rows
    -- (BENCHMARKS.md, benchmark 6). Set again after ALTER EXTENSION UPDATE: run this again.
    ALTER FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[],
                                           timestamptz[], bigint)
        SET citus.max_adaptive_executor_pool_size = 1;
    RETURN QUERY
        SELECT c.oid::regclass::text,
               CASE p.partmethod WHEN 'h' THEN 'distributed by ' || a.attname
                                 WHEN 'n' THEN 'reference table'
                                 ELSE 'coordinator' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = c.oid
          LEFT JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = c.oid AND p.partmethod = 'h'
                AND a.attname = pg_catalog.column_to_column_name(c.oid, p.partkey)
         WHERE n.nspname = 'lms_etl' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY 1;
END
$$;
COMMENT ON FUNCTION lms_etl.citus_distribute() IS
    'On a Citus coordinator: distribute lms_etl.attempts on user_id and make lms_etl.settings a reference table (idempotent); returns each table''s layout.';
REVOKE EXECUTE ON FUNCTION lms_etl.citus_distribute() FROM PUBLIC;

-- == health: as in sql/health.sql ==
-- Health checks (version 0.2.0): what catches a silent failure — no new data, no successful
-- run, a day whose volume is far from the usual for its weekday, many rejected records, days
-- not in Google Sheets. One row per check; the thresholds are settings (lms_etl.setting).
-- Read by `lms-etl health` (a Nagios-style plugin), `lms-etl status`, the run's e-mail, and
-- any monitoring that can run SQL or pg_cron.

-- Robust band of a volume check: median ± max(k · 1.4826 · MAD, pct % · median) over the
-- samples. With four samples the MAD alone is often 0, hence the percentage floor.
CREATE FUNCTION lms_etl.volume_band(samples bigint[], k numeric, pct numeric,
                                    OUT median numeric, OUT band numeric)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric AS median
          FROM unnest(samples) AS x),
    mad AS (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(x - m.median))::numeric AS mad
          FROM unnest(samples) AS x, m)
    SELECT m.median, greatest(k * 1.4826 * mad.mad, pct / 100 * m.median)
      FROM m, mad;
$$;
COMMENT ON FUNCTION lms_etl.volume_band(bigint[], numeric, numeric) IS
    'Median and half-width of the normal band of a volume check: max(k·1.4826·MAD, pct% of the median).';

CREATE FUNCTION lms_etl.health()
RETURNS TABLE ("check" text, status text, value text, expected text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    zone constant text := lms_etl.setting('report_timezone');
    today constant date := (now() AT TIME ZONE zone)::date;
    max_data_age constant interval := lms_etl.setting('health.max_data_age')::interval;
    max_run_age constant interval := lms_etl.setting('health.max_run_age')::interval;
    volume_days constant integer := lms_etl.setting('health.volume_days')::integer;
    k constant numeric := lms_etl.setting('health.volume_k')::numeric;
    pct constant numeric := lms_etl.setting('health.volume_pct')::numeric;
    max_rejected constant numeric := lms_etl.setting('health.max_rejected_share')::numeric;
    newest timestamptz;
    platforms text[];
    platform text;
    last_ok timestamptz;
    d date;
    n bigint;
    samples bigint[];
    b record;
    fetched bigint;
    bad bigint;
    pending date[];
BEGIN
    -- Freshness of the data: the newest attempt loaded (the key's index starts with created_at),
    -- not counting attempts dated ahead of the clock (a source clock or zone gone wrong): one
    -- of those would keep stale data looking fresh for as long as its date stays ahead.
    SELECT max(a.created_at) INTO newest FROM lms_etl.attempts a
     WHERE a.created_at <= now() + interval '1 hour';
    SELECT count(*) INTO n FROM lms_etl.attempts a WHERE a.created_at > now() + interval '1 hour';
    "check" := 'freshness: newest attempt';
    value := coalesce(to_char(newest AT TIME ZONE zone, 'YYYY-MM-DD HH24:MI:SS'), 'none');
    expected := format('newer than %s', max_data_age);
    IF newest IS NULL THEN
        status := 'unknown';
        message := 'no attempt loaded yet';
    ELSIF now() - newest > max_data_age THEN
        status := 'fail';
        message := format('the newest attempt is %s old (%s)', date_trunc('minute', now() - newest), zone);
    ELSE
        status := 'ok';
        message := format('the newest attempt is %s old', date_trunc('minute', now() - newest));
    END IF;
    RETURN NEXT;

    IF n > 0 THEN
        "check" := 'attempts dated in the future';
        status := 'warn';
        value := n::text;
        expected := '0';
        message := format('%s attempt(s) dated more than an hour ahead of now (the source''s clock or zone?)', n);
        RETURN NEXT;
    END IF;

    -- Freshness of the runs: the last run that succeeded; per platform (api.client) when the
    -- database serves several, so one platform's runs never hide another's silence.
    platforms := ARRAY(SELECT DISTINCT r.client FROM lms_etl.runs r WHERE r.client IS NOT NULL ORDER BY 1);
    IF cardinality(platforms) < 2 THEN
        platforms := ARRAY[NULL::text];
    END IF;
    FOREACH platform IN ARRAY platforms LOOP
        SELECT max(r.finished_at) INTO last_ok FROM lms_etl.runs r
         WHERE r.status = 'succeeded' AND (platform IS NULL OR r.client = platform);
        -- (format() would turn a NULL platform into ' ()')
        "check" := 'freshness: last successful run'
                   || CASE WHEN platform IS NULL THEN '' ELSE format(' (%s)', platform) END;
        value := coalesce(to_char(last_ok AT TIME ZONE zone, 'YYYY-MM-DD HH24:MI:SS'), 'none');
        expected := format('within %s', max_run_age);
        IF last_ok IS NULL THEN
            status := 'unknown';
            message := 'no run has succeeded yet';
        ELSIF now() - last_ok > max_run_age THEN
            status := 'fail';
            message := format('the last successful run finished %s ago', date_trunc('minute', now() - last_ok));
        ELSE
            status := 'ok';
            message := format('the last successful run finished %s ago', date_trunc('minute', now() - last_ok));
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Volume: each of the last complete days against the same weekday of the 4 weeks before.
    FOR d IN SELECT g::date FROM generate_series(today - volume_days, today - 1, interval '1 day') AS g LOOP
        SELECT coalesce((SELECT s.attempts FROM lms_etl.daily_stats s WHERE s.day = d), 0) INTO n;
        SELECT array_agg(s.attempts ORDER BY s.day) INTO samples
          FROM lms_etl.daily_stats s
         WHERE s.day IN (d - 7, d - 14, d - 21, d - 28);
        "check" := format('volume %s', d);
        value := n::text;
        IF coalesce(cardinality(samples), 0) < 4 THEN
            status := 'unknown';
            expected := 'the same weekday of 4 earlier weeks';
            message := format('%s: %s attempts; only %s of the 4 previous %ss have statistics',
                              d, n, coalesce(cardinality(samples), 0), trim(to_char(d, 'Day')));
        ELSE
            SELECT * INTO b FROM lms_etl.volume_band(samples, k, pct);
            expected := format('%s ± %s', round(b.median), round(b.band));
            IF abs(n - b.median) <= b.band THEN
                status := 'ok';
            ELSE
                status := 'warn';
            END IF;
            message := format('%s: %s attempts, %s vs usual %s (median %s)', d, n,
                              CASE WHEN b.median = 0 THEN 'n/a'
                                   ELSE replace(to_char(round(100 * (n - b.median) / b.median), 'SG999999990'), ' ', '') || '%'
                              END,
                              trim(to_char(d, 'Day')), round(b.median));
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Rejected share of the last complete day: of the records fetched by the runs that
    -- started that day, how many were quarantined (invalid or conflicting).
    SELECT sum(r.fetched), sum(r.rejected + r.conflicts) INTO fetched, bad
      FROM lms_etl.runs r
     WHERE r.started_at >= (today - 1)::timestamp AT TIME ZONE zone
       AND r.started_at < today::timestamp AT TIME ZONE zone;
    "check" := 'rejected share';
    expected := format('at most %s', max_rejected);
    IF coalesce(fetched, 0) = 0 THEN
        status := 'unknown';
        value := 'none';
        message := format('no record fetched by runs started on %s', today - 1);
    ELSE
        value := round(bad::numeric / fetched, 4)::text;
        status := CASE WHEN bad::numeric / fetched > max_rejected THEN 'warn' ELSE 'ok' END;
        message := format('%s of %s records fetched on %s were quarantined', bad, fetched, today - 1);
    END IF;
    RETURN NEXT;

    -- Google Sheets: only where some platform's last run had it configured (platforms
    -- without Sheets share the database: their runs must not hide the backlog).
    IF EXISTS (SELECT 1
                 FROM (SELECT DISTINCT ON (r.client) r.sheets_configured
                         FROM lms_etl.runs r ORDER BY r.client, r.run_id DESC) l
                WHERE l.sheets_configured) THEN
        SELECT array_agg(p.day ORDER BY p.day) INTO pending FROM lms_etl.sheets_pending() p;
        "check" := 'sheets pending';
        value := coalesce(cardinality(pending), 0)::text;
        expected := '0';
        IF pending IS NULL THEN
            status := 'ok';
            message := 'every day is in Google Sheets';
        ELSE
            status := 'warn';
            message := format('%s day(s) not yet in Google Sheets: %s', cardinality(pending),
                              array_to_string(pending[1:5], ', ')
                              || CASE WHEN cardinality(pending) > 5 THEN ', …' ELSE '' END);
        END IF;
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION lms_etl.health() IS
    'Health checks (check, status ok/warn/fail/unknown, value, expected, message): freshness, volume by weekday, rejected share, Sheets pushes.';

-- == drop guard: a plain DROP EXTENSION keeps the data ==
CREATE FUNCTION lms_etl.guard_drop_extension()
RETURNS event_trigger
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'guard_drop_extension_wrapper';
COMMENT ON FUNCTION lms_etl.guard_drop_extension() IS
    'Event trigger: refuses DROP EXTENSION lms_etl without CASCADE while lms_etl holds data.';

-- A plain DROP EXTENSION lms_etl must not delete loaded data (version 0.2.0). The data tables
-- are members (pg_dump and ALTER EXTENSION UPDATE carry them so), so PostgreSQL would drop
-- them with the extension: this event trigger refuses the drop while they hold a row, unless
-- CASCADE says to delete everything (pg_ext/src/drop_guard.rs). Uninstall, README
-- "Uninstall": keep a copy (pg_dump -n lms_etl), then DROP EXTENSION lms_etl CASCADE.
CREATE EVENT TRIGGER lms_etl_keep_data ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP OWNED')
    EXECUTE FUNCTION lms_etl.guard_drop_extension();
-- Also in sessions with session_replication_role = replica (replication and bulk-load tools).
ALTER EVENT TRIGGER lms_etl_keep_data ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER lms_etl_keep_data IS
    'Refuses DROP EXTENSION lms_etl, or DROP OWNED BY its owner, without CASCADE while lms_etl holds data.';

-- == roles: least privilege ==
-- Copied from sql/roles.sql as of 0.2.0.
-- CREATE EXTENSION in a cluster creates them (NOLOGIN), later ones find them; databases
-- created in parallel race, hence the two errors tolerated. Give a login role one of them:
--     CREATE ROLE etl LOGIN PASSWORD '...' IN ROLE lms_etl_loader;
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['lms_etl_loader', 'lms_etl_reader'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- The reader reads the data and the run history; it writes nothing.
GRANT USAGE ON SCHEMA lms_etl TO lms_etl_reader, lms_etl_loader;
GRANT SELECT ON lms_etl.attempts, lms_etl.daily_stats, lms_etl.runs, lms_etl.run_chunks,
                lms_etl.rejected_attempts, lms_etl.watermark, lms_etl.settings,
                lms_etl.pending_days, lms_etl.held_chunks, lms_etl.daily_problem_stats
   TO lms_etl_reader;

-- The loader: what `lms-etl run`, `reprocess`, `aggregate` and `status` do, nothing more. It
-- owns nothing, so it can neither drop nor alter a table; the zones are an owner's setting.
GRANT SELECT, INSERT ON lms_etl.attempts, lms_etl.run_chunks TO lms_etl_loader;
GRANT SELECT, INSERT, UPDATE ON lms_etl.runs, lms_etl.watermark, lms_etl.daily_stats TO lms_etl_loader;
GRANT SELECT, INSERT, UPDATE, DELETE ON lms_etl.rejected_attempts, lms_etl.pending_days,
                                        lms_etl.held_chunks, lms_etl.daily_problem_stats
   TO lms_etl_loader;
GRANT SELECT ON lms_etl.settings TO lms_etl_loader;
REVOKE EXECUTE ON FUNCTION lms_etl.set_setting(text, text) FROM PUBLIC;
-- The loader asks for the months of its window (it may not create tables itself).
GRANT EXECUTE ON FUNCTION lms_etl.create_partitions(timestamptz, timestamptz) TO lms_etl_loader;

-- == fill: the new statistics of the days 0.1.0 aggregated ==
-- The numbers 0.1.0 computed stay as they are (the upgrade changes no stored value); the new
-- columns get theirs here, and every such day is marked so that the next aggregation (the
-- loader's next run, or lms_etl.aggregate_pending() from pg_cron) fills daily_problem_stats.
UPDATE lms_etl.daily_stats d
   SET submits = s.submits,
       submit_success_rate = s.successful::double precision / nullif(s.submits, 0)
  FROM (SELECT (a.created_at AT TIME ZONE lms_etl.setting('report_timezone'))::date AS day,
               count(*) FILTER (WHERE a.attempt_type = 'submit') AS submits,
               count(*) FILTER (WHERE a.is_correct) AS successful
          FROM lms_etl.attempts a
         GROUP BY 1) AS s
 WHERE s.day = d.day;
INSERT INTO lms_etl.pending_days (day)
SELECT d.day FROM lms_etl.daily_stats d
ON CONFLICT ON CONSTRAINT pending_days_pkey DO NOTHING;
