#!/usr/bin/env python3
"""GGUF interop between grokit and gguf-py (the reference Python reader/writer).

Forward: `examples/gguf_sample.rs write` builds a single file and a split set holding every
metadata value type and F32/F16/BF16/Q8_0/Q4_K/I32 tensors; gguf-py's GGUFReader reads them and
every KV (type and value) and every tensor (type, ne, byte offset, bytes) is compared with what
grokit planned (expected.json, taken from the plan, not from grokit's reader).

Reverse: gguf-py's GGUFWriter writes a single file and a split set; `gguf_sample read` (grokit's
reader) prints them as JSON and everything is compared with what Python wrote.

Usage: python tests/interop/gguf_py_read.py --grokit PATH --shared PATH --work TMPDIR
       [--sample-bin PATH]  (default: cargo build --example gguf_sample in the repo)
Prints `N passed, M failed` last; exits non-zero on any failure.
"""
import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSED = 0
FAILED = 0


def check(cond, what):
    global PASSED, FAILED
    if cond:
        PASSED += 1
    else:
        FAILED += 1
        print(f"FAIL {what}")


def same_number(a, b, f32=False):
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    if f32:
        import numpy as np
        return np.float32(a).tobytes() == np.float32(b).tobytes()
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b) and math.copysign(1, float(a)) == math.copysign(1, float(b))
    return int(a) == int(b)


def same_value(vtype, elem, got, want):
    f32 = vtype == "FLOAT32" or elem == "FLOAT32"
    if vtype == "ARRAY":
        if not isinstance(got, list) or len(got) != len(want):
            return False
        if elem == "STRING":
            return list(got) == list(want)
        if elem == "BOOL":
            return [bool(x) for x in got] == [bool(x) for x in want]
        return all(same_number(g, w, f32) for g, w in zip(got, want))
    if vtype == "STRING":
        return got == want
    if vtype == "BOOL":
        return bool(got) == bool(want)
    return same_number(got, want, f32)


