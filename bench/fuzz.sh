#!/usr/bin/env bash
# The long fuzz run (issue 16): every parser, mapping file, catalog, key
# registry and alias table of the engine, mutated from the repository's
# fixtures and run through the whole engine (parse, reconcile, summary,
# every report line), with overflow checks on. Prints executions, panics
# and speed; exits 1 on a panic and leaves the input in fuzz-panic.bin.
#
#   bench/fuzz.sh [EXECUTIONS=10000000] [THREADS=2] [SEED=16]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --profile fuzz -p tally-reconcile --example fuzz
exec target/fuzz/examples/fuzz "${1:-10000000}" "${2:-2}" "${3:-16}"
