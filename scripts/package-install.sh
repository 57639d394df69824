#!/bin/sh
# install.sh of the package `make package` builds (scripts/package.sh fills in the version
# and the PostgreSQL major): installs lms_etl's extension files and the lms-etl binary.
set -eu

VERSION=@VERSION@
PG_MAJOR=@PG_MAJOR@

usage() {
  cat <<EOF
Usage: [PG_CONFIG=...] [PREFIX=...] [DESTDIR=...] ./install.sh

Installs lms_etl $VERSION, built for PostgreSQL $PG_MAJOR:
  extension/lib/lms_etl-$VERSION.so     into \$(pg_config --pkglibdir)
  extension/share/extension/*          into \$(pg_config --sharedir)/extension
  bin/lms-etl                          into \$PREFIX/bin
after checking every file against SHA256SUMS and the server's major against $PG_MAJOR.
Running it again installs the same files again.

  PG_CONFIG  the pg_config of the PostgreSQL to install into
             (default: /usr/lib/postgresql/$PG_MAJOR/bin/pg_config, else pg_config on PATH)
  PREFIX     where bin/lms-etl goes (default: /usr/local)
  DESTDIR    a staging root put in front of every destination (default: none)
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

fail() { echo "install.sh: $*" >&2; exit 1; }

# A relative DESTDIR, PREFIX or PG_CONFIG path means one below where install.sh was started,
# not below the package directory it moves into next.
case "${DESTDIR:-}" in "" | /*) ;; *) DESTDIR=$PWD/$DESTDIR ;; esac
case "${PREFIX:-}" in "" | /*) ;; *) PREFIX=$PWD/$PREFIX ;; esac
case "${PG_CONFIG:-}" in /* | "") ;; */*) PG_CONFIG=$PWD/$PG_CONFIG ;; esac

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# First the files: a truncated copy or a damaged download must install nothing.
command -v sha256sum > /dev/null || fail "sha256sum not found (GNU coreutils)"
[ -f SHA256SUMS ] || fail "no SHA256SUMS in $here: run the install.sh of an unpacked package"
sha256sum --check --quiet --strict SHA256SUMS || fail "files in $here do not match SHA256SUMS: unpack the package again"
# sha256sum checks only the files SHA256SUMS lists; the extension files are installed by
# their directory, so one added there (or left from another package) must be refused too.
for f in extension/share/extension/*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  awk '{ print $2 }' SHA256SUMS | grep -qxF "$f" \
    || fail "$here/$f is not in SHA256SUMS: unpack the package again into an empty directory"
done

if [ -z "${PG_CONFIG:-}" ]; then
  if [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" ]; then
    PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
  elif command -v pg_config > /dev/null; then
    PG_CONFIG=$(command -v pg_config)
  else
    fail "no pg_config found: install PostgreSQL $PG_MAJOR (Debian: postgresql-client-$PG_MAJOR) or set PG_CONFIG=/path/to/pg_config"
  fi
fi
pg_version=$("$PG_CONFIG" --version) || fail "$PG_CONFIG --version failed"
server_major=$(echo "$pg_version" | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
[ "$server_major" = "$PG_MAJOR" ] \
  || fail "this package is built for PostgreSQL $PG_MAJOR, but $PG_CONFIG is '$pg_version': build the package with that server's major (make package PG_MAJOR=${server_major:-N}) or point PG_CONFIG at a PostgreSQL $PG_MAJOR"

libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
bindir=${PREFIX:-/usr/local}/bin
destdir=${DESTDIR:-}

# Copy, then rename over the target: a backend that has the old library mapped keeps it,
# and a second run replaces each file the same way.
put() { # <file> <target dir> <mode>
  target=$destdir$2/$(basename "$1")
  mkdir -p "$destdir$2" 2> /dev/null || fail "cannot create $destdir$2: run as root (sudo ./install.sh) or set DESTDIR"
  tmp=$destdir$2/.$(basename "$1").install.$$
  cp "$1" "$tmp" 2> /dev/null || fail "cannot write to $destdir$2: run as root (sudo ./install.sh) or set DESTDIR"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$target"
  echo "  $target"
}

echo "installing lms_etl $VERSION for $pg_version (pg_config: $PG_CONFIG)"
put "extension/lib/lms_etl-$VERSION.so" "$libdir" 0755
for f in extension/share/extension/*; do
  put "$f" "$extdir" 0644
done
put bin/lms-etl "$bindir" 0755

cat <<EOF

Next steps:
  1. In each database, as a superuser:
       CREATE EXTENSION lms_etl;          -- a database without lms_etl
       ALTER EXTENSION lms_etl UPDATE;    -- a database on an older lms_etl (README: Upgrading)
     and a login for the loader:
       CREATE ROLE etl LOGIN PASSWORD '...' IN ROLE lms_etl_loader;
  2. The loader's configuration: copy $here/lms-etl.example.toml
     to e.g. /etc/lms-etl.toml, set database.url and the api keys, then
       $bindir/lms-etl --config /etc/lms-etl.toml run
EOF
