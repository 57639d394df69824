#!/usr/bin/env bash
# Upgrade test: the last release (sql/released/RELEASES), holding data, becomes HEAD through
# ALTER EXTENSION lms_etl UPDATE, and must then be indistinguishable from a fresh install.
#
#   0. build everything first (HEAD's extension and loader, the demo API's data), so the
#      release is installed for seconds, not minutes
#   a. build and install the release from its recorded commit (cached in target/release-<v>)
#   b. a throwaway database on it, with data in every table (seed-<v>.sql: through the
#      release's own ingest_chunk); a fingerprint of every table
#   c. install HEAD, ALTER EXTENSION lms_etl UPDATE
#   d. the same fingerprints; HEAD's `lms-etl run` loads more into the upgraded database
#   e. the extension's catalog equals a fresh CREATE EXTENSION lms_etl of HEAD (compare_catalog.sh)
#   f. drop the databases; HEAD stays installed, even when a step fails
#
# It installs the old control file and library into the shared extension directory, so
# nothing else may use the extension while it runs (`make test` runs it last, alone).
# Env: FROM_VERSION (default: the last release recorded), KEEP_WORK=1 keeps the work dir,
# STRICT_COLUMN_ORDER=1 fails on a different column order too.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tests/upgrade

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
psql_as_postgres() { $SUDO runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
target_dir=${CARGO_TARGET_DIR:-$root/target}

FROM_VERSION=${FROM_VERSION:-$(grep -Ev '^[[:space:]]*(#|$)' sql/released/RELEASES \
  | awk '$3 ~ /^sql\/released\/lms_etl--/ { v = $1 } END { print v }')}
head_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$FROM_VERSION" ] && [ -n "$head_version" ] || { echo "cannot read the versions" >&2; exit 2; }

# Window of demo data loaded into the release (b) and loaded by HEAD's loader after (d).
OLD_START='2026-11-20 00:00:00'; OLD_END='2026-11-20 06:00:00'
NEW_START='2026-11-20 06:00:00'; NEW_END='2026-11-20 12:00:00'

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/lms_etl-upgrade.XXXXXX")
db_upgraded="lms_etl_upgrade_$$"
db_fresh="lms_etl_fresh_$$"
db_zoned="lms_etl_zoned_$$"
db_check="lms_etl_fresh2_$$"
api_pid=
head_installed=0

step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$((SECONDS - started))" "$*"; }
fail() { echo "UPGRADE TEST FAILED: $*" >&2; exit 1; }

install_ext() { # <pg_ext dir> <target dir> <log>
  if ! (cd "$1" && CARGO_TARGET_DIR="$2" cargo pgrx install --release --pg-config "$PG_CONFIG" \
          ${SUDO:+--sudo}) > "$3" 2>&1; then
    tail -n 40 "$3" >&2; fail "cargo pgrx install in $1 failed (log: $3)"
  fi
  # What pgrx put where: the control file, the library, the SQL scripts.
  sed -n 's/\x1b\[[0-9;]*m//g; s/^ *Copying */  copied /p; s/^ *Writing SQL entities to */  wrote /p' "$3"
}

install_head() {
  install_ext "$root/pg_ext" "$target_dir" "$work/install-head.log"
  head_installed=1
}

cleanup() {
  local code=$?
  set +e
  [ -z "$api_pid" ] || { kill "$api_pid" 2>/dev/null; wait "$api_pid" 2>/dev/null; }
  for db in "$db_upgraded" "$db_fresh" "$db_check" "$db_zoned"; do
    psql_as_postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null
  done
  if [ "$head_installed" = 0 ]; then
    echo "reinstalling HEAD so the machine is not left on $FROM_VERSION" >&2
    install_head >/dev/null || echo "REINSTALLING HEAD FAILED: run make install-ext" >&2
  fi
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$code" != 0 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
  if [ "$code" = 0 ]; then
    echo "upgrade test $FROM_VERSION -> $head_version passed in $((SECONDS - started)) s"
  else
    echo "upgrade test $FROM_VERSION -> $head_version FAILED after $((SECONDS - started)) s" >&2
  fi
  exit "$code"
}
trap cleanup EXIT

q() { psql_as_postgres -d "$1" -tA -c "$2"; }   # one value

step "0. build HEAD ($head_version): extension (installed), loader; demo data"
install_head
cargo build --quiet -p lms-etl-loader --bin lms-etl
lms_etl_bin=$target_dir/debug/lms-etl
"$lms_etl_bin" demo-api --listen 127.0.0.1:0 --malformed 0.02 > "$work/demo-api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/demo-api.log" && break; sleep 0.1; done
api_url=$(sed -n 's/^demo API listening on //p' "$work/demo-api.log")
[ -n "$api_url" ] || { cat "$work/demo-api.log" >&2; fail "the demo API did not start"; }
curl -sSf -G "${api_url%/}/api/statistics" --data-urlencode client=demo --data-urlencode client_key=demo \
  --data-urlencode "start=$OLD_START" --data-urlencode "end=$OLD_END" -o "$work/chunk.json" \
  || fail "GET /api/statistics from the demo API"
grep -q '\$chunk\$' "$work/chunk.json" && fail "the demo body contains the quote tag \$chunk\$"
echo "  demo API at $api_url; $OLD_START .. $OLD_END: $(wc -c < "$work/chunk.json") bytes"

step "a. build and install release $FROM_VERSION"
release_src=$(scripts/released.sh source "$FROM_VERSION")
echo "  source: $release_src ($(cat "$(dirname "$release_src")/src.commit"))"
head_installed=0
install_ext "$release_src/pg_ext" "$(dirname "$release_src")/target" "$work/install-$FROM_VERSION.log"
extdir=$("$PG_CONFIG" --sharedir)/extension
# The release's library (0.1.0 has no versioned name) must stay the one built here: on a
# shared machine a parallel `cargo pgrx test` of another checkout can overwrite it.
release_lib=$("$PG_CONFIG" --pkglibdir)/lms_etl.so
release_lib_built=$(dirname "$release_src")/target/release/liblms_etl.so
check_release_library() {
  cmp -s "$release_lib" "$release_lib_built" \
    || fail "$release_lib is no longer the $FROM_VERSION build: something else installed over it during the test; run it again alone"
}
# pgrx orders the script's blocks ("connected objects") differently from build to build
# (its own header says so): compare the blocks as a set.
blocks() { perl -0777 -ne 'print join("\n/* ==== next block ==== */\n", sort split(m{/\* <begin connected objects> \*/}, $_))' "$1"; }
if ! diff -u --label "frozen sql/released/lms_etl--$FROM_VERSION.sql" --label "built from $(cat "$(dirname "$release_src")/src.commit")" \
     <(blocks "sql/released/lms_etl--$FROM_VERSION.sql") <(blocks "$extdir/lms_etl--$FROM_VERSION.sql"); then
  fail "the install script built from the release commit differs from the frozen sql/released/lms_etl--$FROM_VERSION.sql"
fi
echo "  the installed lms_etl--$FROM_VERSION.sql has the frozen script's objects (block order aside)"

step "b. database $db_upgraded on $FROM_VERSION, with data in every table"
psql_as_postgres -d postgres -c "CREATE DATABASE $db_upgraded"
psql_as_postgres -d "$db_upgraded" -c "CREATE EXTENSION lms_etl VERSION '$FROM_VERSION'"
# Data through the release's own functions, as its loader wrote it (one seed per release).
seed=$here/seed-$FROM_VERSION.sql
[ -f "$seed" ] || fail "no $seed: write one for release $FROM_VERSION (see seed-0.1.0.sql)"
CHUNK=$work/chunk.json perl -pe 'BEGIN { local $/; open my $f, "<", $ENV{CHUNK} or die $!; $c = <$f> } s/\@CHUNK\@/$c/g' "$seed" \
  | psql_as_postgres -d "$db_upgraded" -v window_start="$OLD_START" -v window_end="$OLD_END" > /dev/null
[ "$(q "$db_upgraded" "SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'")" = "$FROM_VERSION" ] \
  || fail "database $db_upgraded is not on $FROM_VERSION"
# A second database with the same data, updated below with the source zone named.
psql_as_postgres -d postgres -c "CREATE DATABASE $db_zoned TEMPLATE $db_upgraded"
check_release_library

# Fingerprint of every table with the columns the release has: count and md5 of the sorted
# rows. Timestamps are formatted under TimeZone UTC, so a timestamp column that becomes
# timestamptz (read as UTC) keeps its fingerprint.
psql_as_postgres -d "$db_upgraded" -tA > "$work/fingerprint.sql" <<'SQL'
SELECT format(
         'SELECT %L || '': '' || count(*) || '' rows, md5 '' || coalesce(md5(string_agg(r, E''\n'' ORDER BY r COLLATE "C")), ''-'') FROM (SELECT concat_ws(''|'', %s) AS r FROM %s) s;',
         c.oid::regclass,
         string_agg(CASE WHEN a.atttypid IN ('timestamp'::regtype, 'timestamptz'::regtype)
                         THEN format('quote_nullable(to_char(%I, ''YYYY-MM-DD HH24:MI:SS.US''))', a.attname)
                         ELSE format('quote_nullable(%I::text)', a.attname) END, ', ' ORDER BY a.attnum),
         c.oid::regclass)
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'lms_etl'
  JOIN pg_class c ON c.oid = d.objid AND c.relkind IN ('r', 'p')
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
 GROUP BY c.oid
 ORDER BY c.oid::regclass::text;
SQL
fingerprint() { { echo "SET TimeZone = 'UTC';"; cat "$work/fingerprint.sql"; } | psql_as_postgres -d "$1" -tA; }
fingerprint "$db_upgraded" > "$work/fingerprint.before"
sed 's/^/  /' "$work/fingerprint.before"
if grep -E ': 0 rows' "$work/fingerprint.before"; then fail "a table of $FROM_VERSION holds no row: the upgrade would not be tested on data"; fi

step "c. install HEAD ($head_version) and ALTER EXTENSION lms_etl UPDATE"
install_head
psql_as_postgres -d "$db_upgraded" -c "ALTER EXTENSION lms_etl UPDATE" \
  || fail "ALTER EXTENSION lms_etl UPDATE from $FROM_VERSION"
got=$(q "$db_upgraded" "SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'")
[ "$got" = "$head_version" ] || fail "after the update the extension is at $got, not $head_version"
echo "  $db_upgraded: lms_etl $FROM_VERSION -> $got"
# Naming the zone the stored naive times were in: they become those instants, the zone
# becomes the source and report zone, and a NOTICE says so. A zone PostgreSQL does not
# know stops the update, which leaves the release in place (ALTER EXTENSION is atomic).
if psql_as_postgres -d "$db_zoned" -c "SET lms_etl.upgrade_source_timezone = 'Mars/Olympus'" \
     -c "ALTER EXTENSION lms_etl UPDATE" > "$work/zoned.bad" 2>&1; then
  fail "an unknown lms_etl.upgrade_source_timezone did not stop the update"
fi
grep -q 'is not a time zone' "$work/zoned.bad" || { cat "$work/zoned.bad"; fail "the refused zone is not named"; }
[ "$(q "$db_zoned" "SELECT extversion FROM pg_extension WHERE extname = 'lms_etl'")" = "$FROM_VERSION" ] \
  || fail "a failed update left $db_zoned off $FROM_VERSION"
psql_as_postgres -d "$db_zoned" -c "SET lms_etl.upgrade_source_timezone = 'Europe/Moscow'" \
  -c "ALTER EXTENSION lms_etl UPDATE" > "$work/zoned.out" 2>&1 || { cat "$work/zoned.out"; fail "the update naming a zone failed"; }
grep -q 'reading the timestamps stored by 0.1.0 as Europe/Moscow' "$work/zoned.out" \
  || { cat "$work/zoned.out"; fail "the update did not say which zone it used"; }
shift_sql="SELECT (SELECT min(created_at) FROM lms_etl.attempts)::text || ' ' ||
                  (SELECT string_agg(name || '=' || value, ',' ORDER BY name) FROM lms_etl.settings)"
expected_shift="$(q "$db_upgraded" "SELECT (min(created_at) - interval '3 hours')::text FROM lms_etl.attempts") report_timezone=Europe/Moscow,source_timezone=Europe/Moscow"
[ "$(q "$db_zoned" "SET TimeZone = 'UTC'; $shift_sql")" = "$expected_shift" ] \
  || fail "the zoned update: got '$(q "$db_zoned" "$shift_sql")', expected '$expected_shift'"
echo "  $db_zoned: with lms_etl.upgrade_source_timezone = 'Europe/Moscow' the stored times are read as Moscow time (3 h earlier as instants), the settings name it; an unknown zone is refused"

step "d. the data is intact and HEAD's loader loads more"
fingerprint "$db_upgraded" > "$work/fingerprint.after"
if ! diff -u --label "before the update" --label "after the update" "$work/fingerprint.before" "$work/fingerprint.after"; then
  fail "the data of $FROM_VERSION changed in the update (fingerprints above)"
fi
echo "  $(wc -l < "$work/fingerprint.before") table fingerprints unchanged"
# The statistics 0.2.0 adds are filled for the days 0.1.0 aggregated: submits and their rate
# now, the per-problem rows by the next aggregation (every such day is marked for it).
wrong_submits=$(q "$db_upgraded" "SELECT count(*) FROM lms_etl.daily_stats d
   WHERE d.submits IS DISTINCT FROM (SELECT count(*) FROM lms_etl.attempts a
          WHERE a.attempt_type = 'submit' AND (a.created_at AT TIME ZONE 'UTC')::date = d.day)
      OR d.submits > 0 AND d.submit_success_rate IS NULL")
[ "$wrong_submits" = 0 ] || fail "$wrong_submits day(s) of daily_stats without their submits after the update"
unmarked=$(q "$db_upgraded" "SELECT count(*) FROM lms_etl.daily_stats d WHERE NOT EXISTS (SELECT 1 FROM lms_etl.pending_days p WHERE p.day = d.day)")
[ "$unmarked" = 0 ] || fail "$unmarked day(s) of 0.1.0 not marked for the per-problem aggregation"
# The C functions that keep their signature answer from the library they now point at
# (ingest_chunk answers through the loader run below).
smoke_sql="SELECT (lms_etl.parse_passback_params('{''lis_result_sourcedid'': ''ok''}')).lis_result_sourcedid
             || (lms_etl.try_parse_passback_params('{''lis_result_sourcedid'': ''ok''}')).lis_result_sourcedid
             || lms_etl.pyrepr_to_jsonb('(1, None)')::text"
[ "$(q "$db_upgraded" "$smoke_sql")" = 'okok[1, null]' ] || fail "the extension's C functions do not answer in $db_upgraded"
attempts_before=$(q "$db_upgraded" "SELECT count(*) FROM lms_etl.attempts")
mkdir -p "$work/run/logs" "$work/run/outbox"
set +e
env -i PATH="$PATH" HOME="$HOME" \
  DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$db_upgraded" \
  LMS_ETL_API_URL="$api_url" LMS_ETL_CLIENT=demo LMS_ETL_CLIENT_KEY=demo \
  LMS_ETL_LOG_DIR="$work/run/logs" LMS_ETL_EMAIL_OUTBOX_DIR="$work/run/outbox" \
  "$lms_etl_bin" run --start "$NEW_START" --end "$NEW_END" --no-email > "$work/run/output" 2>&1
code=$?
set -e
[ "$code" = 0 ] || { cat "$work/run/output" >&2; cat "$work/run/logs/"* >&2 2>/dev/null; fail "lms-etl run on the upgraded database exited $code"; }
attempts_after=$(q "$db_upgraded" "SELECT count(*) FROM lms_etl.attempts")
[ "$attempts_after" -gt "$attempts_before" ] || fail "lms-etl run inserted nothing ($attempts_before attempts before and after)"
problem_gap=$(q "$db_upgraded" "SELECT count(*) FROM lms_etl.daily_stats d
   WHERE d.attempts IS DISTINCT FROM (SELECT sum(p.attempts) FROM lms_etl.daily_problem_stats p WHERE p.day = d.day)
     AND d.attempts > 0")
[ "$problem_gap" = 0 ] || fail "$problem_gap day(s) whose daily_problem_stats do not add up to daily_stats after the first 0.2.0 run"
last_run=$(q "$db_upgraded" "SELECT status || ', ' || inserted || ' inserted, ' || rejected || ' rejected' FROM lms_etl.runs ORDER BY run_id DESC LIMIT 1")
echo "  lms-etl run $NEW_START .. $NEW_END: exit 0, run $last_run; attempts $attempts_before -> $attempts_after"
check_release_library

step "e. the catalog equals a fresh install of HEAD"
psql_as_postgres -d postgres -c "CREATE DATABASE $db_fresh"
psql_as_postgres -d "$db_fresh" -c "CREATE EXTENSION lms_etl"
[ "$(q "$db_fresh" "$smoke_sql")" = 'okok[1, null]' ] || fail "the extension's C functions do not answer in a fresh install"
catalog_status=0
"$here/compare_catalog.sh" "$db_fresh" "$db_upgraded" "$work/catalog" || catalog_status=$?

# The comparison must see what it is meant to see: nothing between two fresh installs,
# a changed volatility once one of them is altered.
psql_as_postgres -d postgres -c "CREATE DATABASE $db_check"
psql_as_postgres -d "$db_check" -c "CREATE EXTENSION lms_etl"
"$here/compare_catalog.sh" "$db_fresh" "$db_check" "$work/self-check" > "$work/self-check.out" 2>&1 \
  || { cat "$work/self-check.out"; fail "two fresh installs of HEAD compare different: the comparison is broken"; }
psql_as_postgres -d "$db_check" -tA > /dev/null <<'SQL'
SELECT format('ALTER FUNCTION %s %s', p.oid::regprocedure, CASE p.provolatile WHEN 'v' THEN 'STABLE' ELSE 'VOLATILE' END) AS alter
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'lms_etl'
 ORDER BY p.oid::regprocedure::text LIMIT 1 \gset
:alter;
SQL
if "$here/compare_catalog.sh" "$db_fresh" "$db_check" "$work/self-check" > "$work/self-check.out" 2>&1 \
   || ! grep -q '^+function .*volatile=' "$work/self-check.out"; then
  cat "$work/self-check.out"; fail "a changed function volatility went unnoticed: the comparison is broken"
fi
echo "  comparison self-check: two fresh installs equal; a changed volatility is reported"

[ "$catalog_status" = 0 ] || fail "the upgraded catalog differs from a fresh install of $head_version (diff above)"

step "f. clean up (HEAD $head_version stays installed)"
