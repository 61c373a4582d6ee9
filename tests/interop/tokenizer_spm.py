#!/usr/bin/env python3
"""Interop: grokit's SentencePiece BPE tokenizer vs the Python `sentencepiece` library.

    python tests/interop/tokenizer_spm.py --grokit target/debug/grokit --shared ../shared --work /tmp/x

Drives the example binary `spm_encode` (built next to --grokit, or built here with cargo).
For the Grok-1 and tiny12 tokenizers, a few thousand seeded random strings (mixed scripts,
whitespace runs, digits, user-defined symbols, rare code points that need byte fallback) must
encode to exactly the library's ids, grokit's decode of those ids must equal the library's,
decode(encode(s)) must give s back (when s has no literal U+2581), and random id sequences
(byte pieces in any order, control and unk ids) must decode identically.
Prints `N passed, M failed` last; exits non-zero on any failure.
"""
import os
import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import sentencepiece as spm

REPO = Path(__file__).resolve().parents[2]

SNIPPETS = [
    "the", " and", "Hello", "world", "of course", "tokenizer", "Grok", "naïve", "café",
    "<|separator|>", "<|mask|>", "<|control7|>", "[BOS]", "<s>", "<0x0A>", "▁",
    "日本語", "中文", "한국어", "русский", "العربية", "हिन्दी", "ไทย", "Ελληνικά",
    "🎉", "👨‍👩‍👧", "❤️", "e\u0301", "\u200b", "\u00a0", "\ufeff",
    "123", "3.14", "1,000,000", "0x1F", "2024-03-17",
    "def f(x):", "    return", "{\"a\": 1}", "http://x.io/?q=1",
]
CHARSETS = [
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    "      \t\n\r",
    ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
    "éèàüöäßçñÅøæ",
    "日本語中文字漢あいうアイウ",
    "абвгдеж",
    "🎉🚀😀❤️\u200d",
    "\u0301\u0308\u0327",
]


def random_text(rng):
    r = rng.random()
    if r < 0.35:
        parts = [rng.choice(SNIPPETS) for _ in range(rng.randint(1, 8))]
        seps = ["", " ", "  ", "\n", "\t", "   ", "\n\n"]
        return "".join(p + rng.choice(seps) for p in parts)
    if r < 0.75:
        cs = "".join(rng.sample(CHARSETS, rng.randint(1, 4)))
        return "".join(rng.choice(cs) for _ in range(rng.randint(0, 80)))
    if r < 0.9:
        out = []
        for _ in range(rng.randint(1, 20)):
            cp = rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                             rng.randint(0xE000, 0xFFFD), rng.randint(0x10000, 0x10FFFF), rng.randint(0, 0x1F)])
            out.append(chr(cp))
        return "".join(out)
    # long inputs (a few KB) to exercise the merge queue
    cs = "".join(rng.sample(CHARSETS, 3))
    return "".join(rng.choice(cs) if rng.random() < 0.7 else rng.choice(SNIPPETS) for _ in range(rng.randint(500, 3000)))


# ---- tiny protobuf rewriting, to derive model variants that exercise other options ----------

def _varint(b, i):
    v = sh = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << sh
        sh += 7
        if c < 0x80:
            return v, i


