#!/usr/bin/env bash
# Released versions of the lms_etl extension, as recorded in sql/released/RELEASES.
#
#   scripts/released.sh check            every frozen file still has its recorded sha256
#   scripts/released.sh commit <version> the commit a release was built from
#   scripts/released.sh source <version> that commit's tree in target/release-<version>/src
#                                        (extracted once; prints the path)
#   scripts/released.sh freeze <version> <commit>
#                                        build <commit>, write its install script to
#                                        sql/released/lms_etl--<version>.sql, record it and
#                                        the upgrade scripts sql/lms_etl--*--<version>.sql
#
# RELEASES holds one line per frozen file: `<version> <commit> <file> <sha256>` (file
# relative to the repository root). A released file is never edited again: `check`, run by
# `make test`, fails if one changes.
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASES=sql/released/RELEASES
export PATH="$HOME/.cargo/bin:$PATH"

die() { echo "released.sh: $*" >&2; exit 1; }

# `<version> <commit> <file> <sha256>` lines, comments and blank lines dropped.
records() { grep -Ev '^[[:space:]]*(#|$)' "$RELEASES" || true; }

check() {
  local failed=0 n=0 version commit file sha actual
  while read -r version commit file sha; do
    n=$((n + 1))
    [[ $commit =~ ^[0-9a-f]{40}$ ]] || { echo "RELEASES: $version: commit '$commit' is not a full hash" >&2; failed=1; }
    if [ ! -f "$file" ]; then
      echo "released file $file ($version) is missing" >&2; failed=1; continue
    fi
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    if [ "$actual" != "$sha" ]; then
      echo "released file $file ($version) changed: sha256 $actual, recorded $sha." >&2
      echo "  A released script is never edited: restore it (git checkout -- $file) and put the" >&2
      echo "  change in a new upgrade script sql/lms_etl--<from>--<to>.sql." >&2
      failed=1
    fi
  done < <(records)
  # A frozen install script nobody recorded is a release half done.
  for file in sql/released/lms_etl--*.sql; do
    [ -e "$file" ] || continue
    records | awk -v f="$file" '$3 == f { found = 1 } END { exit !found }' \
      || { echo "$file is not recorded in $RELEASES" >&2; failed=1; }
  done
  [ "$n" -gt 0 ] || die "$RELEASES records no release"
  [ "$failed" = 0 ] || exit 1
  echo "released files unchanged ($n checked against $RELEASES)"
}

commit_of() {
  local c
  c=$(records | awk -v v="$1" -v f="sql/released/lms_etl--$1.sql" '$1 == v && $3 == f { print $2; exit }')
  [ -n "$c" ] || die "no release $1 in $RELEASES"
  echo "$c"
}

# The release's tree, extracted (not a git worktree: nothing is registered in the shared
# repository) into a fixed directory so its target dir beside it stays warm across runs.
# Re-extracted only when the recorded commit changes: fresh mtimes would rebuild the crates.
source_of() {
  local version=$1 commit dir
  commit=$(commit_of "$version")
  dir="$PWD/target/release-$version"
  if [ "$(cat "$dir/src.commit" 2>/dev/null || true)" != "$commit" ]; then
    if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
      # A shallow CI clone may lack the release's history: fetch just that commit.
      echo "released.sh: fetching $commit (release $version)" >&2
      git fetch --quiet --depth=1 origin "$commit" >&2 \
        || die "commit $commit of release $version is not in this clone and could not be fetched"
    fi
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    git archive "$commit" | tar -x -C "$dir/src"
    echo "$commit" > "$dir/src.commit"
  fi
  echo "$dir/src"
}

freeze() {
  local version=$1 commit=$2 src out sha root=$PWD
  [[ $commit =~ ^[0-9a-f]{40}$ ]] || commit=$(git rev-parse --verify "$commit^{commit}")
  out="sql/released/lms_etl--$version.sql"
  [ ! -e "$out" ] || die "$out exists: a released script is never regenerated"
  records | awk -v v="$version" '$1 == v { exit 1 }' || die "release $version is already recorded"
  printf '%s %s %s %s\n' "$version" "$commit" "$out" "0" >> "$RELEASES"   # so source_of finds it
  if ! src=$(source_of "$version") || ! (cd "$src/pg_ext" && CARGO_TARGET_DIR="$(dirname "$src")/target" \
         cargo pgrx schema --release pg"${PG_MAJOR:-15}" --out "$root/$out"); then
    sed -i "\|^$version $commit $out 0\$|d" "$RELEASES"; rm -f "$out"
    die "building release $version at $commit failed"
  fi
  sha=$(sha256sum "$out" | cut -d' ' -f1)
  sed -i "s|^$version $commit $out 0\$|$version $commit $out $sha|" "$RELEASES"
  echo "froze $out ($sha)"
  # The upgrade scripts into this version ship with it: frozen too, as they are at the commit.
  local f
  for f in $(git ls-tree --name-only "$commit" sql/ | grep -E "^sql/lms_etl--.+--$version\.sql\$" || true); do
    git show "$commit:$f" | cmp -s - "$f" || die "$f differs from its version at $commit: check it out first"
    printf '%s %s %s %s\n' "$version" "$commit" "$f" "$(sha256sum "$f" | cut -d' ' -f1)" >> "$RELEASES"
    echo "froze $f"
  done
}

case "${1:-}" in
  check) check ;;
  commit) commit_of "${2:?version}" ;;
  source) source_of "${2:?version}" ;;
  freeze) freeze "${2:?version}" "${3:?commit}" ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
