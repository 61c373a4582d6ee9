#!/usr/bin/env bash
# `grokit perplexity` (layer-major) against `llama-perplexity` (chunk-major) on the same GGUF, same
# threads, same run: wall time, peak RSS, bytes of weights read per run.
#
# Usage: scripts/bench_perplexity.sh [--quick]
#   full (default): the 2-layer checkpoint at Grok-1's real widths (`grokit synth --preset grok-1
#     --layers 2`, 13.07 GB) in $BENCH_DIR (default /work/bench/ppl-2l), or the existing `synth`
#     output named by BENCH_INPUT=DIR (reused, not deleted); the real Grok-1 tokenizer
#     ($GROKIT_SHARED/grok1/tokenizer.model); a text of the repository's docs (>= 8192 tokens).
#     1, 4 and 16 chunks of 512: grokit on the release; then the release converted to a q8_0
#     GGUF (11.3 GB), the release deleted (disk), and grokit and llama-perplexity on the GGUF.
#     Everything it creates is deleted at the end. Needs about 25 GB free at the peak.
#   BENCH_GGUF=FILE (e.g. /work/bench/grok1-1l-q8_0.gguf, the 1-layer checkpoint at Grok-1's
#     widths as q8_0): no synth and no conversion; grokit and llama-perplexity on FILE only, for
#     the chunk counts in CHUNKS (default "1 4 16"), in a scratch directory under /tmp. FILE is
#     only read. With BENCH_INPUT=DIR too, grokit also runs on that release checkpoint.
#   --quick: the tiny fixture, 1 and 4 chunks of 128 (llama-perplexity too when the llama.cpp
#     cache is already built), to keep the script working in CI.
# Inputs are read once first (`cat > /dev/null`), so every run starts with them in the page cache:
# times compare compute, and "bytes read" is computed from the calls made (grokit reports it; for
# llama-perplexity it is one pass over the GGUF per decode of n_batch/ctx = 4 chunks), next to
# the measured storage reads (`/usr/bin/time` "File system inputs"). `dd iflag=direct` of the GGUF
# gives the disk's read speed for the 64-layer arithmetic in docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${GROKIT_SHARED:-$ROOT/../shared}
cargo build --release --quiet
G=$ROOT/target/release/grokit
export RAYON_NUM_THREADS=${THREADS:-2}
T=$RAYON_NUM_THREADS
TIMEV=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then TIMEV=/usr/bin/time; fi
LLAMA_DIR=${GROKIT_LLAMA_CPP_DIR:-$HOME/.cache/grokit-ci/llama.cpp-0.3.36}
LP=$LLAMA_DIR/bin/llama-perplexity

# bench NAME LOGFILE CMD...: runs CMD (stdout+stderr to LOGFILE), prints wall time, peak RSS and
# the storage reads /usr/bin/time saw.
declare -A SECS
bench() {
  local name=$1 log=$2; shift 2
  local tv; tv=$(mktemp)
  local t0 t1 rss="n/a" inb="n/a"
  t0=$(date +%s.%N)
  if [[ -n "$TIMEV" ]]; then
    $TIMEV -v -o "$tv" "$@" > "$log" 2>&1 || { echo "!!! $name failed:"; tail -5 "$log"; rm -f "$tv"; return 1; }
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$tv")
    inb=$(awk -F': ' '/File system inputs/ {printf "%.2f", $2*512/1e9}' "$tv")
  else
    "$@" > "$log" 2>&1 || { echo "!!! $name failed:"; tail -5 "$log"; return 1; }
  fi
  t1=$(date +%s.%N)
  rm -f "$tv"
  SECS[$name]=$(echo "$t1 - $t0" | bc -l)
  printf "%-44s %9.1f s   peak RSS %7s MiB   storage reads %6s GB\n" "$name" "${SECS[$name]}" "$rss" "$inb"
}
ppl_of() { grep -oE 'Final estimate: PPL = [0-9.a-z]+ \+/- [0-9.a-z]+' "$1" | head -1 || true; }
read_of() { grep -oE 'weights read per run: .*' "$1" | head -1 || true; }

