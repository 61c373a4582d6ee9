"""SGLang's Grok-1 weight loading applied to the tensor names of `--layout sglang`
(docs/decisions/0004-engine-layouts.md): every tensor must land on a parameter of SGLang's model,
no parameter may stay unloaded, no tensor may be skipped.

The mapping is TRANSCRIBED (not imported: sglang needs CUDA) from **SGLang 0.5.23**
(PyPI `sglang==0.5.23`, `sglang/srt/models/grok.py`: `Grok1ForCausalLM.load_weights`,
`Grok1DecoderLayer`/`Grok1Model`/`Grok1MoE` module names; `sglang/srt/layers/moe/
fused_moe_triton/layer.py`: `FusedMoE.make_expert_params_mapping`). When the pinned version
changes, re-read those functions and update `sglang_params` / `sglang_load` below.

Round 1 of #16: the names come from the role table of the specification (ROLES below, one row
per `model::roles` role, checked against grokit's own hf names by `--grokit`: the hf output's
tensor list must be exactly the hf column). Round 2: the same check runs on the tensor names of
`grokit convert --layout sglang` (read from its index / shard headers).
"""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

SGLANG_VERSION = "0.5.23"

# role -> (hf name as grokit writes it today, sglang name of the specification). {L} layer, {E}
# expert. Embed has two sglang names: SGLang's Grok-1 has an untied lm_head (it multiplies it by
# output_multiplier_scale while loading), so the embedding is written twice.
ROLES = {
    "Embed": ("model.embed_tokens.weight", ["model.embed_tokens.weight", "lm_head.weight"]),
    "FinalNorm": ("model.norm.scale", ["model.norm.weight"]),
    "MoeGate": ("model.layers.{L}.moe_block.experts.{E}.linear.weight",
                ["model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight"]),
    "MoeDown": ("model.layers.{L}.moe_block.experts.{E}.linear_1.weight",
                ["model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight"]),
    "MoeUp": ("model.layers.{L}.moe_block.experts.{E}.linear_v.weight",
              ["model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight"]),
    "AttnK": ("model.layers.{L}.attn.k_proj.weight", ["model.layers.{L}.self_attn.k_proj.weight"]),
    "AttnO": ("model.layers.{L}.attn.o_proj.weight", ["model.layers.{L}.self_attn.o_proj.weight"]),
    "AttnQ": ("model.layers.{L}.attn.q_proj.weight", ["model.layers.{L}.self_attn.q_proj.weight"]),
    "AttnV": ("model.layers.{L}.attn.v_proj.weight", ["model.layers.{L}.self_attn.v_proj.weight"]),
    "PreAttnNorm": ("model.layers.{L}.pre_attn_norm.scale", ["model.layers.{L}.pre_attn_norm.weight"]),
    "PostAttnNorm": ("model.layers.{L}.post_attn_norm.scale", ["model.layers.{L}.post_attn_norm.weight"]),
    "PreMoeNorm": ("model.layers.{L}.pre_moe_norm.scale", ["model.layers.{L}.pre_moe_norm.weight"]),
    "PostMoeNorm": ("model.layers.{L}.post_moe_norm.scale", ["model.layers.{L}.post_moe_norm.weight"]),
    "Router": ("model.layers.{L}.moe_block.gate.weight", ["model.layers.{L}.block_sparse_moe.gate.weight"]),
}


def fill(t, layer, expert):
    return t.replace("{L}", str(layer)).replace("{E}", str(expert))


def expand(template, layers, experts):
    if "{L}" not in template:
        return [template]
    if "{E}" not in template:
        return [fill(template, l, 0) for l in range(layers)]
    return [fill(template, l, e) for l in range(layers) for e in range(experts)]


def spec_names(layers, experts, column):
    out = []
    for hf, sgl in ROLES.values():
        for t in ([hf] if column == "hf" else sgl):
            out += expand(t, layers, experts)
    return out


# ---- transcribed from SGLang 0.5.23 -----------------------------------------------------------

def sglang_params(layers):
    """named_parameters() of Grok1ForCausalLM for an unquantized Grok-1 config
    (residual_moe false, so no `mlp`; num_local_experts > 0)."""
    p = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for l in range(layers):
        pre = f"model.layers.{l}."
        p += [pre + "self_attn.qkv_proj.weight", pre + "self_attn.o_proj.weight",
              pre + "block_sparse_moe.gate.weight",
              pre + "block_sparse_moe.experts.w13_weight",
              pre + "block_sparse_moe.experts.w2_weight"]
        p += [pre + n + ".weight" for n in ("pre_attn_norm", "post_attn_norm", "pre_moe_norm", "post_moe_norm")]
    return set(p)


def make_expert_params_mapping(gate, down, up, num_experts):
    return [
        ("experts.w13_" if w in (gate, up) else "experts.w2_", f"experts.{e}.{w}.", e, shard)
        for e in range(num_experts)
        for shard, w in (("w1", gate), ("w2", down), ("w3", up))
    ]


