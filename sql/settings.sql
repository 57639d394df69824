-- Settings accessors (version 0.2.0): one place for the defaults, used by the extension's
-- functions, the loader and pg_cron alike.

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
