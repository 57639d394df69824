-- jsonb flavour of lms_etl.pyrepr_to_json_text (version 0.1.0). A one-expression SQL function,
-- so the planner inlines it: the cost is the Rust parser plus PostgreSQL's own jsonb input.
CREATE FUNCTION lms_etl.pyrepr_to_jsonb(literal text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT lms_etl.pyrepr_to_json_text(literal)::jsonb $$;
COMMENT ON FUNCTION lms_etl.pyrepr_to_jsonb(text) IS
    'Convert a Python literal as repr() writes it (dict, list, tuple, str, int, float, None/True/False) to jsonb; never evaluates code.';
