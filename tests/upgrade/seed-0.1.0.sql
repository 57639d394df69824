-- Data for the upgrade test in a database on release 0.1.0, written against 0.1.0's own
-- schema and functions (tests/upgrade/upgrade_test.sh; one seed file per release it starts
-- from). Every table gets rows: a run, its chunk loaded through 0.1.0's ingest_chunk
-- (the placeholder in it is replaced by a JSON array from the demo API, some records malformed so
-- rejected_attempts fills too), the watermark and the daily statistics.
-- psql variables: window_start, window_end.
INSERT INTO lms_etl.runs (window_start, window_end, status)
VALUES (:'window_start', :'window_end', 'running') RETURNING run_id \gset
SELECT inserted, duplicates, rejected FROM lms_etl.ingest_chunk($chunk$@CHUNK@$chunk$, :run_id) \gset
INSERT INTO lms_etl.run_chunks (run_id, chunk_start, chunk_end, fetched, inserted, duplicates,
                                rejected, fetch_ms, load_ms)
VALUES (:run_id, :'window_start', :'window_end', :inserted + :duplicates + :rejected, :inserted,
        :duplicates, :rejected, 12, 34);
UPDATE lms_etl.runs
   SET status = 'succeeded', finished_at = now(), fetched = :inserted + :duplicates + :rejected,
       inserted = :inserted, duplicates = :duplicates, rejected = :rejected,
       stage_ms = '{"fetch_ms": 12, "load_ms": 34}'
 WHERE run_id = :run_id;
INSERT INTO lms_etl.watermark (loaded_until) VALUES (:'window_end');
SELECT count(*) FROM lms_etl.refresh_daily_stats(:'window_start'::date, :'window_end'::date);
