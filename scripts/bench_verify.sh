#!/usr/bin/env bash
# Benchmark grokit's SHA-256 pipeline against GNU sha256sum on the same files in the same run.
#
# Usage: scripts/bench_verify.sh [--quick]      (quick: 200 MB; default: $BENCH_GB GB, 4 GB)
#
# Creates random files in a temp dir (removed at exit), warms the page cache once, then times
#   1. sha256sum FILES                 (one process, one core)
#   2. xargs -P2 -n1 sha256sum          (two processes)
#   3. verify_sample --sha256 (1 thread) and (default threads = cores)
# checks all outputs agree, and prints MB/s, ratios vs sha256sum, and peak RSS
# (from /usr/bin/time -v when present). Warm-cache numbers: they measure hashing + copying,
# not the disk. The machine is shared: prefer --quick.
set -euo pipefail
cd "$(dirname "$0")/.."

MB=$(( ${BENCH_GB:-4} * 1024 ))
[[ "${1:-}" == "--quick" ]] && MB=200
NFILES=8

cargo build --release --quiet --example verify_sample
BIN=$PWD/target/release/examples/verify_sample

DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench_verify.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "creating $NFILES files, $MB MB total, in $DIR"
PER=$(( MB / NFILES ))
for i in $(seq 1 $NFILES); do
  head -c "$(( PER * 1024 * 1024 ))" /dev/urandom > "$DIR/f$i.bin"
done
FILES=$(cd "$DIR" && ls f*.bin)
cat "$DIR"/f*.bin > /dev/null   # warm the page cache for every contender alike

TIMEV=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then TIMEV=/usr/bin/time; fi

# run NAME CMD... : times CMD (in $DIR), stores output in $DIR/out.NAME, prints a row
declare -A SECS
run() {
  local name=$1; shift
  local t0 t1 rss="n/a"
  t0=$(date +%s.%N)
  if [[ -n "$TIMEV" ]]; then
    (cd "$DIR" && $TIMEV -v -o "$DIR/time.$name" "$@" > "$DIR/out.$name" 2>/dev/null)
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f MiB", $2/1024}' "$DIR/time.$name")
  else
    (cd "$DIR" && "$@" > "$DIR/out.$name" 2>/dev/null)
  fi
  t1=$(date +%s.%N)
  local s; s=$(echo "$t1 - $t0" | bc -l)
  SECS[$name]=$s
  printf "%-28s %7.2f s %8.0f MB/s   peak RSS %s\n" "$name" "$s" "$(echo "$MB / $s" | bc -l)" "$rss"
}

echo "---- $MB MB, warm page cache, $(nproc) cores ----"
run sha256sum sha256sum $FILES
run "xargs-P2-sha256sum" sh -c "ls f*.bin | xargs -P2 -n1 sha256sum"
run "grokit-1-thread" "$BIN" --threads 1 --sha256 . $FILES
run "grokit-default" "$BIN" --sha256 . $FILES

for n in "xargs-P2-sha256sum" "grokit-1-thread" "grokit-default"; do
  if ! diff <(sort "$DIR/out.sha256sum") <(sort "$DIR/out.$n") > /dev/null; then
    echo "MISMATCH: $n output differs from sha256sum"; exit 1
  fi
done
echo "all outputs identical to sha256sum's"
for n in "xargs-P2-sha256sum" "grokit-1-thread" "grokit-default"; do
  printf "speed-up %-22s %5.2fx vs sha256sum\n" "$n" "$(echo "${SECS[sha256sum]} / ${SECS[$n]}" | bc -l)"
done
printf "grokit-default vs xargs -P2: %5.2fx\n" "$(echo "${SECS[xargs-P2-sha256sum]} / ${SECS[grokit-default]}" | bc -l)"
