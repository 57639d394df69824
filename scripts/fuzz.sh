#!/usr/bin/env bash
# Fuzzes lms_etl_parse with cargo-fuzz (libFuzzer + AddressSanitizer): each target for
# SECONDS (default 60), one after the other.
#
#   scripts/fuzz.sh [SECONDS]            all targets: pyrepr passback record_chunk stream
#   FUZZ_TARGETS="pyrepr" scripts/fuzz.sh 300
#
# The toolchain is stable; cargo-fuzz's nightly-only flags (-Zsanitizer=address, ...) are
# let through with RUSTC_BOOTSTRAP=1. Seeds live in parse/fuzz/corpus/<target>/seed-*;
# what libFuzzer adds there, and crashes in parse/fuzz/artifacts/<target>/, are not
# committed (.gitignore). Reproduce a crash with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir parse/fuzz <target> <artifact file>
# Exits non-zero when a target finds a crash.
set -euo pipefail

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-pyrepr passback record_chunk stream}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/parse/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

say() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (once, a few minutes)"
  cargo install cargo-fuzz --locked --quiet
fi

cd "$root"
status=0
for target in $targets; do
  case "$target" in
    record_chunk | stream) dict="$fuzz_dir/record_chunk.dict" ;;
    *) dict="$fuzz_dir/pyrepr.dict" ;;
  esac
  say "$target: ${seconds}s"
  # -max_len: room for a realistic record chunk; -rss_limit_mb: a parse that blew up
  # memory is a finding too (the bound tested in parse/tests/hostile_input.rs).
  if ! cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" -- \
      -max_total_time="$seconds" -dict="$dict" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1; then
    say "$target: crash found, see $fuzz_dir/artifacts/$target/"
    status=1
  fi
done
exit "$status"
