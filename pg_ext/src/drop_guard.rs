//! Keeps a plain `DROP EXTENSION lms_etl` from deleting loaded data: the data tables are
//! extension members (that is how pg_dump and upgrades carry them), so without this guard
//! PostgreSQL would drop them silently with the extension.
//!
//! An event trigger on `ddl_command_start` sees the parse tree of `DROP EXTENSION` and of
//! `DROP OWNED BY` (which drops the extension when it names its owner): when such a drop,
//! without CASCADE, would take the extension and a data table holds a row, it refuses with
//! SQLSTATE 2BP01, as PostgreSQL refuses a RESTRICT drop that would take dependants with it.
//! CASCADE is the documented, explicit way to delete everything; an empty install drops
//! freely. The trigger is ENABLE ALWAYS, so `session_replication_role = replica` keeps it.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Tables whose rows are the user's data or its history; the rest is derived or bookkeeping.
const DATA_TABLES: [&str; 4] = [
    "lms_etl.attempts",
    "lms_etl.rejected_attempts",
    "lms_etl.runs",
    "lms_etl.daily_stats",
];

/// The event trigger function behind `lms_etl_keep_data` (see `sql/drop_guard.sql`).
#[pg_extern(sql = r#"
CREATE FUNCTION lms_etl.guard_drop_extension()
RETURNS event_trigger
LANGUAGE c
AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION lms_etl.guard_drop_extension() IS
    'Event trigger: refuses DROP EXTENSION lms_etl without CASCADE while lms_etl holds data.';
"#)]
fn guard_drop_extension(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: PostgreSQL calls an event trigger function with an EventTriggerData context;
    // anything else (a direct SQL call is impossible for RETURNS event_trigger) is refused.
    let parsetree = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            error!("lms_etl.guard_drop_extension() must be called as an event trigger");
        }
        (*(context as *mut pg_sys::EventTriggerData)).parsetree
    };
    // Reading the parse tree costs nothing; every other DROP EXTENSION or DROP OWNED in the
    // database stops here, before any query.
    let Some(dropping) = restrict_drop(parsetree) else {
        return;
    };
    // Only a drop that PostgreSQL would allow is judged here: anyone else gets its own
    // "must be owner" (42501) right after this trigger.
    let Some(owner) = owner_if_may_drop() else {
        return;
    };
    if let RestrictDrop::OwnedBy(roles) = &dropping {
        if !roles.contains(&owner) {
            return;
        }
    }
    let holding = tables_holding_data();
    if holding.is_empty() {
        return;
    }
    pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        "cannot drop extension lms_etl because it holds loaded data",
        "lms_etl.guard_drop_extension",
    )
    .set_detail(format!(
        "Dropping the extension drops its tables; {} hold rows.",
        holding.join(", ")
    ))
    .set_hint(
        "Keep a copy first (pg_dump -n lms_etl); DROP EXTENSION lms_etl CASCADE then deletes \
         the extension and all its data.",
    )
    .report(PgLogLevel::ERROR);
}

/// A drop without CASCADE that may take the extension with it.
enum RestrictDrop {
    /// `DROP EXTENSION` naming `lms_etl`.
    Extension,
    /// `DROP OWNED BY` these roles: it drops the extension when one of them owns it.
    OwnedBy(Vec<pg_sys::Oid>),
}

fn restrict_drop(parsetree: *mut pg_sys::Node) -> Option<RestrictDrop> {
    // SAFETY: the parse tree of the command being run, alive for the whole trigger call;
    // the node tag is checked before each cast.
    unsafe {
        if parsetree.is_null() {
            return None;
        }
        match (*parsetree).type_ {
            pg_sys::NodeTag::T_DropStmt => {
                let stmt = &*(parsetree as *mut pg_sys::DropStmt);
                if stmt.removeType != pg_sys::ObjectType::OBJECT_EXTENSION
                    || stmt.behavior == pg_sys::DropBehavior::DROP_CASCADE
                {
                    return None;
                }
                let objects = pgrx::PgList::<pg_sys::Node>::from_pg(stmt.objects);
                let named = objects.iter_ptr().any(|node| {
                    !node.is_null()
                        && (*node).type_ == pg_sys::NodeTag::T_String
                        && CStr::from_ptr((*(node as *mut pg_sys::String)).sval).to_bytes()
                            == b"lms_etl"
                });
                named.then_some(RestrictDrop::Extension)
            }
            pg_sys::NodeTag::T_DropOwnedStmt => {
                let stmt = &*(parsetree as *mut pg_sys::DropOwnedStmt);
                if stmt.behavior == pg_sys::DropBehavior::DROP_CASCADE {
                    return None;
                }
                let roles = pgrx::PgList::<pg_sys::RoleSpec>::from_pg(stmt.roles);
                Some(RestrictDrop::OwnedBy(
                    roles
                        .iter_ptr()
                        .filter(|role| !role.is_null())
                        .map(|role| pg_sys::get_rolespec_oid(role, true))
                        .collect(),
                ))
            }
            _ => None,
        }
    }
}

/// The extension's owner, when the current user owns it (or is superuser), as a drop
/// requires; None otherwise, or when the extension is not there.
fn owner_if_may_drop() -> Option<pg_sys::Oid> {
    let (owner, may) = Spi::get_two::<pg_sys::Oid, bool>(
        "SELECT e.extowner, pg_catalog.pg_has_role(e.extowner, 'USAGE')
           FROM pg_catalog.pg_extension e WHERE e.extname = 'lms_etl'",
    )
    .unwrap_or((None, None));
    match (owner, may) {
        (Some(owner), Some(true)) => Some(owner),
        _ => None,
    }
}

/// The data tables holding a row. They are locked first, as the drop would lock them: a load
/// still in flight then commits (or rolls back) before they are read, and each read in READ
/// COMMITTED takes a new snapshot. Under REPEATABLE READ or SERIALIZABLE the snapshot is the
/// transaction's, older than rows committed since: there a table with any page counts too.
fn tables_holding_data() -> Vec<&'static str> {
    Spi::run(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        DATA_TABLES.join(", ")
    ))
    .unwrap_or_else(|e| error!("lms_etl drop guard: locking the data tables failed: {e}"));
    // SAFETY: reads the current transaction's isolation level.
    let old_snapshot = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    DATA_TABLES
        .iter()
        .copied()
        .filter(|table| table_has_rows(table) || (old_snapshot && table_has_pages(table)))
        .collect()
}

fn table_has_pages(table: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_relation_size($1::regclass) > 0",
        &[table.into()],
    )
    .unwrap_or_else(|e| error!("lms_etl drop guard: sizing {table} failed: {e}"))
    .unwrap_or(false)
}

fn table_has_rows(table: &str) -> bool {
    // The names are this module's constants, never input: nothing to quote.
    let query = format!("SELECT EXISTS (SELECT 1 FROM {table})");
    Spi::get_one::<bool>(&query)
        .unwrap_or_else(|e| error!("lms_etl drop guard: reading {table} failed: {e}"))
        .unwrap_or(false)
}
