#!/usr/bin/env bash
# Conversion speed and memory against `cp -r` of the same files, in one run.
#
# Usage: scripts/bench_convert.sh [--quick]
#   full (default): a 2-layer checkpoint at Grok-1's real tensor sizes (13.07 GB, written by
#     `grokit synth --preset grok-1 --layers 2`) in $BENCH_DIR (default /tmp/grokit-bench;
#     needs about 45 GB free), converted to GGUF bf16 and q8_0 and to safetensors bf16 and int8;
#   --quick: a small many-layer checkpoint, to keep the script working in CI.
# Every contender starts with the input in the page cache (it is read once first), and every
# contender's time includes getting its output to disk (`cp -r` is followed by `sync`; grokit
# fsyncs each file before renaming it). Outputs are deleted between runs.
# `cp -r` runs twice (first and last) and the FASTER run is the denominator of every ratio:
# its time varies about 2x from run to run on a virtual disk. The disk's own limit is shown
# too: `dd oflag=direct` writing as many bytes as each output (ratio grokit / dd).
# env: BENCH_INPUT=DIR reuses an existing `synth` output; GROKIT_DIRECT_IO=0 measures grokit
# with buffered writes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
QUICK=0; [[ "${1:-}" == "--quick" ]] && QUICK=1
cargo build --release --quiet
G=$PWD/target/release/grokit
DIR=${BENCH_DIR:-/tmp/grokit-bench}/convert
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
if [[ -n "${BENCH_INPUT:-}" ]]; then
  ln -s "$(realpath "$BENCH_INPUT")" "$DIR/in"   # reuse an existing `synth` output
elif [[ $QUICK == 1 ]]; then
  $G synth "$DIR/in" --preset tiny --layers 24 -q
else
  $G synth "$DIR/in" --preset grok-1 --layers 2 -q
fi
[[ -e "$DIR/in/tokenizer.model" ]] || cp fixtures/tiny/tokenizer.model "$DIR/in/" 2>/dev/null || true
IN_BYTES=$(du -sbL "$DIR/in/ckpt-0" | cut -f1)
echo "input: $IN_BYTES bytes in $(ls "$DIR/in/ckpt-0" | wc -l) files; $(nproc) cores; $(date -u +%FT%TZ)"
# The real vocabulary is 131072 pieces: use the real tokenizer when ../shared has it.
TOK=fixtures/tiny/tokenizer.model
[[ $QUICK == 0 && -f ../shared/grok1/tokenizer.model ]] && TOK=../shared/grok1/tokenizer.model
cat "$DIR"/in/ckpt-0/* > /dev/null
run_timed "cp -r + sync" sh -c "cp -r '$DIR/in/ckpt-0' '$DIR/cp' && sync"
rm -rf "$DIR/cp"
declare -A OUTB
conv() { local name=$1; shift; run_timed "$name" "$G" convert "$DIR/in" -q --no-error-stats --tokenizer "$TOK" "$@"; OUTB[$name]=$(du -sb "$DIR/out" | cut -f1); awk -v b="${OUTB[$name]}" -v i="$IN_BYTES" 'BEGIN {printf "    output %.0f bytes (%.2fx the input)\n", b, b/i}'; rm -rf "$DIR/out"; cat "$DIR"/in/ckpt-0/* > /dev/null; }
# the disk's limit for N bytes: dd with direct I/O (8 MiB blocks) then fsync
disk() { local name=$1 bytes=$2; run_timed "$name" dd if=/dev/zero of="$DIR/dd.bin" bs=8M count=$(( (bytes + 8388607) / 8388608 )) oflag=direct conv=fsync status=none; rm -f "$DIR/dd.bin"; }
mkdir -p "$DIR/out"; conv "gguf bf16" --to gguf -o "$DIR/out/m.gguf" --type bf16
mkdir -p "$DIR/out"; conv "gguf q8_0 (lossless int8)" --to gguf -o "$DIR/out/m.gguf" --type q8_0
conv "safetensors bf16" --to safetensors -o "$DIR/out"
conv "safetensors int8 (lossless)" --to safetensors -o "$DIR/out" --dtype int8
run_timed "cp -r + sync (again)" sh -c "cp -r '$DIR/in/ckpt-0' '$DIR/cp' && sync"
rm -rf "$DIR/cp"
CP="cp -r + sync"
if (( $(echo "${SECS["cp -r + sync (again)"]} < ${SECS[$CP]}" | bc -l) )); then CP="cp -r + sync (again)"; fi
printf -- "---- ratios: time / the faster cp (%.2f s; goal for lossless paths <= 1.3), and time / dd writing the same bytes ----\n" "${SECS[$CP]}"
for n in "gguf bf16" "gguf q8_0 (lossless int8)" "safetensors bf16" "safetensors int8 (lossless)"; do
  disk "dd $n" "${OUTB[$n]}" > /dev/null
  printf "%-34s %5.2fx cp   %5.2fx dd (%.2f s)   peak RSS %s MiB\n" "$n" "$(ratio "$n" "$CP")" "$(ratio "$n" "dd $n")" "${SECS["dd $n"]}" "${RSS[$n]}"
done
