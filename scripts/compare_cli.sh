#!/usr/bin/env bash
# Run the same set of grokit commands with two binaries and diff what a user sees: exit code,
# stdout (text and --json), stderr, and the SHA-256 of every file written. Made for refactors
# that must not change behaviour (issue #17): build the old binary from `main`, the new one
# from your branch, and read the diff.
#
#   scripts/compare_cli.sh OLD_GROKIT NEW_GROKIT [WORK_DIR]
#
# e.g.  git archive main | tar -x -C /tmp/old && (cd /tmp/old && cargo build) &&
#       cargo build && scripts/compare_cli.sh /tmp/old/target/debug/grokit target/debug/grokit
#
# Each side runs in its own directory with the same relative paths, so paths in messages are
# equal; timings ("1.2 s", "300 MB/s", "seconds": 0.01) are masked. Exit status: 0 when the two
# sides are identical, 1 when they differ (the diff is printed), 2 on a usage error.
# Covers every subcommand it owns (synth, inspect, convert, quantize, verify), success and
# failure cases, the fixture converted to every type and, when ../shared is there (or
# $GROKIT_SHARED), xAI's tiny12 too. Takes about a minute with debug binaries.
# Needs: bash, coreutils, python3 (only to write a small .torrent), no network.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${3:-$(mktemp -d /tmp/grokit-compare.XXXXXX)}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
FX=$ROOT/fixtures/tiny
T12=${GROKIT_SHARED:-$ROOT/../shared}/reference/tiny12

# A BitTorrent v1 file over DIR's ckpt-0 (top folder "grok-1-release", 16 KiB pieces).
make_torrent() {
  python3 - "$1" "$2" <<'EOF'
import hashlib, os, sys
root, out = sys.argv[1], sys.argv[2]
def be(x):
    if isinstance(x, int): return b"i%de" % x
    if isinstance(x, bytes): return b"%d:%s" % (len(x), x)
    if isinstance(x, str): return be(x.encode())
    if isinstance(x, list): return b"l" + b"".join(be(v) for v in x) + b"e"
    return b"d" + b"".join(be(k) + be(v) for k, v in sorted(x.items())) + b"e"
names = sorted(os.listdir(os.path.join(root, "ckpt-0")))
data = b"".join(open(os.path.join(root, "ckpt-0", n), "rb").read() for n in names)
plen = 16384
pieces = b"".join(hashlib.sha1(data[i:i + plen]).digest() for i in range(0, len(data), plen))
files = [{"length": os.path.getsize(os.path.join(root, "ckpt-0", n)), "path": ["ckpt-0", n]} for n in names]
info = {"files": files, "name": "grok-1-release", "piece length": plen, "pieces": pieces}
open(out, "wb").write(be({"announce": "http://example.invalid/announce", "info": info}))
EOF
}

# c NAME ARGS...: run grokit with ARGS in the side's directory and record the result.
c() {
  local name=$1
  shift
  local rc=0
  ./bin/grokit "$@" >"log/$name.out" 2>"log/$name.err" || rc=$?
  {
    echo "\$ grokit $*"
    echo "exit $rc"
    echo "--- stdout"
    cat "log/$name.out"
    echo "--- stderr"
    cat "log/$name.err"
  } | sed -E -e "s#$PWD#<work>#g" -e 's/[0-9]+\.[0-9]+ s\b/<t> s/g' -e 's/[0-9]+ MB\/s/<r> MB\/s/g' \
    -e 's/"seconds": [-0-9.e]+/"seconds": <t>/g' >"log/$name.txt"
  rm -f "log/$name.out" "log/$name.err"
}

