#!/usr/bin/env python3
"""grokit's ggml codecs vs gguf-py (`gguf.quants`), the Python reference shipped with llama.cpp.

Checks, on the §5.6 golden input and on a larger random input:
  * encode: grokit bytes == gguf-py bytes for every type gguf-py can quantize
    (BF16, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);
  * decode: gguf-py's dequantization of grokit's bytes == grokit's own dequantization
    (bit for bit) for every type gguf-py can dequantize (adds Q2_K, Q3_K, Q4_K, Q5_K, Q6_K);
  * golden SHA-256 of grokit's bytes (output-formats.md §5.6), through the example binary.

grokit is driven through `examples/quant_dump.rs` (built with cargo unless --quant-dump is
given). Usage:
  python tests/interop/quant_gguf_py.py --grokit PATH --shared PATH --work TMPDIR [--quant-dump BIN]
Prints `N passed, M failed` last; exits non-zero on any failure.
"""
import argparse
import hashlib
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

GOLDEN = {
    "Q4_0": "2b413429ceddc51ffa501604993bb6a69c6052508d464b9b03596b4b09d72632",
    "Q4_1": "8045a4675bc5f189d7df91fbc744e36489a318b06f108164a499532d6991dbd0",
    "Q5_0": "0bc2573bc7b2aac265c4db196ac570c9e0a5ad5328a615345b0cbfa40020cdb7",
    "Q5_1": "50d70d61d7dc8814bee074678cc98777cb2a18fc49c505e96e007a80b25be3df",
    "Q8_0": "1710abf52b2ccd1d702b6f8ed20e382e5f6936635bdd13815143fa779cd8bd55",
    "Q2_K": "9fff912ed3d6664fe3abe90f766ac3d0ce5df7f6a416b9e98c410e3569daa408",
    "Q3_K": "fec28863b488fe55aabec70338c0442321c4e3d8d71be7e74b74cb51a14a29cb",
    "Q4_K": "0b7e06d4faf82a1ec5ad50a75ee8cca33f720af75ab25cb6cde9011a3af12320",
    "Q5_K": "b8e489476643cb0cf650dd3c7abc5e8764290d76afef86ab95bb26ecf47cc046",
    "Q6_K": "eec593816a655cc2c5032c0c4deab5abf87e47455ad68103128d9f08ead337a2",
    "Q8_K": "7efe2bfb61aed38526a7224eab0a510869bf3129aa7705269f4c1d746345ce02",
}
ENCODE_TYPES = ["BF16", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
DECODE_TYPES = ENCODE_TYPES + ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

passed = 0
failed = 0


def check(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def golden_input(np):
    s = 0x12345678
    x = np.empty(4096, dtype=np.float32)
    for i in range(4096):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        f = np.float32(s >> 8) * np.float32(2.0 ** -23) - np.float32(1.0)
        x[i] = np.float32(f) * np.float32(2.0 ** -((i // 256) % 8))
    x[:32] = 0.0
    for i in range(32, 64):
        x[i] = np.float32((i - 48) * 0.25)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grokit", help="grokit binary (unused: the codecs are driven via the example)")
    ap.add_argument("--shared", help="../shared (unused)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--quant-dump", help="prebuilt examples/quant_dump binary")
    ap.add_argument("--examples", help="directory of prebuilt example binaries (CI)")
    a = ap.parse_args()
    if not a.quant_dump and a.examples:
        a.quant_dump = os.path.join(a.examples, "quant_dump")
    os.makedirs(a.work, exist_ok=True)

    try:
        import numpy as np
        from gguf import GGMLQuantizationType as Q
        from gguf import quants
    except ImportError as e:
        print(f"SKIP: gguf-py/numpy not importable ({e})")
        print("0 passed, 0 failed")
        return 0

    exe = a.quant_dump
    if not exe:
        subprocess.run(["cargo", "build", "--quiet", "--example", "quant_dump"], cwd=REPO, check=True)
        exe = os.path.join(REPO, "target", "debug", "examples", "quant_dump")

    def grok_q(ty, x):
        inp = os.path.join(a.work, "in.f32")
        out = os.path.join(a.work, f"out.{ty}")
        x.astype("<f4").tofile(inp)
        subprocess.run([exe, ty.lower(), inp, out], check=True)
        return np.fromfile(out, dtype=np.uint8)

    def grok_dq(ty, b):
        inp = os.path.join(a.work, f"in.{ty}")
        out = os.path.join(a.work, "out.f32")
        b.tofile(inp)
        subprocess.run([exe, "--dequant", ty.lower(), inp, out], check=True)
        return np.fromfile(out, dtype="<f4")

    gx = golden_input(np)
    check(hashlib.sha256(gx.astype("<f4").tobytes()).hexdigest()
          == "f814c768cf4f1bd73ee6b0f6bef4db7ccae378d8a65970dfa5e87114ff051987", "golden input generator")

    # Golden hashes through the binary.
    for ty, want in GOLDEN.items():
        got = hashlib.sha256(grok_q(ty, gx).tobytes()).hexdigest()
        check(got == want, f"golden sha256 {ty}", got)

    # A larger input: gaussian weights at several scales, plus exact ramps that hit rounding ties.
    rng = np.random.default_rng(1234)
    rx = (rng.standard_normal(1 << 18).astype(np.float32)
          * np.repeat(np.float32(2.0) ** -rng.integers(0, 12, (1 << 18) // 256), 256).astype(np.float32))
    ramp = (np.arange(1 << 12, dtype=np.float32) % 64 - 32) * np.float32(0.125)
    rx[: ramp.size] = ramp

    for label, x in (("golden", gx), ("random", rx)):
        for ty in ENCODE_TYPES:
            qt = getattr(Q, ty)
            ref = np.asarray(quants.quantize(x.reshape(1, -1), qt)).view(np.uint8).reshape(-1)
            got = grok_q(ty, x)
            if ref.size != got.size:
                check(False, f"encode {ty} {label}", f"size {got.size} vs gguf-py {ref.size}")
                continue
            bb = quants.GGML_QUANT_SIZES[qt][1]
            diff = np.nonzero((ref.reshape(-1, bb) != got.reshape(-1, bb)).any(axis=1))[0]
            check(diff.size == 0, f"encode {ty} {label} ({ref.size // bb} blocks) == gguf-py",
                  f"{diff.size} blocks differ, first {diff[:5].tolist()}")

        for ty in DECODE_TYPES:
            qt = getattr(Q, ty)
            b = grok_q(ty, x)
            ref = np.asarray(quants.dequantize(b, qt), dtype=np.float32).reshape(-1)
            got = grok_dq(ty, b)
            same = ref.size == got.size and np.array_equal(ref.view(np.uint32), got.view(np.uint32))
            detail = ""
            if not same and ref.size == got.size:
                detail = f"max |diff| {np.abs(ref - got).max()} at {int(np.abs(ref - got).argmax())}"
            check(same, f"decode {ty} {label}: gguf-py(grokit bytes) == grokit, bit for bit", detail)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
