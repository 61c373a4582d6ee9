"""`grokit convert --to safetensors` read by the `safetensors` package (numpy backend):

for the fixture and xAI's tiny12 (skipped with a reason when absent):
- bf16 in the hf and jax layouts: every shard loaded with `safetensors.numpy.load_file`, names
  per output-formats.md §1.5 (experts split), values equal to numpy's exact dequantization of the
  pickles rounded by ml_dtypes to bfloat16 (bit for bit), norms and routers F32 exact;
- int8 (compressed-tensors pack-quantized): `weight_packed` unpacked by hand (4 int8 per I32,
  +128 offset, first element in the lowest bits) equals the release's int8 (transposed) and
  `weight_scale` (BF16) the release's scales, bit for bit;
- int4: unpacked nibbles (+8 offset) satisfy |x - q*s| <= 0.53*s;
- SHA256SUMS checked with hashlib, model.safetensors.index.json (weight_map, total_size) when
  sharded, config.json quantization_config.
"""
import hashlib
import json
import os
import sys

import numpy as np
import ml_dtypes

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, args  # noqa: E402
from convert_gguf_py import EMBED, FINAL_NORM, cases, config, exact, is_q, out_orient, release, run_convert  # noqa: E402

HF = {"rms_norm/scale": "pre_attn_norm.scale", "rms_norm_1/scale": "post_attn_norm.scale",
      "rms_norm_2/scale": "pre_moe_norm.scale", "rms_norm_3/scale": "post_moe_norm.scale",
      "router/w": "moe_block.gate.weight", "multi_head_attention/query/w": "attn.q_proj.weight",
      "multi_head_attention/key/w": "attn.k_proj.weight", "multi_head_attention/value/w": "attn.v_proj.weight",
      "multi_head_attention/linear/w": "attn.o_proj.weight"}
JAX = {"rms_norm/scale": "rms_norm.weight", "rms_norm_1/scale": "rms_norm_1.weight",
       "rms_norm_2/scale": "rms_norm_2.weight", "rms_norm_3/scale": "rms_norm_3.weight",
       "router/w": "router.weight", "multi_head_attention/query/w": "multi_head_attention.query.weight",
       "multi_head_attention/key/w": "multi_head_attention.key.weight",
       "multi_head_attention/value/w": "multi_head_attention.value.weight",
       "multi_head_attention/linear/w": "multi_head_attention.linear.weight"}
MOE = {"moe/linear/w": "linear", "moe/linear_v/w": "linear_v", "moe/linear_1/w": "linear_1"}


def expected(rel, layout, n_layers, n_experts):
    """[(name, release path, expert or None)] written by hand from the spec."""
    if layout == "hf":
        v = [("model.embed_tokens.weight", EMBED, None), ("model.norm.scale", FINAL_NORM, None)]
        pre, names, moe = "model.layers.{l}.", HF, "model.layers.{l}.moe_block.experts.{e}.{m}.weight"
    else:
        v = [("transformer.in_out_embed.weight", EMBED, None), ("transformer.rms_norm.weight", FINAL_NORM, None)]
        pre, names, moe = "transformer.decoder_layer.{l}.", JAX, "transformer.decoder_layer.{l}.moe.{e}.{m}.weight"
    for layer in range(n_layers):
        base = f"transformer/decoder_layer_{layer}/"
        for p, n in names.items():
            v.append((pre.format(l=layer) + n, base + p, None))
        for p, m in MOE.items():
            for e in range(n_experts):
                v.append((moe.format(l=layer, e=e, m=m), base + p, e))
    return v


