-- Benchmark 4 (bench/run.sh): lms_etl.attempts partitioned by month vs the same table plain,
-- in the same database and run. Needs the day loaded by benchmark 2 in lms_etl.attempts.
-- Prints lines "name ms" for run.sh to collect; psql runs it with \timing off.
\set ON_ERROR_STOP on
SET jit = off;
SET work_mem = '64MB';
DROP TABLE IF EXISTS bench_day, bench_plain, bench_part;
-- The loaded day, as the rows an insert receives.
CREATE TABLE bench_day AS SELECT * FROM lms_etl.attempts;
-- A plain table like 0.1.0's and a monthly partitioned one like 0.2.0's: same columns, key,
-- constraints; two months of partitions (the day's month and the one before) and a default.
CREATE TABLE bench_plain (LIKE lms_etl.attempts INCLUDING ALL);
-- The key: lms_etl.attempts has it on each partition, so LIKE does not copy it.
ALTER TABLE bench_plain ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid);
CREATE TABLE bench_part (LIKE lms_etl.attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
CREATE TABLE bench_part_default PARTITION OF bench_part DEFAULT;
SELECT min(date_trunc('month', created_at, 'UTC')) AS month FROM bench_day \gset
CREATE TABLE bench_part_this PARTITION OF bench_part
    FOR VALUES FROM (:'month') TO (timestamptz :'month' + interval '1 month');
CREATE TABLE bench_part_before PARTITION OF bench_part
    FOR VALUES FROM (timestamptz :'month' - interval '1 month') TO (:'month');
-- The key on each partition, as lms_etl has it (sql/schema.sql).
ALTER TABLE bench_part_default ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid);
ALTER TABLE bench_part_this ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid);
ALTER TABLE bench_part_before ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid);

-- Each timed statement sits between two clock reads; psql has no loops, so repeats are
-- written out, alternating which table goes first.

-- 1. Insert rate: the day into each, three times, emptied in between.
TRUNCATE bench_plain; TRUNCATE bench_part;
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_plain SELECT * FROM bench_day;
SELECT 'insert_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_part SELECT * FROM bench_day;
SELECT 'insert_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
TRUNCATE bench_plain; TRUNCATE bench_part;
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_part SELECT * FROM bench_day;
SELECT 'insert_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_plain SELECT * FROM bench_day;
SELECT 'insert_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
TRUNCATE bench_plain; TRUNCATE bench_part;
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_plain SELECT * FROM bench_day;
SELECT 'insert_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
INSERT INTO bench_part SELECT * FROM bench_day;
SELECT 'insert_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line

-- 2. One day's aggregation pass (aggregate_daily's scan: learner_day grouped by learner,
-- folded by problem_day), with the month before also full, so the plain table holds twice
-- the partitioned month's rows, as a table of history does.
INSERT INTO bench_plain SELECT user_id, oauth_consumer_key, lis_result_sourcedid,
       lis_outcome_service_url, is_correct, attempt_type, created_at - interval '1 month',
       run_id, loaded_at FROM bench_day;
INSERT INTO bench_part SELECT user_id, oauth_consumer_key, lis_result_sourcedid,
       lis_outcome_service_url, is_correct, attempt_type, created_at - interval '1 month',
       run_id, loaded_at FROM bench_day;
VACUUM ANALYZE bench_plain;
VACUUM ANALYZE bench_part;
SELECT min(created_at) AS day_start, min(created_at) + interval '1 day' AS day_end FROM bench_day \gset
\set agg_plain 'SELECT count(*) FROM (SELECT lms_etl.problem_day(l) FROM (SELECT lms_etl.learner_day(a.lis_result_sourcedid, a.attempt_type, a.is_correct, a.created_at) AS l FROM bench_plain a WHERE a.created_at >= ' :'day_start' ' AND a.created_at < ' :'day_end' ' GROUP BY a.user_id) s) t'
\set agg_part 'SELECT count(*) FROM (SELECT lms_etl.problem_day(l) FROM (SELECT lms_etl.learner_day(a.lis_result_sourcedid, a.attempt_type, a.is_correct, a.created_at) AS l FROM bench_part a WHERE a.created_at >= ' :'day_start' ' AND a.created_at < ' :'day_end' ' GROUP BY a.user_id) s) t'
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_plain \g /dev/null
SELECT 'aggregate_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_part \g /dev/null
SELECT 'aggregate_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_part \g /dev/null
SELECT 'aggregate_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_plain \g /dev/null
SELECT 'aggregate_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_plain \g /dev/null
SELECT 'aggregate_plain ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
:agg_part \g /dev/null
SELECT 'aggregate_partitioned ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line

-- 3. Removing the old month: DELETE from the plain table vs DROP of its partition.
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
DELETE FROM bench_plain WHERE created_at < :'month';
SELECT 'remove_month_delete ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t0 \gset
ALTER TABLE bench_part DETACH PARTITION bench_part_before;
DROP TABLE bench_part_before;
SELECT 'remove_month_drop ' || round(extract(epoch FROM clock_timestamp()) * 1000 - :t0) AS line \gset
\echo :line
SELECT 'rows_per_month ' || count(*) AS line FROM bench_day \gset
\echo :line
DROP TABLE bench_day, bench_plain, bench_part;
