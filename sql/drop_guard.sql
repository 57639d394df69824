-- A plain DROP EXTENSION lms_etl must not delete loaded data (version 0.2.0). The data tables
-- are members (pg_dump and ALTER EXTENSION UPDATE carry them so), so PostgreSQL would drop
-- them with the extension: this event trigger refuses the drop while they hold a row, unless
-- CASCADE says to delete everything (pg_ext/src/drop_guard.rs). Uninstall, README
-- "Uninstall": keep a copy (pg_dump -n lms_etl), then DROP EXTENSION lms_etl CASCADE.
CREATE EVENT TRIGGER lms_etl_keep_data ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP OWNED')
    EXECUTE FUNCTION lms_etl.guard_drop_extension();
-- Also in sessions with session_replication_role = replica (replication and bulk-load tools).
ALTER EVENT TRIGGER lms_etl_keep_data ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER lms_etl_keep_data IS
    'Refuses DROP EXTENSION lms_etl, or DROP OWNED BY its owner, without CASCADE while lms_etl holds data.';
