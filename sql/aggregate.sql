-- Daily aggregation (version 0.1.0). Plain SQL so pg_cron, psql and the loader can all call it.

-- Recomputes one day from lms_etl.attempts and upserts it; a day without attempts gets zeros.
CREATE FUNCTION lms_etl.aggregate_daily(day date)
RETURNS lms_etl.daily_stats
LANGUAGE sql VOLATILE STRICT
AS $$
    INSERT INTO lms_etl.daily_stats AS d (day, attempts, successful_attempts, unique_users, computed_at)
    -- Grouping by user first (a small hash table) is much cheaper than count(DISTINCT),
    -- which sorts the whole day; an empty day still yields one row of zeros.
    SELECT aggregate_daily.day,
           coalesce(sum(per_user.attempts), 0),
           coalesce(sum(per_user.successful), 0),
           count(per_user.user_id),
           now()
      FROM (SELECT a.user_id, count(*) AS attempts, count(*) FILTER (WHERE a.is_correct) AS successful
              FROM lms_etl.attempts a
             WHERE a.created_at >= aggregate_daily.day
               AND a.created_at < aggregate_daily.day + 1
             GROUP BY a.user_id) AS per_user
    ON CONFLICT ON CONSTRAINT daily_stats_pkey DO UPDATE
       SET attempts = EXCLUDED.attempts,
           successful_attempts = EXCLUDED.successful_attempts,
           unique_users = EXCLUDED.unique_users,
           computed_at = EXCLUDED.computed_at
    RETURNING d.*;
$$;
COMMENT ON FUNCTION lms_etl.aggregate_daily(date) IS
    'Recompute and upsert lms_etl.daily_stats for one calendar day of created_at; returns the row.';

-- Recomputes every day in [from_day, to_day], both ends included.
CREATE FUNCTION lms_etl.refresh_daily_stats(from_day date, to_day date)
RETURNS SETOF lms_etl.daily_stats
LANGUAGE sql VOLATILE STRICT
AS $$
    SELECT s.*
      FROM generate_series(0, to_day - from_day) AS g(offset_days),
           LATERAL lms_etl.aggregate_daily(from_day + g.offset_days) AS s
     ORDER BY s.day;
$$;
COMMENT ON FUNCTION lms_etl.refresh_daily_stats(date, date) IS
    'Recompute lms_etl.daily_stats for every day from from_day to to_day inclusive.';
