#!/usr/bin/env bash
# Reference forward pass speed: seconds per token on a checkpoint at Grok-1's real widths and the
# extrapolation to 64 layers. Usage: scripts/bench_forward.sh [--quick]
#   full: `grokit synth --preset grok-1 --layers 1` (6.5 GB) and 8 prompt tokens;
#   --quick: the tiny fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
cargo build --release --quiet
G=$PWD/target/release/grokit
if [[ "${1:-}" == "--quick" ]]; then
  run_timed "forward tiny fixture, 8 tokens" "$G" forward fixtures/tiny --tokens 5,6,7,8,9,10,11,12
  exit 0
fi
DIR=${BENCH_DIR:-/tmp/grokit-bench}/forward
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
$G synth "$DIR/in" --preset grok-1 --layers 1 -q
cat "$DIR"/in/ckpt-0/* > /dev/null
run_timed "forward 1 full layer, 8 tokens" "$G" forward "$DIR/in" --tokens 422,3033,356,1180,333,9072,360,2175
s=${SECS["forward 1 full layer, 8 tokens"]}
printf "one layer: %.1f s for 8 tokens (prefill); 64 layers: about %.0f s (%.1f min), plus the 3.2 GB embedding read once\n" "$s" "$(echo "$s * 64" | bc -l)" "$(echo "$s * 64 / 60" | bc -l)"
