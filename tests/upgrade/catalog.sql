-- What the lms_etl extension (psql variable extname) is in one database, as sorted text lines without OIDs, so that
-- an upgraded database and a fresh install can be compared with diff (compare_catalog.sh).
-- pg_dump --schema-only cannot do this: it prints member tables as a bare CREATE EXTENSION.
--
-- Each line starts with its kind and the object's name. Columns of tables are keyed by
-- name (ALTER TABLE ADD COLUMN appends, a fresh CREATE TABLE may place a column elsewhere);
-- their physical order is on separate `column-order` lines, which compare_catalog.sh
-- reports as a warning only. Attributes of composite types are keyed by position: pgrx
-- builds those tuples positionally, so their order is part of the contract.
-- Left out on purpose: OIDs, database names, sequence values, anything of pg_toast.
\set ON_ERROR_STOP 1
\if :{?extname}
\else
  \set extname lms_etl
\endif
SET search_path = pg_catalog, pg_temp;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET extra_float_digits = 0;

CREATE TEMP VIEW ext AS
SELECT e.oid, e.extname, e.extversion, e.extrelocatable, e.extnamespace,
       e.extconfig, e.extcondition
  FROM pg_extension e
 WHERE e.extname = :'extname';

-- Every object the extension owns directly (pg_depend deptype 'e').
CREATE TEMP VIEW member AS
SELECT d.classid, d.objid, d.objsubid
  FROM pg_depend d JOIN ext ON d.refobjid = ext.oid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e';

CREATE TEMP VIEW member_rel AS
SELECT c.oid, c.relname, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid IN (SELECT objid FROM member WHERE classid = 'pg_class'::regclass);

CREATE TEMP VIEW member_proc AS
SELECT p.oid, p.oid::regprocedure::text AS name
  FROM pg_proc p
 WHERE p.oid IN (SELECT objid FROM member WHERE classid = 'pg_proc'::regclass);

-- Types the extension owns: member types, and the types of member composite relations.
CREATE TEMP VIEW member_type AS
SELECT t.oid, format_type(t.oid, NULL) AS name, t.typtype, t.typrelid
  FROM pg_type t
 WHERE t.oid IN (SELECT objid FROM member WHERE classid = 'pg_type'::regclass)
    OR t.typrelid IN (SELECT oid FROM member_rel WHERE relkind = 'c');

-- Schemas: the extension's own and any it owns.
CREATE TEMP VIEW ext_schema AS
SELECT n.oid, n.nspname
  FROM pg_namespace n
 WHERE n.oid = (SELECT extnamespace FROM ext)
    OR n.oid IN (SELECT objid FROM member WHERE classid = 'pg_namespace'::regclass);

-- Objects that belong to a member without being members themselves.
CREATE TEMP VIEW owned_part AS
SELECT 'pg_class'::regclass AS classid, i.indexrelid AS objid
  FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM member_rel)
UNION ALL
SELECT 'pg_constraint'::regclass, co.oid FROM pg_constraint co
 WHERE co.conrelid IN (SELECT oid FROM member_rel) OR co.contypid IN (SELECT oid FROM member_type)
UNION ALL
SELECT 'pg_trigger'::regclass, tg.oid FROM pg_trigger tg
 WHERE tg.tgrelid IN (SELECT oid FROM member_rel) AND NOT tg.tgisinternal
UNION ALL
SELECT 'pg_policy'::regclass, po.oid FROM pg_policy po WHERE po.polrelid IN (SELECT oid FROM member_rel)
UNION ALL
SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM member_rel);

CREATE TEMP VIEW described AS
SELECT classid, objid FROM member
UNION SELECT classid, objid FROM owned_part
UNION SELECT 'pg_namespace'::regclass, oid FROM ext_schema
UNION SELECT 'pg_extension'::regclass, oid FROM ext
UNION SELECT 'pg_type'::regclass, oid FROM member_type;

