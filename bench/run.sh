#!/usr/bin/env bash
# End-to-end benchmark: tally reconcile vs DuckDB's ASOF JOIN on the same
# generated data. Not a test: prints medians of wall time and peak memory,
# and each tool's pairs scored against the generator's ground truth.
#
#   bench/run.sh [ROWS ...]        default: 1000000 10000000
#   RUNS=3 bench/run.sh 1000000    runs per tool (median reported)
#
# tally-nm is the same run with --no-matches (no per-pair matches.csv).
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

printf '\n%-10s %-11s %10s %10s %12s %12s %10s %10s\n' rows tool wall_s peak_mb true_pairs right right_pct claimed_2x
for n in "${SIZES[@]}"; do
  dir=bench/data/$n
  [ -f "$dir/truth.csv" ] || $TALLY generate --rows "$n" --seed 7 --out "$dir" >/dev/null
  out=bench/data/$n-out; rm -rf "$out"
  read -r tw tm < <(measure $TALLY reconcile --client "$dir/client.csv" --gateway "$dir/gateway.csv" \
      --keys "$dir/keys.toml" --prices "$dir/prices.toml" --out "$out" --format json)
  read -r nw nm < <(measure $TALLY reconcile --client "$dir/client.csv" --gateway "$dir/gateway.csv" \
      --keys "$dir/keys.toml" --prices "$dir/prices.toml" --out "$out-nm" --no-matches --format json)
  read -r dw dm < <(measure $PY bench/duckdb_asof.py "$dir" "$dir/duckdb_pairs.csv")
  read -r lw lm < <(measure $PY bench/duckdb_load.py "$dir")
  read -r pw pm < <(measure $PY bench/polars_load.py "$dir")
  read -r t1 f1 r1 w1 m1 x1 < <($PY bench/score.py "$dir/truth.csv" "$out/matches.csv")
  read -r t2 f2 r2 w2 m2 x2 < <($PY bench/score.py "$dir/truth.csv" "$dir/duckdb_pairs.csv")
  printf '%-10s %-11s %10s %10s %12s %12s %10s %10s\n' "$n" tally "$tw" "$tm" "$t1" "$r1" "$(awk "BEGIN{printf \"%.4f\", 100*$r1/$t1}")" "$x1"
  printf '%-10s %-11s %10s %10s %12s %12s %10s %10s\n' "$n" tally-nm "$nw" "$nm" - - - -
  printf '%-10s %-11s %10s %10s %12s %12s %10s %10s\n' "$n" duckdb "$dw" "$dm" "$t2" "$r2" "$(awk "BEGIN{printf \"%.4f\", 100*$r2/$t2}")" "$x2"
  printf '%-10s %-11s %10s %10s %12s %12s %10s %10s\n' "$n" duck-load "$lw" "$lm" - - - -
  printf '%-10s %-11s %10s %10s %12s %12s %10s %10s\n' "$n" polars-load "$pw" "$pm" - - - -
  awk "BEGIN{printf \"%-10s tally/duckdb wall ratio: %.2f (with --no-matches: %.2f)\n\", $n, $tw/$dw, $nw/$dw}"
done