def sglang_load(names, params, num_experts):
    """Grok1ForCausalLM.load_weights over checkpoint names: returns (hits, skipped, error).
    A hit records (param, shard_id, expert_id); `skipped` are names that reached
    load_weight_wrapper without a parameter (SGLang only logs those)."""
    stacked = [("qkv_proj", "q_proj", "q"), ("qkv_proj", "k_proj", "k"), ("qkv_proj", "v_proj", "v"),
               ("gate_up_proj", "gate_proj", 0), ("gate_up_proj", "up_proj", 1)]
    experts = make_expert_params_mapping("w1", "w2", "w3", num_experts)
    hits, skipped = [], []

    def wrapper(name, shard=None, expert=None):
        if name not in params:
            skipped.append(name)
            return
        hits.append((name, shard, expert))

    for name in names:
        if "rotary_emb.inv_freq" in name:
            continue
        for param_name, weight_name, shard_id in stacked:
            if weight_name not in name:
                continue
            name = name.replace(weight_name, param_name)
            if name.endswith(".bias") and name not in params:
                continue
            wrapper(name, shard_id)
            break
        else:
            for param_name, weight_name, expert_id, shard_id in experts:
                if weight_name not in name:
                    continue
                name = name.replace(weight_name, param_name)
                wrapper(name, shard_id, expert_id)
                break
            else:
                if name.endswith(".bias") and name not in params:
                    continue
                wrapper(name)
    hit_names = {h[0] for h in hits}
    error = None
    if len(hit_names) > 5:
        missing = {x for x in params - hit_names if "scale" not in x}
        if missing:
            error = f"load_weights failed because some weights are missing: {sorted(missing)[:5]}"
    elif not hit_names:
        error = "load_weights failed because it did not hit any names"
    return hits, skipped, error

# ---- end of transcription ---------------------------------------------------------------------


def check_layout(c, label, names, layers, experts):
    params = sglang_params(layers)
    hits, skipped, error = sglang_load(names, params, experts)
    c.check(error is None, f"{label}: SGLang {SGLANG_VERSION} would raise: {error}")
    c.check(not skipped, f"{label}: {len(skipped)} tensors skipped, e.g. {skipped[:3]}")
    c.check(len(hits) == len(names), f"{label}: {len(hits)} of {len(names)} tensors loaded")
    # Every parameter gets every shard it needs: qkv q/k/v once; w13 w1+w3 and w2 w2 per expert.
    want = {}
    for p in params:
        if p.endswith("qkv_proj.weight"):
            want[p] = {("q", None), ("k", None), ("v", None)}
        elif p.endswith("experts.w13_weight"):
            want[p] = {(s, e) for e in range(experts) for s in ("w1", "w3")}
        elif p.endswith("experts.w2_weight"):
            want[p] = {("w2", e) for e in range(experts)}
        else:
            want[p] = {(None, None)}
    got, twice = {}, []
    for name, shard, expert in hits:
        key = (shard, expert)
        if key in got.get(name, set()):
            twice.append((name, key))
        got.setdefault(name, set()).add(key)
    c.check(not twice, f"{label}: loaded twice: {twice[:3]}")
    bad = [p for p in params if got.get(p, set()) != want[p]]
    c.check(not bad, f"{label}: parameters not completely loaded: {bad[:3]}")
    print(f"  {label}: {len(names)} tensors -> {len(params)} SGLang parameters, all loaded, none skipped")


def safetensors_names(path):
    """Tensor names of a safetensors file, a directory's index, or a single-file directory."""
    if os.path.isdir(path):
        idx = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                return sorted(json.load(f)["weight_map"])
        path = os.path.join(path, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return sorted(k for k in header if k != "__metadata__")


def main():
    a = common.args()
    c = common.Checks("sglang_names")
    print(f"SGLang {SGLANG_VERSION} Grok1ForCausalLM.load_weights, transcribed")
    # Grok-1's geometry and tiny12's (64 / 12 layers, 8 experts).
    for label, layers in (("Grok-1 spec names", 64), ("tiny12 spec names", 12)):
        check_layout(c, label, spec_names(layers, 8, "sglang"), layers, 8)
    # The mapping must reject the wrong layouts: today's hf names load almost nothing in SGLang
    # (the loader only logs skips), and a layout without lm_head is an error.
    hits, skipped, error = sglang_load(spec_names(2, 8, "hf"), sglang_params(2), 8)
    c.check(error is not None or skipped, "hf names must not pass as an SGLang layout")
    print(f"  hf names in SGLang: {len(skipped)} skipped, error: {error}")
    no_head = [n for n in spec_names(2, 8, "sglang") if n != "lm_head.weight"]
    c.check(sglang_load(no_head, sglang_params(2), 8)[2] is not None, "a missing lm_head must be an error")
    # The hf column of ROLES is what grokit writes today (so the role table above is grokit's).
    tiny = os.path.join(a.shared, "reference", "tiny12")
    if os.path.isdir(tiny) and os.path.exists(a.grokit):
        out = os.path.join(a.work, "tiny12-hf")
        subprocess.run([a.grokit, "convert", tiny, "--to", "safetensors", "--layout", "hf",
                        "--dtype", "f32", "--force", "-o", out], check=True, stdout=subprocess.DEVNULL)
        got = safetensors_names(out)
        c.check(got == sorted(spec_names(12, 8, "hf")),
                f"grokit's hf names differ from the role table: {sorted(set(got) ^ set(spec_names(12, 8, 'hf')))[:4]}")
        print(f"  grokit --layout hf of tiny12: {len(got)} names = the role table's hf column")
        # Round 2: `--layout sglang` exists; check its names with SGLang's loader too.
        help_text = subprocess.run([a.grokit, "convert", "--help"], capture_output=True, text=True).stdout
        if "sglang" in help_text:
            out = os.path.join(a.work, "tiny12-sglang")
            subprocess.run([a.grokit, "convert", tiny, "--to", "safetensors", "--layout", "sglang",
                            "--dtype", "bf16", "--force", "-o", out], check=True, stdout=subprocess.DEVNULL)
            check_layout(c, "grokit --layout sglang of tiny12", safetensors_names(out), 12, 8)
        else:
            print("  (grokit has no --layout sglang yet: round 2 of #16)")
    else:
        print(f"SKIP grokit's own names: no tiny12 under {a.shared} or no grokit binary")
    c.finish()


if __name__ == "__main__":
    main()
