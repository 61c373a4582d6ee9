#!/usr/bin/env bash
# Builds llama.cpp's CPU tools from the llama.cpp that PyPI's llama-cpp-python sdist vendors
# (vendor/llama.cpp): llama.cpp itself is only to be had from a package registry here.
# Produces, under $GROKIT_LLAMA_CPP_DIR (default ~/.cache/grokit-ci/llama.cpp-<version>):
#   bin/llama-quantize       llama.cpp's requantizer (the benchmark's reference)
#   bin/llama-bench          llama.cpp's prefill/decode benchmark (bench_forward.sh's peer)
#   bin/llama-perplexity     perplexity and KL divergence (bench_perplexity.sh, interop tests)
#   bin/llama-imatrix        importance matrices (imatrix interop tests and benchmark)
#   bin/grokit-llama-logits  tests/interop/llama_logits.c linked against libllama: prints
#                            llama.cpp's logits for given token ids (our own small driver)
#   build/bin/               libllama.so, libggml*.so (and the build tree's tools)
#   src/                     the unpacked sdist; .complete marks a finished build
# Idempotent: a cache with .complete for the same version and driver source is reused.
# Usage: scripts/build_llama_cpp.sh            (prints the cache dir on its last line)
# env: LLAMA_CPP_PYTHON_VERSION (0.3.36, vendors llama.cpp 0c1e57098), GROKIT_LLAMA_CPP_DIR,
#      JOBS (2), PIP (pip3). Measured: 20 min wall (9.3 min CPU) for a first build with -j2 on
#      2 cores shared with other jobs (load ~10); 3 s when the cache is complete.
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${GROKIT_LLAMA_CPP_DIR:-$HOME/.cache/grokit-ci/llama.cpp-$VERSION}
JOBS=${JOBS:-2}
DRIVER="$ROOT/tests/interop/llama_logits.c"
PIP=${PIP:-}
say() { echo "[build_llama_cpp] $*" >&2; }

TOOLS="llama-quantize llama-bench llama-perplexity llama-imatrix"
driver_hash=$(sha256sum "$DRIVER" | cut -c1-16)
KEY="$VERSION $driver_hash $TOOLS"
have_all() { for t in $TOOLS grokit-llama-logits; do [ -x "$DIR/bin/$t" ] || return 1; done; }
if [ -f "$DIR/.complete" ] && [ "$(cat "$DIR/.complete")" = "$KEY" ] && have_all; then
  say "cache complete: $DIR (llama-cpp-python $VERSION); nothing to do"
  echo "$DIR"
  exit 0
fi

start=$(date +%s)
mkdir -p "$DIR/bin"

# 1. the sdist. Only llama-cpp-python itself is forced to source: with `--no-binary :all:`
#    pip would also build its build backend's own dependencies (cmake, ninja) from source just
#    to read the metadata, which takes longer than the whole llama.cpp build.
SDIST=$(ls "$DIR"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
  if [ -z "$PIP" ]; then
    if command -v pip3 >/dev/null; then PIP=pip3; else PIP="python3 -m pip"; fi
  fi
  say "downloading llama-cpp-python==$VERSION sdist with $PIP"
  $PIP download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$DIR" >&2
  SDIST="$DIR/llama_cpp_python-$VERSION.tar.gz"
fi
[ -f "$SDIST" ] || { say "sdist not found after download: $SDIST"; exit 1; }

# 2. unpack
SRC="$DIR/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  say "unpacking $(basename "$SDIST")"
  rm -rf "$DIR/src"; mkdir -p "$DIR/src"
  tar xzf "$SDIST" -C "$DIR/src"
fi

# 3. cmake (Debian package `cmake`, listed in tests/interop/apt-packages.txt)
if ! command -v cmake >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "cmake missing; installing it with apt-get"
    (apt-get update -qq && apt-get install -y -qq cmake) >&2
  else
    say "cmake is required (apt-get install cmake)"; exit 1
  fi
fi

# 4. configure and build only what we use: libllama + ggml (shared) and llama-quantize.
#    GGML_NATIVE=OFF keeps the build portable (x86-64 baseline + AVX2/FMA kernels in ggml-cpu);
#    the reference quantizers live in ggml-base, which gets no ISA flags.
BUILD="$DIR/build"
say "configuring llama.cpp in $BUILD"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF -DGGML_OPENMP=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_LLGUIDANCE=OFF >"$DIR/cmake-configure.log" 2>&1 \
  || { tail -30 "$DIR/cmake-configure.log" >&2; exit 1; }
say "building llama, $TOOLS with -j$JOBS (log: $DIR/cmake-build.log)"
# shellcheck disable=SC2086
cmake --build "$BUILD" --config Release -j "$JOBS" --target llama $TOOLS \
  >"$DIR/cmake-build.log" 2>&1 || { tail -40 "$DIR/cmake-build.log" >&2; exit 1; }

# 5. the tool: a link into the build tree (it finds its shared libraries there via its RPATH)
LIB="$BUILD/bin"
for t in $TOOLS; do
  [ -x "$LIB/$t" ] || { say "$t missing after the build"; exit 1; }
  ln -sf "$LIB/$t" "$DIR/bin/$t"
done

# 6. our logits driver
say "compiling $(basename "$DRIVER")"
cc -O2 -std=c11 -o "$DIR/bin/grokit-llama-logits" "$DRIVER" \
  -I"$SRC/include" -I"$SRC/ggml/include" -L"$LIB" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$LIB" -lm

commit=$(grep -m1 -oE 'llama\.cpp@[0-9a-f]{7,40}' "$DIR/src/llama_cpp_python-$VERSION/CHANGELOG.md" || true)
echo "$KEY" > "$DIR/.complete"
say "done in $(( $(date +%s) - start )) s: llama-cpp-python $VERSION ${commit:+(vendors $commit)}"
echo "$DIR"