def _enc_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _fields(b):
    i, out = 0, []
    while i < len(b):
        tag, i = _varint(b, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(wt)
        out.append((num, wt, v))
    return out


def _emit(fields):
    out = bytearray()
    for num, wt, v in fields:
        out += _enc_varint(num << 3 | wt)
        if wt == 0:
            out += _enc_varint(v)
        elif wt == 2:
            out += _enc_varint(len(v)) + v
        else:
            out += v
    return bytes(out)


def _set(fields, num, value):
    """Set varint field `num` (replacing any occurrence)."""
    return [f for f in fields if f[0] != num] + [(num, 0, value)]


def variant(model_bytes, trainer=None, normalizer=None, retype=None, rename=None):
    """Rewrite trainer/normalizer varint fields, piece types via retype(id, piece, type), and
    piece strings via rename {id: new piece}."""
    top, out, pid = _fields(model_bytes), [], 0
    for num, wt, v in top:
        if num == 1 and rename and pid in rename:
            v = _emit([f for f in _fields(v) if f[0] != 1] + [(1, 2, rename[pid].encode())])
        if num == 1 and (retype or rename):
            pf = _fields(v)
            piece = next((x[2].decode() for x in pf if x[0] == 1), "")
            kind = next((x[2] for x in pf if x[0] == 3), 1)
            new = retype(pid, piece, kind) if retype else kind
            if new != kind:
                v = _emit(_set(pf, 3, new))
            pid += 1
        if num == 2 and trainer:
            f = _fields(v)
            for k, x in trainer.items():
                f = _set(f, k, x)
            v = _emit(f)
        if num == 3 and normalizer:
            f = _fields(v)
            for k, x in normalizer.items():
                f = _set(f, k, x)
            v = _emit(f)
        out.append((num, wt, v))
    return _emit(out)


def tiny12_variants(base, work):
    """Model variants of tiny12: option flips the real models leave untested."""
    normal = lambda i, p, k: k == 1  # noqa: E731
    specs = {
        "rm_extra_ws": dict(normalizer={4: 1}),
        "no_dummy_prefix": dict(normalizer={3: 0}),
        "no_escape_ws": dict(normalizer={5: 0}),
        "ws_suffix": dict(trainer={24: 1}),
        "no_byte_fallback": dict(trainer={35: 0}, retype=lambda i, p, k: 5 if k == 6 else k),
        "unused_pieces": dict(retype=lambda i, p, k: 5 if normal(i, p, k) and i % 5 == 0 else k),
        "unused_no_byte_fallback": dict(
            trainer={35: 0}, retype=lambda i, p, k: 5 if k == 6 or (normal(i, p, k) and i % 5 == 0) else k),
        # Pieces that cross digit and word boundaries, with split_digits and split_by_whitespace
        # on: the library does not pre-split at encode time, so "12" and "e▁t" can be tokens.
        "cross_pieces": dict(trainer={25: 1, 22: 1}, rename=dict(zip(range(500, 512), [
            "12", "00", "1a", "e\u2581", "e\u2581t", "23", "s\u2581", "\u25811", "99", "9.", "a1", "0\u2581"]))),
        "user_defined": dict(retype=lambda i, p, k: 4 if normal(i, p, k) and i % 9 == 0 and len(p) > 1 else k),
    }
    out = {}
    for name, spec in specs.items():
        path = work / f"tiny12_{name}.model"
        path.write_bytes(variant(base, **spec))
        out[f"tiny12_{name}"] = path
    return out


def short(x, n=160):
    r = repr(x)
    return r if len(r) <= n else r[:n] + "..."


def find_tool(grokit):
    exe = Path(grokit).resolve().parent / "examples" / "spm_encode"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--example", "spm_encode"], cwd=REPO, check=True)
        exe = REPO / "target" / "debug" / "examples" / "spm_encode"
    return exe


def run_tool(exe, args):
    p = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"spm_encode failed: {p.stderr}")
    sys.stderr.write(p.stderr)
    return [json.loads(l) for l in p.stdout.splitlines()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grokit", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--examples", help="directory of prebuilt example binaries (CI)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    exe = find_tool(a.grokit)
    passed = failed = 0
    models = {
        "grok1": Path(a.shared) / "grok1/tokenizer.model",
        "tiny12": Path(a.shared) / "reference/tiny12/tokenizer.model",
    }
    tiny = models["tiny12"]
    if tiny.exists():
        models.update(tiny12_variants(tiny.read_bytes(), work))
    for name, model in models.items():
        if not model.exists():
            print(f"{name}: FAIL missing {model}")
            failed += 1
            continue
        sp = spm.SentencePieceProcessor(model_file=str(model))
        rng = random.Random(a.seed)
        texts = [random_text(rng) for _ in range(a.count)]
        inp = work / f"{name}_texts.jsonl"
        inp.write_text("".join(json.dumps(t) + "\n" for t in texts))
        t0 = time.perf_counter()
        want = [sp.encode(t) for t in texts]
        py_s = time.perf_counter() - t0
        got = run_tool(exe, [str(model), str(inp)])
        nbytes = sum(len(t.encode()) for t in texts)
        print(f"{name}: {len(texts)} strings, {nbytes} bytes; python encode {nbytes / py_s / 1e6:.2f} MB/s")
        bad = 0
        for t, w, g in zip(texts, want, got):
            ok = g["ids"] == w and g["text"] == sp.decode(w)
            if ok and name in ("grok1", "tiny12") and "\u2581" not in t and g["text"] != t:
                ok = False
            if not ok:
                bad += 1
                if bad <= 5:
                    print(f"  FAIL {name} {short(t)}: grokit {short(g['ids'])} / {short(g['text'])}, "
                          f"library {short(w)} / {short(sp.decode(w))}")
        print(f"{name}: encode/decode/round trip {len(texts) - bad} of {len(texts)} agree")
        passed += len(texts) - bad
        failed += bad
        # Random id sequences: byte pieces in any order, control, unk, user-defined, normal.
        n = sp.get_piece_size()
        byte_ids = [i for i in range(n) if sp.is_byte(i)] or [0]
        seqs = []
        for _ in range(a.count // 3):
            seq = []
            for _ in range(rng.randint(0, 12)):
                r = rng.random()
                seq.append(rng.choice(byte_ids) if r < 0.5 else rng.randrange(0, 8) if r < 0.6 else rng.randrange(n))
            seqs.append(seq)
        dinp = work / f"{name}_ids.jsonl"
        dinp.write_text("".join(json.dumps(s) + "\n" for s in seqs))
        dgot = run_tool(exe, ["--decode", str(model), str(dinp)])
        dbad = 0
        for s, g in zip(seqs, dgot):
            w = sp.decode(s)
            if g != w:
                dbad += 1
                if dbad <= 5:
                    print(f"  FAIL {name} decode {s}: grokit {g!r}, library {w!r}")
        print(f"{name}: decode of random ids {len(seqs) - dbad} of {len(seqs)} agree")
        passed += len(seqs) - dbad
        failed += dbad
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
