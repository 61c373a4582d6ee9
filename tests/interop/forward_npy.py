"""Interop: grokit's .npy codec against numpy, and the reference forward pass against the
release's golden logits (tiny12), through examples/forward_npy.rs.

python tests/interop/forward_npy.py --grokit PATH/TO/grokit --shared PATH/TO/shared --work TMPDIR
(uses --examples/forward_npy when built, as .ci/run does; otherwise builds it with cargo.)
"""
import os, shutil, subprocess, sys, json
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import args, Checks

a = args()
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C = Checks("forward_npy")

def check(name, ok, detail=""):
    C.check(ok, f"{name} {detail}")
    if ok:
        print(f"PASS {name} {detail}")

exe = os.path.join(a.examples, "forward_npy")
if not os.path.exists(exe):
    subprocess.run(["cargo", "build", "--quiet", "--example", "forward_npy"], cwd=repo, check=True)
    exe = os.path.join(repo, "target", "debug", "examples", "forward_npy")
HAVE_ZSTD = shutil.which("zstd") is not None
if not HAVE_ZSTD:
    print("SKIP .npy.zst byte checks: no zstd CLI")

def run(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True)

def unzstd(p):
    return subprocess.run(["zstd", "-d", "-c", "-q", p], capture_output=True, check=True).stdout

# 1. numpy.save -> grokit read -> grokit write is byte-identical (plain and zstd)
rng = np.random.default_rng(0)
for shape in [(), (0,), (5,), (2, 3), (2, 42, 512), (1, 1, 1, 1), (3, 0, 2), (1000, 7)]:
    arr = rng.standard_normal(shape).astype(np.float32)
    src = os.path.join(a.work, "in.npy")
    np.save(src, arr)
    want = open(src, "rb").read()
    for suffix in [".npy", ".npy.zst"] if HAVE_ZSTD else [".npy"]:
        out = os.path.join(a.work, "out" + suffix)
        r = run("roundtrip", src, out)
        got = (unzstd(out) if suffix.endswith("zst") else open(out, "rb").read()) if r.returncode == 0 else b""
        check(f"roundtrip {shape} {suffix}", got == want, r.stderr.strip())
    # grokit reads its own .npy.zst back (no zstd CLI needed)
    z = os.path.join(a.work, "self.npy.zst")
    back = os.path.join(a.work, "back.npy")
    ok = run("roundtrip", src, z).returncode == 0 and run("roundtrip", z, back).returncode == 0
    check(f"zst self-roundtrip {shape}", ok and open(back, "rb").read() == want)

# 2. files grokit must refuse (not panic): f64, fortran order, truncated
for name, arr, fortran in [("f8", np.zeros((2, 2)), False), ("fortran", np.asfortranarray(np.zeros((2, 3), np.float32)), True)]:
    src = os.path.join(a.work, f"bad_{name}.npy")
    np.save(src, arr)
    r = run("roundtrip", src, os.path.join(a.work, "x.npy"))
    check(f"refuses {name}", r.returncode != 0 and "panicked" not in r.stderr, (r.stderr.strip().splitlines() or [""])[0])
src = os.path.join(a.work, "trunc.npy")
np.save(src, np.zeros((4, 4), np.float32))
open(src, "r+b").truncate(100)
r = run("roundtrip", src, os.path.join(a.work, "x.npy"))
check("refuses truncated", r.returncode != 0 and "panicked" not in r.stderr)

# 3. forward pass on tiny12 vs golden logits from the release's JAX code
tiny = os.path.join(a.shared, "reference", "tiny12")
toks = json.load(open(os.path.join(tiny, "tokens.json")))["tokens"]
for prec in ["f32", "bf16"]:
    gold = np.load(os.path.join(tiny, f"logits_{prec}.npy"))
    for suffix in [".npy", ".npy.zst"] if HAVE_ZSTD else [".npy"]:
        out = os.path.join(a.work, f"logits_{prec}{suffix}")
        r = run("forward", tiny, os.path.join(tiny, "tokens.json"), prec, out)
        if r.returncode != 0:
            check(f"forward {prec} {suffix}", False, r.stderr.strip()[:300])
            continue
        if suffix.endswith("zst"):
            raw = unzstd(out)
            plain = open(os.path.join(a.work, f"logits_{prec}.npy"), "rb").read()
            check(f"forward {prec} .npy.zst decompresses to the .npy bytes", raw == plain)
            continue
        lo = np.load(out)
        check(f"forward {prec} shape", lo.shape == gold.shape and lo.dtype == np.float32, str(lo.shape))
        d = np.abs(lo - gold).max()
        top1 = (lo.argmax(-1) == gold.argmax(-1)).all()
        limit = 1e-4 if prec == "f32" else 0.25
        check(f"forward {prec} max|d| <= {limit}", d <= limit, f"max|d|={d:.3g}")
        check(f"forward {prec} top-1 equal at every position", bool(top1))

C.finish()
