#!/usr/bin/env python3
"""grokit's i-quants, importance-weighted encoders and importance-matrix files against ggml and
llama.cpp themselves (issue #15).

1. Codebooks: ggml's own tables (dumped by tests/interop/ggml_quant_ref.c, our small driver
   linked against the libggml-base that scripts/build_llama_cpp.sh builds) equal grokit's entry
   by entry (quant_dump --tables), and grokit's quantization lattices equal the `kgrid_*` index
   tables in ggml-quants.c's iq2xs_init_impl / iq3xs_init_impl.
2. Codecs: `ggml_quantize_chunk` and grokit's `quantize_row_weighted` give the same bytes for
   every i-quant and every weighted type, with and without importance weights, on seeded rows
   with zero blocks, tiny blocks, outliers and zero weights; both dequantize ggml's bytes to the
   same floats. The golden vectors committed in src/quant/golden_tests.rs are re-derived here.
3. Files: llama-imatrix computes importance matrices (GGUF and legacy .dat) for the F32 GGUF
   that `grokit convert` makes of ../shared/reference/tiny12 (skipped without it) and of the
   fixture, on this repository's docs as text; grokit reads both (`inspect`), rewrites them
   (`imatrix-convert` to GGUF and .dat), and for every llama-quantize preset grokit implements
   `llama-quantize --imatrix F` and `grokit quantize --imatrix F` write byte-identical tensors,
   for llama-imatrix's files and for grokit's rewritten ones; `grokit convert --quant P
   --imatrix F` too, except the Q8_0 matrices it copies losslessly from the release's int8.
   The presets that need no matrix are also compared without one.

Usage: python tests/interop/iquant_ggml.py --grokit PATH --shared PATH --work TMPDIR [--examples DIR]
Prints `N passed, M failed` last; exits non-zero on any failure.
"""
import glob
import time
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, args  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
a = args()
C = Checks("iquant_ggml")
T0 = time.time()


def stage(what):
    print(f"[{time.time() - T0:6.1f} s] {what}", flush=True)

WORK = Path(a.work)
THREADS = "2"
QDUMP = os.path.join(a.examples, "quant_dump")

# --- llama.cpp and our driver ---------------------------------------------------------------
r = subprocess.run(["bash", str(REPO / "scripts" / "build_llama_cpp.sh")], capture_output=True, text=True)
sys.stderr.write(r.stderr[-2000:])
if r.returncode != 0 or not r.stdout.strip():
    C.check(False, f"llama.cpp build: scripts/build_llama_cpp.sh exited {r.returncode}")
    C.finish()
LDIR = Path(r.stdout.strip().splitlines()[-1])
LQ, LI = LDIR / "bin" / "llama-quantize", LDIR / "bin" / "llama-imatrix"
srcs = glob.glob(str(LDIR / "src" / "*" / "vendor" / "llama.cpp" / "ggml"))
C.check(bool(srcs) and LQ.exists() and LI.exists(), f"llama.cpp tools and ggml sources in {LDIR}")
if not srcs:
    C.finish()
GGML = Path(srcs[0])
REF = WORK / "ggml_quant_ref"
r = subprocess.run(["cc", "-O2", "-std=gnu11", "-o", str(REF), str(REPO / "tests/interop/ggml_quant_ref.c"),
                    f"-I{GGML / 'include'}", f"-I{GGML / 'src'}", f"-L{LDIR / 'build' / 'bin'}", "-lggml-base",
                    f"-Wl,-rpath,{LDIR / 'build' / 'bin'}", "-lm"], capture_output=True, text=True)
C.check(r.returncode == 0, f"compile ggml_quant_ref.c: {r.stderr[-500:]}")
if r.returncode != 0 or not os.access(QDUMP, os.X_OK):
    C.check(os.access(QDUMP, os.X_OK), f"quant_dump example at {QDUMP} (cargo build --release --examples)")
    C.finish()


