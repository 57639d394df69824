#!/usr/bin/env bash
# Benchmarks, each measured against its baseline in the same run (ratios, not absolute
# times, are the targets). Writes a markdown report to bench/results-<date>.md and prints it.
#  1. parse_passback_params vs replace(p, '''', '"')::jsonb over 1 000 000 rows
#  2. lms-etl run over one day of demo records at 500 000 records/day, at the README's default
#     settings, vs psql \copy of the same rows, pre-parsed, into an identical table (same key);
#     plus the loader's peak RSS for half a day, one day and two days (flat in window length).
#  3. aggregate_daily of that day (daily_stats + daily_problem_stats) vs the plain per-day
#     aggregation of 0.1.0 (one GROUP BY user over the day), in the same database.
#  4. attempts partitioned by month vs plain: insert, one day's aggregation, removing a month.
#  5. lms-etl run against Citus (coordinator + 2 workers here) vs one node (CITUS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
PSQL="$SUDO runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1"
BIN=target/release/lms-etl
DB=lms_etl_bench
REPEAT=${REPEAT:-3}
RATE=${RATE:-20834}              # records/hour on average: ~500 000 a day
CHUNK=${CHUNK:-}                 # loader chunk length in minutes; empty = the default (60)
START=2026-11-20; HALF="2026-11-20 12:00"; END=2026-11-21; TWO_DAYS=2026-11-22
command -v /usr/bin/time >/dev/null || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
cargo build --release -q -p lms-etl-loader --bin lms-etl
out=bench/results-$(date -u +%F).md
work=$(mktemp -d); chmod 755 "$work"
trap 'kill $api_pid 2>/dev/null || true; rm -rf "$work"' EXIT

ms() { # median wall time in ms of a psql query in $DB, over $REPEAT runs
  local sql=$1 times=()
  for _ in $(seq "$REPEAT"); do
    t=$($PSQL -d "$DB" -c '\timing on' -c "SET jit = off" -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1)
    times+=("$t")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p"
}

$PSQL -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
$PSQL -d "$DB" -c "CREATE EXTENSION lms_etl"

echo "# Benchmark run $(date -u '+%F %T') UTC on $(nproc) cores, PostgreSQL $($PSQL -d postgres -tAc 'SHOW server_version')" > "$out"

# 1. Parser vs naive cast -------------------------------------------------------------
$PSQL -d "$DB" -f bench/parse_vs_cast.sql > /dev/null
naive=$(ms "SELECT sum(length((replace(p, '''', '\"')::jsonb)->>'lis_result_sourcedid')) FROM bench_passback")
ours=$(ms "SELECT sum(length((lms_etl.parse_passback_params(p)).lis_result_sourcedid)) FROM bench_passback")
jsonb=$(ms "SELECT sum(length(lms_etl.pyrepr_to_jsonb(p)->>'lis_result_sourcedid')) FROM bench_passback")
{
  echo
  echo "## 1. Parsing 1 000 000 passback_params in SQL (median of $REPEAT)"
  echo
  echo "| query | ms | rows/s | speed vs naive cast |"
  echo "|---|---:|---:|---:|"
  for row in "naive replace(p,'''','\"')::jsonb->>'..':$naive" "lms_etl.parse_passback_params(p):$ours" "lms_etl.pyrepr_to_jsonb(p)->>'..':$jsonb"; do
    name=${row%:*}; t=${row##*:}
    awk -v n="$name" -v t="$t" -v b="$naive" 'BEGIN { printf "| `%s` | %.0f | %.0f | %.2fx |\n", n, t, 1e9/t, b/t }'
  done
} >> "$out"

# 2. End to end vs COPY ---------------------------------------------------------------
"$BIN" demo-api --listen 127.0.0.1:0 --records-per-hour "$RATE" > "$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 50); do grep -q "listening on" "$work/api.log" && break; sleep 0.1; done
api_url=$(sed -n 's/^demo API listening on //p' "$work/api.log")

"$BIN" export-demo-copy --start "$START" --end "$END" --records-per-hour "$RATE" > "$work/rows.tsv" 2> "$work/export.log"
rows=$(wc -l < "$work/rows.tsv")

loader_run() { # $1 = end; prints "wall_ms rss_kb"; fresh database each time
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS ${DB}_run WITH (FORCE)" -c "CREATE DATABASE ${DB}_run"
  $PSQL -d "${DB}_run" -c "CREATE EXTENSION lms_etl"
  local t0 t1
  t0=$(date +%s%N)
  env DATABASE_URL="postgresql://postgres@127.0.0.1:5432/${DB}_run" LMS_ETL_API_URL="$api_url" LMS_ETL_CLIENT=demo \
  LMS_ETL_CLIENT_KEY=demo LMS_ETL_LOG_DIR="$work/logs" LMS_ETL_EMAIL_SEND_ON=never ${CHUNK:+LMS_ETL_WINDOW_CHUNK_MINUTES=$CHUNK} \
    /usr/bin/time -f "%M" -o "$work/rss" "$BIN" run --start "$START" --end "$1" --no-email 2> "$work/run.log"
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 )) $(cat "$work/rss")"
}
read -r half_ms half_rss < <(loader_run "$HALF")
read -r two_ms two_rss < <(loader_run "$TWO_DAYS")
read -r run_ms run_rss < <(loader_run "$END")
loaded=$($PSQL -d "${DB}_run" -tAc "SELECT count(*) FROM lms_etl.attempts")

