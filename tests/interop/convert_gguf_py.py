"""`grokit convert --to gguf` read by gguf-py (llama.cpp's own Python reader):

for the fixture and xAI's tiny12 (from --shared; skipped with a reason when absent), converted
to F32, BF16, Q8_0 and `--quant q4_k_m`, every tensor that GGUFReader returns is compared with
numpy's exact dequantization of the release pickles (`q.astype(f32) * repeat(scales, R/B,
axis=-2)`, last two axes transposed except for the embedding, experts stacked):
- F32: bit for bit;
- BF16: equal to ml_dtypes' round-to-nearest-even bfloat16 bit for bit (norms/router F32 exact);
- Q8_0: gguf-py's dequantize equals the exact values (the release's int8 copied losslessly);
  the f32 embedding within the Q8_0 bound;
- q4_k_m: gguf-py's dequantize within a relative RMS bound.
Metadata: architecture, u32 hyper-parameters, f32 scales, tokenizer arrays (checked against
sentencepiece), special token ids, with their GGUF value types. A `--split-max-size 300K` set
read shard by shard equals the single file (split.no/count u16, split.tensors.count i32).
"""
import dataclasses
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import ml_dtypes  # noqa: F401  (bfloat16 for unpickling and rounding)

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, args  # noqa: E402


@dataclasses.dataclass
class QuantizedWeight8bit:
    weight: np.ndarray
    scales: np.ndarray


import __main__  # noqa: E402

__main__.QuantizedWeight8bit = QuantizedWeight8bit
QuantizedWeight8bit.__module__ = "__main__"

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLOTS = ["moe/linear/w", "moe/linear_1/w", "moe/linear_v/w", "multi_head_attention/key/w",
         "multi_head_attention/linear/w", "multi_head_attention/query/w", "multi_head_attention/value/w",
         "rms_norm/scale", "rms_norm_1/scale", "rms_norm_2/scale", "rms_norm_3/scale", "router/w"]
EMBED = "language_model/in_out_embed/embeddings"
FINAL_NORM = "language_model/rms_norm/scale"


def config(ck):
    return json.load(open(os.path.join(ck, "config.json")))


def release(ck):
    """{haiku path: unpickled object}, using the release's file order (layers sorted as strings)."""
    n = config(ck)["num_layers"]
    order = [EMBED, FINAL_NORM]
    for layer in sorted(range(n), key=str):
        order += [f"transformer/decoder_layer_{layer}/{s}" for s in SLOTS]
    d = os.path.join(ck, "ckpt-0")
    files = sorted(os.listdir(d))
    assert len(files) == len(order), (len(files), len(order))
    out = {}
    for path, name in zip(order, files):
        with open(os.path.join(d, name), "rb") as f:
            out[path] = pickle.loads(f.read())  # trusted test input
    return out


def is_q(obj):
    return isinstance(obj, QuantizedWeight8bit)


def exact(obj):
    """numpy's exact dequantization, release orientation."""
    if is_q(obj):
        w, s = obj.weight, obj.scales
        rep = w.shape[-2] // s.shape[-2]
        return w.astype(np.float32) * np.repeat(s.astype(np.float32), rep, axis=-2)
    return np.asarray(obj, dtype=np.float32)


def out_orient(path, x):
    """Output orientation: [.., out, in]; embedding and 1-D tensors as stored."""
    if path == EMBED or x.ndim == 1:
        return x
    return np.swapaxes(x, -1, -2)


def gguf_names(n_layers):
    """[(gguf name, release path)] in llama.cpp `grok` file order."""
    per = [("attn_norm", "rms_norm/scale"), ("attn_q", "multi_head_attention/query/w"),
           ("attn_k", "multi_head_attention/key/w"), ("attn_v", "multi_head_attention/value/w"),
           ("attn_output", "multi_head_attention/linear/w"), ("attn_output_norm", "rms_norm_1/scale"),
           ("ffn_norm", "rms_norm_2/scale"), ("ffn_gate_inp", "router/w"), ("ffn_gate_exps", "moe/linear/w"),
           ("ffn_up_exps", "moe/linear_v/w"), ("ffn_down_exps", "moe/linear_1/w"),
           ("layer_output_norm", "rms_norm_3/scale")]
    v = [("token_embd.weight", EMBED)]
    for layer in range(n_layers):
        v += [(f"blk.{layer}.{g}.weight", f"transformer/decoder_layer_{layer}/{p}") for g, p in per]
    v.append(("output_norm.weight", FINAL_NORM))
    return v


