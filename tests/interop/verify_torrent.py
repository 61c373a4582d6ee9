#!/usr/bin/env python3
"""Interop: torrents made by independent tools (mktorrent, Python torf) checked by grokit.

Usage: python tests/interop/verify_torrent.py [--grokit PATH] [--shared DIR] --work TMPDIR
                                              [--example PATH/TO/verify_sample]

For each tool present (missing ones are skipped with a printed reason) and several piece
lengths, over a temp directory of random files: build a .torrent, run the
`verify_sample` example (built with `cargo build --example verify_sample` when --example is
not given), and check
  * the infohash equals the tool's own (torf) or SHA-1 of the info span found by the tiny
    bencode scanner below (mktorrent), and grokit's;
  * a clean tree verifies completely;
  * flipping one byte makes exactly the expected piece bad, naming the files it touches;
  * truncating a file makes pieces missing (not bad).
Then, with the `grokit` binary (--grokit, else built): torrents each tool makes of a checkpoint
folder itself (top folder `ckpt-0`) and of the folder holding it are found by
`grokit verify DIR` and `grokit verify DIR/ckpt-0` without --torrent-root (issue #18), and a
torrent whose files are nowhere says where it looked and what --torrent-root must be.
Prints a final line "N passed, M failed" and exits non-zero on any failure.
"""
import os
import argparse, hashlib, json, os, random, shutil, subprocess, sys

PASSED = FAILED = 0


def check(cond, what):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print(f"ok   {what}")
    else:
        FAILED += 1
        print(f"FAIL {what}")


# ---- tiny bencode scanner (independent of grokit) ------------------------------------------

def bdecode(b, i=0, spans=None, path=()):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        i += 1
        out = []
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i, spans, path)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i, spans, path)
            start = i
            v, i = bdecode(b, i, spans, path + (k,))
            if spans is not None:
                spans[path + (k,)] = (start, i)
            out[k] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def parse_torrent(path):
    raw = open(path, "rb").read()
    spans = {}
    top, end = bdecode(raw, 0, spans)
    assert end == len(raw)
    s, e = spans[(b"info",)]
    info = top[b"info"]
    if b"files" in info:
        files = [(os.path.join(*[p.decode() for p in f[b"path"]]), f[b"length"], b"p" in f.get(b"attr", b""))
                 for f in info[b"files"]]
    else:
        files = [(info[b"name"].decode(), info[b"length"], False)]
    return {"infohash": hashlib.sha1(raw[s:e]).hexdigest(), "plen": info[b"piece length"],
            "files": files, "single": b"files" not in info, "name": info[b"name"].decode()}


# ---- helpers -------------------------------------------------------------------------------

def make_tree(root, rng):
    if os.path.exists(root):
        shutil.rmtree(root)
    sizes = {"a.bin": 70_001, "sub/b.bin": 12_345, "sub/deep/c.bin": 200_000, "d.txt": 65_536, "e.bin": 1}
    for rel, n in sizes.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(rng.randbytes(n))


