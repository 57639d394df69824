//! Rows of the extension's composite types, built from Rust values. Resolving a type by
//! name runs the SQL parser, which costs more than the parses these functions do, so each
//! type's oid is cached per backend and re-checked against the catalog cache on every call
//! (a DROP/CREATE EXTENSION in the same session gives the type a new oid).

use std::cell::Cell;
use std::thread::LocalKey;

use pgrx::prelude::*;
use pgrx::PgTupleDesc;

/// (type oid, its relation oid) of one composite type, found once per backend.
pub type TypeCache = Cell<Option<(pg_sys::Oid, pg_sys::Oid)>>;

/// The oid of the composite type `name` (schema-qualified), through `cache`.
pub fn type_oid(cache: &'static LocalKey<TypeCache>, name: &str) -> pg_sys::Oid {
    if let Some((oid, relid)) = cache.get() {
        // SAFETY: a syscache lookup by oid; returns InvalidOid for a missing type.
        if unsafe { pg_sys::get_typ_typrelid(oid) } == relid {
            return oid;
        }
    }
    let desc = PgTupleDesc::for_composite_type(name)
        .unwrap_or_else(|| error!("type {name} is missing: is the lms_etl extension installed?"));
    let oid = desc.oid();
    // SAFETY: as above.
    cache.set(Some((oid, unsafe { pg_sys::get_typ_typrelid(oid) })));
    oid
}

/// A row of the composite type `oid` whose attributes are all text, in order.
pub fn text_row<const N: usize>(
    oid: pg_sys::Oid,
    fields: [Option<&str>; N],
) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    let desc = PgTupleDesc::for_composite_type_by_oid(oid).expect("a composite type");
    assert_eq!(desc.len(), N, "the composite type has {N} attributes");
    let datums = fields.map(|field| field.and_then(|text| text.into_datum()));
    // SAFETY: N text datums for the N text attributes of the type (checked above).
    unsafe { PgHeapTuple::from_datums(desc, datums) }.expect("N attributes")
}
