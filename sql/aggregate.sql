-- Daily aggregation (version 0.2.0). PL/pgSQL so pg_cron, psql and the loader all call the
-- same thing, and so each statement takes a fresh snapshot (see aggregate_daily).

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
CREATE FUNCTION lms_etl.aggregate_daily(day date)
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
CREATE FUNCTION lms_etl.refresh_daily_stats(from_day date, to_day date)
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
