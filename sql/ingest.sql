-- Insert half of lms_etl.ingest_chunk (version 0.2.0), called by the Rust function with one
-- array per column, already free of repeated keys. A plain INSERT costs about two thirds of
-- INSERT ... ON CONFLICT DO NOTHING (no speculative insertion), and new data is the common
-- case; so try it first in a subtransaction and fall back to ON CONFLICT only when the
-- chunk meets rows already loaded. Then tell duplicates (same content) from conflicts (same
-- key, different content): a loaded row is never overwritten. The days of the inserted rows
-- are marked for aggregation in the same transaction.
CREATE FUNCTION lms_etl.insert_attempts(
    user_ids text[], consumer_keys text[], sourcedids text[], outcome_urls text[],
    corrects boolean[], attempt_types text[], created timestamptz[], run bigint,
    OUT inserted bigint, OUT conflict_positions integer[], OUT conflict_fields text[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_at timestamptz;
    last_at timestamptz;
    chunk_first timestamptz;
    chunk_last timestamptz;
    failure text;
    keyless regclass;
BEGIN
    -- Wait for a create_partitions in progress before the INSERT is planned: it then routes
    -- to the new month, not into the default partition that month has just left.
    LOCK TABLE lms_etl.attempts IN ROW EXCLUSIVE MODE;
    -- The key lives on each partition (sql/schema.sql): one made by hand without it would
    -- let a record in twice.
    SELECT p INTO keyless FROM lms_etl.partitions_without_key() p LIMIT 1;
    IF keyless IS NOT NULL THEN
        RAISE EXCEPTION 'partition % of lms_etl.attempts has no natural key, so loading could store a record twice', keyless
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('ALTER TABLE %s ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid); make months with lms_etl.create_partitions.', keyless);
    END IF;
    BEGIN
        INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                      lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
        SELECT u, k, s, url, c, t, ts, run
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               AS r(u, k, s, url, c, t, ts);
        GET DIAGNOSTICS inserted = ROW_COUNT;
        SELECT min(ts), max(ts) INTO first_at, last_at FROM unnest(created) AS ts;
    EXCEPTION WHEN unique_violation OR internal_error THEN
        -- On Citus a shard's unique violation in a multi-shard INSERT ... SELECT arrives as
        -- XX000 with the usual message; any other internal error is not ours to absorb.
        GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
        IF SQLSTATE = 'XX000' AND failure NOT LIKE 'duplicate key value violates unique constraint %' THEN
            RAISE;
        END IF;
        WITH ins AS (
            INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                          lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
            SELECT u, k, s, url, c, t, ts, run
              FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
                   AS r(u, k, s, url, c, t, ts)
            -- No conflict target: the key is each partition's (sql/schema.sql), and it is
            -- the only unique constraint a partition has.
            ON CONFLICT DO NOTHING
            RETURNING created_at)
        SELECT count(*), min(created_at), max(created_at) INTO inserted, first_at, last_at FROM ins;
        -- A new statement sees the rows just inserted; they match themselves, so only rows
        -- loaded before with other content come out. Positions are 1-based, as in the arrays.
        -- The chunk's time range lets each partition (and Citus shard) read only its slice of
        -- the key instead of joining the whole table.
        SELECT min(ts), max(ts) INTO chunk_first, chunk_last FROM unnest(created) AS ts;
        SELECT array_agg(r.pos ORDER BY r.pos),
               array_agg(concat_ws(', ',
                   CASE WHEN a.is_correct IS DISTINCT FROM r.c THEN 'is_correct' END,
                   CASE WHEN a.oauth_consumer_key IS DISTINCT FROM r.k THEN 'oauth_consumer_key' END,
                   CASE WHEN a.lis_outcome_service_url IS DISTINCT FROM r.url THEN 'lis_outcome_service_url' END)
                   ORDER BY r.pos)
          INTO conflict_positions, conflict_fields
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               WITH ORDINALITY AS r(u, k, s, url, c, t, ts, pos)
          JOIN lms_etl.attempts a
            ON a.created_at = r.ts AND a.user_id = r.u AND a.attempt_type = r.t
           AND a.lis_result_sourcedid IS NOT DISTINCT FROM r.s
         WHERE a.created_at BETWEEN chunk_first AND chunk_last
           AND (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
               IS DISTINCT FROM (r.c, r.k, r.url);
    END;
    IF inserted > 0 THEN
        PERFORM lms_etl.mark_days(first_at, last_at);
    END IF;
END
$$;
COMMENT ON FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[], timestamptz[], bigint) IS
    'Internal to lms_etl.ingest_chunk: inserts parsed attempts, never overwriting a loaded row; returns the number inserted and the positions of conflicting records.';
