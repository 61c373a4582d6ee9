#!/usr/bin/env bash
# Coverage-guided fuzzing of grokit's parsers with cargo-fuzz (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all targets)
#
# Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only flags (-Zsanitizer=address);
# on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them (set below). Seeds are generated from the
# committed fixtures and tests/fuzz/seeds.py into tests/fuzz/corpus/ (not committed). Each target
# runs single-process (-jobs=1 equivalent: one libFuzzer worker). Exits non-zero on the first
# crash; the reproducer is in tests/fuzz/artifacts/<target>/ — turn it into a regression test in
# tests/hostile.rs named after what it found, then fix the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(pickle_numpy gguf safetensors torrent tokenizer npy manifest gguf_tokenizer)
fi
export RUSTC_BOOTSTRAP=1
FUZZ=tests/fuzz
CORPUS="$FUZZ/corpus"

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not installed: cargo install cargo-fuzz" >&2; exit 2; }

# Seeds: the fixture's release pickles and tokenizer, and small synthetic files of each format.
mkdir -p "$CORPUS"/{pickle_numpy,gguf,safetensors,torrent,tokenizer,npy,manifest,gguf_tokenizer}
for f in fixtures/tiny/ckpt-0/tensor0000[0-5]_000; do cp -f "$f" "$CORPUS/pickle_numpy/"; done
cp -f fixtures/tiny/tokenizer.model "$CORPUS/tokenizer/seed-tiny.model"
if command -v python3 >/dev/null; then
    python3 tests/fuzz/seeds.py "$CORPUS"
else
    echo "note: python3 not found; gguf/safetensors/torrent/npy/manifest/gguf_tokenizer start from an empty corpus" >&2
fi

cargo fuzz build --fuzz-dir "$FUZZ"
status=0
for t in "${TARGETS[@]}"; do
    echo "== $t ($SECS s)"
    log="$FUZZ/artifacts/$t.log"
    mkdir -p "$FUZZ/artifacts/$t"
    if ! cargo fuzz run --fuzz-dir "$FUZZ" "$t" "$CORPUS/$t" -- \
        -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$FUZZ/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        echo "CRASH in $t: see $log and $FUZZ/artifacts/$t/" >&2
        tail -40 "$log" >&2
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb" "$log" | sed "s/^/  $t /" || true
done
exit $status
