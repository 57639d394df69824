-- Baseline for benchmark 3: the plain daily refresh as aggregate_daily did it before the
-- per-problem statistics (one GROUP BY user over the day, upserted), into a scratch table.
CREATE TABLE IF NOT EXISTS bench_daily (LIKE lms_etl.daily_stats INCLUDING ALL);
CREATE OR REPLACE FUNCTION bench_plain_aggregate(day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    day_start constant timestamptz := day::timestamp AT TIME ZONE 'UTC';
    day_end constant timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    n bigint;
BEGIN
    INSERT INTO bench_daily AS d (day, attempts, successful_attempts, unique_users, computed_at)
    SELECT bench_plain_aggregate.day, coalesce(sum(u.attempts), 0), coalesce(sum(u.successful), 0),
           count(u.user_id), now()
      FROM (SELECT a.user_id, count(*) AS attempts, count(*) FILTER (WHERE a.is_correct) AS successful
              FROM lms_etl.attempts a
             WHERE a.created_at >= day_start AND a.created_at < day_end
             GROUP BY a.user_id) AS u
    ON CONFLICT ON CONSTRAINT bench_daily_pkey DO UPDATE
       SET attempts = EXCLUDED.attempts, successful_attempts = EXCLUDED.successful_attempts,
           unique_users = EXCLUDED.unique_users, computed_at = EXCLUDED.computed_at
    RETURNING d.attempts INTO n;
    RETURN n;
END
$$;
