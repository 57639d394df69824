#!/usr/bin/env bash
# The whole job on the bundled demo API: start it, load the last three days, print the
# daily statistics, show the log file and the e-mail written to the outbox, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/lms-etl
CONFIG=lms-etl.example.toml
export LMS_ETL_CONFIG=$CONFIG

api_log=$(mktemp)
"$BIN" demo-api --listen 127.0.0.1:0 --records-per-hour 360 --malformed 0.01 > "$api_log" 2>&1 &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true; rm -f "$api_log"' EXIT
for _ in $(seq 1 50); do grep -q "listening on" "$api_log" && break; sleep 0.1; done
api_url=$(sed -n 's/^demo API listening on //p' "$api_log")
[ -n "$api_url" ] || { echo "demo API did not start:"; cat "$api_log"; exit 1; }
export LMS_ETL_API_URL=$api_url

start=$(date -u -d '3 days ago' +%F)
end=$(date -u +%F)
last_day=$(date -u -d yesterday +%F)
echo "== lms-etl run --start $start --end $end   (demo API at $api_url)"
set +e
"$BIN" run --start "$start" --end "$end"
code=$?
set -e
echo "== exit code $code"
echo
echo "== lms-etl status"
"$BIN" status --runs 5 --days 5
log_file="logs/$(date -u +%F).log"
echo "== log file: $log_file (last 8 lines)"
tail -n 8 "$log_file"
echo
eml=$(ls -t outbox/*.eml 2>/dev/null | head -n 1 || true)
if [ -n "$eml" ]; then
  echo "== e-mail written to the outbox (no SMTP configured): $eml"
  grep -m1 '^Subject:' "$eml" || true
fi
echo
echo "== Google Sheets: not configured. To push daily stats, set in $CONFIG:"
echo "     [sheets] spreadsheet_id = \"<id>\", key_file = \"/path/to/service-account.json\""
echo "   (share the spreadsheet with the service account's e-mail), then: lms-etl sheets-sync --from $start --to $last_day"
exit $code
