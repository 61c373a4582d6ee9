#!/usr/bin/env bash
# Benchmarks grokit's GGUF requantizer against llama.cpp's llama-quantize on the same F32 input,
# same thread count, in the same run: wall time and peak RSS from /usr/bin/time -v, the ratio
# grokit/llama.cpp, and whether every output tensor (type and bytes) is identical. Then the
# importance-matrix presets (issue #15): Q4_K_M and the i-quants IQ4_XS, IQ3_S, IQ2_XS with the
# same matrix (`--imatrix`, a synthetic llama.cpp GGUF matrix from synth_f32_gguf.py) on the
# synthetic input, so the i-quant encode speed is compared on identical work.
#
# usage: scripts/bench_quant.sh [--quick]
#   --quick  two small inputs: the repo fixture (d=64: K-quant fallbacks) and a random 1-layer
#            grok GGUF at d=512 (~17 MB). Seconds. This is what CI runs.
#   (none)   a random 1-layer grok GGUF with Grok-1's row widths (d=6144, 48/8 heads of 128,
#            8 experts of width 1024), ~1 GB F32. Minutes; not for a shared machine.
# env: GROKIT (default target/release/grokit, else target/debug/grokit), NTHREADS (2),
#      BENCH_STRICT=1 to exit non-zero when outputs differ, GROKIT_LLAMA_CPP_DIR (see
#      scripts/build_llama_cpp.sh, which this calls; it is a no-op once built).
# grokit's side needs `grokit quantize IN.gguf -o OUT.gguf --preset P`; without it only
# llama-quantize is timed.
set -euo pipefail
MODE=full
[ "${1:-}" = "--quick" ] && MODE=quick
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NTHREADS=${NTHREADS:-2}
CACHE=${GROKIT_CI_CACHE:-$HOME/.cache/grokit-ci}
PRESETS="q8_0 q4_0 q4_k_m q5_k_m q6_k"
IM_PRESETS=${IM_PRESETS:-"q4_k_m iq4_xs iq3_s iq2_xs"}

# Python with gguf-py and numpy: the CI venv (same hash rule as .ci/run), else the dev venv.
PY=${PY:-}
if [ -z "$PY" ]; then
  h=$(sha256sum "$ROOT/tests/interop/requirements.txt" | cut -c1-12)
  for c in "$CACHE/venv-$h/bin/python" "$CACHE/venv/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import gguf, numpy' 2>/dev/null; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "bench_quant: no python with gguf and numpy (pip install -r tests/interop/requirements.txt)"; exit 1; }
GROKIT=${GROKIT:-}
if [ -z "$GROKIT" ]; then
  for c in "$ROOT/target/release/grokit" "$ROOT/target/debug/grokit"; do [ -x "$c" ] && { GROKIT=$c; break; }; done
fi
[ -n "$GROKIT" ] || { echo "bench_quant: no grokit binary (cargo build --release)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_quant: /usr/bin/time missing (apt-get install time)"; exit 1; }

LDIR=$(bash "$ROOT/scripts/build_llama_cpp.sh" | tail -1)
LQ="$LDIR/bin/llama-quantize"
[ -x "$LQ" ] || { echo "bench_quant: llama-quantize not built in $LDIR"; exit 1; }

HAVE_GROKIT_Q=1
GQ_FLAGS=()
if ! QHELP=$("$GROKIT" quantize --help 2>&1); then
  HAVE_GROKIT_Q=0
  echo "bench_quant: SKIP grokit's side: this grokit has no 'quantize' command yet" \
       "(expected: grokit quantize IN.gguf -o OUT.gguf --preset P); timing llama-quantize only"
else
  # same work as llama-quantize: NTHREADS workers, no error statistics, no progress bar
  case "$QHELP" in *--jobs*) GQ_FLAGS+=(--jobs "$NTHREADS") ;; esac
  case "$QHELP" in *--no-error-stats*) GQ_FLAGS+=(--no-error-stats) ;; esac
  case "$QHELP" in *--quiet*) GQ_FLAGS+=(--quiet) ;; esac
fi

