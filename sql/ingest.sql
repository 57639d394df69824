-- Insert half of lms_etl.ingest_chunk (version 0.1.0), called by the Rust function with one
-- array per column. A plain INSERT costs about two thirds of INSERT ... ON CONFLICT DO
-- NOTHING (no speculative insertion), and new data is the common case; so try it first in a
-- subtransaction and fall back to ON CONFLICT only when the chunk re-loads known rows.
-- The caller removes duplicates inside the chunk, so only existing rows can conflict.
CREATE FUNCTION lms_etl.insert_attempts(
    user_ids text[], consumer_keys text[], sourcedids text[], outcome_urls text[],
    corrects boolean[], attempt_types text[], created timestamp[], run bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    BEGIN
        INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                      lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
        SELECT u, k, s, url, c, t, ts, run
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               AS r(u, k, s, url, c, t, ts);
        GET DIAGNOSTICS n = ROW_COUNT;
    EXCEPTION WHEN unique_violation THEN
        INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                      lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
        SELECT u, k, s, url, c, t, ts, run
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               AS r(u, k, s, url, c, t, ts)
        ON CONFLICT ON CONSTRAINT attempts_natural_key DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
    END;
    RETURN n;
END
$$;
COMMENT ON FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[], timestamp[], bigint) IS
    'Internal to lms_etl.ingest_chunk: inserts parsed attempts, skipping rows already loaded; returns the number inserted.';
