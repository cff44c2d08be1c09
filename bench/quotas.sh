#!/usr/bin/env bash
# Quota evaluation benchmark (SQLite): a generated day of ROWS rows per side
# is ingested and reconciled, 12 quotas are set (10 month quotas on one team
# in America/Los_Angeles, a day quota on one key, a client-basis week quota
# on tokens), then `tally quota evaluate` runs RUNS times. Not a test:
# prints the wall time and peak memory of each evaluation and their median.
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
$TALLY quota set tokens-week --team support --metric tokens --limit 1000 --period week --basis client >/dev/null
times=()
for r in $(seq 1 "$RUNS"); do
  # As at the end of the generated day, whatever today is.
  /usr/bin/time -o t.txt -f "%e %M" $TALLY quota evaluate --now 2026-11-20T23:00:00Z >/dev/null
  read -r s kb < t.txt
  printf "evaluate %d: %s s, peak %d MiB\n" "$r" "$s" $((kb / 1024))
  times+=("$s")
done
printf "%s\n" "${times[@]}" | sort -n | awk -v rows="$ROWS" '{a[NR]=$1} END {printf "median of %d: %s s for 12 quotas over %s rows per side\n", NR, a[int((NR+1)/2)], rows}'
