#!/usr/bin/env python3
"""Interop: grokit's safetensors writer/reader against the real Python `safetensors` package.

Forward: `examples/st_sample.rs write` produces a sharded set (F32/BF16/F16/I8/I32, a scalar,
an empty tensor, an oversized tensor) with index.json and SHA256SUMS; Python loads every shard
with `safetensors.numpy.load_file` and `safe_open`, compares values with its own computation
of the same formulas, checks metadata, layout, index and hashes, and re-serializes each shard
with `save_file` expecting identical bytes.
Reverse: files written by Python `save_file` are read by `st_sample read` (grokit's reader).

Run: python tests/interop/safetensors_py.py --grokit PATH --shared PATH --work TMPDIR
(--grokit and --shared are accepted for uniformity; the example binary is built with cargo
unless --st-sample PATH is given). Prints `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
PASSED = 0
FAILED = 0

# safetensors crate 0.8.0 `enum Dtype` declaration order; its writer sorts DESCENDING, then name.
CRATE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
               "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
               "C64", "F64", "I64", "U64"]
ST_NAME = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
           np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.int16): "I16",
           np.dtype(np.int32): "I32", np.dtype(np.uint32): "U32", np.dtype(np.int64): "I64",
           np.dtype(np.float64): "F64"}


def check(name, cond, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED += 1
        print(f"FAIL {name} {detail}")


def expected_tensors():
    """The sample set in state-dict order, recomputed from the formulas in st_sample.rs."""
    f32 = np.float32
    k = lambda n: np.arange(n, dtype=f32)
    return [
        ("f32.a", (k(15) * f32(0.25) - f32(1.5)).reshape(3, 5)),
        ("bf16.b", ((k(32) - f32(10)) * f32(0.3)).astype(ml_dtypes.bfloat16).reshape(4, 8)),
        ("f16.c", (k(24) * f32(0.1) - f32(1)).astype(np.float16).reshape(2, 3, 4)),
        ("i8.d", ((np.arange(48) * 37) % 256 - 128).astype(np.int8).reshape(16, 3)),
        ("i32.e", (np.arange(8, dtype=np.int64) * 1000003 - 4000000).astype(np.int32).reshape(2, 2, 2)),
        ("f32.scalar", np.array(3.25, dtype=f32)),
        ("bf16.empty", np.zeros((0, 4), dtype=ml_dtypes.bfloat16)),
        ("f32.big", f32(1) / (k(64) + f32(1))),
    ]


def hub_split(items, budget):
    """huggingface_hub split_state_dict_into_shards_factory, on (name, nbytes) pairs."""
    shards, cur, cur_size = [], [], 0
    for name, size in items:
        if size > budget:
            shards.append([name])
            continue
        if cur_size + size > budget:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(name)
        cur_size += size
    if cur:
        shards.append(cur)
    n = len(shards)
    if n == 1:
        return {"model.safetensors": shards[0]}
    return {f"model-{i + 1:05d}-of-{n:05d}.safetensors": s for i, s in enumerate(shards)}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def read_header(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    pairs = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=lambda p: p)
    return n, pairs, raw


def build_example(args):
    if args.st_sample:
        return args.st_sample
    out = subprocess.run(["cargo", "build", "--example", "st_sample", "--message-format=json"],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return None
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "st_sample" \
                and msg.get("executable"):
            return msg["executable"]
    return None


def forward(exe, work):
    out_dir = work / "grokit_set"
    budget = 128
    run = subprocess.run([exe, "write", str(out_dir), str(budget)], capture_output=True, text=True)
    check("st_sample write exits 0", run.returncode == 0, run.stderr)
    if run.returncode != 0:
        return
    exp = expected_tensors()
    exp_map = dict(exp)
    split = hub_split([(n, a.nbytes) for n, a in exp], budget)
    files = sorted(p.name for p in out_dir.iterdir())
    check("file set = hub split + index + SHA256SUMS",
          files == sorted(list(split) + ["model.safetensors.index.json", "SHA256SUMS"]), files)
    check("oversized tensor alone in its own shard",
          any(s == ["f32.big"] for s in split.values()), split)

    seen = {}
    for fname, names in split.items():
        path = out_dir / fname
        if not path.exists():
            check(f"{fname} exists", False)
            continue
        loaded = load_file(str(path))
        check(f"{fname}: load_file keys", sorted(loaded) == sorted(names), (sorted(loaded), names))
        for n in names:
            if n in loaded:
                check(f"{fname}: {n} values/dtype/shape", same(loaded[n], exp_map[n]),
                      (loaded[n].dtype, loaded[n].shape, exp_map[n].dtype, exp_map[n].shape))
            seen.setdefault(n, []).append(fname)
        with safe_open(str(path), framework="np") as f:
            check(f"{fname}: safe_open metadata == {{'format': 'pt'}}", f.metadata() == {"format": "pt"}, f.metadata())
            check(f"{fname}: safe_open keys", sorted(f.keys()) == sorted(names))
            check(f"{fname}: safe_open get_tensor", all(same(f.get_tensor(n), exp_map[n]) for n in names))
        n, pairs, raw = read_header(path)
        check(f"{fname}: header length multiple of 8", n % 8 == 0, n)
        check(f"{fname}: __metadata__ first", pairs[0][0] == "__metadata__", pairs[0])
        infos = [(k, dict(v)) for k, v in pairs[1:]]
        want = sorted(infos, key=lambda kv: (-CRATE_ORDER.index(kv[1]["dtype"]), kv[0].encode()))
        check(f"{fname}: tensors in crate writer order", [k for k, _ in infos] == [k for k, _ in want])
        aligned = all(v["data_offsets"][0] % exp_map[k].dtype.itemsize == 0 for k, v in infos)
        check(f"{fname}: every tensor naturally aligned (data start {8 + n})", aligned and (8 + n) % 8 == 0)
        # Python's own serializer (the same Rust crate) must produce the identical file.
        again = work / ("py_" + fname)
        save_file(loaded, str(again), metadata={"format": "pt"})
        check(f"{fname}: identical to Python save_file of the same tensors", again.read_bytes() == raw)
    check("every tensor in exactly one shard",
          sorted(seen) == sorted(exp_map) and all(len(v) == 1 for v in seen.values()), seen)

    idx_text = (out_dir / "model.safetensors.index.json").read_text()
    idx = json.loads(idx_text)
    total = sum(a.nbytes for a in exp_map.values())
    check("index total_size = sum of tensor bytes", idx.get("metadata", {}).get("total_size") == total,
          (idx.get("metadata"), total))
    want_map = {n: f for f, names in split.items() for n in names}
    check("index weight_map", idx.get("weight_map") == want_map, idx.get("weight_map"))
    keys_in_text = re.findall(r'^    "([^"]+)": "[^"]+\.safetensors"', idx_text, re.M)
    check("index weight_map sorted", keys_in_text == sorted(want_map), keys_in_text)

    sums = (out_dir / "SHA256SUMS").read_text().splitlines()
    good_fmt = all(re.fullmatch(r"[0-9a-f]{64}  [^/\s]+", line) for line in sums)
    check("SHA256SUMS line format `<hex>  <name>`", good_fmt, sums)
    listed = {}
    for line in sums:
        h, name = line.split("  ", 1)
        listed[name] = h
    check("SHA256SUMS lists every shard and the index",
          sorted(listed) == sorted(list(split) + ["model.safetensors.index.json"]), sorted(listed))
    check("SHA256SUMS sorted by name", list(listed) == sorted(listed))
    for name, h in listed.items():
        check(f"sha256 {name} matches hashlib", hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == h)

    # grokit's own reader agrees with itself on the set it wrote.
    run = subprocess.run([exe, "read", str(out_dir)], capture_output=True, text=True)
    ok = run.returncode == 0
    check("st_sample read of the grokit set", ok, run.stderr)
    if ok:
        got = json.loads(run.stdout)
        check("read-back total_size", got["total_size"] == total)
        check("read-back sha256 of every tensor",
              {t["name"]: t["sha256"] for t in got["tensors"]}
              == {n: hashlib.sha256(a.tobytes()).hexdigest() for n, a in exp_map.items()})


def reverse(exe, work):
    rng = np.random.default_rng(1234)
    tensors = {
        "a.f32": rng.standard_normal((3, 7)).astype(np.float32),
        "b.f16": rng.standard_normal((5,)).astype(np.float16),
        "c.bf16": rng.standard_normal((2, 3, 4)).astype(np.float32).astype(ml_dtypes.bfloat16),
        "d.i8": rng.integers(-128, 128, (9, 2)).astype(np.int8),
        "e.u8": rng.integers(0, 256, (11,)).astype(np.uint8),
        "f.i16": rng.integers(-3000, 3000, (4,)).astype(np.int16),
        "g.i32": rng.integers(-2**31, 2**31, (2, 2)).astype(np.int32),
        "h.u32": rng.integers(0, 2**32, (3,)).astype(np.uint32),
        "i.i64": rng.integers(-2**62, 2**62, (2,)).astype(np.int64),
        "j.f64": rng.standard_normal((2, 2)),
        "k.scalar": np.array(-2.5, dtype=np.float32),
        "l.empty": np.zeros((4, 0), dtype=np.float32),
        "layer.ü.名": np.arange(6, dtype=np.int32).reshape(2, 3),
    }
    meta = {"format": "pt", "source": "python"}
    path = work / "py_written.safetensors"
    save_file(tensors, str(path), metadata=meta)

    def describe(ts):
        return {n: (ST_NAME[a.dtype], list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()) for n, a in ts.items()}

    run = subprocess.run([exe, "read", str(path)], capture_output=True, text=True)
    check("grokit reads a Python save_file file", run.returncode == 0, run.stderr)
    if run.returncode == 0:
        got = json.loads(run.stdout)
        check("metadata as written by Python", got["metadata"] == meta, got["metadata"])
        desc = {t["name"]: (t["dtype"], t["shape"], t["sha256"]) for t in got["tensors"]}
        want = describe(tensors)
        check("names, dtypes, shapes, byte hashes all match", desc == want,
              {k: (desc.get(k), want.get(k)) for k in set(desc) | set(want) if desc.get(k) != want.get(k)})

    # A sharded set written by Python (save_file per shard + a hand-written index).
    sdir = work / "py_sharded"
    sdir.mkdir(exist_ok=True)
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[:6], "model-00002-of-00002.safetensors": names[6:]}
    for fname, ns in halves.items():
        save_file({n: tensors[n] for n in ns}, str(sdir / fname), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
             "weight_map": {n: f for f, ns in halves.items() for n in ns}}
    (sdir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    run = subprocess.run([exe, "read", str(sdir)], capture_output=True, text=True)
    check("grokit reads a Python-written sharded set via its directory", run.returncode == 0, run.stderr)
    if run.returncode == 0:
        got = json.loads(run.stdout)
        files = {t["name"]: t["file"] for t in got["tensors"]}
        check("each tensor attributed to its shard", files == index["weight_map"], files)
        check("sharded byte hashes match",
              {t["name"]: t["sha256"] for t in got["tensors"]} == {n: d[2] for n, d in describe(tensors).items()})

    # Files grokit must refuse with a clear message (and no crash).
    hdr = json.dumps({"t": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    f8 = work / "f8.safetensors"
    f8.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\x01\x02")
    with safe_open(str(f8), framework="np") as f:
        python_ok = list(f.keys()) == ["t"]
    run = subprocess.run([exe, "read", str(f8)], capture_output=True, text=True)
    check("F8_E4M3 (valid for Python) refused with a clear error",
          python_ok and run.returncode == 1 and "F8_E4M3" in run.stderr and "panicked" not in run.stderr, run.stderr)
    trunc = work / "trunc.safetensors"
    trunc.write_bytes(path.read_bytes()[:-3])
    run = subprocess.run([exe, "read", str(trunc)], capture_output=True, text=True)
    check("truncated Python file refused as truncated",
          run.returncode == 1 and "truncated" in run.stderr and "panicked" not in run.stderr, run.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grokit")
    ap.add_argument("--shared")
    ap.add_argument("--work", required=True)
    ap.add_argument("--st-sample", help="prebuilt examples/st_sample binary (default: cargo build)")
    ap.add_argument("--examples", help="directory of prebuilt example binaries (CI)")
    args = ap.parse_args()
    if not args.st_sample and args.examples:
        args.st_sample = os.path.join(args.examples, "st_sample")
    work = Path(args.work) / "safetensors_py"
    work.mkdir(parents=True, exist_ok=True)
    exe = build_example(args)
    check("build examples/st_sample", exe is not None and os.path.exists(exe), exe)
    if exe:
        forward(exe, work)
        reverse(exe, work)
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
