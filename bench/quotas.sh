#!/usr/bin/env bash
# Quota evaluation benchmark (SQLite): a generated day of ROWS rows per side
# is ingested and reconciled; 11 cost quotas are set (10 month quotas on one
# team in America/Los_Angeles, a day quota on one key) and `tally quota
# evaluate` runs RUNS times; then a client-basis week quota on tokens (which
# the daily sums do not hold, so it reads rows) is added and it runs RUNS
# times again. Not a test: prints each evaluation's wall time and peak
# memory, and the medians.
#
#   bench/quotas.sh [ROWS] [RUNS]      default: 1000000 5
#
# Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
RUNS=${2:-5}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release -q -p tally-service
TALLY=$PWD/target/release/tally
WORK=$(mktemp -d /tmp/tally-bench-quotas.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export TALLY_DATABASE_URL="$WORK/tally.db"
$TALLY generate --rows "$ROWS" --seed 7 --out gen >/dev/null
$TALLY keys import gen/keys.toml >/dev/null
$TALLY prices import gen/prices.toml >/dev/null
$TALLY ingest client gen/client.csv >/dev/null
$TALLY ingest gateway gen/gateway.csv >/dev/null
$TALLY run --from 2026-11-20 --to 2026-11-21 >/dev/null
for i in $(seq 1 10); do
  $TALLY quota set "month-$i" --team search --limit 100 --period month --tz America/Los_Angeles >/dev/null
done
$TALLY quota set key-day --key key-0030 --limit 1 --period day >/dev/null

# evaluate LABEL: RUNS evaluations, each one's figures, then the median.
evaluate() {
  local times=() s kb
  for r in $(seq 1 "$RUNS"); do
    # As at the end of the generated day, whatever today is.
    /usr/bin/time -o t.txt -f "%e %M" $TALLY quota evaluate --now 2026-11-20T23:00:00Z >/dev/null
    read -r s kb < t.txt
    printf "  %s, evaluate %d: %s s, peak %d MiB\n" "$1" "$r" "$s" $((kb / 1024))
    times+=("$s")
  done
  printf "%s\n" "${times[@]}" | sort -n | awk -v rows="$ROWS" -v what="$1" \
    '{a[NR]=$1} END {printf "%s: median of %d: %s s over %s rows per side\n", what, NR, a[int((NR+1)/2)], rows}'
}

evaluate "11 cost quotas"
$TALLY quota set tokens-week --team support --metric tokens --limit 1000 --period week --basis client >/dev/null
evaluate "+ 1 client tokens quota"
