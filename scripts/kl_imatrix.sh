#!/usr/bin/env bash
# What an importance matrix buys, measured with grokit's own pipeline end to end (issue #15):
# for tiny12 (../shared/reference/tiny12, the xAI-code checkpoint) and the repository fixture,
#   1. `grokit imatrix` computes the matrix on grokit's F32 GGUF of the model (README + docs as
#      calibration text, CHUNKS chunks of CTX tokens);
#   2. `grokit perplexity RELEASE --save-logits base.kld` writes the base (llama.cpp's
#      --kl-divergence-base format) from the release checkpoint itself, on CHANGELOG.md (not in
#      the calibration text);
#   3. Q4_K_M, IQ4_XS and IQ2_XS GGUFs made by `grokit quantize` with and without the matrix are
#      scored with `grokit perplexity --kl-base base.kld`: mean KLD ± its error, the largest
#      KLD quantile, same-top-token rate.
# IQ2_XS without a matrix is not made: llama-quantize refuses it, and grokit too.
#
# usage: scripts/kl_imatrix.sh   env: CTX (128), CHUNKS (8), EVAL_CHUNKS (8), SHARED
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-${GROKIT_SHARED:-$ROOT/../shared}}
CTX=${CTX:-128}; CHUNKS=${CHUNKS:-8}; EVAL_CHUNKS=${EVAL_CHUNKS:-8}
GROKIT=${GROKIT:-$ROOT/target/release/grokit}
[ -x "$GROKIT" ] || (cd "$ROOT" && cargo build --release --quiet --bin grokit)
WORK=$(mktemp -d /tmp/grokit-kl.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat "$ROOT/README.md" "$ROOT"/docs/*.md >"$WORK/calib.txt"
EVAL=$ROOT/CHANGELOG.md

models=()
if [ -d "$SHARED/reference/tiny12" ]; then
  T=$(cd "$SHARED/reference/tiny12" && pwd)
  models+=("tiny12=$T")
  # tiny12's random weights give near one-hot distributions, whose KL is below the resolution of
  # the base file (llama.cpp stores log-probabilities in 16 bits): a copy with the output
  # multiplier lowered to 0.15 spreads them, as tests/interop/llama_perplexity.py does.
  mkdir -p "$WORK/tiny12-soft"
  ln -s "$T/ckpt-0" "$WORK/tiny12-soft/ckpt-0"
  ln -s "$T/tokenizer.model" "$WORK/tiny12-soft/tokenizer.model"
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["output_multiplier_scale"]=0.15; json.dump(c,open(sys.argv[2],"w"))' \
    "$T/config.json" "$WORK/tiny12-soft/config.json"
  models+=("tiny12/0.15=$WORK/tiny12-soft")
else
  echo "kl_imatrix: tiny12 skipped ($SHARED/reference/tiny12 not found)"
fi
models+=("fixture=$ROOT/fixtures/tiny")

printf "%-12s %-8s %-8s %8s %22s %12s %9s\n" model preset matrix bpw "mean KLD ± error" "KLD max q." "same top"
for entry in "${models[@]}"; do
  name=${entry%%=*}; dir=${entry#*=}; f=${name//\//-}
  tok=(--tokenizer "$dir/tokenizer.model")
  "$GROKIT" convert "$dir" --to gguf --type f32 -o "$WORK/$f-f32.gguf" -q
  "$GROKIT" imatrix "$WORK/$f-f32.gguf" -f "$WORK/calib.txt" -o "$WORK/$f.imatrix.gguf" \
    --ctx "$CTX" --chunks "$CHUNKS" "${tok[@]}" -q >/dev/null 2>&1
  "$GROKIT" perplexity "$dir" -f "$EVAL" --ctx "$CTX" --chunks "$EVAL_CHUNKS" \
    --save-logits "$WORK/$f.kld" -q >/dev/null
  for P in q4_k_m iq4_xs iq2_xs; do
    for M in without with; do
      [ "$P/$M" = iq2_xs/without ] && continue
      IM=(); [ $M = with ] && IM=(--imatrix "$WORK/$f.imatrix.gguf")
      "$GROKIT" quantize "$WORK/$f-f32.gguf" -o "$WORK/q.gguf" --preset $P ${IM[@]+"${IM[@]}"} \
        --force -q --json >"$WORK/q.json"
      "$GROKIT" perplexity "$WORK/q.gguf" -f "$EVAL" --ctx "$CTX" --chunks "$EVAL_CHUNKS" \
        "${tok[@]}" --kl-base "$WORK/$f.kld" --json -q >"$WORK/p.json"
      python3 -c '
import json, sys
q, p = (json.load(open(f)) for f in sys.argv[1:3])
r = p["result"]["kl"]["report"]
kld, err = r["kld"]
bpw, top, same = q["report"]["totals"]["bpw"], r["kld_quantiles"][0], r["same_top"][0]
name, preset, m = sys.argv[3:6]
print(f"{name:<12} {preset:<8} {m:<8} {bpw:8.3f} {kld:11.3e} ± {err:8.1e} {top:12.3e} {same:9.4f}")
' "$WORK/q.json" "$WORK/p.json" "$name" "$P" "$M"
    done
  done
done
echo "KLD of each quantized GGUF against the release checkpoint's own logits (grokit perplexity --kl-base),"
echo "$EVAL_CHUNKS chunks of $CTX tokens of CHANGELOG.md; matrix: grokit imatrix, $CHUNKS chunks of $CTX tokens of README + docs"