CREATE TEMP VIEW line AS
-- The extension row itself.
SELECT 10 AS kind, '' AS key, 0 AS n,
       format('extension %s: version=%s schema=%s relocatable=%s',
              extname, extversion, extnamespace::regnamespace, extrelocatable) AS line
  FROM ext
UNION ALL
SELECT 11, '', 0, format('extension %s: NOT INSTALLED in this database', :'extname')
 WHERE NOT EXISTS (SELECT FROM ext)

-- Configuration tables (pg_dump dumps their rows), as a set of (table, condition).
UNION ALL
SELECT 12, c.cfg::regclass::text, 0,
       format('extconfig %s: condition=%L', c.cfg::regclass, c.cond)
  FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(cfg, cond)

-- Every member, named the way PostgreSQL names it.
UNION ALL
SELECT 20, format('%s %s', o.type, o.identity), 0,
       format('member %s %s', o.type, o.identity)
  FROM member m, pg_identify_object(m.classid, m.objid, m.objsubid) o

-- Anything in the extension's schemas that the extension does not own (left behind by an
-- upgrade that dropped it from the extension, or created outside it).
UNION ALL
SELECT 21, o.identity, 0, format('not a member: %s %s', o.type, o.identity)
  FROM pg_class c
  CROSS JOIN LATERAL pg_identify_object('pg_class'::regclass, c.oid, 0) o
 WHERE c.relnamespace IN (SELECT oid FROM ext_schema)
   AND c.relkind NOT IN ('i', 'I', 't')
   AND c.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_class'::regclass)
   -- a composite type's relation: its pg_type row is the member
   AND NOT (c.relkind = 'c' AND c.reltype IN (SELECT oid FROM member_type))
   -- a sequence owned by a member table's column (identity or serial) belongs to it
   AND NOT EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                      AND d.refobjid IN (SELECT oid FROM member_rel))
UNION ALL
SELECT 21, o.identity, 0, format('not a member: %s %s', o.type, o.identity)
  FROM pg_proc p
  CROSS JOIN LATERAL pg_identify_object('pg_proc'::regclass, p.oid, 0) o
 WHERE p.pronamespace IN (SELECT oid FROM ext_schema)
   AND p.oid NOT IN (SELECT oid FROM member_proc)
UNION ALL
SELECT 21, o.identity, 0, format('not a member: %s %s', o.type, o.identity)
  FROM pg_type t
  CROSS JOIN LATERAL pg_identify_object('pg_type'::regclass, t.oid, 0) o
 WHERE t.typnamespace IN (SELECT oid FROM ext_schema)
   AND t.oid NOT IN (SELECT oid FROM member_type)
   AND NOT EXISTS (SELECT FROM pg_type a WHERE a.typarray = t.oid)            -- array types
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')

-- Schemas.
UNION ALL
SELECT 30, s.nspname, 0,
       format('schema %I: owner=%s acl=%s', s.nspname, n.nspowner::regrole, coalesce(n.nspacl::text, '-'))
  FROM ext_schema s JOIN pg_namespace n ON n.oid = s.oid

-- Functions: one line of attributes, then the definition line by line.
UNION ALL
SELECT 40, f.name, 0,
       format('function %s: returns=%s kind=%s language=%s volatile=%s strict=%s parallel=%s '
              'security_definer=%s leakproof=%s cost=%s rows=%s config=%s probin=%s owner=%s acl=%s',
              f.name, pg_get_function_result(p.oid), p.prokind, l.lanname, p.provolatile,
              p.proisstrict, p.proparallel, p.prosecdef, p.proleakproof, p.procost, p.prorows,
              coalesce(p.proconfig::text, '-'), coalesce(p.probin, '-'), p.proowner::regrole,
              coalesce(p.proacl::text, '-'))
  FROM member_proc f JOIN pg_proc p ON p.oid = f.oid JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 40, f.name, d.n::int, format('function %s | %s', f.name, d.txt)
  FROM member_proc f JOIN pg_proc p ON p.oid = f.oid,
       regexp_split_to_table(
           CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid)
                ELSE format('(%s) source=%s', p.prokind, p.prosrc) END, E'\n')
           WITH ORDINALITY AS d(txt, n)

