#!/usr/bin/env bash
# `inspect` and structural `verify` over the whole 770-file, 318 GB release, written as sparse
# files (real headers and sizes, holes for payloads) by `grokit synth --preset grok-1 --sparse`.
# Goal: under 2 s each. Usage: scripts/bench_inspect.sh [--quick]  (quick: 1 repetition)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
REPS=5; [[ "${1:-}" == "--quick" ]] && REPS=1
cargo build --release --quiet
G=$PWD/target/release/grokit
DIR=${BENCH_DIR:-/tmp/grokit-bench}/sparse
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
run_timed "synth --sparse (770 files)" "$G" synth "$DIR/rel" --preset grok-1 --sparse -q
echo "files: $(ls "$DIR/rel/ckpt-0" | wc -l), apparent size $(find "$DIR/rel/ckpt-0" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}') bytes, allocated $(du -s --block-size=1 "$DIR/rel/ckpt-0" | cut -f1) bytes"
for i in $(seq 1 $REPS); do
  run_timed "inspect #$i" "$G" inspect "$DIR/rel" --json
  run_timed "verify (structure) #$i" "$G" verify "$DIR/rel" -q
done
best() { local m=999; for i in $(seq 1 $REPS); do m=$(echo "if (${SECS["$1 #$i"]} < $m) ${SECS["$1 #$i"]} else $m" | bc -l); done; echo "$m"; }
printf "best inspect: %.3f s, best structural verify: %.3f s (goal < 2 s)\n" "$(best inspect)" "$(best "verify (structure)")"
