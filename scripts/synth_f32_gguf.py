"""Write an F32 GGUF of the `grok` architecture with random weights, for scripts/bench_quant.sh.

The quantizers only see rows of floats, so a benchmark input needs Grok's tensor set and
realistic row widths, not trained weights; this makes one of any size without touching the
6.5 GB-per-layer synthetic checkpoint. Weights are N(0, 0.02) (norms 1.0), seeded.

usage: python scripts/synth_f32_gguf.py OUT.gguf [--d 512] [--ff 256] [--heads 4]
       [--kv-heads 2] [--head-dim 128] [--layers 1] [--vocab 512] [--experts 8] [--seed 0]
       [--imatrix OUT.imatrix.gguf]

--imatrix also writes a synthetic importance matrix for the same model in llama.cpp's GGUF
imatrix format (general.type = imatrix; `<name>.in_sum2` and `<name>.counts` per matrix, per
expert for the stacked expert tensors; imatrix.datasets/chunk_count/chunk_size), with random
positive column statistics and one expert of each MoE tensor left without data, so the
i-quant presets can be benchmarked with both tools reading the same file.
"""
import argparse

import numpy as np
import gguf

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--d", type=int, default=512)
p.add_argument("--ff", type=int, default=256)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--kv-heads", type=int, default=2)
p.add_argument("--head-dim", type=int, default=128)
p.add_argument("--layers", type=int, default=1)
p.add_argument("--vocab", type=int, default=512)
p.add_argument("--experts", type=int, default=8)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--imatrix", default=None)
a = p.parse_args()

rng = np.random.default_rng(a.seed)
w = gguf.GGUFWriter(a.out, "grok")
w.add_name("grok-bench-synth")
w.add_vocab_size(a.vocab)
w.add_context_length(8192)
w.add_embedding_length(a.d)
w.add_block_count(a.layers)
w.add_feed_forward_length(a.ff)
w.add_head_count(a.heads)
w.add_head_count_kv(a.kv_heads)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(10000.0)
w.add_rope_dimension_count(a.head_dim)
w.add_expert_count(a.experts)
w.add_expert_used_count(2)
w.add_file_type(0)

# a byte-fallback vocabulary with Grok-1's special ids (pad 0, bos 1, eos 2, unk 3)
tokens = [b"[PAD]", b"[BOS]", b"[EOS]", b"[UNK]"] + [f"<0x{i:02X}>".encode() for i in range(256)]
tokens += [f"tok{i}".encode() for i in range(a.vocab - len(tokens))]
tokens = tokens[:a.vocab]
types = [3, 3, 3, 2] + [6] * 256 + [1] * max(0, a.vocab - 260)
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores([0.0] * len(tokens))
w.add_token_types(types[:a.vocab])
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(3)
w.add_pad_token_id(0)


def mat(*shape):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))


hq, hkv = a.heads * a.head_dim, a.kv_heads * a.head_dim
w.add_tensor("token_embd.weight", mat(a.vocab, a.d))
for L in range(a.layers):
    b = f"blk.{L}."
    w.add_tensor(b + "attn_norm.weight", np.ones(a.d, np.float32))
    w.add_tensor(b + "attn_q.weight", mat(hq, a.d))
    w.add_tensor(b + "attn_k.weight", mat(hkv, a.d))
    w.add_tensor(b + "attn_v.weight", mat(hkv, a.d))
    w.add_tensor(b + "attn_output.weight", mat(a.d, hq))
    w.add_tensor(b + "attn_output_norm.weight", np.ones(a.d, np.float32))
    w.add_tensor(b + "ffn_norm.weight", np.ones(a.d, np.float32))
    w.add_tensor(b + "ffn_gate_inp.weight", mat(a.experts, a.d))
    w.add_tensor(b + "ffn_gate_exps.weight", mat(a.experts, a.ff, a.d))
    w.add_tensor(b + "ffn_up_exps.weight", mat(a.experts, a.ff, a.d))
    w.add_tensor(b + "ffn_down_exps.weight", mat(a.experts, a.d, a.ff))
    w.add_tensor(b + "layer_output_norm.weight", np.ones(a.d, np.float32))
w.add_tensor("output_norm.weight", np.ones(a.d, np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

if a.imatrix:
    chunk, chunks = 512, 4
    m = gguf.GGUFWriter(a.imatrix, arch="imatrix")
    # GGUFWriter adds general.architecture; llama.cpp ignores it in an imatrix
    m.add_type("imatrix")
    m.add_array("imatrix.datasets", ["synthetic"])
    m.add_uint32("imatrix.chunk_count", chunks)
    m.add_uint32("imatrix.chunk_size", chunk)
    entries = []
    for L in range(a.layers):
        b = f"blk.{L}."
        entries += [(b + "attn_q.weight", a.d, 1), (b + "attn_k.weight", a.d, 1),
                    (b + "attn_v.weight", a.d, 1), (b + "attn_output.weight", hq, 1),
                    (b + "ffn_gate_inp.weight", a.d, 1),
                    (b + "ffn_gate_exps.weight", a.d, a.experts), (b + "ffn_up_exps.weight", a.d, a.experts),
                    (b + "ffn_down_exps.weight", a.ff, a.experts)]
    for name, ne0, nmat in sorted(entries):
        counts = np.full((nmat, 1), chunk * chunks, np.float32)
        if nmat > 1:
            counts[nmat - 1, 0] = 0  # an expert no calibration token reached
        sums = (rng.random((nmat, ne0), dtype=np.float32) ** 2 + np.float32(0.01)) * counts
        m.add_tensor(name + ".in_sum2", sums)
        m.add_tensor(name + ".counts", counts)
    m.write_header_to_file()
    m.write_kv_data_to_file()
    m.write_tensors_to_file()
    m.close()