suite() {
  local side=$1 bin=$2
  rm -rf "${WORK:?}/$side"
  mkdir -p "$WORK/$side/bin" "$WORK/$side/log" "$WORK/$side/out"
  cp "$bin" "$WORK/$side/bin/grokit"
  cd "$WORK/$side"
  cp -r "$FX" fx
  cp -r "$FX" notok && rm notok/tokenizer.model
  cp -r "$FX" broken && printf junk >>broken/ckpt-0/tensor00007_000
  cp -r "$FX" holes && rm holes/ckpt-0/tensor00003_000 && printf x >holes/ckpt-0/tensor00004_001
  make_torrent fx t.torrent

  # --- the front end
  c noargs
  c help --help
  c version --version
  c bogus bogus
  c help-sub help convert
  for s in inspect verify convert quantize synth forward compare; do
    c "help-$s" "$s" --help
    c "h-$s" "$s" -h
  done

  # --- synth
  c synth-tiny synth out/s-tiny --preset tiny -q
  c synth-tiny-again synth out/s-tiny -q
  c synth-wide synth -o out/s-wide --preset tiny --d-model 96 --q-heads 6 --head-dim 16 --vocab 1024 --seed 3
  c synth-layers0 synth out/s-bad --layers 0
  c synth-geometry synth out/s-bad --q-heads 5
  c synth-both synth out/a -o out/b
  c synth-none synth
  c synth-preset synth out/s-bad --preset nope

  # --- inspect
  c inspect inspect fx
  c inspect-json inspect fx --json
  c inspect-key inspect fx --key-size 16
  c inspect-missing inspect nope
  c inspect-broken inspect broken
  c inspect-broken-json inspect broken --json
  c inspect-holes inspect holes

  # --- convert: GGUF
  for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k; do
    c "gguf-$t" convert fx --to gguf -o "out/g-$t.gguf" --type "$t"
  done
  c gguf-q2_k convert fx --to gguf -o out/g-q2_k.gguf --type q2_k -q
  c gguf-q3_k convert fx --to gguf -o out/g-q3_k.gguf --type q3_k -q
  c gguf-q8_1 convert fx --to gguf -o out/g-q8_1.gguf --type q8_1 -q
  c gguf-report convert fx --to gguf -o out/g-report.gguf --type q4_k --report
  c gguf-json convert fx --to gguf -o out/g-json.gguf --type q6_k --json
  c gguf-q4km convert fx --to gguf -o out/g-q4km.gguf --quant q4_k_m --report -q
  c gguf-mixed convert fx --to gguf -o out/g-mixed.gguf --quant experts=q4_k,attn=q8_0,embed=q6_k -q
  c gguf-badquant convert fx --to gguf -o out/g-x.gguf --quant q9_z
  c gguf-badtype convert fx --to gguf -o out/g-x.gguf --type q9_z
  c gguf-dry convert fx --to gguf -o out/g-dry.gguf --quant q4_k_m --dry-run
  c gguf-split convert fx --to gguf -o out/g-split.gguf --type q8_0 --split-max-size 300K -q
  c gguf-split-bad convert fx --to gguf -o out/g-x.gguf --split-max-size abc
  c gguf-split-neg convert fx --to gguf -o out/g-x.gguf --split-max-size -5
  c gguf-split-half convert fx --to gguf -o out/g-x.gguf --split-max-size 0.5
  c gguf-split-frac convert fx --to gguf -o out/g-frac.gguf --split-max-size 0.3M -q
  c gguf-exists convert fx --to gguf -o out/g-f32.gguf --type f32
  c gguf-force convert fx --to gguf -o out/g-f32.gguf --type f32 --force -q
  c gguf-resume convert fx --to gguf -o out/g-split.gguf --type q8_0 --split-max-size 300K --resume
  c gguf-notok convert notok --to gguf -o out/g-x.gguf
  c gguf-tok convert notok --to gguf -o out/g-tok.gguf --tokenizer fx/tokenizer.model --name Tiny --add-bos -q
  c gguf-finish convert fx --to gguf -o out/g-x.gguf --finish
  c gguf-shard convert fx --to gguf -o out/g-sh.gguf --split-max-size 300K --shard 1/2 -q
  c gguf-shard-bad convert fx --to gguf -o out/g-x.gguf --shard 2/2
  c gguf-shard-syntax convert fx --to gguf -o out/g-x.gguf --shard x
  c gguf-shard-num convert fx --to gguf -o out/g-x.gguf --shard a/2
  c gguf-broken convert broken --to gguf -o out/g-x.gguf
  c gguf-nockpt convert nope --to gguf -o out/g-x.gguf
  c gguf-noto convert fx -o out/g-x.gguf
  c gguf-key convert notok --to gguf -o out/g-x.gguf --key-size 16 --no-error-stats -j 1
  # two faults at once: which one is reported first
  c gguf-two-faults convert notok --to gguf -o out/g-x.gguf --split-max-size abc
  c gguf-two-faults2 convert nope --to gguf -o out/g-x.gguf --shard 5/2

  # --- convert: safetensors
  for d in bf16 f16 f32 int8 int4; do
    c "st-$d" convert fx --to safetensors -o "out/st-$d" --dtype "$d"
  done
  c st-jax convert fx --to safetensors -o out/st-jax --layout jax --shard-size 200K -q
  c st-json convert fx --to safetensors -o out/st-json --dtype int8 --json
  c st-report convert fx --to safetensors -o out/st-report --dtype int4 --report -q
  c st-dry convert fx --to safetensors -o out/st-dry --dry-run
  c st-dry-int4 convert fx --to safetensors -o out/st-dry --dtype int4 --dry-run
  c st-shard0 convert fx --to safetensors -o out/st-sh --shard-size 200K --shard 0/2 -q
  c st-shard1 convert fx --to safetensors -o out/st-sh --shard-size 200K --shard 1/2
  c st-finish convert fx --to safetensors -o out/st-sh --shard-size 200K --finish
  c st-finish-q convert fx --to safetensors -o out/st-sh --shard-size 200K --finish -q
  c st-size-bad convert fx --to safetensors -o out/st-x --shard-size 5Q
  c st-size-half convert fx --to safetensors -o out/st-x --shard-size 0.5
  c st-dtype-bad convert fx --to safetensors -o out/st-x --dtype q8_0
  c st-exists convert fx --to safetensors -o out/st-bf16
  c st-resume convert fx --to safetensors -o out/st-bf16 --resume

  # --- tiny12 (xAI's own checkpoint, when ../shared is there) to every type
  if [ -d "$T12/ckpt-0" ]; then
    for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k; do
      c "t12-$t" convert "$T12" --to gguf -o "out/t12-$t.gguf" --type "$t" -q
    done
    c t12-q4km convert "$T12" --to gguf -o out/t12-q4km.gguf --quant q4_k_m -q
    for d in bf16 f16 f32 int8 int4; do
      c "t12-st-$d" convert "$T12" --to safetensors -o "out/t12-st-$d" --dtype "$d" -q
    done
    c t12-inspect inspect "$T12" --json
  fi

  # --- inspect outputs
  c inspect-gguf inspect out/g-q4km.gguf
  c inspect-gguf-json inspect out/g-q4km.gguf --json
  c inspect-split inspect out/g-split-00001-of-00003.gguf
  c inspect-st inspect out/st-bf16
  c inspect-st-json inspect out/st-int4 --json
  c inspect-st-file inspect out/st-jax/model.safetensors.index.json

  # --- quantize
  c q-q4km quantize out/g-f32.gguf -o out/q-q4km.gguf --preset q4_k_m
  c q-mixed quantize out/g-f32.gguf -o out/q-mixed.gguf --quant experts=q4_k,attn=q8_0 --report
  c q-json quantize out/g-bf16.gguf -o out/q-json.gguf --preset q6_k --json
  c q-dry quantize out/g-f32.gguf -o out/q-dry.gguf --preset q4_0 --dry-run
  c q-requant quantize out/g-q8_0.gguf -o out/q-req.gguf --preset q4_0
  c q-requant-ok quantize out/g-q8_0.gguf -o out/q-req.gguf --preset q4_0 --allow-requantize -q
  c q-split quantize out/g-f32.gguf -o out/q-split.gguf --preset q8_0 --split-max-size 250K --no-error-stats -j 1 -q
  c q-split-set quantize out/g-split-00001-of-00003.gguf -o out/q-set.gguf --preset f16 -q
  c q-split-half quantize out/g-f32.gguf -o out/q-x.gguf --preset q8_0 --split-max-size 0.5
  c q-split-bad quantize out/g-f32.gguf -o out/q-x.gguf --preset q8_0 --split-max-size nope
  c q-exists quantize out/g-f32.gguf -o out/q-q4km.gguf --preset q4_k_m
  c q-force quantize out/g-f32.gguf -o out/q-q4km.gguf --preset q4_k_m --force -q
  c q-none quantize out/g-f32.gguf -o out/q-x.gguf
  c q-both quantize out/g-f32.gguf -o out/q-x.gguf --preset q8_0 --quant q8_0
  c q-badpreset quantize out/g-f32.gguf -o out/q-x.gguf --preset q9
  c q-badquant quantize out/g-f32.gguf -o out/q-x.gguf --quant experts=q9
  c q-noinput quantize nope.gguf -o out/q-x.gguf --preset q8_0
  c q-notgguf quantize fx/config.json -o out/q-x.gguf --preset q8_0
  c q-dry-badsize quantize out/g-f32.gguf -o out/q-x.gguf --preset q4_0 --dry-run --split-max-size nope

  # --- verify
  c v verify fx
  c v-json verify fx --json
  c v-write verify fx --write-manifest out/m.sha256 -q
  c v-manifest verify fx --manifest out/m.sha256 -j 1
  c v-manifest-json verify fx --manifest out/m.sha256 --json
  c v-torrent verify fx --torrent t.torrent --torrent-root fx -q
  c v-torrent-json verify fx --torrent t.torrent --torrent-root fx --json
  c v-nomanifest verify fx --manifest nope.sha256
  c v-notorrent verify fx --torrent nope.torrent
  c v-nockpt verify nope
  c v-broken verify broken --manifest out/m.sha256 --root fx --json
  cp -r fx bad && printf '\1' | dd of=bad/ckpt-0/tensor00004_000 bs=1 seek=5000 conv=notrunc status=none &&
    rm bad/ckpt-0/tensor00020_000
  c v-bad verify bad --manifest out/m.sha256 --torrent t.torrent --torrent-root bad --root bad -q
  c v-bad-json verify bad --manifest out/m.sha256 --torrent t.torrent --torrent-root bad --root bad --json
  c v-holes verify holes
  c v-holes-json verify holes --json

  # --- forward (owned elsewhere; here for the shared plumbing: exit codes, rendering)
  c fwd forward fx --tokens 1,2,3 --top-k 3
  c fwd-bad forward fx --tokens x

  # --- broken pipe counts as success
  { ./bin/grokit inspect fx | head -c 10 >/dev/null; echo "exit ${PIPESTATUS[0]}"; } >log/pipe.txt 2>&1
  { ./bin/grokit convert fx --to gguf -o out/g-pipe.gguf --dry-run | head -1 >/dev/null; echo "exit ${PIPESTATUS[0]}"; } >log/pipe-dry.txt 2>&1

  # --- every file written
  (cd out && find . -type f | LC_ALL=C sort | xargs sha256sum) >log/files.sha256
  cd "$WORK"
}

suite old "$OLD"
suite new "$NEW"
if diff -r -u "$WORK/old/log" "$WORK/new/log"; then
  echo "compare_cli: identical ($(ls "$WORK/old/log" | wc -l) records) in $WORK"
else
  echo "compare_cli: the two binaries differ in: $(diff -rq "$WORK/old/log" "$WORK/new/log" |
    sed -E 's#.*/log/([^ ]+)\.(txt|sha256) and .*#\1#' | tr '\n' ' ')"
  echo "(records in $WORK/{old,new}/log)"
  exit 1
fi