def load_all(c, d, label):
    from safetensors.numpy import load_file
    tensors, where = {}, {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            for k, x in load_file(os.path.join(d, f)).items():
                c.check(k not in tensors, f"{label}: {k} in two shards")
                tensors[k], where[k] = x, f
    return tensors, where


def check_side_files(c, d, tensors, where, ck, label, bits):
    sums = open(os.path.join(d, "SHA256SUMS")).read().splitlines()
    listed = []
    for line in sums:
        h, f = line.split("  ", 1)
        c.check(hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest() == h, f"{label}: SHA256SUMS {f}")
        listed.append(f)
    c.check(sorted(listed) == sorted(x for x in os.listdir(d) if x != "SHA256SUMS"), f"{label}: SHA256SUMS lists every file")
    idx = os.path.join(d, "model.safetensors.index.json")
    if len(set(where.values())) > 1:
        j = json.load(open(idx))
        c.check(j["weight_map"] == where, f"{label}: index weight_map")
        c.check(j["metadata"]["total_size"] == sum(x.nbytes for x in tensors.values()), f"{label}: index total_size")
    else:
        c.check(not os.path.exists(idx) and os.path.exists(os.path.join(d, "model.safetensors")), f"{label}: single file layout")
    cfg = json.load(open(os.path.join(d, "config.json")))
    c.check(cfg.get("num_local_experts") == cfg.get("num_experts") == config(ck)["num_experts"], f"{label}: num_experts")
    c.check(cfg.get("tie_word_embeddings") is True, f"{label}: tie_word_embeddings")
    c.check(open(os.path.join(d, "tokenizer.model"), "rb").read() == open(os.path.join(ck, "tokenizer.model"), "rb").read(), f"{label}: tokenizer.model copied")
    q = cfg.get("quantization_config")
    if bits is None:
        c.check(q is None, f"{label}: no quantization_config for floats")
        return None
    w = q["config_groups"]["group_0"]["weights"]
    c.check(q["quant_method"] == "compressed-tensors" and q["format"] == "pack-quantized" and w["num_bits"] == bits and w["symmetric"] and w["strategy"] in ("group", "channel"), f"{label}: quantization_config")
    c.check("lm_head" in q["ignore"], f"{label}: ignore lm_head")
    # "channel" (one scale per output row) when no group size fits every width and scale block.
    return int(w["group_size"]) if w["strategy"] == "group" else None


def unpack(words, bits, n):
    """[rows, words] int32 -> [rows, n] signed levels (first element in the lowest bits)."""
    per = 32 // bits
    u = words.view(np.uint32)
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    lv = (u[:, :, None] >> shifts) & np.uint32((1 << bits) - 1)
    return lv.reshape(u.shape[0], -1)[:, :n].astype(np.int32) - (1 << (bits - 1))


def check_case(c, a, label0, ck, rel, layout, dtype, shard_size):
    cfg = config(ck)
    label = f"{label0}/{layout}/{dtype}"
    d = os.path.join(a.work, f"st_{label0}_{layout}_{dtype}")
    run_convert(a, ck, ["--to", "safetensors", "-o", d, "--layout", layout, "--dtype", dtype, "--shard-size", shard_size])
    tensors, where = load_all(c, d, label)
    bits = {"int8": 8, "int4": 4}.get(dtype)
    group0 = check_side_files(c, d, tensors, where, ck, label, bits)
    seen = set()
    for name, path, e in expected(rel, layout, cfg["num_layers"], cfg["num_experts"]):
        obj = rel[path]
        x = exact(obj)
        q8 = obj.weight if is_q(obj) else None
        sc = obj.scales if is_q(obj) else None
        if e is not None:
            x, q8, sc = x[e], q8[e], sc[e]
        want = out_orient(path, x)
        keep_f32 = want.ndim == 1 or path.endswith("router/w")
        if bits is None or keep_f32 or path == EMBED:
            t = tensors.get(name)
            seen.add(name)
            if t is None:
                c.check(False, f"{label}: {name} missing")
                continue
            if keep_f32:
                c.check(t.dtype == np.float32 and t.shape == want.shape and np.array_equal(t.view(np.uint32), np.ascontiguousarray(want).view(np.uint32)), f"{label}: {name} F32 differs")
            else:
                rne = np.ascontiguousarray(want).astype(ml_dtypes.bfloat16)
                c.check(t.dtype == rne.dtype and t.shape == want.shape and np.array_equal(t.view(np.uint16), rne.view(np.uint16)), f"{label}: {name} BF16 differs from ml_dtypes RNE")
            continue
        base = name[: -len(".weight")]
        names = [base + s for s in (".weight_packed", ".weight_scale", ".weight_shape")]
        seen.update(names)
        if not all(n in tensors for n in names):
            c.check(False, f"{label}: {base} packed tensors missing")
            continue
        packed, scale, shape = (tensors[n] for n in names)
        rows, cols = want.shape
        group = group0 or cols
        c.check(packed.dtype == np.int32 and packed.shape == (rows, -(-cols // (32 // bits))), f"{label}: {base} weight_packed shape {packed.shape}")
        c.check(scale.dtype == ml_dtypes.bfloat16 and scale.shape == (rows, cols // group), f"{label}: {base} weight_scale {scale.dtype} {scale.shape}")
        c.check(shape.dtype == np.int64 and list(shape) == [rows, cols], f"{label}: {base} weight_shape {shape.dtype} (compressed-tensors writes int64)")
        lv = unpack(packed, bits, cols)
        s_full = np.repeat(scale.astype(np.float32), group, axis=1)
        rep = q8.shape[-2] // sc.shape[-2]
        # int8 is lossless when every group lies inside one release scale block.
        lossless = bits == 8 and (rep % group == 0 or sc.shape[-2] == 1)
        if bits == 8 and not lossless:
            # amax/127.5 with the scale rounded to bf16 can push amax to 128 steps: clamped at 127.
            ok = (np.abs(want - lv.astype(np.float32) * s_full) <= 1.01 * s_full).all()
            c.check(bool(ok), f"{label}: {base} requantized int8 error above one step")
        elif bits == 8:
            rel_q = q8.T.astype(np.int32)
            rel_s = np.repeat(sc, rep, axis=-2).T  # [out, in] bf16
            c.check(np.array_equal(lv, rel_q), f"{label}: {base} int8 differs from the release")
            got_s = np.repeat(scale, group, axis=1)
            c.check(np.array_equal(got_s.view(np.uint16), np.ascontiguousarray(rel_s).view(np.uint16)), f"{label}: {base} scales differ from the release")
            c.check(np.array_equal((lv.astype(np.float32) * s_full).view(np.uint32), np.ascontiguousarray(want).view(np.uint32)), f"{label}: {base} q*s is not the exact value")
        else:
            ok = (lv >= -8).all() and (lv <= 7).all() and (np.abs(want - lv.astype(np.float32) * s_full) <= 0.53 * s_full).all()
            c.check(bool(ok), f"{label}: {base} int4 error above 0.53*scale")
    c.check(seen == set(tensors), f"{label}: unexpected tensors {sorted(set(tensors) - seen)[:5]}")


def main():
    a = args()
    c = Checks("convert_st_py")
    for label0, ck in cases(a):
        rel = release(ck)
        for layout, dtype, shard in [("hf", "bf16", "5G"), ("jax", "bf16", "300K"), ("hf", "int8", "300K"), ("jax", "int8", "5G"), ("hf", "int4", "5G"), ("jax", "int4", "300K")]:
            check_case(c, a, label0, ck, rel, layout, dtype, shard)
    c.finish()


if __name__ == "__main__":
    main()
