#!/usr/bin/env bash
# A month of a busy gateway (issue 21): DAYS days of ROWS rows per side per
# day stored in SQLite, each day reconciled as the scheduler does (one run
# a day), then one `tally run` over the whole month (its peak memory shows
# whether a month window stays bounded), then the month's costs report,
# overview page and an owner page over HTTP (p50/p99 of 200 requests, one
# at a time, then 4 at a time). Not a test: prints one run's figures.
#
#   bench/month.sh [ROWS_PER_DAY] [DAYS]     defaults: 1000000 30
#
# MONTH_DB=/path/month.db keeps the store there: built when absent, reused
# as it is when present (to measure the pages again without rebuilding).
#
# Needs GNU time (/usr/bin/time). Disk: about 1 GB per million rows per side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
DAYS=${2:-30}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
# BIN=/dir holding `tally` and `loadgen` measures those binaries as they
# are (a build copied aside, so the 35 minutes a 30 x 1M month takes are not
# disturbed by rebuilding the tree); without it the tree is built.
if [ -n "${BIN:-}" ]; then
  TALLY=$BIN/tally
  LOAD=$BIN/loadgen
else
  cargo build --release -q -p tally-service --all-features --bins --example loadgen
  TALLY=$PWD/target/release/tally
  LOAD=$PWD/target/release/examples/loadgen
fi
SERVE_ENV=()
. bench/serve_lib.sh

timed() {
  local tf; tf=$(mktemp)
  /usr/bin/time -o "$tf" -f "%e %M" "$@" >/dev/null
  awk '{printf "%s s, %.0f MiB peak", $1, $2/1024}' "$tf"
  rm -f "$tf"
}

file=${MONTH_DB:-$work/month.db}
db=sqlite://$file
ingest_s=0; run_s=0
built=0; [ -e "$file" ] && built=1
for d in $(seq 1 "$DAYS"); do
  [ "$built" -eq 1 ] && break
  day=$(printf '2026-10-%02d' "$d")
  data=$work/day
  rm -rf "$data"
  "$TALLY" generate --rows "$ROWS" --seed 7 --day "$day" --out "$data" >/dev/null
  if [ "$d" -eq 1 ]; then
    "$TALLY" keys import "$data/keys.toml" --db "$db" >/dev/null
    "$TALLY" prices import "$data/prices.toml" --effective-from 2026-01-01 --db "$db" >/dev/null
  fi
  t0=$(date +%s.%N)
  "$TALLY" ingest client "$data/client.csv" --db "$db" >/dev/null
  "$TALLY" ingest gateway "$data/gateway.csv" --db "$db" >/dev/null
  t1=$(date +%s.%N)
  next=$(date -u -d "$day + 1 day" +%F)
  "$TALLY" run --from "$day" --to "$next" --db "$db" >/dev/null
  t2=$(date +%s.%N)
  ingest_s=$(awk "BEGIN{print $ingest_s + $t1 - $t0}")
  run_s=$(awk "BEGIN{print $run_s + $t2 - $t1}")
  echo "day $day: ingest $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s, run $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") s"
done
rm -rf "$work/day"
if [ "$built" -eq 0 ]; then
  echo "== ${DAYS} days x ${ROWS} rows per side: ingest ${ingest_s} s, daily runs ${run_s} s, store $(du -m "$file" | cut -f1) MB"
  last=$(date -u -d "2026-10-01 + $DAYS days" +%F)
  echo "== one run over the whole month: $(timed "$TALLY" run --from 2026-10-01 --to "$last" --db "$db")"
fi
echo "== a month's costs report from the CLI: $(timed "$TALLY" report costs --from 2026-10-01 --to 2026-11-01 --db "$db" --format csv)"

tok=$(token "$db" "reader-$(date +%s%N)" finance)
start "$db"
owner=$(curl -s -H "Authorization: Bearer $tok" "$base/v1/owners" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
pages=(
  "/v1/reports/costs?from=2026-10-01&to=2026-11-01&group_by=owner"
  "/v1/reports/costs?from=2026-10-01&to=2026-11-01&group_by=day"
  "/?month=2026-10"
  "/owners/$owner?month=2026-10")
# The first view of each page after the server starts reads the month's
# rollups; the views after it find their sums kept by the runs they came
# from (app/memo.rs), until a run changes the month.
for path in "${pages[@]}"; do
  echo "first view of $path: $(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $tok" "$base$path" | awk '{printf "%.1f ms", $1 * 1000}')"
done
for path in "${pages[@]}"; do
  "$LOAD" get "$base" "$tok" "$path" 200 1
  "$LOAD" get "$base" "$tok" "$path" 200 4
done
echo "   server memory after: $(mem VmRSS) MiB (peak $(mem VmHWM) MiB)"
stop
