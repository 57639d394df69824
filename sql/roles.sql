-- Roles for the two kinds of user (version 0.2.0). Roles are cluster-wide: the first
-- CREATE EXTENSION in a cluster creates them (NOLOGIN), later ones find them; databases
-- created in parallel race, hence the two errors tolerated. Give a login role one of them:
--     CREATE ROLE etl LOGIN PASSWORD '...' IN ROLE lms_etl_loader;
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['lms_etl_loader', 'lms_etl_reader'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- The reader reads the data and the run history; it writes nothing.
GRANT USAGE ON SCHEMA lms_etl TO lms_etl_reader, lms_etl_loader;
GRANT SELECT ON lms_etl.attempts, lms_etl.daily_stats, lms_etl.runs, lms_etl.run_chunks,
                lms_etl.rejected_attempts, lms_etl.watermark, lms_etl.settings,
                lms_etl.pending_days, lms_etl.held_chunks, lms_etl.daily_problem_stats
   TO lms_etl_reader;

-- The loader: what `lms-etl run`, `reprocess`, `aggregate` and `status` do, nothing more. It
-- owns nothing, so it can neither drop nor alter a table; the zones are an owner's setting.
GRANT SELECT, INSERT ON lms_etl.attempts, lms_etl.run_chunks TO lms_etl_loader;
GRANT SELECT, INSERT, UPDATE ON lms_etl.runs, lms_etl.watermark, lms_etl.daily_stats TO lms_etl_loader;
GRANT SELECT, INSERT, UPDATE, DELETE ON lms_etl.rejected_attempts, lms_etl.pending_days,
                                        lms_etl.held_chunks, lms_etl.daily_problem_stats
   TO lms_etl_loader;
GRANT SELECT ON lms_etl.settings TO lms_etl_loader;
REVOKE EXECUTE ON FUNCTION lms_etl.set_setting(text, text) FROM PUBLIC;
-- The loader asks for the months of its window (it may not create tables itself).
GRANT EXECUTE ON FUNCTION lms_etl.create_partitions(timestamptz, timestamptz) TO lms_etl_loader;
