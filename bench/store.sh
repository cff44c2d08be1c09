#!/usr/bin/env bash
# Store benchmark: tally ingest into SQLite and PostgreSQL, tally run over
# the stored rows, and the store's size, beside the file-based tally
# reconcile on the same data. Not a test: prints one run's figures.
#
#   bench/store.sh [ROWS ...]      default: 1000000
#
# PostgreSQL is a private cluster (initdb, 127.0.0.1, a free port) made in
# a temporary folder and removed after; it needs Debian's `postgresql`
# package. Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-1000000}")
read -r -a SIZES <<< "${SIZES[*]}"
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release -q -p tally-service --all-features
TALLY=$PWD/target/release/tally
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# timed LABEL CMD...: runs CMD, prints "wall_s peak_mb" (and keeps stdout in $last).
timed() {
  local tf; tf=$(mktemp)
  last=$(/usr/bin/time -o "$tf" -f "%e %M" "$@")
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$tf"
  rm -f "$tf"
}

pg_start() {
  PGDIR=$(mktemp -d /tmp/tally-bench-pg.XXXXXX)
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local as=()
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$PGDIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${as[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-p $PGPORT -h 127.0.0.1 -k $PGDIR" start >/dev/null
  PG_AS=("${as[@]}")
}

pg_stop() {
  "${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null || true
  rm -rf "$PGDIR"
}

printf '\n%-9s %-9s %10s %10s %12s %10s %10s %10s %10s\n' rows backend ingest_s rows_per_s run_s run_peak_mb store_mb reconcile_s ratio
for n in "${SIZES[@]}"; do
  dir=bench/data/$n
  [ -f "$dir/truth.csv" ] || $TALLY generate --rows "$n" --seed 7 --out "$dir" >/dev/null
  total=$(( $(wc -l < "$dir/client.csv") + $(wc -l < "$dir/gateway.csv") - 2 ))
  read -r rw _ < <(timed $TALLY reconcile --client "$dir/client.csv" --gateway "$dir/gateway.csv" \
      --keys "$dir/keys.toml" --prices "$dir/prices.toml" --format json)
  for backend in sqlite postgres; do
    if [ "$backend" = sqlite ]; then
      store=$(mktemp -d /tmp/tally-bench-sqlite.XXXXXX); url="sqlite://$store/tally.db"
    else
      pg_start; url="postgres://postgres@127.0.0.1:$PGPORT/postgres"
    fi
    $TALLY keys import "$dir/keys.toml" --db "$url" >/dev/null
    $TALLY prices import "$dir/prices.toml" --db "$url" >/dev/null
    read -r cw _ < <(timed $TALLY ingest client "$dir/client.csv" --db "$url")
    read -r gw _ < <(timed $TALLY ingest gateway "$dir/gateway.csv" --db "$url")
    read -r runw runm < <(timed $TALLY run --from 2026-11-19 --to 2026-11-22 --db "$url")
    if [ "$backend" = sqlite ]; then
      mb=$(du -sm "$store" | cut -f1); rm -rf "$store"
    else
      mb=$(du -sm "$PGDIR/data" | cut -f1); pg_stop
    fi
    ingest=$(awk "BEGIN{print $cw + $gw}")
    printf '%-9s %-9s %10s %10.0f %12s %10s %10s %10s %10.2f\n' "$n" "$backend" "$ingest" \
      "$(awk "BEGIN{print $total / $ingest}")" "$runw" "$runm" "$mb" "$rw" "$(awk "BEGIN{print $runw / $rw}")"
  done
done
