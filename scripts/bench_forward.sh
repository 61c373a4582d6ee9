#!/usr/bin/env bash
# Reference forward pass on a checkpoint at Grok-1's real widths: tokens per second, seconds per
# layer, the extrapolation to 64 layers, and peak RSS.
#
# Usage: scripts/bench_forward.sh [--quick]
#   full (default): a 2-layer checkpoint at Grok-1's real tensor sizes (13.07 GB, written by
#     `grokit synth --preset grok-1 --layers 2`) in $BENCH_DIR (default /tmp/grokit-bench), or
#     the existing `synth` output named by BENCH_INPUT=DIR (reused, not deleted); 8 prompt tokens
#     (--tokens: no tokenizer needed);
#   --quick: the tiny fixture, to keep the script working in CI.
# The input is read once first, so the run starts with it in the page cache. Seconds per layer
# are the total over the layer count, so they include a share of the embedding gather and the
# output head (the 3.2 GB embedding streamed once): the 64-layer extrapolation (total x 64 / L)
# is a slight overestimate.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
cargo build --release --quiet
G=$PWD/target/release/grokit
TOKENS=422,3033,356,1180,333,9072,360,2175
NTOK=8
if [[ "${1:-}" == "--quick" ]]; then
  run_timed "forward tiny fixture, 8 tokens" "$G" forward fixtures/tiny --tokens 5,6,7,8,9,10,11,12
  exit 0
fi
DIR=${BENCH_DIR:-/tmp/grokit-bench}/forward
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
if [[ -n "${BENCH_INPUT:-}" ]]; then
  ln -s "$(realpath "$BENCH_INPUT")" "$DIR/in"   # reuse an existing `synth` output
else
  $G synth "$DIR/in" --preset grok-1 --layers 2 -q
fi
# 2 global tensors (embedding, final norm) + 12 per layer (4 norms, 4 attention, router, 3 MoE)
FILES=$(find -L "$DIR/in/ckpt-0" -name 'tensor*' | wc -l)
LAYERS=$(( (FILES - 2) / 12 ))
echo "input: $(du -sbL "$DIR/in/ckpt-0" | cut -f1) bytes, $LAYERS layers; $(nproc) cores; $(date -u +%FT%TZ)"
cat "$DIR"/in/ckpt-0/* > /dev/null
NAME="forward $LAYERS full layers, $NTOK tokens"
run_timed "$NAME" "$G" forward "$DIR/in" --tokens "$TOKENS"
s=${SECS[$NAME]}
printf "prefill of %d tokens: %.1f s = %.3f tokens/s; %.1f s per layer (embedding and head included)\n" \
  "$NTOK" "$s" "$(echo "$NTOK / $s" | bc -l)" "$(echo "$s / $LAYERS" | bc -l)"
printf "64 layers: about %.0f s (%.1f min) for %d tokens, %.4f tokens/s\n" \
  "$(echo "$s * 64 / $LAYERS" | bc -l)" "$(echo "$s * 64 / $LAYERS / 60" | bc -l)" "$NTOK" \
  "$(echo "$NTOK / ($s * 64 / $LAYERS)" | bc -l)"
printf "peak RSS: %s MiB (bounded by one band of weights, independent of the layer count)\n" "${RSS[$NAME]}"