def build_sample_bin(args):
    if args.sample_bin:
        return Path(args.sample_bin)
    subprocess.run(["cargo", "build", "--quiet", "--example", "gguf_sample"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "examples" / "gguf_sample"


# ---- forward: grokit writes, gguf-py reads -----------------------------------------------

def field_json(field, gguf):
    """A gguf-py ReaderField as (type name, element type name or None, python value)."""
    t = field.types[0]
    elem = field.types[-1].name if t == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
    val = field.contents()
    if t == gguf.GGUFValueType.ARRAY and elem in ("FLOAT32", "FLOAT64"):
        # contents() converts to Python floats; keep the stored bits via parts for f32
        val = [float(field.parts[i][0]) for i in field.data]
    return t.name, elem, val


def compare_file_with_plan(path, want, gguf, label):
    r = gguf.GGUFReader(str(path))
    fields = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    check([k for k, _ in fields] == [kv["key"] for kv in want["kvs"]], f"{label}: key list and order")
    for kv in want["kvs"]:
        f = r.fields.get(kv["key"])
        if f is None:
            check(False, f"{label}: key {kv['key']} missing in gguf-py")
            continue
        t, elem, val = field_json(f, gguf)
        check(t == kv["type"], f"{label}: {kv['key']} type {t} != {kv['type']}")
        check(elem == kv["elem_type"], f"{label}: {kv['key']} element type {elem} != {kv['elem_type']}")
        check(same_value(t, elem, val, kv["value"]), f"{label}: {kv['key']} value {val!r} != {kv['value']!r}")
    check(len(r.tensors) == len(want["tensors"]), f"{label}: tensor count {len(r.tensors)}")
    for t, w in zip(r.tensors, want["tensors"]):
        n = w["name"]
        check(t.name == n, f"{label}: tensor name {t.name} != {n}")
        check(t.tensor_type.name == w["type"], f"{label}: {n} type {t.tensor_type.name} != {w['type']}")
        check([int(d) for d in t.shape] == w["ne"], f"{label}: {n} ne {list(t.shape)} != {w['ne']}")
        check(int(t.n_bytes) == w["nbytes"], f"{label}: {n} n_bytes {t.n_bytes} != {w['nbytes']}")
        check(int(t.data_offset) == w["offset"], f"{label}: {n} data offset {t.data_offset} != {w['offset']}")
        check(t.data.tobytes() == bytes.fromhex(w["hex"]), f"{label}: {n} bytes differ")
    check(os.path.getsize(path) == want["bytes"], f"{label}: file size")


def forward(sample_bin, work, gguf):
    out = work / "rust"
    subprocess.run([str(sample_bin), "write", str(out)], check=True, stdout=subprocess.DEVNULL)
    expected = json.loads((out / "expected.json").read_text())
    for want in expected["single"]:
        compare_file_with_plan(out / want["path"], want, gguf, f"grokit->gguf-py {want['path']}")
    n = len(expected["split"])
    for i, want in enumerate(expected["split"]):
        name = f"split-{i + 1:05d}-of-{n:05d}.gguf"
        check(want["path"] == name, f"split name {want['path']} != {name}")
        compare_file_with_plan(out / want["path"], want, gguf, f"grokit->gguf-py {name}")
        r = gguf.GGUFReader(str(out / want["path"]))
        check(r.fields["split.no"].types[0].name == "UINT16" and int(r.fields["split.no"].contents()) == i, f"{name}: split.no")
        check(r.fields["split.count"].types[0].name == "UINT16" and int(r.fields["split.count"].contents()) == n, f"{name}: split.count")
        total = sum(len(w["tensors"]) for w in expected["split"])
        tc = r.fields["split.tensors.count"]
        check(tc.types[0].name == "INT32" and int(tc.contents()) == total, f"{name}: split.tensors.count")
        if i > 0:
            check(len([k for k in r.fields if not k.startswith("GGUF.")]) == 3, f"{name}: only split keys")


# ---- reverse: gguf-py writes, grokit reads -----------------------------------------------

def py_sample(gguf, np):
    V = gguf.GGUFValueType
    kvs = [
        ("general.name", "gguf-py sample", V.STRING, None),
        ("py.u8", 250, V.UINT8, None), ("py.i8", -120, V.INT8, None),
        ("py.u16", 60000, V.UINT16, None), ("py.i16", -30000, V.INT16, None),
        ("py.u32", 4000000000, V.UINT32, None), ("py.i32", -2000000000, V.INT32, None),
        ("py.f32", 0.1, V.FLOAT32, None), ("py.bool", True, V.BOOL, None),
        ("py.string", "▁wörld <0x0A>", V.STRING, None), ("py.u64", 2**64 - 1, V.UINT64, None),
        ("py.i64", -2**63, V.INT64, None), ("py.f64", 1e-300, V.FLOAT64, None),
        ("py.arr_str", ["[PAD]", "", "▁▁"], V.ARRAY, V.STRING),
        ("py.arr_f32", [0.0, -1.0, 0.1], V.ARRAY, V.FLOAT32),
        ("py.arr_i32", [1, 2, -3], V.ARRAY, V.INT32),
        ("py.arr_u32", [7, 4000000000], V.ARRAY, V.UINT32),
        ("py.arr_u8", [0, 255], V.ARRAY, V.UINT8),
        ("py.arr_i64", [-5, 2**62], V.ARRAY, V.INT64),
        ("py.arr_f64", [2.5, -0.125], V.ARRAY, V.FLOAT64),
        ("py.arr_bool", [False, True], V.ARRAY, V.BOOL),
        ("py.arr_u16", [1, 65535], V.ARRAY, V.UINT16),
        ("py.arr_i16", [-1, 32767], V.ARRAY, V.INT16),
        ("py.arr_i8", [-1, 127], V.ARRAY, V.INT8),
        ("py.arr_u64", [0, 2**64 - 1], V.ARRAY, V.UINT64),
    ]
    rng = np.random.default_rng(7)
    Q = gguf.GGMLQuantizationType
    tensors = [  # (name, array, raw_dtype, type name, numpy shape)
        ("t.f32", rng.standard_normal((3, 4)).astype(np.float32), None, "F32", [3, 4]),
        ("t.f16", rng.standard_normal((2, 8)).astype(np.float16), None, "F16", [2, 8]),
        ("t.i32", np.arange(5, dtype=np.int32), None, "I32", [5]),
        ("t.bf16", rng.integers(0, 256, (3, 10), dtype=np.uint8), Q.BF16, "BF16", [3, 5]),
        ("t.q8_0", rng.integers(0, 256, (2, 68), dtype=np.uint8), Q.Q8_0, "Q8_0", [2, 64]),
    ]
    return kvs, tensors


def py_write(gguf, path, kvs, tensors, split_max_size=0):
    w = gguf.GGUFWriter(str(path), "grok", split_max_size=split_max_size)
    for key, val, vtype, sub in kvs:
        w.add_key_value(key, val, vtype, sub_type=sub)
    for name, arr, raw, _, _ in tensors:
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_read(sample_bin, path):
    out = subprocess.run([str(sample_bin), "read", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def compare_rust_read(got, kvs, tensors, label):
    want_kvs = [("general.architecture", "grok", "STRING", None)] + [(k, v, t.name, s.name if s is not None else None) for k, v, t, s in kvs]
    first = got["files"][0]
    got_kvs = {kv["key"]: kv for kv in first["kvs"]}
    for key, val, tname, sub in want_kvs:
        kv = got_kvs.get(key)
        if kv is None:
            check(False, f"{label}: grokit lost key {key}")
            continue
        check(kv["type"] == tname, f"{label}: {key} type {kv['type']} != {tname}")
        check(kv["elem_type"] == sub, f"{label}: {key} element type {kv['elem_type']} != {sub}")
        check(same_value(tname, sub, kv["value"], val), f"{label}: {key} value {kv['value']!r} != {val!r}")
    got_t = {t["name"]: t for f in got["files"] for t in f["tensors"]}
    check(got["tensor_count"] == len(tensors), f"{label}: tensor count {got['tensor_count']}")
    for name, arr, _, tname, shape in tensors:
        t = got_t.get(name)
        if t is None:
            check(False, f"{label}: grokit lost tensor {name}")
            continue
        check(t["type"] == tname, f"{label}: {name} type {t['type']} != {tname}")
        check(t["shape"] == shape, f"{label}: {name} shape {t['shape']} != {shape}")
        check(t["ne"] == list(reversed(shape)), f"{label}: {name} ne {t['ne']}")
        check(bytes.fromhex(t["hex"]) == arr.tobytes(), f"{label}: {name} bytes differ")


def reverse(sample_bin, work, gguf, np):
    kvs, tensors = py_sample(gguf, np)
    single = work / "py" / "py.gguf"
    single.parent.mkdir(parents=True, exist_ok=True)
    py_write(gguf, single, kvs, tensors)
    compare_rust_read(run_read(sample_bin, single), kvs, tensors, "gguf-py->grokit single")
    split = work / "py" / "pysplit.gguf"
    py_write(gguf, split, kvs, tensors, split_max_size=100)
    shards = sorted(split.parent.glob("pysplit-*-of-*.gguf"))
    check(len(shards) >= 2, f"gguf-py wrote {len(shards)} shards")
    got = run_read(sample_bin, shards[0])
    check(len(got["files"]) == len(shards), "grokit opened every gguf-py shard")
    compare_rust_read(got, kvs, tensors, "gguf-py->grokit split")
    # Rust's reader must reject a file gguf-py would also reject (duplicate tensor name).
    check(subprocess.run([str(sample_bin), "read", str(shards[1])], capture_output=True).returncode != 0,
          "grokit refuses to open a split set from shard 2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grokit", help="grokit binary (unused: the GGUF CLI is not wired yet)")
    ap.add_argument("--shared", help="shared reference dir (unused)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--sample-bin")
    ap.add_argument("--examples", help="directory of prebuilt example binaries (CI)")
    args = ap.parse_args()
    if not args.sample_bin and args.examples:
        args.sample_bin = os.path.join(args.examples, "gguf_sample")
    try:
        import gguf
        import numpy as np
    except ImportError as e:
        print(f"SKIP gguf-py not importable: {e}")
        print("0 passed, 0 failed")
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sample_bin = build_sample_bin(args)
    for step in (lambda: forward(sample_bin, work, gguf), lambda: reverse(sample_bin, work, gguf, np)):
        try:
            step()
        except Exception as e:  # a crash is a failure, not a skipped check
            check(False, f"exception: {type(e).__name__}: {e}")
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
