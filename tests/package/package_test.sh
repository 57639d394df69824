#!/usr/bin/env bash
# Package test (`make test-package`): builds the tarball with scripts/package.sh, then uses it
# as a server without Rust would, installing into staging roots (DESTDIR) only:
#   1. building it installs nothing into PostgreSQL; the tarball holds exactly the files it should
#   2. SHA256SUMS matches; the SQL scripts carry the version, not pgrx's placeholders; the
#      library exports every C function the install script names
#   3. install.sh --help; an install lands every file where pg_config says, the binary
#      answers --version; a second run leaves the same tree; PREFIX moves the binary
#   4. install.sh refuses another PostgreSQL major, a file that does not match SHA256SUMS and
#      one it does not list; a relative DESTDIR is the caller's,
#      and installs nothing then
#   5. the installed files work: a throwaway PostgreSQL relocated into a staging root (its
#      binaries copied there find share/ and lib/ beside them) runs CREATE EXTENSION lms_etl
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
export PATH="$HOME/.cargo/bin:$PATH"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
pg_major=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
name=lms_etl-$version-pg$pg_major-$(uname -m)-linux
tarball=$root/dist/$name.tar.gz
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
as_postgres() { $SUDO runuser -u postgres -- "$@"; }

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/lms_etl-package.XXXXXX")
cluster_started=0
cleanup() {
  local code=$?
  set +e
  [ "$cluster_started" = 0 ] || as_postgres "$pgroot$bindir/pg_ctl" -D "$cluster/data" -m immediate -w stop > /dev/null
  if [ "$code" = 0 ]; then
    rm -rf "$work"
    echo "package test passed in $((SECONDS - started)) s"
  else
    echo "package test FAILED after $((SECONDS - started)) s (work dir kept: $work)" >&2
  fi
}
trap cleanup EXIT
fail() { echo "PACKAGE TEST FAILED: $*" >&2; exit 1; }
step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$((SECONDS - started))" "$*"; }
# Path, mode and checksum of every file below a root: what an install left there.
tree_of() { (cd "$1" && find . -type f -printf '%P %m\n' | LC_ALL=C sort | while read -r f m; do echo "$f $m $(sha256sum < "$f" | cut -c1-64)"; done); }
system_files() { ls -l --time-style=full-iso "$libdir" "$extdir" 2> /dev/null | grep lms_etl || true; }

step "1. build $name.tar.gz; nothing is installed into PostgreSQL"
system_files > "$work/system.before"
bash scripts/package.sh
system_files > "$work/system.after"
diff -u --label "$libdir, $extdir before" --label "after make package" "$work/system.before" "$work/system.after" \
  || fail "building the package changed PostgreSQL's extension files (or something else installed lms_etl meanwhile)"
echo "  the lms_etl files in $libdir and $extdir are untouched"

[ -f "$tarball" ] || fail "no $tarball"
{
  echo "$name/README.md"
  echo "$name/SHA256SUMS"
  echo "$name/bin/lms-etl"
  echo "$name/extension/lib/lms_etl-$version.so"
  echo "$name/extension/share/extension/lms_etl--$version.sql"
  echo "$name/extension/share/extension/lms_etl.control"
  for f in sql/lms_etl--*--*.sql; do echo "$name/extension/share/extension/$(basename "$f")"; done
  echo "$name/install.sh"
  echo "$name/lms-etl.example.toml"
  [ ! -f LICENSE ] || echo "$name/LICENSE"
  [ ! -d deploy ] || find deploy -type f | sed "s|^|$name/|"
} | LC_ALL=C sort > "$work/files.expected"
tar -tzf "$tarball" | grep -v '/$' | LC_ALL=C sort > "$work/files.got"
diff -u --label expected --label "$tarball" "$work/files.expected" "$work/files.got" || fail "the tarball does not hold the expected files"
echo "  $(wc -l < "$work/files.got") files, all below $name/: $(tr '\n' ' ' < "$work/files.got" | sed "s|$name/||g")"

step "2. checksums, SQL scripts, library"
mkdir "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked"
pkg=$work/unpacked/$name
(cd "$pkg" && sha256sum --check --strict --quiet SHA256SUMS) || fail "SHA256SUMS does not match the unpacked files"
(cd "$pkg" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort) > "$work/sums.expected"
awk '{ print $2 }' "$pkg/SHA256SUMS" | LC_ALL=C sort > "$work/sums.got"
diff -u --label "files" --label "SHA256SUMS" "$work/sums.expected" "$work/sums.got" || fail "SHA256SUMS does not list every file"
echo "  SHA256SUMS matches and lists all $(wc -l < "$work/sums.got") other files"

