-- The two aggregates behind per-problem statistics (version 0.2.0), in Rust
-- (pg_ext/src/learner_day.rs, problem_day.rs). aggregate_daily groups a day's attempts by
-- learner with learner_day (one bytea per learner: its tallies per problem), then folds those
-- with problem_day into one lms_etl.problem_day row. Their support functions take
-- `internal` and are not for direct use: EXECUTE on them stays with the owner (CREATE
-- AGGREGATE requires it).
CREATE AGGREGATE lms_etl.learner_day(sourcedid text, attempt_type text, is_correct boolean,
                                     created_at timestamptz) (
    SFUNC = lms_etl.learner_day_accum,
    STYPE = internal,
    -- A learner's state is a few KB (tallies of a few dozen problems): the planner's guess
    -- for an internal state (8 KB) would make it sort a day of attempts instead of hashing.
    SSPACE = 2048,
    FINALFUNC = lms_etl.learner_day_final,
    -- Parallel workers each tally their share; the leader merges a learner's parts.
    COMBINEFUNC = lms_etl.learner_day_combine,
    SERIALFUNC = lms_etl.learner_day_serialize,
    DESERIALFUNC = lms_etl.learner_day_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE lms_etl.learner_day(text, text, boolean, timestamptz) IS
    'One learner''s attempts tallied per problem (an internal bytea encoding, read by lms_etl.problem_day); group by user_id.';
CREATE AGGREGATE lms_etl.problem_day(learner_day bytea) (
    SFUNC = lms_etl.problem_day_accum,
    STYPE = internal,
    FINALFUNC = lms_etl.problem_day_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE lms_etl.problem_day(bytea) IS
    'Per-problem statistics of a day from one lms_etl.learner_day value per learner, as lms_etl.problem_day arrays.';
REVOKE EXECUTE ON FUNCTION lms_etl.learner_day_accum(internal, text, text, boolean, timestamptz),
                           lms_etl.learner_day_final(internal),
                           lms_etl.learner_day_combine(internal, internal),
                           lms_etl.learner_day_serialize(internal),
                           lms_etl.learner_day_deserialize(bytea, internal),
                           lms_etl.problem_day_accum(internal, bytea),
                           lms_etl.problem_day_final(internal)
    FROM PUBLIC;
