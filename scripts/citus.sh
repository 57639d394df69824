#!/usr/bin/env bash
# Citus for lms_etl's scale-out tests (root or sudo; every step checks before it acts):
#   citus.sh install           build Citus 13.2.2 from the vendored source into this PostgreSQL,
#                              unless that version is installed already
#   citus.sh start DIR [DB]    a throwaway cluster in DIR: coordinator + 2 workers on 127.0.0.1,
#                              each on its own free port and socket dir DIR/<node>; with DB, that
#                              database on every node with citus and lms_etl, workers registered
#   citus.sh stop DIR          stop the cluster in DIR (DIR is left for the caller to remove)
#   citus.sh node-stop DIR NODE / node-start DIR NODE    one node (coordinator, worker1, worker2)
# DIR/ports.env holds COORDINATOR_PORT, WORKER1_PORT, WORKER2_PORT once the cluster runs.
# The main cluster on 127.0.0.1:5432 is never touched.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
CITUS_VERSION="13.2.2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ../shared/vendor beside the main checkout (a git worktree elsewhere finds it through git).
MAIN="$(cd "$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$REPO/.git")/.." && pwd)"
VENDOR="$(cd "$MAIN/.." && pwd)/shared/vendor"
CITUS_TARBALL="${CITUS_TARBALL:-$VENDOR/citus-${CITUS_VERSION}.tar.gz}"
CITUS_PATCH="${CITUS_PATCH:-$VENDOR/citus-pg15-compat.patch}"
NODES=(coordinator worker1 worker2)