if [[ "${1:-}" == "--quick" ]]; then
  W=$(mktemp -d /tmp/grokit-bench-ppl.XXXXXX)
  trap 'rm -rf "$W"' EXIT
  cat README.md docs/*.md > "$W/text.txt"
  for n in 1 4; do
    bench "grokit fixture, $n chunks of 128" "$W/g$n.log" "$G" perplexity fixtures/tiny -f "$W/text.txt" --ctx 128 --chunks $n -q --scratch "$W/s"
    echo "    $(ppl_of "$W/g$n.log")"
  done
  if [[ -x "$LP" ]]; then
    "$G" convert fixtures/tiny --to gguf -o "$W/fx.gguf" --type f32 -q
    for n in 1 4; do
      bench "grokit fixture GGUF, $n chunks" "$W/gg$n.log" "$G" perplexity "$W/fx.gguf" --tokenizer fixtures/tiny/tokenizer.model -f "$W/text.txt" --ctx 128 --chunks $n -q --scratch "$W/s"
      bench "llama-perplexity fixture GGUF, $n chunks" "$W/l$n.log" "$LP" -m "$W/fx.gguf" -f "$W/text.txt" -c 128 --chunks $n -t "$T"
      echo "    grokit $(ppl_of "$W/gg$n.log"); llama $(ppl_of "$W/l$n.log")"
    done
  else
    echo "llama-perplexity not built ($LP): grokit only"
  fi
  exit 0
fi

TOK=$SHARED/grok1/tokenizer.model
[[ -f "$TOK" ]] || { echo "need the Grok-1 tokenizer at $TOK (set GROKIT_SHARED)"; exit 1; }
[[ -x "$LP" ]] || LP=$(bash scripts/build_llama_cpp.sh | tail -1)/bin/llama-perplexity
# bench_gguf GGUF: grokit and llama-perplexity on GGUF, alternating, for each chunk count.
bench_gguf() {
  local GGUF=$1 SIZE
  SIZE=$(stat -L -c %s "$GGUF")
  dd if="$GGUF" of=/dev/null bs=8M iflag=direct 2> "$DIR/dd.log" || true
  echo "GGUF: $SIZE bytes; disk read (dd iflag=direct): $(tail -1 "$DIR/dd.log")"
  cat "$GGUF" > /dev/null
  for n in ${CHUNKS:-1 4 16}; do
    bench "grokit GGUF, $n chunks of 512" "$DIR/g$n.log" "$G" perplexity "$GGUF" --tokenizer "$TOK" -f "$DIR/text.txt" --chunks $n -q --scratch "$DIR/scratch"
    bench "llama-perplexity GGUF, $n chunks" "$DIR/l$n.log" "$LP" -m "$GGUF" -f "$DIR/text.txt" -c 512 --chunks $n -t "$T"
    passes=$(( (n + 3) / 4 ))
    printf "    grokit %s\n    llama  %s\n" "$(ppl_of "$DIR/g$n.log")" "$(ppl_of "$DIR/l$n.log")"
    echo "    grokit $(read_of "$DIR/g$n.log")"
    printf "    llama-perplexity: %d pass(es) over the weights (4 chunks per decode) = %.2f GB computed\n" "$passes" "$(echo "$passes * $SIZE / 1000000000" | bc -l)"
    printf "    time ratio grokit / llama-perplexity: %.2f\n" "$(echo "${SECS["grokit GGUF, $n chunks of 512"]} / ${SECS["llama-perplexity GGUF, $n chunks"]}" | bc -l)"
  done
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [[ -n "${BENCH_GGUF:-}" ]]; then
  DIR=$(mktemp -d /tmp/grokit-bench-ppl.XXXXXX)
  trap 'rm -rf "$DIR"' EXIT
  for i in 1 2; do cat README.md docs/*.md; done > "$DIR/text.txt"
  echo "$(nproc) cores, $T threads; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ -n "${BENCH_INPUT:-}" ]]; then
    for n in ${CHUNKS:-1 4 16}; do
      bench "grokit release, $n chunks of 512" "$DIR/r$n.log" "$G" perplexity "$BENCH_INPUT" --tokenizer "$TOK" -f "$DIR/text.txt" --chunks $n -q --scratch "$DIR/scratch"
      echo "    $(ppl_of "$DIR/r$n.log")"
      echo "    $(read_of "$DIR/r$n.log")"
    done
  fi
  bench_gguf "$BENCH_GGUF"
  exit 0
fi

DIR=${BENCH_DIR:-/work/bench/ppl-2l}
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
if [[ -n "${BENCH_INPUT:-}" ]]; then
  ln -s "$(realpath "$BENCH_INPUT")" "$DIR/in"
else
  "$G" synth "$DIR/in" --preset grok-1 --layers 2 -q
fi
for i in 1 2; do cat README.md docs/*.md; done > "$DIR/text.txt"
echo "input: $(du -sbL "$DIR/in/ckpt-0" | cut -f1) bytes; $(nproc) cores, $T threads; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$DIR"/in/ckpt-0/* > /dev/null
for n in 1 4 16; do
  bench "grokit release, $n chunks of 512" "$DIR/r$n.log" "$G" perplexity "$DIR/in" --tokenizer "$TOK" -f "$DIR/text.txt" --chunks $n -q --scratch "$DIR/scratch"
  echo "    $(ppl_of "$DIR/r$n.log")"
  echo "    $(read_of "$DIR/r$n.log")"
done
GGUF=$DIR/q8_0.gguf
"$G" convert "$DIR/in" --to gguf -o "$GGUF" --type q8_0 --tokenizer "$TOK" -q
if [[ -z "${BENCH_INPUT:-}" ]]; then rm -rf "$DIR/in"; fi   # disk: the release is not needed any more
bench_gguf "$GGUF"
