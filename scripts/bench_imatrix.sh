#!/usr/bin/env bash
# `grokit imatrix` (layer-major) against `llama-imatrix` (chunk-major) on the same GGUF, the same
# chunks, the same threads, in the same run: wall time, peak RSS, and the ratio.
#
# Usage: scripts/bench_imatrix.sh [--quick]
#   default: BENCH_GGUF (default /work/bench/grok1-1l-q8_0.gguf: one layer at Grok-1's real widths,
#     q8_0, 6.1 GB; only read), the real Grok-1 tokenizer ($GROKIT_SHARED/grok1/tokenizer.model),
#     a text of the repository's docs, --ctx 512, CHUNKS (default "1 2") chunks; REPEAT (default 2)
#     runs of each tool, alternating, so the machine's noise shows in the spread.
#   --quick: the tiny fixture converted to an F32 GGUF, 4 chunks of 128 (to keep the script working).
# GROKIT_BIN=PATH uses that grokit binary (a release build) instead of building one.
# The GGUF is read once first (`cat > /dev/null`) so both tools start with it in the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${GROKIT_SHARED:-$ROOT/../shared}
if [[ -z "${GROKIT_BIN:-}" ]]; then cargo build --release --quiet; fi
G=${GROKIT_BIN:-$ROOT/target/release/grokit}
export RAYON_NUM_THREADS=${THREADS:-2}
T=$RAYON_NUM_THREADS
LLAMA_DIR=${GROKIT_LLAMA_CPP_DIR:-$HOME/.cache/grokit-ci/llama.cpp-0.3.36}
LI=$LLAMA_DIR/bin/llama-imatrix
[[ -x "$LI" ]] || { echo "llama-imatrix not built ($LI): run scripts/build_llama_cpp.sh"; exit 2; }
TIMEV=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then TIMEV=/usr/bin/time; fi
W=$(mktemp -d /tmp/grokit-bench-imatrix.XXXXXX)
trap 'rm -rf "$W"' EXIT
cat README.md docs/*.md docs/*.md > "$W/text.txt"

# bench NAME CMD...: wall seconds on stdout (and peak RSS on stderr)
bench() {
  local name=$1; shift
  local tv=$W/time.txt t0 t1 rss="n/a"
  t0=$(date +%s.%N)
  if [[ -n "$TIMEV" ]]; then
    $TIMEV -v -o "$tv" "$@" > "$W/log" 2>&1 || { echo "!!! $name failed:" >&2; tail -5 "$W/log" >&2; return 1; }
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$tv")
  else
    "$@" > "$W/log" 2>&1 || { echo "!!! $name failed:" >&2; tail -5 "$W/log" >&2; return 1; }
  fi
  t1=$(date +%s.%N)
  local s; s=$(echo "$t1 - $t0" | bc -l)
  printf "%-46s %8.1f s   peak RSS %7s MiB\n" "$name" "$s" "$rss" >&2
  echo "$s"
}

if [[ "${1:-}" == "--quick" ]]; then
  GGUF=$W/fx.gguf; TOK=fixtures/tiny/tokenizer.model; CTX=128; CHUNKS=${CHUNKS:-4}
  "$G" convert fixtures/tiny --to gguf -o "$GGUF" --type f32 -q
else
  GGUF=${BENCH_GGUF:-/work/bench/grok1-1l-q8_0.gguf}; TOK=${BENCH_TOKENIZER:-$SHARED/grok1/tokenizer.model}
  CTX=512; CHUNKS=${CHUNKS:-"1 2"}
fi
cat "$GGUF" > /dev/null
echo "model $GGUF ($(du -h "$GGUF" | cut -f1)), ctx $CTX, threads $T, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $CHUNKS; do
  for r in $(seq "${REPEAT:-2}"); do
    g=$(bench "grokit imatrix, $n chunks (run $r)" "$G" imatrix "$GGUF" --tokenizer "$TOK" -f "$W/text.txt" \
        --ctx "$CTX" --chunks "$n" -o "$W/g.imatrix.gguf" --force -q --scratch "$W/s")
    l=$(bench "llama-imatrix, $n chunks (run $r)" "$LI" -m "$GGUF" -f "$W/text.txt" -c "$CTX" -b "$CTX" \
        --chunks "$n" -t "$T" --no-ppl -o "$W/l.imatrix.gguf")
    printf "    ratio grokit / llama-imatrix: %.2f\n" "$(echo "$g / $l" | bc -l)"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
