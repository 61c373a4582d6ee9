#!/usr/bin/env bash
# SHA-256 of every output grokit writes, for a refactoring's "no behaviour change" proof.
#
# Usage: scripts/output_hashes.sh GROKIT_BINARY > hashes.txt
#   e.g. before a refactor:  cargo build --release && cp target/release/grokit /tmp/grokit-old
#                            scripts/output_hashes.sh /tmp/grokit-old > /tmp/before.txt
#        after it:           cargo build --release
#                            scripts/output_hashes.sh target/release/grokit > /tmp/after.txt
#                            diff /tmp/before.txt /tmp/after.txt && echo identical
#
# Inputs: fixtures/tiny (2 layers, d 64: rows that force the block-size fallbacks) and xAI's
# tiny12 (../shared/reference/tiny12, or $GROKIT_SHARED/reference/tiny12; skipped with a note
# when absent), plus a `synth` checkpoint. Outputs, each hashed file by file:
# - convert --to gguf: every --type the CLI takes, q2_k and q3_k through --quant (all matrix
#   classes), every --quant preset, an ad-hoc mixture, a split set; each with the
#   `--report --json` report and the `--dry-run` plan;
# - convert --to safetensors: every --dtype x both layouts (shards, index, configs, tokenizer
#   files, SHA256SUMS), one sharded run, and `--shard K/2` workers followed by `--finish`;
# - quantize of the f32 GGUF: every preset and every encodable type (through --quant), with
#   `--report --json`; a split output; a requantize with --allow-requantize;
# - synth, inspect --json.
# Lines are `<sha256>  <case>/<file>`; errors of a case are listed as `FAILED <case> (exit N)`
# so a changed exit code shows too. Everything is written under a temporary directory that is
# removed at the end (a few MB). Runs in about a minute with two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
G=$(realpath "${1:?usage: scripts/output_hashes.sh GROKIT_BINARY}")
SHARED=${GROKIT_SHARED:-../shared}
W=$(mktemp -d "${TMPDIR:-/tmp}/grokit-hashes.XXXXXX")
trap 'rm -rf "$W"' EXIT
export GROKIT_DIRECT_IO=0

# run CASE CMD...: run a grokit command with its stdout and stderr (warnings) in
# $W/out/CASE/; record failures. The JSON reports' "seconds" line is dropped.
run() {
  local case=$1; shift
  mkdir -p "$W/out/$case"
  local rc=0
  "$G" "$@" > "$W/out/$case/stdout" 2> "$W/out/$case/stderr" || rc=$?
  if [[ $rc != 0 ]]; then echo "FAILED $case (exit $rc): $(head -c 300 "$W/out/$case/stderr")"; fi
  # The one timing in a report: the wall-clock seconds.
  sed -i '/^ *"seconds": [0-9.e+-]*,\?$/d' "$W/out/$case/stdout"
  return 0
}

# Inputs are copied to fixed paths so that paths printed in reports are the same every run.
mkdir -p "$W/in"
cp -r fixtures/tiny "$W/in/fixture"
INPUTS=(fixture)
if [[ -d "$SHARED/reference/tiny12/ckpt-0" ]]; then
  cp -r "$SHARED/reference/tiny12" "$W/in/tiny12"
  INPUTS+=(tiny12)
else
  echo "# tiny12 skipped: $SHARED/reference/tiny12 not found" >&2
fi
cd "$W"

GGUF_TYPES=(f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k)
EXTRA_TYPES=(q2_k q3_k)
PRESETS=(q8_0 q4_0 q4_k_m q5_k_m q6_k f32 f16 bf16)
ALL_TYPES=(f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k)

for in in "${INPUTS[@]}"; do
  I=in/$in
  run "$in/inspect" inspect "$I" --json
  for t in "${GGUF_TYPES[@]}"; do
    c="$in/gguf-type-$t"
    run "$c" convert "$I" --to gguf -o "out/$c/m.gguf" --type "$t" --report --json -q
    run "$c-dry" convert "$I" --to gguf -o "out/$c-dry/m.gguf" --type "$t" --dry-run --json -q
  done
  for t in "${EXTRA_TYPES[@]}"; do
    c="$in/gguf-quant-all-$t"
    run "$c" convert "$I" --to gguf -o "out/$c/m.gguf" --quant "embed=$t,attn=$t,experts=$t" --report --json -q
  done
  for p in "${PRESETS[@]}"; do
    c="$in/gguf-preset-$p"
    run "$c" convert "$I" --to gguf -o "out/$c/m.gguf" --quant "$p" --report --json -q
  done
  c="$in/gguf-mixed"
  run "$c" convert "$I" --to gguf -o "out/$c/m.gguf" --quant "q4_k_m,attn_q=q5_0,down=q8_0" --add-bos --name Mixed --report --json -q
  c="$in/gguf-split"
  run "$c" convert "$I" --to gguf -o "out/$c/m.gguf" --type q8_0 --split-max-size 100K --report --json -q
  for d in bf16 f16 f32 int8 int4; do
    for l in hf jax; do
      c="$in/st-$d-$l"
      run "$c" convert "$I" --to safetensors -o "out/$c/m" --dtype "$d" --layout "$l" --report --json -q
      run "$c-dry" convert "$I" --to safetensors -o "out/$c-dry/m" --dtype "$d" --layout "$l" --dry-run --json -q
    done
  done
  c="$in/st-sharded"
  run "$c" convert "$I" --to safetensors -o "out/$c/m" --shard-size 200K --report --json -q
  c="$in/st-workers"
  run "$c-0" convert "$I" --to safetensors -o "out/$c/m" --shard-size 200K --shard 0/2 --json -q
  run "$c-1" convert "$I" --to safetensors -o "out/$c/m" --shard-size 200K --shard 1/2 --json -q
  run "$c-finish" convert "$I" --to safetensors -o "out/$c/m" --shard-size 200K --finish --json -q
  # quantize from the f32 GGUF
  F32="out/$in/gguf-type-f32/m.gguf"
  for p in "${PRESETS[@]}"; do
    c="$in/quantize-preset-$p"
    run "$c" quantize "$F32" -o "out/$c/m.gguf" --preset "$p" --report --json -q
  done
  for t in "${ALL_TYPES[@]}"; do
    c="$in/quantize-all-$t"
    run "$c" quantize "$F32" -o "out/$c/m.gguf" --quant "embed=$t,attn=$t,experts=$t" --report --json -q
  done
  c="$in/quantize-split"
  run "$c" quantize "$F32" -o "out/$c/m.gguf" --preset q4_k_m --split-max-size 100K --report --json -q
  c="$in/quantize-dry"
  run "$c" quantize "$F32" -o "out/$c/m.gguf" --preset q4_k_m --dry-run --json -q
  c="$in/requantize"
  run "$c" quantize "out/$in/gguf-type-q8_0/m.gguf" -o "out/$c/m.gguf" --preset q4_0 --allow-requantize --report --json -q
done
run synth synth out/synth/ck --preset tiny --layers 3 -q

cd out
find . -type f | sort | sed 's|^\./||' | while read -r f; do
  echo "$(sha256sum < "$f" | cut -c1-64)  $f"
done
