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