def cases(a):
    out = [("fixture", os.path.join(REPO, "fixtures", "tiny"))]
    t12 = os.path.join(a.shared, "reference", "tiny12")
    if os.path.isdir(os.path.join(t12, "ckpt-0")):
        out.append(("tiny12", t12))
    else:
        print(f"SKIP tiny12: {t12} not found")
    return out


def run_convert(a, ck, args):
    r = subprocess.run([a.grokit, "convert", ck, "--force", "-q"] + args, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        raise SystemExit(f"grokit convert {args} failed with exit code {r.returncode}")


def bits_equal(x, y):
    x, y = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)
    return x.shape == y.shape and np.array_equal(x.view(np.uint32), y.view(np.uint32))


def check_metadata(c, r, cfg, ck, label):
    import gguf
    import sentencepiece as spm
    T = gguf.GGUFValueType

    def field(k):
        f = r.fields.get(k)
        c.check(f is not None, f"{label}: {k} missing")
        return f

    f = field("general.architecture")
    c.check(f is not None and f.types == [T.STRING] and f.contents() == "grok", f"{label}: architecture")
    u32 = {"grok.vocab_size": cfg["vocab_size"], "grok.embedding_length": cfg["emb_size"],
           "grok.block_count": cfg["num_layers"], "grok.feed_forward_length": cfg["ffn_size"],
           "grok.attention.head_count": cfg["num_q_heads"], "grok.attention.head_count_kv": cfg["num_kv_heads"],
           "grok.rope.dimension_count": cfg["key_size"], "grok.expert_count": cfg["num_experts"],
           "grok.expert_used_count": cfg["num_selected_experts"], "grok.context_length": None,
           "general.file_type": None, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
           "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.padding_token_id": 0}
    for k, want in u32.items():
        f = field(k)
        if f is not None:
            c.check(f.types == [T.UINT32] and (want is None or f.contents() == want), f"{label}: {k} = {f.types} {f.contents()} (want u32 {want})")
    f32 = {"grok.attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"], "grok.rope.freq_base": cfg["rope_base"],
           "grok.embedding_scale": 78.38367176906169, "grok.logit_scale": 0.5773502691896257,
           "grok.attention.output_scale": 0.08838834764831845, "grok.attn_logit_softcapping": 30.0}
    for k, want in f32.items():
        f = field(k)
        if f is not None:
            c.check(f.types == [T.FLOAT32] and np.float32(f.contents()) == np.float32(want), f"{label}: {k} = {f.contents()}")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(ck, "tokenizer.model"))
    v = cfg["vocab_size"]
    f = field("tokenizer.ggml.tokens")
    c.check(f is not None and f.types == [T.ARRAY, T.STRING] and f.contents() == [sp.id_to_piece(i) for i in range(v)], f"{label}: tokens")
    f = field("tokenizer.ggml.scores")
    c.check(f is not None and f.types == [T.ARRAY, T.FLOAT32] and np.array_equal(np.float32(f.contents()), np.float32([sp.get_score(i) for i in range(v)])), f"{label}: scores")
    f = field("tokenizer.ggml.token_type")
    c.check(f is not None and f.types == [T.ARRAY, T.INT32] and len(f.contents()) == v, f"{label}: token_type")
    f = field("tokenizer.ggml.model")
    c.check(f is not None and f.contents() == "llama", f"{label}: tokenizer model")