def sh(cmd, what):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    C.check(r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.returncode == 0


stage("codebooks")
# --- 1. codebooks -----------------------------------------------------------------------------
ta, tb = WORK / "tables-ggml", WORK / "tables-grokit"
ta.mkdir(exist_ok=True)
tb.mkdir(exist_ok=True)
sh([REF, "tables", ta], "ggml tables")
sh([QDUMP, "--tables", tb], "grokit tables")
for name, dt in [("kvalues_iq4nl", np.int8), ("ksigns_iq2xs", np.uint8), ("iq2xxs_grid", np.uint64),
                 ("iq2xs_grid", np.uint64), ("iq2s_grid", np.uint64), ("iq3xxs_grid", np.uint32),
                 ("iq3s_grid", np.uint32)]:
    x = np.fromfile(ta / f"{name}.bin", dtype=dt)
    y = np.fromfile(tb / f"{name}.bin", dtype=dt)
    bad = int(np.count_nonzero(x != y)) if x.size == y.size else -1
    C.check(x.size > 0 and bad == 0, f"{name}: {x.size} entries, {bad} differ")
kmask = np.fromfile(ta / "kmask_iq2xs.bin", dtype=np.uint8)
C.check(list(kmask) == [1 << j for j in range(8)], "kmask_iq2xs is 1 << j (grokit computes it)")
src = (GGML / "src" / "ggml-quants.c").read_text()
for cname, gname in [("kgrid_2bit_256", "iq2_xxs"), ("kgrid_2bit_512", "iq2_xs"), ("kgrid_2bit_1024", "iq2_s"),
                     ("kgrid_256", "iq3_xxs"), ("kgrid_512", "iq3_s")]:
    m = re.search(r"static const uint16_t %s\[\d+\] = \{(.*?)\};" % cname, src, re.S)
    want = [int(v) for v in m.group(1).replace("\n", " ").split(",") if v.strip()] if m else []
    got = list(np.fromfile(tb / f"kgrid_{gname}.bin", dtype=np.uint16))
    C.check(len(want) > 0 and want == got, f"{gname} lattice = ggml's {cname} ({len(want)} entries)")

stage("codecs")
# --- 2. codecs --------------------------------------------------------------------------------
TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
         "iq4_nl", "iq4_xs", "iq3_xxs", "iq3_s", "iq2_xxs", "iq2_xs", "iq2_s"]
NEED_W = {"iq2_xxs", "iq2_xs"}
cw = WORK / "codec"
cw.mkdir(exist_ok=True)
for seed in (1,):
    rng = np.random.default_rng(seed)
    n, rows, nmat = 1024, 8, 2
    x = (rng.standard_normal((rows, n)) * 0.02).astype(np.float32)
    x[0, :64] = 0
    x[1, :32] = 1e-9
    x[2] *= np.float32(100)
    x[3, 100:140] = np.float32(0.5)
    x[4, 5] = np.float32(3.0)
    qw = (rng.random((nmat, n)) ** 3 * 3).astype(np.float32)
    qw[:, :16] = 0
    x.tofile(cw / "x.f32")
    qw.tofile(cw / "qw.f32")
    for t in TYPES:
        for weighted in (False, True):
            if t in NEED_W and not weighted:
                continue
            extra = [cw / "qw.f32"] if weighted else []
            tag = f"seed {seed} {t} {'weighted' if weighted else 'plain'}"
            if not (sh([REF, "quant", t, n, cw / "x.f32", cw / "a.bin", *extra], f"ggml {tag}")
                    and sh([QDUMP, "--rows", n, t, cw / "x.f32", cw / "b.bin", *extra], f"grokit {tag}")):
                continue
            A, B = (cw / "a.bin").read_bytes(), (cw / "b.bin").read_bytes()
            C.check(A == B, f"{tag}: bytes ({len(A)} vs {len(B)})")
            if (sh([REF, "dequant", t, n, cw / "a.bin", cw / "da.f32"], f"ggml dequant {tag}")
                    and sh([QDUMP, "--dequant", t, cw / "a.bin", cw / "db.f32"], f"grokit dequant {tag}")):
                C.check((cw / "da.f32").read_bytes() == (cw / "db.f32").read_bytes(), f"{tag}: dequantized values")