share=$pkg/extension/share/extension
install_sql=$share/lms_etl--$version.sql
# Comments may name the placeholders (the upgrade script's header does); statements may not.
if grep -n -v '^[[:space:]]*--' "$share"/* | grep -e '@CARGO_VERSION@' -e 'MODULE_PATHNAME'; then
  fail "pgrx placeholders left in the packaged SQL or control file (above)"
fi
grep -qx "default_version = '$version'" "$share/lms_etl.control" || fail "lms_etl.control does not say default_version = '$version'"
probins=$(grep -ho "AS '[^']*', '[^']*'" "$share"/*.sql | cut -d"'" -f2 | sort -u)
[ "$probins" = "lms_etl-$version" ] || fail "the SQL scripts name the libraries '$probins', not only 'lms_etl-$version'"
grep -q "AS 'lms_etl-$version', " "$install_sql" || fail "the install script names no C function of lms_etl-$version"
for f in sql/lms_etl--*--*.sql; do
  cmp -s <(sed "s/@CARGO_VERSION@/$version/g" "$f") "$share/$(basename "$f")" \
    || fail "the packaged $(basename "$f") is not $f with @CARGO_VERSION@ = $version"
done
ls "$share"/lms_etl--*--"$version".sql > /dev/null 2>&1 || fail "no upgrade script to $version in the package"
echo "  install and upgrade scripts: probin 'lms_etl-$version', no placeholders; upgrade scripts: $(cd "$share" && ls lms_etl--*--*.sql | tr '\n' ' ')"
nm -D --defined-only "$pkg/extension/lib/lms_etl-$version.so" | awk '{ print $NF }' | sort -u > "$work/symbols"
grep -ho "AS 'lms_etl-$version', '[^']*'" "$share"/*.sql | cut -d"'" -f4 | sort -u > "$work/symbols.named"
missing=$(comm -23 "$work/symbols.named" "$work/symbols")
[ -z "$missing" ] || fail "the library does not export what the SQL scripts name: $missing"
grep -qx Pg_magic_func "$work/symbols" || fail "the library has no Pg_magic_func: not a PostgreSQL module"
echo "  the library exports Pg_magic_func and all $(wc -l < "$work/symbols.named") C functions the SQL scripts name"
# What a server must have for the binary: the C library and libgcc_s (rustls, no OpenSSL; no libpq).
needed=$(readelf -d "$pkg/bin/lms-etl" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
for lib in $needed; do
  case "$lib" in
    libc.so.* | libm.so.* | libgcc_s.so.* | ld-linux*.so.* | libpthread.so.* | libdl.so.* | librt.so.*) ;;
    *) fail "bin/lms-etl needs $lib, which is neither the C library nor libgcc_s (all: $needed)" ;;
  esac
done
echo "  bin/lms-etl links only the C library and libgcc_s: $needed"

step "3. install.sh into a staging root"
"$pkg/install.sh" --help > "$work/help.out" || fail "install.sh --help exited non-zero"
grep -q "lms_etl $version, built for PostgreSQL $pg_major" "$work/help.out" || { cat "$work/help.out"; fail "--help does not name the version and the major"; }
if "$pkg/install.sh" --frobnicate > /dev/null 2>&1; then fail "install.sh accepted an unknown argument"; fi

# An older release's files already there (0.1.0's library had no version in its name): an
# install must leave them, so a database not yet updated keeps its library.
staged=$work/root
mkdir -p "$staged$libdir" "$staged$extdir"
echo "0.1.0 library" > "$staged$libdir/lms_etl.so"
echo "-- 0.1.0 install script" > "$staged$extdir/lms_etl--0.1.0.sql"
chmod 0644 "$staged$libdir/lms_etl.so" "$staged$extdir/lms_etl--0.1.0.sql"
tree_of "$staged" > "$work/tree.old"
# Without PG_CONFIG, install.sh takes the Debian path of the major it was built for.
install_env=(PG_CONFIG="$PG_CONFIG")
[ "$PG_CONFIG" != "/usr/lib/postgresql/$pg_major/bin/pg_config" ] || install_env=(-u PG_CONFIG)
(cd "$work" && env "${install_env[@]}" DESTDIR="$staged" "$pkg/install.sh") > "$work/install.out" 2>&1 \
  || { cat "$work/install.out"; fail "install.sh with DESTDIR=$staged failed"; }
sed 's/^/  | /' "$work/install.out"
{
  cat "$work/tree.old"
  echo "${libdir#/}/lms_etl-$version.so 755 $(sha256sum < "$pkg/extension/lib/lms_etl-$version.so" | cut -c1-64)"
  for f in "$share"/*; do echo "${extdir#/}/$(basename "$f") 644 $(sha256sum < "$f" | cut -c1-64)"; done
  echo "usr/local/bin/lms-etl 755 $(sha256sum < "$pkg/bin/lms-etl" | cut -c1-64)"
} | LC_ALL=C sort > "$work/tree.expected"
tree_of "$staged" > "$work/tree.got"
diff -u --label "expected (pg_config --pkglibdir, --sharedir)" --label "installed in $staged" "$work/tree.expected" "$work/tree.got" \
  || fail "install.sh did not put exactly the package's files where pg_config says"
grep -qF "(pg_config: $PG_CONFIG)" "$work/install.out" || fail "install.sh did not use (or name) $PG_CONFIG"
echo "  every file is where $PG_CONFIG says, with its mode; 0.1.0's files are untouched; nothing else was written"
for s in "CREATE EXTENSION lms_etl" "ALTER EXTENSION lms_etl UPDATE" "lms-etl.example.toml" "/usr/local/bin/lms-etl --config"; do
  grep -qF "$s" "$work/install.out" || fail "install.sh's next steps do not mention '$s'"
done
got=$("$staged/usr/local/bin/lms-etl" --version) || fail "the installed lms-etl --version failed"
[ "$got" = "lms-etl $version" ] || fail "the installed lms-etl --version says '$got', not 'lms-etl $version'"
echo "  $staged/usr/local/bin/lms-etl --version: $got"

DESTDIR=$staged PG_CONFIG=$PG_CONFIG sh "$pkg/install.sh" > "$work/install2.out" 2>&1 \
  || { cat "$work/install2.out"; fail "install.sh failed the second time"; }
tree_of "$staged" > "$work/tree.again"
diff -u --label "first install" --label "second install" "$work/tree.got" "$work/tree.again" || fail "a second install.sh left another tree"
echo "  a second run (under sh) leaves the same files"

DESTDIR=$work/root-prefix PREFIX=/opt/lms-etl PG_CONFIG=$PG_CONFIG "$pkg/install.sh" > "$work/install-prefix.out" 2>&1 \
  || { cat "$work/install-prefix.out"; fail "install.sh with PREFIX=/opt/lms-etl failed"; }
[ -x "$work/root-prefix/opt/lms-etl/bin/lms-etl" ] && [ ! -e "$work/root-prefix/usr/local" ] \
  || fail "PREFIX=/opt/lms-etl did not put the binary in /opt/lms-etl/bin only"
grep -qF "/opt/lms-etl/bin/lms-etl --config" "$work/install-prefix.out" || fail "the next steps do not name the binary under PREFIX"
echo "  PREFIX=/opt/lms-etl puts the binary in /opt/lms-etl/bin"

step "4. install.sh refuses another major, a damaged file and an unlisted one; a relative DESTDIR"
mkdir "$work/stub"
cat > "$work/stub/pg_config" <<EOF
#!/bin/sh
case "\$1" in
  --version) echo "PostgreSQL 16.4 (stub)" ;;
  --pkglibdir) echo "$work/stub-root/lib" ;;
  --sharedir) echo "$work/stub-root/share" ;;
  *) exit 1 ;;
esac
EOF
chmod +x "$work/stub/pg_config"
if DESTDIR=$work/root-16 PG_CONFIG=$work/stub/pg_config "$pkg/install.sh" > "$work/install-16.out" 2>&1; then
  fail "install.sh installed a PostgreSQL $pg_major package for PostgreSQL 16"
fi
grep -qF "built for PostgreSQL $pg_major, but $work/stub/pg_config is 'PostgreSQL 16.4 (stub)'" "$work/install-16.out" \
  || { cat "$work/install-16.out"; fail "the refusal does not name both majors"; }
[ ! -e "$work/root-16" ] && [ ! -e "$work/stub-root" ] || fail "install.sh wrote files before refusing the major"
echo "  refused: $(cat "$work/install-16.out")"

cp -a "$pkg" "$work/damaged"
printf 'x' >> "$work/damaged/extension/share/extension/lms_etl--$version.sql"
if DESTDIR=$work/root-damaged PG_CONFIG=$PG_CONFIG "$work/damaged/install.sh" > "$work/install-damaged.out" 2>&1; then
  fail "install.sh installed a file that does not match SHA256SUMS"
fi
grep -q "do not match SHA256SUMS" "$work/install-damaged.out" || { cat "$work/install-damaged.out"; fail "the refusal does not name SHA256SUMS"; }
[ ! -e "$work/root-damaged" ] || fail "install.sh wrote files before checking SHA256SUMS"
echo "  refused a changed lms_etl--$version.sql: $(tail -n 1 "$work/install-damaged.out")"

# sha256sum --check passes a file SHA256SUMS does not list; the extension directory is
# installed whole, so an added upgrade script would reach PostgreSQL unchecked.
cp -a "$pkg" "$work/added"
echo "SELECT 1;" > "$work/added/extension/share/extension/lms_etl--$version--9.9.9.sql"
if DESTDIR=$work/root-added PG_CONFIG=$PG_CONFIG "$work/added/install.sh" > "$work/install-added.out" 2>&1; then
  fail "install.sh installed a file that SHA256SUMS does not list"
fi
grep -q "is not in SHA256SUMS" "$work/install-added.out" || { cat "$work/install-added.out"; fail "the refusal does not name SHA256SUMS"; }
[ ! -e "$work/root-added" ] || fail "install.sh wrote files before refusing an unlisted one"
echo "  refused an added lms_etl--$version--9.9.9.sql: $(tail -n 1 "$work/install-added.out")"

# A relative DESTDIR is the caller's, not the package directory's (install.sh cd's there).
mkdir "$work/caller"
(cd "$work/caller" && DESTDIR=staged PG_CONFIG=$PG_CONFIG "$pkg/install.sh") > "$work/install-relative.out" 2>&1 \
  || { cat "$work/install-relative.out"; fail "install.sh with DESTDIR=staged failed"; }
[ -f "$work/caller/staged$libdir/lms_etl-$version.so" ] && [ ! -e "$pkg/staged" ] \
  || fail "DESTDIR=staged did not install below the caller's directory ($work/caller)"
echo "  DESTDIR=staged installs below the directory install.sh was started in"

step "5. CREATE EXTENSION lms_etl from the installed files, in a PostgreSQL relocated into a staging root"
# PostgreSQL finds its share and lib directories relative to its own executable, so copies of
# postgres/initdb/pg_ctl in <root>/<bindir> use <root>/<sharedir> and <root>/<pkglibdir>: the
# system's files linked in (lms_etl's left out), the package installed over them by install.sh.
bindir=$("$PG_CONFIG" --bindir)
pgroot=$work/pgroot
mkdir -p "$pgroot$bindir" "$pgroot$(dirname "$libdir")" "$pgroot$(dirname "$extdir")"
cp -as "$libdir" "$pgroot$(dirname "$libdir")/"
cp -as "$(dirname "$extdir")" "$pgroot$(dirname "$(dirname "$extdir")")/"
find "$pgroot" -type l -name 'lms_etl*' -delete
cp "$bindir/postgres" "$bindir/initdb" "$bindir/pg_ctl" "$pgroot$bindir/"
DESTDIR=$pgroot PG_CONFIG=$PG_CONFIG "$pkg/install.sh" > "$work/install-pgroot.out" 2>&1 \
  || { cat "$work/install-pgroot.out"; fail "install.sh into $pgroot failed"; }
chmod 0755 "$work"
cluster=$work/cluster
$SUDO install -d -o postgres -g postgres "$cluster"
as_postgres "$pgroot$bindir/initdb" -D "$cluster/data" -A trust -U postgres --no-sync > "$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log"; fail "initdb of the relocated PostgreSQL failed"; }
as_postgres "$pgroot$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w \
  -o "-c listen_addresses= -k $cluster -c fsync=off" start > /dev/null \
  || { cat "$cluster/log"; fail "the relocated PostgreSQL did not start"; }
cluster_started=1
pq() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$cluster" -d postgres -tA -c "$1"; }
[ "$(pq "SHOW data_directory")" = "$cluster/data" ] || fail "psql reached another server than the relocated one"
got=$(pq "SELECT default_version FROM pg_available_extensions WHERE name = 'lms_etl'")
[ "$got" = "$version" ] || fail "the relocated PostgreSQL offers lms_etl '$got', not $version"
pq "CREATE EXTENSION lms_etl" || fail "CREATE EXTENSION lms_etl from the installed files failed"
got=$(pq "SELECT extversion || ' ' || (lms_etl.parse_passback_params('{''lis_result_sourcedid'': ''ok''}')).lis_result_sourcedid
               || ' ' || lms_etl.pyrepr_to_jsonb('(1, None)')::text FROM pg_extension WHERE extname = 'lms_etl'")
[ "$got" = "$version ok [1, null]" ] || fail "the installed extension answers '$got'"
# The backend that answered mapped the library install.sh put in the root, not the system's.
maps=$(pq "SELECT lms_etl.pyrepr_to_jsonb('1'); SELECT pg_read_file('/proc/self/maps')" | grep -o '/[^ ]*lms_etl[^ ]*\.so' | sort -u)
[ "$maps" = "$pgroot$libdir/lms_etl-$version.so" ] || fail "the backend mapped '$maps', not $pgroot$libdir/lms_etl-$version.so"
echo "  CREATE EXTENSION lms_etl: version $version; its C functions answer from $maps"
paths=$(pq "SELECT source || ' -> ' || target FROM pg_extension_update_paths('lms_etl') WHERE target = '$version' AND path IS NOT NULL ORDER BY 1")
[ -n "$paths" ] || fail "ALTER EXTENSION lms_etl UPDATE has no path to $version from the installed scripts"
echo "  ALTER EXTENSION lms_etl UPDATE paths to $version: $(echo "$paths" | tr '\n' ' ')"
