#!/usr/bin/env bash
# Idempotent machine set-up for lms_etl on Debian/Ubuntu (root or sudo):
# packages, cargo-pgrx pinned to the workspace's pgrx, `cargo pgrx init` against
# the system pg_config, a running PostgreSQL. Safe to run again: every step
# checks before it acts.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PGRX_VERSION="0.18.0"   # keep equal to the `pgrx = "=..."` pin in Cargo.toml
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(postgresql-"$PG_MAJOR" postgresql-server-dev-"$PG_MAJOR" postgresql-"$PG_MAJOR"-cron
          postgresql-client-"$PG_MAJOR" libclang-dev clang pkg-config sudo make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2; exit 1
fi

if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx ${PGRX_VERSION}" ]; then
  say "installing cargo-pgrx ${PGRX_VERSION} (a few minutes, once)"
  cargo install cargo-pgrx --version "=${PGRX_VERSION}" --locked --quiet
fi

if ! grep -qs "pg${PG_MAJOR}" "$HOME/.pgrx/config.toml"; then
  say "cargo pgrx init against ${PG_CONFIG}"
  cargo pgrx init --pg"${PG_MAJOR}" "$PG_CONFIG" >/dev/null
fi

# A cluster installed by the server-dev upgrade may need a (re)start.
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_MAJOR" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
  say "starting PostgreSQL ${PG_MAJOR}"
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start
fi
for _ in $(seq 1 30); do
  as_root runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
say "machine ready"
