-- lms_etl upgrade script 0.1.0 -> 0.2.0, run by ALTER EXTENSION lms_etl UPDATE.
--
-- Why: 0.2.0 reworks the schema (below) and is the first release whose shared library is
-- versioned: the control file has no module_pathname, so cargo-pgrx installs
-- lms_etl-0.2.0.so beside 0.1.0's lms_etl.so, and a database still on 0.1.0 keeps working
-- with its own library until it is updated.
--
-- This script may change until 0.2.0 is released; from then on it is frozen like every
-- released script (sql/released/RELEASES) and the next change goes into
-- lms_etl--0.2.0--<next>.sql. tests/upgrade/upgrade_test.sh (`make test-upgrade`) checks that
-- 0.1.0 with data, after this script, has the catalog of a fresh 0.2.0 install.
--
-- cargo pgrx install copies this file with @CARGO_VERSION@ replaced by the version being
-- installed (Cargo.toml); MODULE_PATHNAME is NOT replaced (no module_pathname in the control
-- file), so never write it here.

-- == library: re-point C functions to the 0.2.0 library ==
-- The C-language functions of 0.1.0 whose signatures stay the same, re-created exactly as a
-- fresh 0.2.0 install creates them: probin 'lms_etl-<version>' (found in $libdir), same
-- symbol, volatility, strictness, parallel safety and (default) cost. CREATE OR REPLACE keeps
-- each function's OID, privileges, comment and dependants. ingest_chunk changes signature:
-- the schema section below replaces it.
CREATE OR REPLACE FUNCTION lms_etl.pyrepr_to_json_text("literal" text)
RETURNS text
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'pyrepr_to_json_text_wrapper';

CREATE OR REPLACE FUNCTION lms_etl.parse_passback_params("passback_params" text)
RETURNS lms_etl.passback_params
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'parse_passback_params_wrapper';

CREATE OR REPLACE FUNCTION lms_etl.try_parse_passback_params("passback_params" text)
RETURNS lms_etl.passback_params
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'lms_etl-@CARGO_VERSION@', 'try_parse_passback_params_wrapper';

-- == schema: 0.2.0 changes ==