def run_check(example, torrent, root):
    p = subprocess.run([example, "--threads", "2", "--block-mib", "1", torrent, root], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"verify_sample failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout), p.returncode


def flip_and_check(label, example, torrent, root, meta, rng):
    rep, rc = run_check(example, torrent, root)
    check(rc == 0 and rep["good_pieces"] == rep["pieces"] and not rep["bad_pieces"], f"{label}: clean tree verifies ({rep['pieces']} pieces)")
    check(rep["infohash"] == meta["infohash"], f"{label}: infohash grokit {rep['infohash'][:12]}.. == scanner {meta['infohash'][:12]}..")
    # offsets of each file in the piece stream, in torrent order
    offs, o = [], 0
    for rel, n, pad in meta["files"]:
        offs.append(o)
        o += n
    real = [k for k, (_, n, pad) in enumerate(meta["files"]) if n > 0 and not pad]
    k = rng.choice(real)
    rel, n, _ = meta["files"][k]
    off = rng.randrange(n)
    disk = root if meta["single"] and os.path.isfile(root) else os.path.join(root, rel)
    with open(disk, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x01]))
    piece = (offs[k] + off) // meta["plen"]
    a, e = piece * meta["plen"], min((piece + 1) * meta["plen"], o)
    touched = [meta["files"][j][0] for j in range(len(meta["files"]))
               if meta["files"][j][1] > 0 and not meta["files"][j][2] and offs[j] < e and offs[j] + meta["files"][j][1] > a]
    rep, rc = run_check(example, torrent, root)
    bad = rep["bad_pieces"]
    check(rc == 1 and [x["index"] for x in bad] == [piece], f"{label}: flip {rel}@{off} -> bad piece {[x['index'] for x in bad]} (want [{piece}])")
    check(bool(bad) and bad[0]["files"] == touched, f"{label}: bad piece names files {bad[0]['files'] if bad else None} (want {touched})")
    with open(disk, "r+b") as f:  # restore
        f.seek(off)
        f.write(b)
    # truncate the largest file by a third: its tail pieces are missing, none bad
    k = max(real, key=lambda j: meta["files"][j][1])
    rel, n, _ = meta["files"][k]
    disk = root if meta["single"] and os.path.isfile(root) else os.path.join(root, rel)
    keep = open(disk, "rb").read()
    with open(disk, "wb") as f:
        f.write(keep[: n * 2 // 3])
    rep, rc = run_check(example, torrent, root)
    first_missing = (offs[k] + n * 2 // 3) // meta["plen"]
    ms = rep["missing_pieces"]
    check(rc == 1 and not rep["bad_pieces"] and ms and ms[0][0] == first_missing,
          f"{label}: truncated {rel} -> missing {ms[:3]} (first {first_missing}), bad {len(rep['bad_pieces'])}")
    with open(disk, "wb") as f:
        f.write(keep)


def checkpoint_torrents(grokit, repo, work, makers):
    """Torrents of the fixture checkpoint's `ckpt-0` folder and of its parent, by each maker,
    verified by `grokit verify` from either directory without --torrent-root."""
    top = os.path.join(work, "ckpt-dl")
    shutil.rmtree(top, ignore_errors=True)
    d = os.path.join(top, "grok-1")
    shutil.copytree(os.path.join(repo, "fixtures", "tiny"), d)
    empty = os.path.join(work, "nowhere", "empty")  # no candidate around it holds the files
    shutil.rmtree(os.path.dirname(empty), ignore_errors=True)
    os.makedirs(empty)
    for label, make in makers:
        for what, src in (("ckpt-0 folder", os.path.join(d, "ckpt-0")), ("checkpoint directory", d)):
            tor = os.path.join(top, f"{label}-{os.path.basename(src)}.torrent")
            if os.path.exists(tor):
                os.remove(tor)
            make(src, tor)
            for target in (d, os.path.join(d, "ckpt-0")):
                p = subprocess.run([grokit, "verify", target, "--torrent", tor, "--json"], capture_output=True, text=True)
                ok = False
                try:
                    t = json.loads(p.stdout)["torrent"]
                    ok = p.returncode == 0 and t["ok"] and t["good_pieces"] == t["pieces"] > 0
                    got = f"{t['good_pieces']}/{t['pieces']} pieces"
                except (ValueError, KeyError) as e:
                    got = f"exit {p.returncode}: {p.stderr.strip()[:200]} {e}"
                check(ok, f"{label} torrent of the {what}: verify {os.path.relpath(target, top)} finds its files ({got})")
        p = subprocess.run([grokit, "verify", d, "--torrent", tor, "--torrent-root", empty, "--json"],
                           capture_output=True, text=True)
        try:
            w = " ".join(json.loads(p.stdout)["torrent"]["warnings"])
        except (ValueError, KeyError):
            w = ""
        check(p.returncode == 1 and "looked in" in w and "--torrent-root" in w,
              f"{label}: files nowhere -> exit {p.returncode}, the report says where it looked: {w[:120]}..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grokit")
    ap.add_argument("--shared")
    ap.add_argument("--work", required=True)
    ap.add_argument("--example")
    ap.add_argument("--examples", help="directory of prebuilt example binaries (CI)")
    args = ap.parse_args()
    if not args.example and args.examples:
        args.example = os.path.join(args.examples, "verify_sample")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    example = args.example
    if not example:
        subprocess.run(["cargo", "build", "--quiet", "--example", "verify_sample"], cwd=repo, check=True)
        example = os.path.join(repo, "target", "debug", "examples", "verify_sample")
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    rng = random.Random(1234)
    root = os.path.join(work, "payload")

    if shutil.which("mktorrent"):
        for exp in (15, 16, 18):  # 32 KiB, 64 KiB, 256 KiB
            make_tree(root, rng)
            tor = os.path.join(work, f"mk{exp}.torrent")
            if os.path.exists(tor):
                os.remove(tor)
            subprocess.run(["mktorrent", "-t", "1", "-l", str(exp), "-a", "http://tracker.invalid/announce", "-o", tor, root],
                           check=True, capture_output=True)
            meta = parse_torrent(tor)
            check(meta["plen"] == 1 << exp, f"mktorrent -l {exp}: piece length {meta['plen']}")
            # the directory on disk may be named differently from the torrent's name
            renamed = os.path.join(work, "renamed-payload")
            if os.path.exists(renamed):
                shutil.rmtree(renamed)
            os.rename(root, renamed)
            flip_and_check(f"mktorrent 2^{exp}", example, tor, renamed, meta, rng)
            shutil.rmtree(renamed)
        # single-file torrent
        make_tree(root, rng)
        one = os.path.join(root, "sub", "deep", "c.bin")
        tor = os.path.join(work, "mk-single.torrent")
        if os.path.exists(tor):
            os.remove(tor)
        subprocess.run(["mktorrent", "-t", "1", "-l", "15", "-a", "http://t.invalid/a", "-o", tor, one], check=True, capture_output=True)
        meta = parse_torrent(tor)
        check(meta["single"], "mktorrent single-file torrent parsed by scanner")
        flip_and_check("mktorrent single", example, tor, one, meta, rng)
    else:
        print("SKIP mktorrent: not on PATH (apt-get install -y mktorrent)")

    try:
        import torf
    except ImportError:
        torf = None
        print("SKIP torf: Python package not installed (pip install torf)")
    if torf is not None:
        for psize in (16384, 65536, 1 << 20):
            make_tree(root, rng)
            t = torf.Torrent(path=root, trackers=["http://tracker.invalid/announce"], piece_size=psize, private=True)
            t.generate()
            tor = os.path.join(work, f"torf{psize}.torrent")
            t.write(tor, overwrite=True)
            meta = parse_torrent(tor)
            check(meta["infohash"] == t.infohash, f"torf {psize}: scanner infohash == torf's {t.infohash[:12]}..")
            flip_and_check(f"torf {psize}", example, tor, root, meta, rng)

    makers = []
    if shutil.which("mktorrent"):
        makers.append(("mktorrent", lambda src, tor: subprocess.run(
            ["mktorrent", "-t", "1", "-l", "15", "-a", "http://t.invalid/a", "-o", tor, src], check=True, capture_output=True)))
    if torf is not None:
        def torf_make(src, tor):
            t = torf.Torrent(path=src, trackers=["http://t.invalid/a"], piece_size=32768, private=True)
            t.generate()
            t.write(tor, overwrite=True)
        makers.append(("torf", torf_make))
    if makers:
        grokit = args.grokit
        if not grokit:
            subprocess.run(["cargo", "build", "--quiet", "--bin", "grokit"], cwd=repo, check=True)
            grokit = os.path.join(repo, "target", "debug", "grokit")
        checkpoint_torrents(grokit, repo, work, makers)

    if PASSED + FAILED == 0:
        print("SKIP all: neither mktorrent nor torf available")
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
