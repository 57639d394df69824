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