WORK=$(mktemp -d /tmp/grokit-bench-quant.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# inputs
INPUTS=()
if [ "$MODE" = quick ]; then
  "$GROKIT" convert "$ROOT/fixtures/tiny" --to gguf --type f32 -o "$WORK/fixture-f32.gguf" >/dev/null 2>&1
  INPUTS+=("$WORK/fixture-f32.gguf")
  "$PY" "$ROOT/scripts/synth_f32_gguf.py" "$WORK/synth-d1024-f32.gguf" --d 1024 --ff 512 --heads 8 --kv-heads 2 \
    --imatrix "$WORK/synth-d1024.imatrix.gguf"
  INPUTS+=("$WORK/synth-d1024-f32.gguf")
  IM_INPUT="$WORK/synth-d1024-f32.gguf"; IMATRIX="$WORK/synth-d1024.imatrix.gguf"
else
  "$PY" "$ROOT/scripts/synth_f32_gguf.py" "$WORK/synth-grok1rows-f32.gguf" --d 6144 --ff 1024 --heads 48 --kv-heads 8 \
    --imatrix "$WORK/synth-grok1rows.imatrix.gguf"
  INPUTS+=("$WORK/synth-grok1rows-f32.gguf")
  IM_INPUT="$WORK/synth-grok1rows-f32.gguf"; IMATRIX="$WORK/synth-grok1rows.imatrix.gguf"
fi

# time -v output -> "seconds peak_kib"
measure() {
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
              /Maximum resident set size/ { r = $2 } END { printf "%.3f %d\n", s, r }' "$1"
}

# per-tensor comparison: prints "identical/total" and the first differing tensors
compare() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, gguf
import numpy as np
a, b = (gguf.GGUFReader(p) for p in sys.argv[1:3])
ta = {t.name: t for t in a.tensors}
tb = {t.name: t for t in b.tensors}
same, diffs = 0, []
for name in sorted(set(ta) | set(tb)):
    x, y = ta.get(name), tb.get(name)
    if x is None or y is None:
        diffs.append(f"{name}: only in {'grokit' if x is None else 'llama.cpp'}")
    elif x.tensor_type != y.tensor_type:
        diffs.append(f"{name}: {y.tensor_type.name} (grokit) vs {x.tensor_type.name} (llama.cpp)")
    elif bytes(x.data.tobytes()) != bytes(y.data.tobytes()):
        xb, yb = (np.frombuffer(t.data.tobytes(), np.uint8) for t in (x, y))
        nd = int(np.count_nonzero(xb != yb)) if xb.size == yb.size else -1
        diffs.append(f"{name} ({x.tensor_type.name}): {nd} of {xb.size} bytes differ")
    else:
        same += 1
print(f"{same}/{len(set(ta) | set(tb))}")
for d in diffs[:4]:
    print("  " + d)
PYEOF
}

ftype() { echo "$1" | tr a-z A-Z; }
printf "\n%-22s %-10s %10s %10s %10s %10s %7s %7s  %s\n" input preset "llama s" "llama MiB" "grokit s" "grokit MiB" "t ratio" "m ratio" "tensors identical"
mismatch=0
# one preset on one input, both tools, same threads; $3: importance matrix (or empty)
pair() {
  local IN=$1 P=$2 IM=${3:-} base OL OG tag
  base=$(basename "$IN" .gguf)
  tag=$P; [ -n "$IM" ] && tag="$P+im"
  OL="$WORK/$base-$tag-llama.gguf"; OG="$WORK/$base-$tag-grokit.gguf"
  local LIM=() GIM=()
  [ -n "$IM" ] && { LIM=(--imatrix "$IM"); GIM=(--imatrix "$IM"); }
  /usr/bin/time -v -o "$WORK/t-l" "$LQ" ${LIM[@]+"${LIM[@]}"} "$IN" "$OL" "$(ftype "$P")" "$NTHREADS" >"$WORK/log-l" 2>&1 \
    || { echo "llama-quantize $P failed on $base:"; tail -5 "$WORK/log-l"; exit 1; }
  read -r ls lk < <(measure "$WORK/t-l")
  gs="-"; gm="-"; tr="-"; mr="-"; ident="(grokit quantize missing)"
  if [ $HAVE_GROKIT_Q = 1 ]; then
    if RAYON_NUM_THREADS=$NTHREADS /usr/bin/time -v -o "$WORK/t-g" "$GROKIT" quantize "$IN" -o "$OG" --preset "$P" \
         ${GIM[@]+"${GIM[@]}"} ${GQ_FLAGS[@]+"${GQ_FLAGS[@]}"} >"$WORK/log-g" 2>&1; then
      read -r gs gk < <(measure "$WORK/t-g")
      gm=$(( gk / 1024 ))
      tr=$(awk -v g="$gs" -v l="$ls" 'BEGIN { printf "%.2f", (l > 0 ? g / l : 0) }')
      mr=$(awk -v g="$gk" -v l="$lk" 'BEGIN { printf "%.2f", (l > 0 ? g / l : 0) }')
      ident=$(compare "$OL" "$OG")
      first=$(echo "$ident" | head -1)
      [ "${first%/*}" = "${first#*/}" ] || mismatch=$((mismatch + 1))
    else
      ident="grokit quantize failed: $(tail -1 "$WORK/log-g")"
      mismatch=$((mismatch + 1))
    fi
  fi
  printf "%-22s %-10s %10s %10s %10s %10s %7s %7s  %s\n" "${base:0:22}" "$tag" "$ls" "$(( lk / 1024 ))" "$gs" "$gm" "$tr" "$mr" "$ident"
  rm -f "$OL" "$OG"
}
for IN in "${INPUTS[@]}"; do
  for P in $PRESETS; do pair "$IN" "$P"; done
done
# importance-matrix presets (+im): same input, same matrix, same threads
if [ $HAVE_GROKIT_Q = 1 ] && [[ "$QHELP" == *--imatrix* ]]; then
  for P in $IM_PRESETS; do pair "$IM_INPUT" "$P" "$IMATRIX"; done
else
  echo "bench_quant: SKIP the --imatrix presets: this grokit has no 'quantize --imatrix'"
fi
echo
echo "mode $MODE, $NTHREADS threads (grokit flags: ${GQ_FLAGS[*]:-none}), llama.cpp from $LDIR; ratios are grokit / llama.cpp (lower is better for grokit)"
if [ $mismatch -gt 0 ]; then
  echo "bench_quant: $mismatch preset/input pairs where grokit's output differs from llama-quantize's"
  [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
