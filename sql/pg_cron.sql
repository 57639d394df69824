-- Scheduling the daily aggregation inside PostgreSQL with pg_cron.
-- Prerequisites (postgresql.conf, then restart):
--   shared_preload_libraries = 'pg_cron'
--   cron.database_name = 'lms_etl'
--   cron.use_background_workers = on     -- Debian's pg_cron 1.4 cannot use libpq on trust-less setups
-- Then, connected to the lms_etl database:

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- Every 10 minutes: aggregate the days whose attempts changed and were not aggregated yet
-- (a loader that died before its aggregation stage, an ingest_chunk from psql, a reprocess).
-- Re-scheduling under the same name updates a job.
SELECT cron.schedule(
    'lms_etl_pending_days',
    '*/10 * * * *',
    $$SELECT count(*) FROM lms_etl.aggregate_pending()$$
);

-- Every night at 00:15 (server time; days are calendar days of the report zone,
-- lms_etl.setting('report_timezone')): recompute the last three days in full.
SELECT cron.schedule(
    'lms_etl_daily_stats',
    '15 0 * * *',
    $$SELECT count(*) FROM lms_etl.refresh_daily_stats(current_date - 3, current_date - 1)$$
);

-- Every night at 00:30: the monthly partitions of lms_etl.attempts for the next three months
-- (the loader also makes the months of each window it loads; see sql/partitions.sql).
SELECT cron.schedule(
    'lms_etl_partitions',
    '30 0 * * *',
    $$SELECT count(*) FROM lms_etl.create_partitions(now(), now() + interval '3 months')$$
);

-- Every night at 00:45: retention. It does nothing until you set how many months to keep:
--     SELECT lms_etl.set_setting('retention.months', '24');
--     SELECT lms_etl.set_setting('retention.action', 'drop');   -- default: 'detach'
SELECT cron.schedule(
    'lms_etl_retention',
    '45 0 * * *',
    $$SELECT count(*) FROM lms_etl.apply_retention()$$
);

-- Inspect: SELECT * FROM cron.job;
--          SELECT jobid, status, return_message, start_time FROM cron.job_run_details ORDER BY start_time DESC LIMIT 10;
-- Remove:  SELECT cron.unschedule('lms_etl_daily_stats'); SELECT cron.unschedule('lms_etl_pending_days');
--          SELECT cron.unschedule('lms_etl_partitions'); SELECT cron.unschedule('lms_etl_retention');
