-- Insert half of lms_etl.ingest_chunk (version 0.2.0), called by the Rust function with one
-- array per column, already free of repeated keys. A loaded row is never overwritten:
-- duplicates (same content) are skipped, conflicts (same key, different content) reported.
-- Three paths, cheapest first:
--  * a plain INSERT of the whole chunk, in a subtransaction: new data is the common case,
--    and it costs about two thirds of INSERT ... ON CONFLICT DO NOTHING;
--  * when that meets a loaded row and the chunk spans at most a day (a chunk fetched
--    again, the overlap): one read of the loaded rows of the chunk's range tells new rows,
--    duplicates and conflicts apart, and only the new rows are inserted. On Citus that read
--    is one query per shard pulled to the coordinator, instead of shipping the chunk's
--    arrays to every shard to join there (BENCHMARKS.md, benchmark 7);
--  * otherwise (a wider chunk, or a row another transaction loaded meanwhile):
--    INSERT ... ON CONFLICT DO NOTHING, then a join by key for the conflicts.
-- The days touched are marked for aggregation in the same transaction.
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
    -- Per position: not loaded yet (the second path).
    fresh boolean[];
    settled boolean := false;
    report_zone text;
    unfit regclass;
    unfit_problem text;
BEGIN
    -- Wait for a create_partitions in progress before the INSERT is planned: it then routes
    -- to the new month, not into the default partition that month has just left.
    LOCK TABLE lms_etl.attempts IN ROW EXCLUSIVE MODE;
    -- The key lives on each partition (sql/schema.sql); a partition made or changed by hand
    -- could let a record in twice, or skip a new one as a duplicate.
    SELECT u.partition, u.problem INTO unfit, unfit_problem
      FROM lms_etl.unfit_partitions() u LIMIT 1;
    IF unfit IS NOT NULL THEN
        RAISE EXCEPTION 'partition % of lms_etl.attempts has %, so loading could not be exactly once', unfit, unfit_problem
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Each partition needs exactly one unique index: UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid) (ALTER TABLE %s ...); make months with lms_etl.create_partitions.', unfit);
    END IF;
    SELECT min(ts), max(ts) INTO chunk_first, chunk_last FROM unnest(created) AS ts;
    BEGIN
        INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                      lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
        SELECT u, k, s, url, c, t, ts, run
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               AS r(u, k, s, url, c, t, ts);
        GET DIAGNOSTICS inserted = ROW_COUNT;
        first_at := chunk_first;
        last_at := chunk_last;
        settled := true;
    EXCEPTION WHEN unique_violation OR internal_error THEN
        -- On Citus a shard's unique violation in a multi-shard INSERT ... SELECT arrives as
        -- XX000, with the worker's message in the worker's language and no constraint name:
        -- it cannot be told apart. Going on is safe: the next paths insert only rows that
        -- meet no loaded key (the only unique index, unfit_partitions() sees to it), and any
        -- other cause fails their INSERT again.
        NULL;
    END;
    -- A range over a day (an outlier in the chunk) could hold far more loaded rows than the
    -- chunk has records: that case takes the general path, which looks rows up by key.
    IF NOT settled AND chunk_last - chunk_first <= interval '1 day' THEN
        WITH loaded AS MATERIALIZED (
            SELECT a.created_at, a.user_id, a.attempt_type, a.lis_result_sourcedid,
                   a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url
              FROM lms_etl.attempts a
             WHERE a.created_at BETWEEN chunk_first AND chunk_last)
        SELECT array_agg(a.created_at IS NULL ORDER BY r.pos),
               array_agg(r.pos ORDER BY r.pos)
                   FILTER (WHERE (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
                                 IS DISTINCT FROM (r.c, r.k, r.url)
                             AND a.created_at IS NOT NULL),
               array_agg(concat_ws(', ',
                   CASE WHEN a.is_correct IS DISTINCT FROM r.c THEN 'is_correct' END,
                   CASE WHEN a.oauth_consumer_key IS DISTINCT FROM r.k THEN 'oauth_consumer_key' END,
                   CASE WHEN a.lis_outcome_service_url IS DISTINCT FROM r.url THEN 'lis_outcome_service_url' END)
                   ORDER BY r.pos)
                   FILTER (WHERE (a.is_correct, a.oauth_consumer_key, a.lis_outcome_service_url)
                                 IS DISTINCT FROM (r.c, r.k, r.url)
                             AND a.created_at IS NOT NULL)
          INTO fresh, conflict_positions, conflict_fields
          FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created)
               WITH ORDINALITY AS r(u, k, s, url, c, t, ts, pos)
          LEFT JOIN loaded a
            ON a.created_at = r.ts AND a.user_id = r.u AND a.attempt_type = r.t
           AND a.lis_result_sourcedid IS NOT DISTINCT FROM r.s;
        -- The key is unique across the table (it holds created_at, and each partition or
        -- shard has it), so each position met at most one loaded row.
        IF cardinality(fresh) IS DISTINCT FROM cardinality(created) THEN
            RAISE EXCEPTION 'lms_etl.insert_attempts: % positions compared, % records: a loaded key is not unique',
                cardinality(fresh), cardinality(created)
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF true = ANY (fresh) THEN
            BEGIN
                INSERT INTO lms_etl.attempts (user_id, oauth_consumer_key, lis_result_sourcedid,
                                              lis_outcome_service_url, is_correct, attempt_type, created_at, run_id)
                SELECT u, k, s, url, c, t, ts, run
                  FROM unnest(user_ids, consumer_keys, sourcedids, outcome_urls, corrects, attempt_types, created, fresh)
                       AS r(u, k, s, url, c, t, ts, new)
                 WHERE new;
                GET DIAGNOSTICS inserted = ROW_COUNT;
                SELECT min(ts), max(ts) INTO first_at, last_at
                  FROM unnest(created, fresh) AS r(ts, new) WHERE new;
                settled := true;
            EXCEPTION WHEN unique_violation OR internal_error THEN
                -- A row loaded by another transaction since the read: the general path.
                NULL;
            END;
        ELSE
            inserted := 0;
            settled := true;
        END IF;
    END IF;
    IF NOT settled THEN
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
    END IF;
    IF inserted < cardinality(created) THEN
        -- Some of the chunk was loaded before: maybe rows a Citus worker committed without
        -- a mark for their day (a worker lost during a chunk's commit: README, "Scaling").
        -- Marking the days of the chunk's records (not its range: an outlier can make that
        -- long) gets them counted.
        report_zone := lms_etl.setting('report_timezone');
        INSERT INTO lms_etl.pending_days AS p (day)
        SELECT DISTINCT (ts AT TIME ZONE report_zone)::date FROM unnest(created) AS ts
        ON CONFLICT ON CONSTRAINT pending_days_pkey DO NOTHING;
    ELSIF inserted > 0 THEN
        PERFORM lms_etl.mark_days(first_at, last_at);
    END IF;
END
$$;
COMMENT ON FUNCTION lms_etl.insert_attempts(text[], text[], text[], text[], boolean[], text[], timestamptz[], bigint) IS
    'Internal to lms_etl.ingest_chunk: inserts parsed attempts, never overwriting a loaded row; returns the number inserted and the positions of conflicting records.';
