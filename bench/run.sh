#!/usr/bin/env bash
# End-to-end benchmark: tally reconcile vs DuckDB's ASOF JOIN on the same
# generated data. Not a test: prints medians of wall time and peak memory,
# and each tool's pairs scored against the generator's ground truth.
#
#   bench/run.sh [ROWS ...]        default: 1000000 10000000
#   RUNS=3 bench/run.sh 1000000    runs per tool (median reported)
#
# Two inputs per size: `csv` (Tally CSV client, clean prices) and
# `jsonl-bad` (JSON Lines client, every priced pair disagreeing on cost).
# tally-nm is the same run with --no-matches (no per-pair matches.csv);
# json_mb is report.json's size.
# duck-load is DuckDB reading the two CSV files and nothing else;
# polars-load is Polars reading them as text and nothing else.
# Needs python3 (a throwaway venv with duckdb and polars is made in
# bench/.venv) and
# GNU time (/usr/bin/time, Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZES=("${@:-1000000 10000000}")
read -r -a SIZES <<< "${SIZES[*]}"
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c 'import duckdb, polars' 2>/dev/null || bench/.venv/bin/pip install -q duckdb polars
PY=bench/.venv/bin/python
cargo build --release -q -p tally-service
TALLY=target/release/tally

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# measure LABEL CMD...: runs CMD $RUNS times, prints "wall_s peak_mb" medians.
measure() {
  local walls=() mems=() i out tf
  tf=$(mktemp)
  for ((i = 0; i < RUNS; i++)); do
    /usr/bin/time -o "$tf" -f "%e %M" "$@" >/dev/null 2>&1
    out=$(tail -1 "$tf")
    walls+=("${out% *}"); mems+=("${out#* }")
  done
  rm -f "$tf"
  printf '%s %s\n' "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${mems[@]}" | median | awk '{printf "%.0f", $1/1024}')"
}

# kind DIR: the input of one comparison. `csv`: Tally CSV client, clean
# prices. `jsonl-bad`: JSON Lines client (OpenAI SDK usage objects) and a
# gateway billing 10 % over the catalog, so every priced pair disagrees:
# the day the report must still be quick and small.
client_of() { [ -f "$1/client.jsonl" ] && echo "$1/client.jsonl" || echo "$1/client.csv"; }

printf '\n%-10s %-9s %-11s %8s %8s %10s %10s %9s %9s %9s\n' rows input tool wall_s peak_mb true_pairs right right_pct claimed_2x json_mb
for n in "${SIZES[@]}"; do
  for kind in csv jsonl-bad; do
    dir=bench/data/$n-$kind
    case $kind in
      csv) gen=() ;;
      jsonl-bad) gen=(--jsonl --gateway-markup 10) ;;
    esac
    [ -f "$dir/truth.csv" ] || $TALLY generate --rows "$n" --seed 7 "${gen[@]}" --out "$dir" >/dev/null
    client=$(client_of "$dir")
    out=bench/data/$n-$kind-out; rm -rf "$out"
    read -r tw tm < <(measure $TALLY reconcile --client "$client" --gateway "$dir/gateway.csv" \
        --keys "$dir/keys.toml" --prices "$dir/prices.toml" --out "$out" --format json)
    json_mb=$(awk "BEGIN{printf \"%.1f\", $(stat -c %s "$out/report.json")/1048576}")
    read -r nw nm < <(measure $TALLY reconcile --client "$client" --gateway "$dir/gateway.csv" \
        --keys "$dir/keys.toml" --prices "$dir/prices.toml" --out "$out-nm" --no-matches --format json)
    read -r dw dm < <(measure $PY bench/duckdb_asof.py "$dir" "$dir/duckdb_pairs.csv")
    read -r t1 f1 r1 w1 m1 x1 < <($PY bench/score.py "$dir/truth.csv" "$out/matches.csv")
    read -r t2 f2 r2 w2 m2 x2 < <($PY bench/score.py "$dir/truth.csv" "$dir/duckdb_pairs.csv")
    pct() { awk "BEGIN{printf \"%.4f\", 100*$1/$2}"; }
    printf '%-10s %-9s %-11s %8s %8s %10s %10s %9s %9s %9s\n' "$n" "$kind" tally "$tw" "$tm" "$t1" "$r1" "$(pct "$r1" "$t1")" "$x1" "$json_mb"
    printf '%-10s %-9s %-11s %8s %8s %10s %10s %9s %9s %9s\n' "$n" "$kind" tally-nm "$nw" "$nm" - - - - -
    printf '%-10s %-9s %-11s %8s %8s %10s %10s %9s %9s %9s\n' "$n" "$kind" duckdb "$dw" "$dm" "$t2" "$r2" "$(pct "$r2" "$t2")" "$x2" -
    if [ "$kind" = csv ]; then
      read -r lw lm < <(measure $PY bench/duckdb_load.py "$dir")
      read -r pw pm < <(measure $PY bench/polars_load.py "$dir")
      printf '%-10s %-9s %-11s %8s %8s\n' "$n" "$kind" duck-load "$lw" "$lm"
      printf '%-10s %-9s %-11s %8s %8s\n' "$n" "$kind" polars-load "$pw" "$pm"
    fi
    awk "BEGIN{printf \"%-10s %-9s tally/duckdb wall: %.2f (target <= 0.35; --no-matches %.2f); peak %d MB (target <= 2048)\n\", $n, \"$kind\", $tw/$dw, $nw/$dw, $tm}"
  done
done
