#!/usr/bin/env bash
# Store benchmark: tally ingest into SQLite and PostgreSQL beside each
# backend's own bulk load of the same stored rows into the same table
# definition (sqlite3 `.import`, psql `\copy`), and tally run over the
# stored rows beside the file-based tally reconcile on the same data, with
# the store's size. Not a test: prints one run's figures. Needs the
# sqlite3 and psql programs (Debian `sqlite3`, `postgresql-client`).
#
#   bench/store.sh [ROWS ...]      default: 1000000
#   BACKENDS=sqlite bench/store.sh 10000000   one backend only
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

# bulk_sqlite DB: the stored usage rows out as CSV, then SQLite's own
# `.import` of them into an empty table of the same definition (the same
# columns, constraints and indexes, copied from the store): the floor an
# ingest is held to. Prints its wall seconds.
bulk_sqlite() {
  local db=$1 tmp; tmp=$(mktemp -d /tmp/tally-bench-bulk.XXXXXX)
  sqlite3 "$db" -csv "SELECT * FROM usage_rows" > "$tmp/rows.csv"
  sqlite3 "$db" ".schema usage_rows" | sed 's/REFERENCES [a-z_]*([a-z_]*)//g' > "$tmp/schema.sql"
  # The store goes first: at 10M rows a side, store, CSV and copy together
  # outgrow a 50 GB disk.
  rm -f "$db" "$db-wal" "$db-shm"
  sqlite3 "$tmp/bulk.db" < "$tmp/schema.sql"
  read -r w _ < <(timed sqlite3 "$tmp/bulk.db" -cmd "PRAGMA journal_mode = WAL" -cmd "PRAGMA synchronous = NORMAL" ".import --csv $tmp/rows.csv usage_rows")
  rm -rf "$tmp"; echo "$w"
}

# bulk_postgres URL: the same with `psql \copy` back into the emptied
# table itself (its columns, constraints and indexes).
bulk_postgres() {
  local url=$1 tmp; tmp=$(mktemp -d /tmp/tally-bench-bulk.XXXXXX); chmod 755 "$tmp"
  psql -q "$url" -c "\copy usage_rows TO '$tmp/rows.csv' CSV"
  psql -q "$url" -c "TRUNCATE usage_rows; CHECKPOINT"
  read -r w _ < <(timed psql -q "$url" -c "\copy usage_rows FROM '$tmp/rows.csv' CSV")
  rm -rf "$tmp"; echo "$w"
}

printf '\n%-9s %-9s %9s %9s %7s %8s %9s %8s %11s %7s\n' rows backend ingest_s bulk_s ratio run_s run_mb store_mb reconcile_s ratio
for n in "${SIZES[@]}"; do
  dir=bench/data/$n-csv
  [ -f "$dir/truth.csv" ] || $TALLY generate --rows "$n" --seed 7 --out "$dir" >/dev/null
  # The files read once first, and the median of three: a first, cold
  # read from disk would flatter the run's ratio.
  cat "$dir"/*.csv >/dev/null
  rw=$(for _ in 1 2 3; do
    timed $TALLY reconcile --client "$dir/client.csv" --gateway "$dir/gateway.csv" \
      --keys "$dir/keys.toml" --prices "$dir/prices.toml" --format json | cut -d' ' -f1
  done | sort -n | sed -n 2p)
  for backend in ${BACKENDS:-sqlite postgres}; do
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
      mb=$(du -sm "$store" | cut -f1)
      bulk=$(bulk_sqlite "$store/tally.db"); rm -rf "$store"
    else
      mb=$(du -sm "$PGDIR/data" | cut -f1)
      bulk=$(bulk_postgres "$url"); pg_stop
    fi
    ingest=$(awk "BEGIN{print $cw + $gw}")
    printf '%-9s %-9s %9s %9s %7.2f %8s %9s %8s %11s %7.2f\n' "$n" "$backend" "$ingest" "$bulk" \
      "$(awk "BEGIN{print $ingest / $bulk}")" "$runw" "$runm" "$mb" "$rw" "$(awk "BEGIN{print $runw / $rw}")"
  done
done
echo "ratio (ingest): tally ingest / the backend's own bulk load of the same rows (target <= 1.5)"
echo "ratio (run): tally run / tally reconcile of the same files (target <= 4)"
