-- Scheduling the daily aggregation inside PostgreSQL with pg_cron.
-- Prerequisites (postgresql.conf, then restart):
--   shared_preload_libraries = 'pg_cron'
--   cron.database_name = 'lms_etl'
--   cron.use_background_workers = on     -- Debian's pg_cron 1.4 cannot use libpq on trust-less setups
-- Then, connected to the lms_etl database:

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- Every night at 00:15 (server time): recompute the last three days, so late records
-- loaded after the previous run are counted. Re-scheduling under the same name updates it.
SELECT cron.schedule(
    'lms_etl_daily_stats',
    '15 0 * * *',
    $$SELECT count(*) FROM lms_etl.refresh_daily_stats(current_date - 3, current_date - 1)$$
);

-- Inspect: SELECT * FROM cron.job;
--          SELECT jobid, status, return_message, start_time FROM cron.job_run_details ORDER BY start_time DESC LIMIT 10;
-- Remove:  SELECT cron.unschedule('lms_etl_daily_stats');
