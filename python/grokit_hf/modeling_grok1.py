# modeling_grok1.py: xAI's Grok-1 for Hugging Face transformers, computing what the release
# computes.
#
# Written by grokit (the Grok-1 toolkit) beside the safetensors shards of
# `grokit convert --to safetensors --layout hf`, with `auto_map` in config.json pointing here, so
# that `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` loads grokit's f32,
# bf16 and f16 outputs and its compressed-tensors int8/int4 outputs (through transformers' own
# compressed-tensors integration: every expert and attention projection is an `nn.Linear`).
# Source of truth: python/grokit_hf/modeling_grok1.py in the grokit repository (embedded in the
# binary); tests/interop/hf/ checks it against the release's own golden logits.
#
# Copyright 2026 the grokit authors. Licensed under the Apache License, Version 2.0
# (http://www.apache.org/licenses/LICENSE-2.0). Written from xai-org/grok-1's model.py
# semantics (grokit's docs/reference-model.md), not derived from any other Grok-1 port.
#
# What it computes (and where the community ports differ):
# - h = E[tokens] * embedding_multiplier_scale; the output head is the same E (tied), logits =
#   final_norm(h) @ E^T * output_multiplier_scale.
# - Per layer, four "sandwich" RMSNorms (scale * x * rsqrt(mean(x^2) + eps), in f32, scale not
#   1 + scale): h += post_attn_norm(attn(pre_attn_norm(h))); h += post_moe_norm(moe(pre_moe_norm(h))).
#   The residual stream is kept in f32 for every weight dtype.
# - Attention: GQA (query head i uses KV head i // (heads / kv_heads)), rotate-half RoPE over the
#   whole head with f32 inverse frequencies 1 / theta^(2j/d), logits = q.k * attn_output_multiplier
#   (NOT head_dim^-0.5), then attn_logit_softcapping * tanh(logits / cap), masked with -1e30
#   (causal x key mask), softmax in f32. Keys whose token is pad_token_id are masked, as the
#   release does, in addition to any attention_mask.
# - MoE: router logits x @ W_router in f32, softmax over ALL experts in f32, top-k with ties to
#   the lower index, gates NOT renormalised, no cap on router logits; expert =
#   (gelu_tanh(x W_linear) * (x W_linear_v)) W_linear_1 (tanh GELU, like jax.nn.gelu; the ports'
#   erf GELU is not the release's).
# - Positions are arange(past, past + T): left padding shifts positions, as in the release.
# - The KV cache is transformers' DynamicCache (argument `past_key_values` in 4.x, `cache` in 5.x).
"""Grok-1 model (grokit)."""

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

try:  # transformers 5.x: initializers that skip weights already loaded from the checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x only initializes missing weights anyway
    _init = nn.init

from .configuration_grok1 import Grok1Config

# transformers 5.x calls the KV cache `cache` (argument and output field); 4.x `past_key_values`.
# Both spellings are accepted, and outputs use the installed version's field.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

# The release masks with -1e30 (jnp.where(mask, logits, -1e30)), not -inf: a query whose every key
# is masked then attends uniformly instead of producing NaN.
_MASKED = -1e30


class Grok1RMSNorm(nn.Module):
    """RMSNorm with the release's parameter name `scale`, computed in f32."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.scale.float() * y


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE in f32: x*cos + rotate_half(x)*sin, rotate_half([a, b]) = [-b, a]."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rot = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return xf * cos + rot * sin


def _rope_tables(config: Grok1Config, positions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [T, head_dim] in f32 for integer positions, computed on the fly (no buffer, so
    nothing depends on how a transformers version materialises non-persistent buffers)."""
    d = config.head_dim
    inv_freq = 1.0 / (
        torch.tensor(float(config.rope_theta), dtype=torch.float32)
        ** (torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) / d)
    )
    phase = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    phase = torch.cat((phase, phase), dim=-1)
    return phase.cos(), phase.sin()


class Grok1Attention(nn.Module):
    def __init__(self, config: Grok1Config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, allowed, past_key_values: Optional[Cache]):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        dtype = v.dtype
        q = _rope(q, cos, sin).to(dtype)
        k = _rope(k, cos, sin).to(dtype)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        groups = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        logits = torch.matmul(q, k.transpose(-1, -2)).float() * self.config.attn_output_multiplier
        cap = self.config.attn_logit_softcapping
        if cap:
            logits = cap * torch.tanh(logits / cap)
        logits = torch.where(allowed[:, None, :, :], logits, torch.full_like(logits, _MASKED))
        weights = torch.softmax(logits, dim=-1).to(dtype)
        o = torch.matmul(weights, v).transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(o)


class Grok1Expert(nn.Module):
    """One expert, with the release's names: `linear` (GELU side), `linear_v`, `linear_1`."""

    def __init__(self, config: Grok1Config):
        super().__init__()
        d, f = config.hidden_size, config.intermediate_size
        self.linear = nn.Linear(d, f, bias=False)
        self.linear_v = nn.Linear(d, f, bias=False)
        self.linear_1 = nn.Linear(f, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.linear(x).float(), approximate="tanh") * self.linear_v(x).float()
        return self.linear_1(h.to(x.dtype))


