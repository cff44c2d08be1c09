#!/usr/bin/env bash
# Server benchmark (issue 4): starts `tally serve` on loopback and measures
# it with service/examples/loadgen.rs. Not a test: prints one run's figures.
#
#   bench/serve.sh [INGEST_SECONDS] [SOAK_SECONDS] [ROWS]
#                  defaults: 60        600            1000000
#
# 1. NDJSON ingest: client rows pushed for INGEST_SECONDS, 10,000 rows per
#    request, two requests at a time, into a fresh SQLite store.
# 2. Soak: ingest for SOAK_SECONDS into another fresh store at a capped
#    10,000 rows/s (uncapped, ten minutes would write ~35 GB), the server's
#    resident memory sampled every 30 s.
# 3. Reads with ROWS rows per side stored and reconciled (the generated day
#    of bench/store.sh): latency of the costs report and the overview page.
set -euo pipefail
cd "$(dirname "$0")/.."
INGEST_S=${1:-60}
SOAK_S=${2:-600}
ROWS=${3:-1000000}
cargo build --release -q -p tally-service --all-features --bins --example loadgen
TALLY=$PWD/target/release/tally
LOAD=$PWD/target/release/examples/loadgen
SERVE_ENV=()
. bench/serve_lib.sh

echo "== 1. NDJSON ingest for ${INGEST_S} s (SQLite, 10,000 rows per request, 2 at a time)"
db=sqlite://$work/ingest.db
tok=$(token "$db" bench ingest)
start "$db"
"$LOAD" ingest "$base" "$tok" "$INGEST_S" 10000 2
echo "   server memory after: $(mem VmRSS) MiB; store $(du -m "$work/ingest.db" | cut -f1) MB"
stop

echo "== 2. Soak: ${SOAK_S} s of ingest at up to 10,000 rows/s, server memory every 30 s"
db=sqlite://$work/soak.db
tok=$(token "$db" soak ingest)
start "$db"
"$LOAD" ingest "$base" "$tok" "$SOAK_S" 2000 2 10000 >"$work/soak.out" &
load=$!
t=0
while kill -0 "$load" 2>/dev/null; do
  echo "   t=${t}s rss $(mem VmRSS) MiB"
  sleep 30
  t=$((t + 30))
done
wait "$load"
tail -1 "$work/soak.out"
echo "   rss at the end $(mem VmRSS) MiB"
stop

echo "== 3. Reads with ${ROWS} rows per side stored"
data=bench/data/$ROWS
[ -f "$data/truth.csv" ] || "$TALLY" generate --rows "$ROWS" --seed 7 --out "$data" >/dev/null
db=sqlite://$work/read.db
"$TALLY" keys import "$data/keys.toml" --db "$db" >/dev/null
"$TALLY" prices import "$data/prices.toml" --db "$db" >/dev/null
"$TALLY" ingest client "$data/client.csv" --db "$db"
"$TALLY" ingest gateway "$data/gateway.csv" --db "$db"
"$TALLY" run --from 2026-11-20 --to 2026-11-22 --db "$db" | head -1
tok=$(token "$db" reader finance)
start "$db"
for path in \
  "/v1/reports/costs?from=2026-11-01&to=2026-12-01&group_by=owner" \
  "/v1/reports/costs?from=2026-11-01&to=2026-12-01&group_by=day" \
  "/?month=2026-11"; do
  "$LOAD" get "$base" "$tok" "$path" 200 1
  "$LOAD" get "$base" "$tok" "$path" 400 4
done
echo "   a window off midnight UTC (reads every verdict):"
"$LOAD" get "$base" "$tok" "/v1/reports/costs?from=2026-11-19T23:59:59Z&to=2026-12-01&group_by=owner" 5 1
echo "   server memory after: $(mem VmRSS) MiB"
