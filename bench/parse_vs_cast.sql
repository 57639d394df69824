-- parse_passback_params vs the naive replace(p, '''', '"')::jsonb cast over 1 000 000 rows.
-- Both extract lis_result_sourcedid so both do the full work; values have no apostrophes,
-- so the naive cast (wrong for them) can run at all. Run by bench/run.sh.
\set ON_ERROR_STOP on
SET jit = off;
DROP TABLE IF EXISTS bench_passback;
CREATE TABLE bench_passback AS
SELECT format('{''oauth_consumer_key'': '''', ''lis_result_sourcedid'': ''course-v1:SkillFactory+DST-%s+28FEB2021:lms.skillfactory.ru-%s:%s'', ''lis_outcome_service_url'': ''https://lms.skillfactory.ru/courses/course-v1:SkillFactory+DST-%s+28FEB2021/xblock/block-v1:SkillFactory+DST-%s+28FEB2021+type@lti+block@%s/handler_noauth/grade_handler''}',
              i % 7, md5(i::text), md5((i % 5000)::text), i % 7, i % 7, md5(i::text)) AS p
  FROM generate_series(1, 1000000) AS i;
VACUUM ANALYZE bench_passback;
-- Warm the cache once.
SELECT count(*) FROM bench_passback;
