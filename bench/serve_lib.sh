# Shared by bench/serve.sh and bench/hostile.sh (sourced, not run): a
# temporary folder, `tally serve` started and stopped on a free loopback
# port, tokens, and the server's memory. Set TALLY first; extra settings
# for the server come as TALLY_... variables in SERVE_ENV (an array).
work=$(mktemp -d "/tmp/tally-bench-$(basename "$0" .sh).XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# start DB: tally serve over DB on a free port; sets $pid and $base.
start() {
  local out=$work/serve.out
  env TALLY_DATABASE_URL="$1" TALLY_SERVER_LISTEN=127.0.0.1:0 TALLY_LOG_LEVEL=warn \
    TALLY_EMAIL_OUTBOX_DIR="$work/outbox" \
    "${SERVE_ENV[@]}" "$TALLY" serve >"$out" 2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
  base=$(sed -n 's/^tally serve: listening on //p' "$out")
  [ -n "$base" ] || { cat "$work/serve.log"; exit 1; }
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# mem VmRSS|VmHWM: the server's resident (or peak resident) memory, MiB.
mem() { awk -v k="$1:" '$1 == k {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }

token() { "$TALLY" token create --name "$2" --role "$3" --db "$1" | head -1; }