# The same columns and key (lms_etl.attempts holds its key on each partition: LIKE cannot copy it).
$PSQL -d "$DB" -c "DROP TABLE IF EXISTS copy_attempts" -c "CREATE TABLE copy_attempts (LIKE lms_etl.attempts INCLUDING ALL)" \
  -c "ALTER TABLE copy_attempts ADD UNIQUE NULLS NOT DISTINCT (created_at, user_id, attempt_type, lis_result_sourcedid)"
copy_times=()
for _ in $(seq "$REPEAT"); do
  $PSQL -d "$DB" -c "TRUNCATE copy_attempts"
  t0=$(date +%s%N)
  $PSQL -d "$DB" -c "\\copy copy_attempts (user_id, oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url, is_correct, attempt_type, created_at) FROM '$work/rows.tsv'"
  t1=$(date +%s%N)
  copy_times+=("$(( (t1 - t0) / 1000000 ))")
done
copy_ms=$(printf '%s\n' "${copy_times[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
{
  echo
  echo "## 2. One day at $RATE records/hour end to end vs psql \\copy of the same rows"
  echo
  echo "Window $START .. $END at $RATE records/hour: $rows valid records; the run loaded $loaded."
  echo "The run includes the HTTP download from the demo API (on the same 2 cores), JSON and"
  echo "passback parsing in the extension, inserts with the natural-key check, bookkeeping and"
  echo "aggregation. \\copy loads already-parsed rows into \`LIKE lms_etl.attempts INCLUDING ALL\`."
  echo
  echo "| what | ms | rows/s |"
  echo "|---|---:|---:|"
  awk -v c="${CHUNK:-60 (default)}" -v t="$run_ms" -v n="$loaded" 'BEGIN { printf "| lms-etl run (%s-minute chunks) | %d | %.0f |\n", c, t, n*1000/t }'
  awk -v t="$copy_ms" -v n="$rows" 'BEGIN { printf "| psql \\\\copy (median of 3) | %d | %.0f |\n", t, n*1000/t }'
  awk -v a="$run_ms" -v b="$copy_ms" -v n="$loaded" -v m="$rows" 'BEGIN { printf "\n**run rate / COPY rate = %.2f** (target >= 0.8, floor 0.7)\n", (n/a)/(m/b) }'
  echo
  echo "| loader peak RSS | window | MB |"
  echo "|---|---|---:|"
  awk -v r="$half_rss" 'BEGIN { printf "| half a day | 12 h | %.1f |\n", r/1024 }'
  awk -v r="$run_rss" 'BEGIN { printf "| one day | 24 h | %.1f |\n", r/1024 }'
  awk -v r="$two_rss" 'BEGIN { printf "| two days | 48 h | %.1f |\n", r/1024 }'
  echo
  echo "(target: under 100 MB and not growing with the window)"
} >> "$out"
# 3. Per-problem aggregation vs the plain daily one ----------------------------------
$PSQL -d "${DB}_run" -c "VACUUM ANALYZE lms_etl.attempts" > /dev/null
$PSQL -d "${DB}_run" -f bench/plain_aggregate.sql > /dev/null
plain_ms=$(DB="${DB}_run" ms "SELECT bench_plain_aggregate('$START')")
full_ms=$(DB="${DB}_run" ms "SELECT lms_etl.aggregate_daily('$START')")
problems=$($PSQL -d "${DB}_run" -tAc "SELECT count(*) FROM lms_etl.daily_problem_stats WHERE day = '$START'")
{
  echo
  echo "## 3. Aggregating that day: daily_stats and daily_problem_stats vs the plain daily count"
  echo
  echo "$loaded attempts on $START, $problems problem rows. The baseline is the plain daily refresh"
  echo "(bench/plain_aggregate.sql: one GROUP BY user over the day, upserted, as aggregate_daily did"
  echo "before per-problem statistics); aggregate_daily computes daily_stats and daily_problem_stats"
  echo "from one scan grouped by (sourcedid, user) and writes both (median of $REPEAT, jit off)."
  echo
  echo "| what | ms |"
  echo "|---|---:|"
  echo "| plain daily refresh (bench_plain_aggregate) | $plain_ms |"
  echo "| lms_etl.aggregate_daily (daily + per problem, written) | $full_ms |"
  awk -v a="$full_ms" -v b="$plain_ms" 'BEGIN { printf "\n**aggregate_daily / plain = %.2f** (target <= 2)\n", a/b }'
} >> "$out"
# 4. Partitioned vs plain attempts ---------------------------------------------------
median_of() { # $1 = label: median ms of the "label ms" lines in $work/parts.out
  awk -v l="$1" '$1 == l { print $2 }' "$work/parts.out" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
$PSQL -d "${DB}_run" -f bench/partitions.sql > "$work/parts.out"
ins_plain=$(median_of insert_plain); ins_part=$(median_of insert_partitioned)
agg_plain=$(median_of aggregate_plain); agg_part=$(median_of aggregate_partitioned)
del_ms=$(median_of remove_month_delete); drop_ms=$(median_of remove_month_drop)
month_rows=$(awk '$1 == "rows_per_month" { print $2 }' "$work/parts.out")
{
  echo
  echo "## 4. attempts partitioned by month vs the same table plain (bench/partitions.sql)"
  echo
  echo "The day's $month_rows rows inserted into each (median of 3, alternating); one day's"
  echo "aggregation pass (learner_day + problem_day) with the month before also loaded (median of 3);"
  echo "removing the old month ($month_rows rows): DELETE from the plain table vs DETACH + DROP."
  echo
  echo "| what | plain ms | partitioned ms | partitioned / plain |"
  echo "|---|---:|---:|---:|"
  awk -v a="$ins_plain" -v b="$ins_part" 'BEGIN { printf "| insert one day | %d | %d | %.2f |\n", a, b, b/a }'
  awk -v a="$agg_plain" -v b="$agg_part" 'BEGIN { printf "| aggregate one day | %d | %d | %.2f |\n", a, b, b/a }'
  awk -v a="$del_ms" -v b="$drop_ms" 'BEGIN { printf "| remove a month | %d (DELETE) | %d (DROP) | %.3f |\n", a, b, b/a }'
  echo
  echo "(targets: insert within 10 %, aggregation equal or faster, dropping a month instant)"
} >> "$out"
$PSQL -d postgres -c "DROP DATABASE IF EXISTS ${DB}_run WITH (FORCE)"

# 5. Citus: coordinator + 2 workers on this machine vs one node, same run ------------
if [ "${CITUS:-1}" = 1 ]; then
  bash scripts/citus.sh install
  cdir=$(mktemp -d /tmp/lms-etl-bench-citus.XXXXXX); chmod 755 "$cdir"
  trap 'kill $api_pid 2>/dev/null || true; bash scripts/citus.sh stop "$cdir" >/dev/null 2>&1 || true; rm -rf "$work" "$cdir"' EXIT
  citus_run() { # $1 = database on the coordinator; prints wall ms of one day's lms-etl run
    local t0 t1
    t0=$(date +%s%N)
    env DATABASE_URL="postgresql://postgres@127.0.0.1:${COORDINATOR_PORT}/$1?sslmode=disable" LMS_ETL_API_URL="$api_url" \
      LMS_ETL_CLIENT=demo LMS_ETL_CLIENT_KEY=demo LMS_ETL_LOG_DIR="$work/logs" LMS_ETL_EMAIL_SEND_ON=never \
      "$BIN" run --start "$START" --end "$END" --no-email 2> "$work/citus-run.log" >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
  }
  bash scripts/citus.sh start "$cdir" lms_etl_citus >/dev/null
  # shellcheck disable=SC1091
  source "$cdir/ports.env"
  CPSQL="$SUDO runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $COORDINATOR_PORT"
  $CPSQL -d lms_etl_citus -c "SELECT * FROM lms_etl.citus_distribute()" > /dev/null
  # The single node: a plain database on the coordinator's server, same settings.
  $CPSQL -d postgres -c "CREATE DATABASE lms_etl_single" -c "\c lms_etl_single" -c "CREATE EXTENSION lms_etl" > /dev/null
  single_ms=$(citus_run lms_etl_single)
  citus_ms=$(citus_run lms_etl_citus)
  # The same window again: every record is a duplicate (a re-run after a failure, the overlap).
  single_again_ms=$(citus_run lms_etl_single)
  citus_again_ms=$(citus_run lms_etl_citus)
  single_rows=$($CPSQL -d lms_etl_single -tAc "SELECT count(*) FROM lms_etl.attempts")
  citus_rows=$($CPSQL -d lms_etl_citus -tAc "SELECT count(*) FROM lms_etl.attempts")
  shards=$($CPSQL -d lms_etl_citus -tAc "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'lms_etl.attempts'::regclass")
  {
    echo
    echo "## 5. lms-etl run on Citus (coordinator + 2 workers, this machine) vs one node"
    echo
    echo "One day at $RATE records/hour, default loader settings, \`citus_distribute()\` ($shards shards of"
    echo "attempts); the single node is a plain database on the coordinator's server (same settings)."
    echo
    echo "| what | rows | ms | rows/s |"
    echo "|---|---:|---:|---:|"
    awk -v n="$single_rows" -v t="$single_ms" 'BEGIN { printf "| one node | %d | %d | %.0f |\n", n, t, n*1000/t }'
    awk -v n="$citus_rows" -v t="$citus_ms" 'BEGIN { printf "| Citus, 2 workers | %d | %d | %.0f |\n", n, t, n*1000/t }'
    awk -v n="$single_rows" -v t="$single_again_ms" 'BEGIN { printf "| one node, same window again | %d | %d | %.0f |\n", n, t, n*1000/t }'
    awk -v n="$citus_rows" -v t="$citus_again_ms" 'BEGIN { printf "| Citus, same window again | %d | %d | %.0f |\n", n, t, n*1000/t }'
    awk -v a="$citus_ms" -v b="$single_ms" -v n="$citus_rows" -v m="$single_rows" 'BEGIN { printf "\n**Citus rate / one-node rate = %.2f** (target >= 0.5)\n", (n/a)/(m/b) }'
    awk -v a="$citus_again_ms" -v b="$single_again_ms" 'BEGIN { printf "\nSame window again (all duplicates): Citus / one node = %.2f\n", b/a }'
  } >> "$out"
fi
cat "$out"