-- Relations.
UNION ALL
SELECT 50, r.name, 0,
       format('%s %s: persistence=%s access_method=%s options=%s row_security=%s/%s '
              'replica_identity=%s owner=%s acl=%s',
              CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned-table'
                   WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized-view'
                   WHEN 'S' THEN 'sequence' WHEN 'c' THEN 'composite-type-relation'
                   WHEN 'f' THEN 'foreign-table' ELSE c.relkind::text END,
              r.name, c.relpersistence, coalesce(am.amname, '-'),
              coalesce(c.reloptions::text, '-'), c.relrowsecurity, c.relforcerowsecurity,
              c.relreplident, c.relowner::regrole, coalesce(c.relacl::text, '-'))
  FROM member_rel r JOIN pg_class c ON c.oid = r.oid LEFT JOIN pg_am am ON am.oid = c.relam
 WHERE c.relkind <> 'c'
UNION ALL
SELECT 51, r.name || '.' || a.attname, 0,
       format('column %s.%I: type=%s not_null=%s default=%s identity=%s generated=%s '
              'collation=%s storage=%s acl=%s',
              r.name, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-'),
              CASE a.attidentity WHEN '' THEN '-' ELSE a.attidentity::text END,
              CASE a.attgenerated WHEN '' THEN '-' ELSE a.attgenerated::text END,
              CASE WHEN a.attcollation = 0 THEN '-' ELSE a.attcollation::regcollation::text END,
              a.attstorage, coalesce(a.attacl::text, '-'))
  FROM member_rel r
  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 52, r.name, 0,
       format('column-order %s: %s', r.name,
              (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                 FROM pg_attribute a
                WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM member_rel r
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 53, format('%s %s', r.name, co.conname), 0,
       format('constraint %s %I: type=%s %s%s', r.name, co.conname, co.contype,
              pg_get_constraintdef(co.oid),
              CASE WHEN co.condeferrable THEN format(' deferrable=%s/%s', co.condeferrable, co.condeferred) ELSE '' END)
  FROM member_rel r JOIN pg_constraint co ON co.conrelid = r.oid
UNION ALL
SELECT 54, format('%s %s', r.name, ic.relname), 0,
       format('index %s %I: %s%s', r.name, ic.relname, pg_get_indexdef(i.indexrelid),
              CASE WHEN i.indisclustered THEN ' (clustered)' ELSE '' END)
  FROM member_rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
UNION ALL
SELECT 55, format('%s %s', r.name, tg.tgname), 0,
       format('trigger %s %I: %s enabled=%s', r.name, tg.tgname, pg_get_triggerdef(tg.oid), tg.tgenabled)
  FROM member_rel r JOIN pg_trigger tg ON tg.tgrelid = r.oid AND NOT tg.tgisinternal
UNION ALL
SELECT 56, format('%s %s', r.name, po.polname), 0,
       format('policy %s %I: command=%s permissive=%s roles=%s using=%s check=%s',
              r.name, po.polname, po.polcmd, po.polpermissive,
              (SELECT string_agg(CASE WHEN x = 0 THEN 'public' ELSE x::regrole::text END, ',' ORDER BY 1)
                 FROM unnest(po.polroles) AS x),
              coalesce(pg_get_expr(po.polqual, po.polrelid), '-'),
              coalesce(pg_get_expr(po.polwithcheck, po.polrelid), '-'))
  FROM member_rel r JOIN pg_policy po ON po.polrelid = r.oid
UNION ALL
SELECT 57, format('%s %s', r.name, ru.rulename), 0,
       format('rule %s %I: %s', r.name, ru.rulename, pg_get_ruledef(ru.oid))
  FROM member_rel r JOIN pg_rewrite ru ON ru.ev_class = r.oid
 WHERE ru.rulename <> '_RETURN'
UNION ALL
SELECT 58, r.name, d.n::int, format('view %s | %s', r.name, d.txt)
  FROM member_rel r,
       regexp_split_to_table(pg_get_viewdef(r.oid, true), E'\n') WITH ORDINALITY AS d(txt, n)
 WHERE r.relkind IN ('v', 'm')

-- Sequences: their definition and owner column, not their current value.
UNION ALL
SELECT 60, c.oid::regclass::text, 0,
       format('sequence %s: type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s '
              'owned_by=%s owner=%s acl=%s',
              c.oid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin,
              s.seqmax, s.seqcache, s.seqcycle,
              coalesce((SELECT format('%s.%I (%s)', d.refobjid::regclass, a.attname, d.deptype)
                          FROM pg_depend d
                          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '-'),
              c.relowner::regrole, coalesce(c.relacl::text, '-'))
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.oid IN (SELECT oid FROM member_rel)
    OR EXISTS (SELECT FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                  AND d.refobjid IN (SELECT oid FROM member_rel))

-- Types: composites with their attributes in order, enums with their labels, domains.
UNION ALL
SELECT 70, t.name, 0,
       format('type %s: kind=%s owner=%s acl=%s%s', t.name, t.typtype, ty.typowner::regrole,
              coalesce(ty.typacl::text, '-'),
              CASE t.typtype
                WHEN 'd' THEN format(' base=%s not_null=%s default=%s', format_type(ty.typbasetype, ty.typtypmod),
                                     ty.typnotnull, coalesce(ty.typdefault, '-'))
                WHEN 'e' THEN format(' labels=%s', (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                      FROM pg_enum e WHERE e.enumtypid = t.oid))
                WHEN 'r' THEN format(' subtype=%s', (SELECT rngsubtype::regtype FROM pg_range WHERE rngtypid = t.oid))
                ELSE '' END)
  FROM member_type t JOIN pg_type ty ON ty.oid = t.oid
UNION ALL
SELECT 71, t.name, a.pos::int,
       format('type %s attribute %s: %I %s', t.name, a.pos, a.attname, format_type(a.atttypid, a.atttypmod))
  FROM member_type t,
       LATERAL (SELECT attname, atttypid, atttypmod, row_number() OVER (ORDER BY attnum) AS pos
                  FROM pg_attribute
                 WHERE attrelid = t.typrelid AND attnum > 0 AND NOT attisdropped) a
 WHERE t.typtype = 'c'
UNION ALL
SELECT 72, format('%s %s', t.name, co.conname), 0,
       format('constraint %s %I: %s', t.name, co.conname, pg_get_constraintdef(co.oid))
  FROM member_type t JOIN pg_constraint co ON co.contypid = t.oid

-- Event triggers: when they fire, for which commands, what they run, and whether enabled.
UNION ALL
SELECT 75, et.evtname::text, 0,
       format('event trigger %I: on %s tags %s executes %s enabled %s',
              et.evtname, et.evtevent, et.evttags, et.evtfoid::regprocedure, et.evtenabled)
  FROM pg_event_trigger et
 WHERE et.oid IN (SELECT objid FROM member WHERE classid = 'pg_event_trigger'::regclass)

-- Privileges recorded at CREATE EXTENSION (pg_dump compares against them).
UNION ALL
SELECT 80, o.identity, 0,
       format('initial-privileges %s %s: %s (%s)', o.type, o.identity, ip.initprivs, ip.privtype)
  FROM pg_init_privs ip
  JOIN described ds ON ds.classid = ip.classoid AND ds.objid = ip.objoid
  CROSS JOIN LATERAL pg_identify_object(ip.classoid, ip.objoid, ip.objsubid) o

-- Comments on everything above, columns and constraints included.
UNION ALL
SELECT 90, format('%s %s', o.type, o.identity), 0,
       format('comment on %s %s: %s', o.type, o.identity, de.description)
  FROM pg_description de
  JOIN described ds ON ds.classid = de.classoid AND ds.objid = de.objoid
  CROSS JOIN LATERAL pg_identify_object(de.classoid, de.objoid, de.objsubid) o;

SELECT line FROM line ORDER BY kind, key COLLATE "C", n, line COLLATE "C";
