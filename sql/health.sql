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