say() { printf '\033[1m[citus]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1m[citus]\033[0m error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
bindir() { "$PG_CONFIG" --bindir; }

# The version the installed citus.so says it is ("Citus 13.2.2 on ..."), empty if none.
installed_version() {
  local so
  so="$("$PG_CONFIG" --pkglibdir)/citus.so"
  [ -f "$so" ] || return 0
  strings "$so" | sed -n 's/^Citus \([0-9][0-9.]*\) on .*/\1/p; s/^\([0-9]\+\.[0-9]\+\.[0-9]\+\)$/\1/p' | grep -m1 -x "$CITUS_VERSION" || true
}

cmd_install() {
  if [ "$(installed_version)" = "$CITUS_VERSION" ] \
     && [ -f "$("$PG_CONFIG" --sharedir)/extension/citus.control" ]; then
    say "Citus ${CITUS_VERSION} is installed in $("$PG_CONFIG" --pkglibdir)"
    return 0
  fi
  [ -f "$CITUS_TARBALL" ] || die "Citus source not found: ${CITUS_TARBALL}
  It is vendored beside the repository (../shared/vendor, see its README.md); or set
  CITUS_TARBALL to a citus-${CITUS_VERSION} source tarball (github.com/citusdata/citus, tag v${CITUS_VERSION})."
  say "building Citus ${CITUS_VERSION} from ${CITUS_TARBALL} (about 3 minutes on 2 cores)"

  local packages=(build-essential postgresql-server-dev-"$PG_MAJOR" libcurl4-openssl-dev liblz4-dev
                  libzstd-dev libkrb5-dev binutils patch)
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing build dependencies: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  local work
  work="$(mktemp -d /tmp/citus-build.XXXXXX)"
  trap 'rm -rf "$work"' RETURN
  tar -xzf "$CITUS_TARBALL" -C "$work"
  local src="$work/citus-${CITUS_VERSION}"
  [ -f "$src/configure" ] || die "${CITUS_TARBALL} does not hold citus-${CITUS_VERSION}/configure"
  # The vendored tarball carries the compat patch already; a pristine upstream one does not.
  if grep -q citus_have_createdb_privilege "$src/src/include/pg_version_compat.h"; then
    say "compat patch already in the source"
  else
    [ -f "$CITUS_PATCH" ] || die "the source lacks the PostgreSQL 15 compat patch and ${CITUS_PATCH} is missing"
    say "applying $(basename "$CITUS_PATCH")"
    patch -d "$src" -p1 --forward --quiet < "$CITUS_PATCH"
  fi
  (
    cd "$src"
    ./configure --quiet PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s -j2 >/dev/null
    as_root make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
  ) || die "the Citus build failed (source in ${src} removed; rerun with bash -x to see the step)"
  [ "$(installed_version)" = "$CITUS_VERSION" ] || die "citus.so installed, but it does not say ${CITUS_VERSION}"
  say "Citus ${CITUS_VERSION} installed into $("$PG_CONFIG" --pkglibdir)"
}

require_citus() {
  [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] || die "Citus is not installed: run \`make citus\` first"
}

# Ports that nothing listens on: from CITUS_PORTS ("p1 p2 p3") or probed upward from a random base.
pick_ports() {
  if [ -n "${CITUS_PORTS:-}" ]; then echo "$CITUS_PORTS"; return; fi
  local port=$((20000 + RANDOM % 20000)) found=()
  while [ "${#found[@]}" -lt 3 ]; do
    if ! ss -Htln "sport = :$port" | grep -q . && [ ! -e "/tmp/.s.PGSQL.$port" ]; then
      found+=("$port")
    fi
    port=$((port + 1))
  done
  echo "${found[*]}"
}

node_psql() { # node_psql DIR NODE DB SQL...
  local dir="$1" node="$2" db="$3"; shift 3
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  local var="${node^^}_PORT"
  as_postgres "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/$node" -p "${!var}" -U postgres -d "$db" "$@"
}

cmd_start() {
  local dir="${1:?usage: citus.sh start DIR [DB]}" db="${2:-}"
  require_citus
  [ -f "$("$PG_CONFIG" --sharedir)/extension/lms_etl.control" ] || [ -z "$db" ] \
    || die "the lms_etl extension is not installed (make install-ext)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  as_root chown postgres:postgres "$dir"
  if [ ! -f "$dir/ports.env" ]; then
    local ports
    read -r -a ports <<<"$(pick_ports)"
    printf 'COORDINATOR_PORT=%s\nWORKER1_PORT=%s\nWORKER2_PORT=%s\n' "${ports[@]}" > "$dir/ports.env"
  fi
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  local node port
  for node in "${NODES[@]}"; do
    local var="${node^^}_PORT"; port="${!var}"
    if [ ! -f "$dir/$node/PG_VERSION" ]; then
      as_postgres mkdir -p "$dir/$node"
      as_postgres "$(bindir)/initdb" -D "$dir/$node" -U postgres --auth=trust --no-sync \
        --no-instructions >/dev/null
      as_postgres tee -a "$dir/$node/postgresql.conf" >/dev/null <<EOF

# lms_etl Citus test node: ${node}
port = ${port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dir}/${node}'
shared_preload_libraries = 'citus,pg_cron'
cron.database_name = '${db:-postgres}'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
# Shards per distributed table: about twice the cores of the workers (2 workers sharing 2 cores here).
citus.shard_count = 4
# Throwaway data: no fsync. But commits stay synchronous: with synchronous_commit = off a
# worker stopped (immediate, as the tests do) loses commits the coordinator has counted.
fsync = off
full_page_writes = off
EOF
    fi
    node_start "$dir" "$node"
  done
  [ -n "$db" ] || { say "cluster up in ${dir}: $(tr '\n' ' ' < "$dir/ports.env")"; return 0; }
  for node in "${NODES[@]}"; do
    node_psql "$dir" "$node" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || node_psql "$dir" "$node" postgres -c "CREATE DATABASE \"$db\""
    node_psql "$dir" "$node" "$db" -c "CREATE EXTENSION IF NOT EXISTS citus" \
      -c "CREATE EXTENSION IF NOT EXISTS lms_etl"
  done
  node_psql "$dir" coordinator "$db" \
    -c "SELECT citus_set_coordinator_host('127.0.0.1', $COORDINATOR_PORT)" \
    -c "SELECT citus_add_node('127.0.0.1', $WORKER1_PORT)" \
    -c "SELECT citus_add_node('127.0.0.1', $WORKER2_PORT)" >/dev/null
  say "cluster up in ${dir}, database ${db}: $(tr '\n' ' ' < "$dir/ports.env")"
}

node_start() {
  local dir="$1" node="$2"
  if ! as_postgres "$(bindir)/pg_ctl" -D "$dir/$node" status >/dev/null 2>&1; then
    # A server started from a developer shell would inherit RUST_BACKTRACE: lms_etl (pgrx) then
    # appends a Rust backtrace to every error it reports, which no real server does.
    as_postgres env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
      "$(bindir)/pg_ctl" -D "$dir/$node" -l "$dir/$node.log" -w -t 60 start >/dev/null \
      || die "${node} did not start: see ${dir}/${node}.log"
  fi
}

node_stop() {
  local dir="$1" node="$2"
  [ -f "$dir/$node/PG_VERSION" ] || return 0
  if as_postgres "$(bindir)/pg_ctl" -D "$dir/$node" status >/dev/null 2>&1; then
    as_postgres "$(bindir)/pg_ctl" -D "$dir/$node" -m "${STOP_MODE:-fast}" -w -t 60 stop >/dev/null
  fi
}

cmd_stop() {
  local dir="${1:?usage: citus.sh stop DIR}" node
  for node in "${NODES[@]}"; do node_stop "$dir" "$node"; done
}

check_node() {
  case "$1" in coordinator|worker1|worker2) ;; *) die "unknown node '$1' (coordinator, worker1, worker2)";; esac
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  node-stop) check_node "${3:-}"; node_stop "$2" "$3" ;;
  node-start) check_node "${3:-}"; node_start "$2" "$3" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