def check_tensors(c, r, rel, cfg, kind, label):
    import gguf
    Q = gguf.GGMLQuantizationType
    want_names = gguf_names(cfg["num_layers"])
    got = {t.name: t for t in r.tensors}
    c.check([t.name for t in r.tensors] == [n for n, _ in want_names], f"{label}: tensor names/order")
    for name, path in want_names:
        t = got.get(name)
        if t is None:
            c.check(False, f"{label}: {name} missing")
            continue
        obj = rel[path]
        want = out_orient(path, exact(obj))
        c.check([int(x) for x in t.shape] == list(reversed(want.shape)), f"{label}: {name} ne {list(t.shape)} vs {want.shape}")
        ty = t.tensor_type
        if want.ndim == 1 or path.endswith("router/w"):
            c.check(ty == Q.F32, f"{label}: {name} must be F32, is {ty.name}")
        if ty == Q.F32:
            got_v = np.asarray(t.data, dtype=np.float32).reshape(want.shape)
            c.check(bits_equal(got_v, want), f"{label}: {name} F32 differs")
        elif ty == Q.BF16:
            raw = np.ascontiguousarray(t.data).view("<u2").reshape(want.shape)
            c.check(np.array_equal(raw, want.astype(ml_dtypes.bfloat16).view(np.uint16)), f"{label}: {name} BF16 differs from ml_dtypes RNE")
        else:
            try:
                deq = gguf.quants.dequantize(t.data, ty).reshape(want.shape)
            except NotImplementedError:
                c.check(False, f"{label}: gguf-py cannot dequantize {ty.name}")
                continue
            if ty == Q.Q8_0:
                # A 32-block is copied losslessly when it lies inside one release scale block.
                n_in = want.shape[-1]
                bh = n_in // obj.scales.shape[-2] if is_q(obj) else 0
                starts = np.arange(0, n_in, 32)
                one = (starts // bh == (starts + 31) // bh) if bh else np.zeros(len(starts), bool)
                blocks, got_b = want.reshape(-1, 32), deq.reshape(-1, 32)
                lossless = np.tile(one, blocks.shape[0] // len(starts))
                c.check(np.array_equal(got_b[lossless].view(np.uint32), blocks[lossless].view(np.uint32)), f"{label}: {name} Q8_0 not lossless in single-scale blocks")
                bound = 0.6 * np.abs(blocks).max(axis=1, keepdims=True) / 127.0
                c.check(bool(np.all(np.abs(got_b - blocks) <= bound)), f"{label}: {name} Q8_0 error above bound")
            else:
                rel_rms = float(np.sqrt(np.mean((deq - want) ** 2) / max(np.mean(want ** 2), 1e-30)))
                c.check(rel_rms < 0.15, f"{label}: {name} {ty.name} relative RMS {rel_rms:.4f}")
            if kind == "q8_0":
                # Rows that are not a multiple of 32 (the fixture's 344-wide down) fall back to F16.
                want_ty = Q.Q8_0 if want.shape[-1] % 32 == 0 else Q.F16
                c.check(ty == want_ty, f"{label}: {name} is {ty.name}, not {want_ty.name}")


def check_split(c, a, ck, label):
    """A split set read shard by shard by gguf-py equals the single file."""
    import gguf
    from gguf import GGUFReader
    T = gguf.GGUFValueType
    d = os.path.join(a.work, f"split_{label}")
    os.makedirs(d, exist_ok=True)
    run_convert(a, ck, ["--to", "gguf", "--type", "q8_0", "--split-max-size", "300K", "-o", os.path.join(d, "m.gguf")])
    single = GGUFReader(os.path.join(a.work, f"conv_{label}_q8_0.gguf"))
    files = sorted(f for f in os.listdir(d) if f.endswith(".gguf"))
    n = len(files)
    c.check(n >= 2 and files == [f"m-{i + 1:05d}-of-{n:05d}.gguf" for i in range(n)], f"{label}: split names {files}")
    got = {}
    for i, f in enumerate(files):
        r = GGUFReader(os.path.join(d, f))
        for k, ty, want in [("split.no", T.UINT16, i), ("split.count", T.UINT16, n), ("split.tensors.count", T.INT32, len(single.tensors))]:
            fl = r.fields.get(k)
            c.check(fl is not None and fl.types == [ty] and fl.contents() == want, f"{label}: {f} {k}")
        c.check((i == 0) == ("general.architecture" in r.fields), f"{label}: {f} metadata only in shard 1")
        for t in r.tensors:
            got[t.name] = (t.tensor_type, np.asarray(t.data).tobytes())
    c.check(list(got) == [t.name for t in single.tensors], f"{label}: split tensor order")
    for t in single.tensors:
        c.check(got.get(t.name) == (t.tensor_type, np.asarray(t.data).tobytes()), f"{label}: split {t.name} differs")
    skip = ("split.", "GGUF.")
    kv = lambda r: {k: (f.types, f.contents()) for k, f in r.fields.items() if not k.startswith(skip)}  # noqa: E731
    c.check(kv(GGUFReader(os.path.join(d, files[0]))) == kv(single), f"{label}: split metadata differs")


def main():
    from gguf import GGUFReader
    a = args()
    c = Checks("convert_gguf_py")
    for label0, ck in cases(a):
        cfg = config(ck)
        rel = release(ck)
        for kind, extra in [("f32", ["--type", "f32"]), ("bf16", ["--type", "bf16"]), ("q8_0", ["--type", "q8_0"]), ("q4_k_m", ["--quant", "q4_k_m"])]:
            label = f"{label0}/{kind}"
            out = os.path.join(a.work, f"conv_{label0}_{kind}.gguf")
            run_convert(a, ck, ["--to", "gguf", "-o", out] + extra)
            r = GGUFReader(out)
            check_metadata(c, r, cfg, ck, label)
            check_tensors(c, r, rel, cfg, kind, label)
        check_split(c, a, ck, label0)
    check_real_tokenizer(c, a)
    c.finish()


def check_real_tokenizer(c, a):
    """A synthetic checkpoint with Grok-1's real 131072-token vocabulary, converted with the real
    tokenizer.model: gguf-py reads back exactly the SentencePiece model's pieces, scores (bit
    patterns, including -0.0 at id 325), types and special ids."""
    import gguf
    import sentencepiece as spm
    from gguf import GGUFReader
    tok = os.path.join(a.shared, "grok1", "tokenizer.model")
    if not os.path.isfile(tok):
        print(f"SKIP real tokenizer: {tok} not found")
        return
    ck = os.path.join(a.work, "synth_vocab131072")
    if not os.path.isdir(ck):
        subprocess.run([a.grokit, "synth", "-o", ck, "--preset", "tiny", "--vocab", "131072", "-q"], check=True)
    out = os.path.join(a.work, "vocab131072.gguf")
    run_convert(a, ck, ["--to", "gguf", "-o", out, "--type", "bf16", "--tokenizer", tok])
    r = GGUFReader(out)
    sp = spm.SentencePieceProcessor(model_file=tok)
    n = sp.get_piece_size()
    c.check(n == 131072, f"real tokenizer has {n} pieces")
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    c.check(tokens == [sp.id_to_piece(i) for i in range(n)], "real tokenizer: pieces")
    scores = np.asarray(r.fields["tokenizer.ggml.scores"].contents(), dtype=np.float32)
    want = np.asarray([sp.get_score(i) for i in range(n)], dtype=np.float32)
    c.check(np.array_equal(scores.view(np.uint32), want.view(np.uint32)), "real tokenizer: score bit patterns")
    types = r.fields["tokenizer.ggml.token_type"].contents()
    def kind(i):
        if sp.is_control(i):
            return 3
        if sp.is_unknown(i):
            return 2
        if sp.is_byte(i):
            return 6
        if sp.is_unused(i):
            return 5
        return 1
    # user-defined pieces (4..68) are type 4; sentencepiece's Python API has no is_user_defined
    want_t = [4 if 4 <= i <= 68 else kind(i) for i in range(n)]
    c.check(list(types) == want_t, "real tokenizer: token types")
    for k, v in [("tokenizer.ggml.bos_token_id", sp.bos_id()), ("tokenizer.ggml.eos_token_id", sp.eos_id()), ("tokenizer.ggml.unknown_token_id", sp.unk_id()), ("tokenizer.ggml.padding_token_id", sp.pad_id())]:
        c.check(r.fields[k].contents() == v, f"real tokenizer: {k} = {r.fields[k].contents()} (sentencepiece {v})")


if __name__ == "__main__":
    main()