class Grok1MoE(nn.Module):
    def __init__(self, config: Grok1Config):
        super().__init__()
        self.config = config
        self.top_k = config.num_experts_per_tok
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList([Grok1Expert(config) for _ in range(config.num_experts)])

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W_router in f32 (the router is kept in f32 whatever the model dtype)."""
        return F.linear(x.float(), self.gate.weight.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        probs = torch.softmax(self.router_logits(flat), dim=-1)
        # A stable descending sort keeps equal probabilities in index order: ties go to the lower
        # index, like jax.lax.top_k (torch.topk does not promise that).
        gates, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
        gates, idx = gates[:, : self.top_k], idx[:, : self.top_k]
        out = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(idx == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            y = expert(flat[rows]).float()
            out.index_add_(0, rows, y * gates[rows, slot, None])
        return out.view(b, t, d)


class Grok1DecoderLayer(nn.Module):
    def __init__(self, config: Grok1Config, layer_idx: int):
        super().__init__()
        eps = config.rms_norm_eps
        self.attn = Grok1Attention(config, layer_idx)
        self.moe_block = Grok1MoE(config)
        self.pre_attn_norm = Grok1RMSNorm(config.hidden_size, eps)
        self.post_attn_norm = Grok1RMSNorm(config.hidden_size, eps)
        self.pre_moe_norm = Grok1RMSNorm(config.hidden_size, eps)
        self.post_moe_norm = Grok1RMSNorm(config.hidden_size, eps)

    def forward(self, h, dtype, cos, sin, allowed, past_key_values):
        a = self.attn(self.pre_attn_norm(h).to(dtype), cos, sin, allowed, past_key_values)
        h = h + self.post_attn_norm(a)
        m = self.moe_block(self.pre_moe_norm(h).to(dtype))
        return h + self.post_moe_norm(m)


class Grok1PreTrainedModel(PreTrainedModel):
    config_class = Grok1Config
    base_model_prefix = "model"
    _no_split_modules = ["Grok1DecoderLayer"]
    # The release keeps the router and the norm scales in f32 whatever the activation dtype.
    _keep_in_fp32_modules_strict = [
        "gate",
        "pre_attn_norm",
        "post_attn_norm",
        "pre_moe_norm",
        "post_moe_norm",
        "norm",
    ]
    _supports_cache_class = True
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, Grok1RMSNorm):
            _init.ones_(module.scale)


class Grok1Model(Grok1PreTrainedModel):
    """The decoder: token embedding, layers and final norm (hidden states in f32)."""

    def __init__(self, config: Grok1Config):
        super().__init__(config)
        for name in ("router_logit_softcapping", "moe_renormalize"):
            if getattr(config, name, None):
                raise ValueError(
                    f"config.{name} = {getattr(config, name)!r}: this modeling code computes "
                    "Grok-1 as released (no router cap, gates not renormalised)"
                )
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [Grok1DecoderLayer(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = Grok1RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        use_cache: Optional[bool] = None,
        cache: Optional[Cache] = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if cache is not None:
            past_key_values = cache
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        dtype = self.embed_tokens.weight.dtype
        if not dtype.is_floating_point:
            dtype = torch.bfloat16
        x = inputs_embeds.to(dtype) * self.config.embedding_multiplier_scale
        b, t, _ = x.shape
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        total = past + t
        positions = torch.arange(past, total, device=x.device)
        cos, sin = _rope_tables(self.config, positions)
        allowed = self._allowed(input_ids, attention_mask, b, t, past, total, x.device)
        h = x.float()
        for layer in self.layers:
            h = layer(h, dtype, cos, sin, allowed, past_key_values if use_cache else None)
        h = self.norm(h)
        return BaseModelOutputWithPast(
            last_hidden_state=h, **{_CACHE_FIELD: past_key_values if use_cache else None}
        )

    def _allowed(self, input_ids, attention_mask, b, t, past, total, device):
        """[B, T, past+T] booleans: causal x key mask (attention_mask, and pad tokens as keys)."""
        keys = torch.ones(b, total, dtype=torch.bool, device=device)
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape[-1] != total:
                raise ValueError(
                    f"attention_mask must be [batch, past + new] = [{b}, {total}], "
                    f"got {tuple(attention_mask.shape)}"
                )
            keys &= attention_mask.to(device).bool()
        pad = self.config.pad_token_id
        if input_ids is not None and pad is not None:
            keys[:, past:] &= input_ids.to(device) != pad
        q = torch.arange(past, total, device=device)[:, None]
        k = torch.arange(total, device=device)[None, :]
        return (k <= q)[None, :, :] & keys[:, None, :]


class Grok1ModelForCausalLM(Grok1PreTrainedModel, GenerationMixin):
    """Grok-1 with its tied output head: logits = h @ E^T * output_multiplier_scale, in f32."""

    def __init__(self, config: Grok1Config):
        super().__init__(config)
        self.model = Grok1Model(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        # The head IS the input embedding (no separate module to tie).
        return None

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        cache: Optional[Cache] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> Union[Tuple, CausalLMOutputWithPast]:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            past_key_values=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        new_cache = getattr(out, _CACHE_FIELD)
        h = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            h = h[:, -logits_to_keep:, :]
        elif isinstance(logits_to_keep, torch.Tensor):
            h = h[:, logits_to_keep, :]
        e = self.model.embed_tokens.weight
        logits = F.linear(h.to(e.dtype), e).float() * self.config.output_multiplier_scale
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1, :].reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=-100,
            )
        if return_dict is False:
            return tuple(v for v in (loss, logits, new_cache) if v is not None)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: new_cache})
