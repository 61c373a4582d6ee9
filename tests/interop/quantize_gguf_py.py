#!/usr/bin/env python3
"""`grokit quantize` outputs read by gguf-py (the reference Python GGUF reader).

The committed fixture (fixtures/tiny) is converted to an F32 GGUF with `grokit convert`, then
requantized with `grokit quantize` to q8_0, q4_0, q4_k_m and q6_k (q4_0 also as a split set).
gguf-py's GGUFReader must read every output; general.file_type must be UINT32 with the preset's
llama_ftype; every tensor dequantized by gguf-py must lie within its codec's error bound of the
f32 input; and for the types gguf-py can encode (Q8_0, Q4_0, Q5_0, ...) gguf-py's own quantizer
must produce the same bytes from the same f32 values.

Usage: python tests/interop/quantize_gguf_py.py --grokit PATH --shared PATH --work TMPDIR
Prints `N passed, M failed` last; exits non-zero on any failure.
"""
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, args  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q6_k": 18}
# Max |error| per block as a fraction of the block's max |value| (see tests/quantize.rs).
BOUNDS = {"F32": 0.0, "F16": 1 / 2048, "BF16": 1 / 256, "Q8_0": 1 / 254, "Q4_0": 1.01 / 8, "Q5_0": 1.01 / 16, "Q5_1": 1.01 / 15,
          "Q4_1": 1.01 / 7.5, "Q4_K": 1 / 6, "Q5_K": 1 / 12, "Q6_K": 1 / 40}
ENCODABLE = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}


def main():
    a = args()
    c = Checks("quantize_gguf_py")
    import numpy as np
    import gguf
    from gguf import quants

    work = Path(a.work)
    f32 = work / "tiny-f32.gguf"

    def run(cmd):
        r = subprocess.run([a.grokit, *cmd], capture_output=True, text=True)
        c.check(r.returncode == 0, f"grokit {' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.returncode == 0

    if not run(["convert", str(REPO / "fixtures/tiny"), "--to", "gguf", "-o", str(f32), "--type", "f32", "--force", "-q"]):
        c.finish()
    ref = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in gguf.GGUFReader(str(f32)).tensors}

    def check_file(label, path, preset):
        r = gguf.GGUFReader(str(path))
        ft = r.fields.get("general.file_type")
        c.check(ft is not None and ft.types[0] == gguf.GGUFValueType.UINT32, f"{label}: general.file_type is UINT32")
        c.check(ft is not None and int(ft.parts[ft.data[0]][0]) == FTYPES[preset], f"{label}: file_type {FTYPES[preset]}")
        return r.tensors

    def check_tensors(label, tensors):
        seen = set()
        for t in tensors:
            seen.add(t.name)
            ty = t.tensor_type.name
            x = ref[t.name]
            raw = np.asarray(t.data)
            y = np.asarray(quants.dequantize(raw.view(np.uint8) if ty != "F32" else raw, t.tensor_type), dtype=np.float32).reshape(-1)
            if y.size != x.size:
                c.check(False, f"{label}: {t.name} has {y.size} values, expected {x.size}")
                continue
            be = max(32, quants.GGML_QUANT_SIZES[t.tensor_type][0])
            xb, yb = x.reshape(-1, be), y.reshape(-1, be)
            amax = np.abs(xb).max(axis=1)
            err = np.abs(xb - yb).max(axis=1)
            ok = bool(np.all(err <= BOUNDS[ty] * amax + amax / 1024 + 1e-7))
            c.check(ok, f"{label}: {t.name} ({ty}) decodes within its bound (worst {float((err / np.maximum(amax, 1e-30)).max()):.4g})")
            if ty in ENCODABLE:
                enc = np.asarray(quants.quantize(x.reshape(1, -1), t.tensor_type)).view(np.uint8).reshape(-1)
                c.check(enc.tobytes() == raw.view(np.uint8).tobytes(), f"{label}: {t.name} ({ty}) equals gguf-py's encoding")
        c.check(seen == set(ref), f"{label}: tensor names")

    for preset in FTYPES:
        out = work / f"tiny-{preset}.gguf"
        if run(["quantize", str(f32), "-o", str(out), "--preset", preset, "--force", "-q"]):
            check_tensors(preset, check_file(preset, out, preset))

    # A split output: every shard readable, the union equals the single file's tensors.
    if run(["quantize", str(f32), "-o", str(work / "tiny-split.gguf"), "--preset", "q4_0", "--split-max-size", "200K", "--force", "-q"]):
        shards = sorted(work.glob("tiny-split-*-of-*.gguf"))
        c.check(len(shards) >= 2, f"split: {len(shards)} shards")
        tensors = []
        for i, s in enumerate(shards):
            r = gguf.GGUFReader(str(s))
            no = r.fields.get("split.no")
            c.check(no is not None and int(no.parts[no.data[0]][0]) == i, f"split: {s.name} split.no")
            tensors += list(r.tensors)
        if shards:
            check_file("split", shards[0], "q4_0")
        check_tensors("split", tensors)
    c.finish()


if __name__ == "__main__":
    main()
