#!/usr/bin/env bash
# JSON Lines at CSV speed (issue 21, item 2): the same generated rows as a
# Tally CSV client and as a JSON Lines client (OpenAI SDK usage objects),
# each reconciled against the same LiteLLM CSV, runs interleaved. Prints
# each input's median wall time and peak memory, and JSON Lines / CSV.
# Not a test: prints one machine's figures.
#
#   bench/jsonl.sh [ROWS]      default: 1000000;  RUNS=9 by default
#
# Needs GNU time (/usr/bin/time). The data is kept in bench/data/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
RUNS=${RUNS:-9}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release -q -p tally-service
TALLY=target/release/tally
csv=bench/data/$ROWS-csv
jsonl=bench/data/$ROWS-jsonl-clean
[ -f "$csv/truth.csv" ] || $TALLY generate --rows "$ROWS" --seed 7 --out "$csv" >/dev/null
[ -f "$jsonl/truth.csv" ] || $TALLY generate --rows "$ROWS" --seed 7 --jsonl --out "$jsonl" >/dev/null
cmp -s "$csv/gateway.csv" "$jsonl/gateway.csv" || { echo "the two inputs' gateway files differ" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {
  /usr/bin/time -o "$out/t" -f "%e %M" "$TALLY" reconcile --client "$1" --gateway "$csv/gateway.csv" \
    --keys "$csv/keys.toml" --prices "$csv/prices.toml" --no-matches --out "$out/r" \
    --now 2026-11-21T00:00:00Z >/dev/null 2>&1
  cat "$out/t"
}
run "$csv/client.csv" >/dev/null   # warm the page cache
run "$jsonl/client.jsonl" >/dev/null
for ((i = 0; i < RUNS; i++)); do
  run "$csv/client.csv" >>"$out/csv"
  run "$jsonl/client.jsonl" >>"$out/jsonl"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
c=$(cut -d' ' -f1 "$out/csv" | median)
j=$(cut -d' ' -f1 "$out/jsonl" | median)
printf '%-8s %-22s %10s %9s %9s\n' rows client bytes wall_s peak_mb
for k in csv jsonl; do
  f=$([ "$k" = csv ] && echo "$csv/client.csv" || echo "$jsonl/client.jsonl")
  printf '%-8s %-22s %10s %9s %9s\n' "$ROWS" "$(basename "$f")" "$(stat -c %s "$f")" \
    "$(cut -d' ' -f1 "$out/$k" | median)" "$(cut -d' ' -f2 "$out/$k" | median | awk '{printf "%.0f", $1/1024}')"
done
awk -v c="$c" -v j="$j" 'BEGIN {printf "JSON Lines / CSV: %.2f x (target: at most 1.3 x), medians of '"$RUNS"' runs each\n", j / c}'