stage("golden vectors")
# the committed golden vectors come from ggml
g = np.zeros(4096, np.float32)
st = 0x12345678
for i in range(4096):
    st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
    g[i] = (np.float32(st >> 8) * np.float32(1.0 / 8388608.0) - np.float32(1.0)) * np.float32(1.0 / (1 << ((i // 256) % 8)))
g[:32] = 0
g[32:64] = (np.arange(32, 64, dtype=np.float32) - np.float32(48.0)) * np.float32(0.25)
st = 0x9E3779B9
w = np.zeros(1024, np.float32)
for i in range(1024):
    st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
    f = np.float32(st >> 8) * np.float32(1.0 / 16777216.0)
    w[i] = 0 if i % 37 == 5 else np.float32(4.0) * f * f
g.tofile(cw / "golden.f32")
w.tofile(cw / "golden_w.f32")
rust = (REPO / "src/quant/golden_tests.rs").read_text()
rows = re.findall(r"\(\s*GgmlType::(\w+),\s*(true|false),\s*(\d+),\s*\"([0-9a-f]{64})\"", rust)
C.check(len(rows) >= 20, f"GOLDEN_ROWS parsed from golden_tests.rs ({len(rows)})")
for ty, weighted, nbytes, want in rows:
    extra = [cw / "golden_w.f32"] if weighted == "true" else []
    if sh([REF, "quant", ty.lower(), 1024, cw / "golden.f32", cw / "g.bin", *extra], f"ggml golden {ty}"):
        b = (cw / "g.bin").read_bytes()
        C.check(len(b) == int(nbytes) and hashlib.sha256(b).hexdigest() == want,
                f"golden {ty} weighted={weighted}: ggml's bytes hash to the committed SHA-256")

# --- 3. files end to end ----------------------------------------------------------------------
try:
    import gguf
except ImportError:
    gguf = None
C.check(gguf is not None, "gguf-py importable")
if gguf is None:
    C.finish()


def tensors(path):
    return {t.name: (t.tensor_type.name, np.asarray(t.data).tobytes()) for t in gguf.GGUFReader(str(path)).tensors}


def same_tensors(lpath, gpath, what, skip_q8_0=False):
    la, gb = tensors(lpath), tensors(gpath)
    bad = [n for n in sorted(la) if n not in gb or gb[n][0] != la[n][0]
           or (gb[n][1] != la[n][1] and not (skip_q8_0 and la[n][0] == "Q8_0"))]
    C.check(not bad and set(la) == set(gb), f"{what}: {len(la)} tensors, {len(bad)} differ {bad[:3]}")


PRESETS = ["Q4_K_M", "IQ4_XS", "IQ3_S", "IQ2_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S",
           "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ3_M", "IQ3_XS",
           "IQ3_XXS", "IQ2_XXS", "IQ2_S", "IQ2_M"]
KEY = ["Q4_K_M", "IQ4_XS", "IQ3_S", "IQ2_XS"]
NEEDS = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S", "IQ3_XXS", "IQ3_XS"}
text = WORK / "calibration.txt"
text.write_text("\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]))

models = [("fixture", REPO / "fixtures" / "tiny")]
tiny12 = Path(a.shared) / "reference" / "tiny12"
if tiny12.exists():
    models.insert(0, ("tiny12", tiny12))
else:
    print(f"SKIP tiny12: {tiny12} not found")

for label, ckpt in models:
    stage(label)
    d = WORK / label
    d.mkdir(exist_ok=True)
    f32 = d / "f32.gguf"
    if not sh([a.grokit, "convert", ckpt, "--to", "gguf", "--type", "f32", "-o", f32, "--force", "-q"], f"{label}: convert f32"):
        continue
    im, dat = d / "llama.imatrix.gguf", d / "llama.imatrix.dat"
    base = [LI, "-m", f32, "-f", text, "-c", "128", "-b", "128", "-t", THREADS, "--chunks", "4"]
    if not (sh([*base, "-o", im], f"{label}: llama-imatrix (GGUF)")
            and sh([*base, "-o", dat, "--output-format", "dat"], f"{label}: llama-imatrix (.dat)")):
        continue
    for p in (im, dat):
        r = subprocess.run([a.grokit, "inspect", p, "--json"], capture_output=True, text=True)
        ok = r.returncode == 0 and '"format": "imatrix"' in r.stdout
        C.check(ok, f"{label}: grokit inspect reads {p.name}")
    re_gguf, re_dat, re_back = d / "grokit.imatrix.gguf", d / "grokit.imatrix.dat", d / "grokit-from-dat.imatrix.gguf"
    sh([a.grokit, "imatrix-convert", im, "-o", re_gguf, "--force", "-q"], f"{label}: rewrite GGUF")
    sh([a.grokit, "imatrix-convert", im, "-o", re_dat, "--force", "-q"], f"{label}: GGUF -> dat")
    sh([a.grokit, "imatrix-convert", dat, "-o", re_back, "--force", "-q"], f"{label}: dat -> GGUF")
    lo, go = d / "l.gguf", d / "g.gguf"

    def both(preset, matrix, grokit_matrix=None, tag=""):
        lcmd = [LQ, *(["--imatrix", matrix] if matrix else []), f32, lo, preset, THREADS]
        gm = grokit_matrix or matrix
        gcmd = [a.grokit, "quantize", f32, "-o", go, "--preset", preset.lower(), "--force", "-q",
                *(["--imatrix", gm] if gm else [])]
        if sh(lcmd, f"{label}: llama-quantize {preset} {tag}") and sh(gcmd, f"{label}: grokit quantize {preset} {tag}"):
            same_tensors(lo, go, f"{label} {preset} {tag}")

    # every preset on tiny12 (its 512-wide expert rows take the i-quants; its 96-wide ones the
    # fallbacks); the fixture (64/344-wide rows: fallbacks only) with the key presets
    for preset in PRESETS if label == "tiny12" else KEY:
        both(preset, im, tag="--imatrix llama-imatrix.gguf")
    for preset in KEY:
        if preset not in NEEDS:
            both(preset, None, tag="without a matrix")
        both(preset, re_gguf, im, tag="llama-quantize with grokit's rewritten GGUF, grokit with llama-imatrix's")
    for preset in ["IQ4_XS", "IQ2_XS"]:
        both(preset, dat, tag="--imatrix llama-imatrix.dat")
        both(preset, re_dat, tag="--imatrix grokit's .dat")
        both(preset, re_back, tag="--imatrix grokit's GGUF from .dat")
    for preset in KEY if label == "tiny12" else []:
        # convert straight from the checkpoint with the matrix
        co = d / "c.gguf"
        if (sh([LQ, "--imatrix", im, f32, lo, preset, THREADS], f"{label}: llama-quantize {preset}")
                and sh([a.grokit, "convert", ckpt, "--to", "gguf", "-o", co, "--quant", preset.lower(),
                        "--imatrix", im, "--force", "-q"], f"{label}: grokit convert {preset} --imatrix")):
            same_tensors(lo, co, f"{label} convert --quant {preset.lower()} --imatrix (Q8_0: lossless int8, skipped)", True)
    # a type that needs a matrix, without one, is refused with exit 2 naming a tensor (the
    # fixture's rows, 64 and 344 wide, fall back to types that need none)
    if label != "tiny12":
        continue
    r = subprocess.run([a.grokit, "quantize", f32, "-o", go, "--preset", "iq2_xxs", "--force"], capture_output=True, text=True)
    C.check(r.returncode == 2 and "needs an importance matrix" in r.stderr and ".weight" in r.stderr,
            f"{label}: iq2_xxs without a matrix: exit {r.returncode}: {r.stderr.strip()[-200:]}")

stage("done")
C.finish()
