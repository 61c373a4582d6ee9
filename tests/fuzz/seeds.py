#!/usr/bin/env python3
"""Write small, valid seed inputs for the fuzz targets (scripts/fuzz.sh): GGUF, safetensors,
.torrent, .npy and .npy.zst files, sha256sum manifests and structured GGUF vocabularies of a
few hundred bytes, so libFuzzer starts from the formats' real structure.
Usage: seeds.py CORPUS_DIR (creates CORPUS_DIR/<target>/seed-*)."""
import hashlib
import json
import os
import struct
import sys


def put(root, target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf():
    kvs = [
        gstr("general.architecture") + struct.pack("<I", 8) + gstr("grok"),
        gstr("general.alignment") + struct.pack("<II", 4, 32),
        gstr("grok.block_count") + struct.pack("<I", 4) + struct.pack("<I", 1),
        gstr("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2) + gstr("a") + gstr("b"),
        gstr("tokenizer.ggml.scores") + struct.pack("<I", 9) + struct.pack("<IQ", 6, 2) + struct.pack("<ff", 0.0, -1.0),
    ]
    tensors = [
        gstr("t.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0),
        gstr("q.weight") + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<I", 8) + struct.pack("<Q", 32),
    ]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    head += b"\0" * (-len(head) % 32)
    data = struct.pack("<8f", *range(8)) + struct.pack("<e", 0.5) + bytes(range(32))
    return head + data


def safetensors():
    h = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [8, 16]},
         "__metadata__": {"format": "pt"}}
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + bytes(16)


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"


def torrents():
    one = {"announce": "http://t/a", "info": {"length": 20000, "name": "f.bin", "piece length": 16384,
                                            "pieces": hashlib.sha1(b"x").digest() * 2}}
    multi = {"info": {"name": "ckpt-0", "piece length": 16384, "pieces": hashlib.sha1(b"y").digest(),
                      "files": [{"length": 10, "path": ["tensor00000_000"]}, {"length": 5, "path": ["sub", "b"]}]}}
    return [bencode(one), bencode(multi)]


def npy():
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    pad = 64 - (10 + len(d) + 1) % 64
    hdr = (d + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + struct.pack("<6f", *range(6))


def zst_raw(payload):
    """A zstd frame by hand (RFC 8878): no content size, 128 KiB window, one raw last block."""
    assert len(payload) < 1 << 17
    return b"\x28\xb5\x2f\xfd" + bytes([0x00, 7 << 3]) + struct.pack("<I", 1 | (len(payload) << 3))[:3] + payload


def manifests():
    h = hashlib.sha256(b"").hexdigest()
    return [
        f"{h}  ckpt-0/tensor00000_000\n{h} *bin\n".encode(),
        f"SHA256 (tag (x)) = {h}\n\\{h}  back\\\\slash\\nnl\n# comment\n\r\n".encode(),
    ]


def vocab():
    """gguf_tokenizer's structured input: flags, (type, score, len, text)..., 0xff, ids."""
    pieces = [(2, 0, "<unk>"), (3, 0, "<s>"), (3, 0, "</s>"), (4, 0, "<sep>"), (1, -4, "\u2581"),
              (1, -8, "a"), (1, -12, "b"), (1, -16, "ab"), (1, -20, "\u2581ab"), (6, 0, "<0x41>")]
    out = bytearray([0])
    for ty, sc, text in pieces:
        b = text.encode()
        out += bytes([ty, sc & 0xff, len(b)]) + b
    return bytes(out + bytes([0xff, 0, 1, 2, 0xff]))


def main():
    root = sys.argv[1]
    put(root, "gguf", "seed-small.gguf", gguf())
    put(root, "safetensors", "seed-small.safetensors", safetensors())
    for i, t in enumerate(torrents()):
        put(root, "torrent", f"seed-{i}.torrent", t)
    put(root, "npy", "seed-small.npy", npy())
    put(root, "npy", "seed-small.npy.zst", zst_raw(npy()))
    for i, m in enumerate(manifests()):
        put(root, "manifest", f"seed-{i}.sha256", m)
    put(root, "gguf_tokenizer", "seed-vocab", vocab())


if __name__ == "__main__":
    main()
