#!/usr/bin/env bash
# `make package`: everything a server without Rust needs (the extension's library and SQL
# scripts, the lms-etl binary, an install script) as one tarball in dist/. Installs nothing:
# `cargo pgrx package` writes below the target directory, not into PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
export PATH="$HOME/.cargo/bin:$PATH"
target_dir=${CARGO_TARGET_DIR:-$root/target}

fail() { echo "make package: $*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || fail "no version in Cargo.toml [workspace.package]"
pg_major=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
[ -n "$pg_major" ] || fail "cannot read the PostgreSQL major from $PG_CONFIG --version"
arch=$(uname -m)
name=lms_etl-$version-pg$pg_major-$arch-linux
started=$SECONDS

# cargo pgrx package lays the files out as they would be installed, below its out dir
# (<out>/usr/lib/postgresql/15/lib/...). A fresh out dir, so no file of another version
# built here before can slip into the package.
ext_out=$target_dir/release/lms_etl-pg$pg_major
rm -rf "$ext_out"
echo "building the extension (cargo pgrx package, $PG_CONFIG)"
(cd pg_ext && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$ext_out") > "$target_dir/package-pgrx.log" 2>&1 \
  || { tail -n 40 "$target_dir/package-pgrx.log" >&2; fail "cargo pgrx package failed (log: $target_dir/package-pgrx.log)"; }
echo "building the loader (cargo build --release)"
cargo build --quiet --release -p lms-etl-loader --bin lms-etl

stage=$target_dir/package/$name
rm -rf "$stage"
mkdir -p "$stage/extension/lib" "$stage/extension/share/extension" "$stage/bin"
ext_lib=$ext_out$("$PG_CONFIG" --pkglibdir)
ext_share=$ext_out$("$PG_CONFIG" --sharedir)/extension
# No module_pathname in the control file: pgrx names the library by version.
cp "$ext_lib/lms_etl-$version.so" "$stage/extension/lib/"
cp "$ext_share/lms_etl.control" "$ext_share"/lms_etl--*.sql "$stage/extension/share/extension/"
[ -f "$ext_share/lms_etl--$version.sql" ] || fail "cargo pgrx package wrote no lms_etl--$version.sql"
cp "$target_dir/release/lms-etl" "$stage/bin/"
cp lms-etl.example.toml README.md "$stage/"
[ ! -f LICENSE ] || cp LICENSE "$stage/"
[ ! -d deploy ] || cp -R deploy "$stage/"
sed -e "s/@VERSION@/$version/g" -e "s/@PG_MAJOR@/$pg_major/g" scripts/package-install.sh > "$stage/install.sh"
chmod 0755 "$stage/install.sh" "$stage/bin/lms-etl"
chmod 0644 "$stage/extension/lib/lms_etl-$version.so"
(cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

mkdir -p dist
tarball=dist/$name.tar.gz
# Owner and order fixed, so the tarball does not depend on who built it or the file system.
tar -C "$target_dir/package" --sort=name --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$name"
mv -f "$tarball.tmp" "$tarball"
echo "wrote $tarball ($(du -h "$tarball" | cut -f1), $((SECONDS - started)) s): lms_etl $version for PostgreSQL $pg_major on $arch"
