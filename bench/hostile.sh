#!/usr/bin/env bash
# Hostile-client benchmark (issue 16); not a test: prints one run's figures.
#
#   bench/hostile.sh [PUSH_MB=200] [SOAK_SECONDS=120] [SLOW_TOKENS=8]
#
# 1. Memory of one PUSH_MB NDJSON push, then of two at once: the server's
#    peak resident memory (VmHWM) against its size before.
# 2. Slow clients: for SOAK_SECONDS, SLOW_TOKENS tokens each keep one
#    stalled upload (a line, then nothing; reconnected when ended), one slow
#    upload (a line a second) and one more that the per-token limit refuses,
#    while another client measures /readyz, GET /v1/runs and one-row pushes
#    (bench/slow_clients.py): median, p99, worst.
set -euo pipefail
cd "$(dirname "$0")/.."
PUSH_MB=${1:-200}
SOAK_S=${2:-120}
SLOW=${3:-8}
cargo build --release -q -p tally-service --all-features --bins
TALLY=$PWD/target/release/tally
SERVE_ENV=(TALLY_SERVER_BODY_IDLE_TIMEOUT_S=5 TALLY_SERVER_BODY_LIMIT_MB=1024
  TALLY_SCHEDULE_QUOTAS= TALLY_SCHEDULE_OUTBOX= TALLY_SCHEDULE_DIGEST=)
. bench/serve_lib.sh

# A client log of about MB megabytes: distinct ids, realistic lines.
python3 - "$work/push.jsonl" "$PUSH_MB" <<'PY'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    i, size = 0, 0
    while size < mb * 1_000_000:
        line = ('{"ts":"2026-11-20T%02d:%02d:%02d.%03dZ","key":"sk-proj-bench%040d","model":"gpt-4o-mini",'
                '"route":"/v1/chat/completions","response_id":"chatcmpl-bench-%d","team":"team-%d",'
                '"service":"svc-%d","env":"prod","http_status":200,"stream":false,"usage":{"prompt_tokens":%d,'
                '"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0}}}\n') % (
            i // 3600 % 24, i // 60 % 60, i % 60, i % 1000, i % 50, i, i % 5, i % 50, 100 + i % 900, 10 + i % 90, 110 + i % 990)
        f.write(line)
        size += len(line)
        i += 1
print(f"   generated {size / 1e6:.0f} MB, {i} rows")
PY

# A second log of the same size with other ids: two pushes at once must
# not be one batch twice.
sed 's/chatcmpl-bench-/chatcmpl-other-/' "$work/push.jsonl" >"$work/push2.jsonl"

push() {
  curl -s -o "$work/push.$2.out" -w "%{http_code} %{time_total}s" -X POST \
    -H "Authorization: Bearer $1" -H "Content-Type: application/x-ndjson" \
    --data-binary @"$work/$3" "$base/v1/usage/client?name=push$2"
}

echo "== 1. One ${PUSH_MB} MB NDJSON push, then two at once (SQLite)"
db=sqlite://$work/push.db
tok=$(token "$db" bench ingest)
tok2=$(token "$db" bench2 ingest)
start "$db"
echo "   server before: rss $(mem VmRSS) MiB"
echo "   one push: $(push "$tok" a push.jsonl); peak rss $(mem VmHWM) MiB, after $(mem VmRSS) MiB"
grep -o '"read":[0-9]*,"new":[0-9]*' "$work/push.a.out" | sed 's/^/   /'
stop
rm -f "$work"/push.db*
tok=$(token "$db" bench ingest)
tok2=$(token "$db" bench2 ingest)
start "$db"
push "$tok" b push.jsonl >"$work/b.code" &
p1=$!
push "$tok2" c push2.jsonl >"$work/c.code" &
p2=$!
wait "$p1" "$p2"
echo "   two at once (new store): $(cat "$work/b.code"), $(cat "$work/c.code"); peak rss $(mem VmHWM) MiB, after $(mem VmRSS) MiB"
grep -ho '"read":[0-9]*,"new":[0-9]*' "$work/push.b.out" "$work/push.c.out" | sed 's/^/   /'
stop

echo "== 2. ${SOAK_S} s with ${SLOW} tokens of stalled and slow uploads (SQLite)"
db=sqlite://$work/soak.db
measure=$(token "$db" measure admin)
slow=()
for i in $(seq "$SLOW"); do slow+=("$(token "$db" "slow$i" ingest)"); done
start "$db"
python3 bench/slow_clients.py "$base" "$SOAK_S" "$measure" "${slow[@]}"
echo "   server rss at the end $(mem VmRSS) MiB"
stop
