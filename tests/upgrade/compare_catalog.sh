#!/usr/bin/env bash
# Compares the lms_etl extension's catalog in two databases of the local PostgreSQL:
#
#   tests/upgrade/compare_catalog.sh <expected-db> <actual-db> [<out-dir>]
#
# Each side is described by catalog.sql (every member object: functions, columns,
# constraints, indexes, types, sequences, views, triggers, extconfig, ACLs, comments).
# Prints a unified diff (`-` expected, `+` actual) and exits 1 on any difference.
# Columns are compared by name; a different column order is a warning, or a difference
# with STRICT_COLUMN_ORDER=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
expected_db=${1:?expected database}
actual_db=${2:?actual database}
out=${3:-$(mktemp -d)}
mkdir -p "$out"

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
psql_as_postgres() { $SUDO runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }

describe() {
  psql_as_postgres -d "$1" -tA -f - < "$here/catalog.sql" > "$2"
  # An empty or uninstalled description would compare equal to another one: refuse it.
  grep -q '^extension lms_etl: version=' "$2" || { echo "no lms_etl extension in database $1" >&2; exit 2; }
  grep -q '^function ' "$2" || { echo "catalog description of $1 lists no function: catalog.sql is broken" >&2; exit 2; }
}

describe "$expected_db" "$out/expected.catalog"
describe "$actual_db" "$out/actual.catalog"

split() { grep -v '^column-order ' "$1" > "$1.objects" || true; grep '^column-order ' "$1" > "$1.order" || true; }
split "$out/expected.catalog"
split "$out/actual.catalog"

status=0
if ! diff -u --label "fresh install ($expected_db)" --label "compared ($actual_db)" \
     "$out/expected.catalog.objects" "$out/actual.catalog.objects" > "$out/catalog.diff"; then
  n=$(grep -c '^[-+][^-+]' "$out/catalog.diff" || true)
  echo "CATALOG DIFFERS: $n line(s); '-' is the fresh install, '+' is $actual_db:"
  cat "$out/catalog.diff"
  status=1
fi
if ! diff -u --label "column order, fresh install" --label "column order, $actual_db" \
     "$out/expected.catalog.order" "$out/actual.catalog.order" > "$out/column-order.diff"; then
  if [ "${STRICT_COLUMN_ORDER:-0}" = 1 ]; then
    echo "COLUMN ORDER DIFFERS (STRICT_COLUMN_ORDER=1):"; status=1
  else
    echo "warning: column order differs (SELECT *, COPY and INSERT without a column list see it):"
  fi
  cat "$out/column-order.diff"
fi
if [ "$status" = 0 ]; then
  echo "catalog identical$([ -s "$out/column-order.diff" ] && echo ' (column order aside)'):" \
       "$(wc -l < "$out/expected.catalog") lines, $(grep -c '^member ' "$out/expected.catalog") member objects"
fi
exit "$status"
