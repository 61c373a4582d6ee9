# configuration_grok1.py: the Hugging Face configuration of xAI's Grok-1, as released.
#
# Written by grokit (the Grok-1 toolkit) beside the safetensors shards of
# `grokit convert --to safetensors --layout hf`, with `auto_map` in config.json pointing here, so
# that `AutoConfig.from_pretrained(dir, trust_remote_code=True)` loads it. Source of truth:
# python/grokit_hf/configuration_grok1.py in the grokit repository (embedded in the binary).
#
# Copyright 2026 the grokit authors. Licensed under the Apache License, Version 2.0
# (http://www.apache.org/licenses/LICENSE-2.0). Not derived from any other Grok-1 port.
#
# Defaults are Grok-1's own (xai-org/grok-1 model.py): a converted checkpoint's config.json
# states every field anyway. Works with transformers 4.57 and 5.x.
"""Grok-1 configuration (grokit)."""

try:  # transformers 5.x spells it PreTrainedConfig; 4.x PretrainedConfig (5.x keeps an alias)
    from transformers.configuration_utils import PreTrainedConfig as _Base
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers.configuration_utils import PretrainedConfig as _Base


class Grok1Config(_Base):
    """Hyper-parameters of Grok-1 and of checkpoints with its architecture.

    The model computes exactly what the release computes (modeling_grok1.py). Fields that other
    engines read to choose between the release's numerics and their own variants are kept here
    with the release's values: ``router_logit_softcapping = 0`` (no cap on router logits),
    ``moe_renormalize = False`` (top-2 gates are the softmax probabilities), ``hidden_act =
    "gelu_pytorch_tanh"`` (tanh GELU), ``attn_logit_softcapping = 30`` and
    ``attn_output_multiplier`` (the attention-logit multiplier, not ``head_dim ** -0.5``).
    """

    model_type = "grok-1"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=131072,
        hidden_size=6144,
        intermediate_size=32768,
        num_hidden_layers=64,
        num_attention_heads=48,
        num_key_value_heads=8,
        head_dim=None,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="gelu_pytorch_tanh",
        attn_output_multiplier=0.08838834764831845,
        embedding_multiplier_scale=78.38367176906169,
        output_multiplier_scale=0.5773502691896257,
        attn_logit_softcapping=30.0,
        max_attn_value=None,
        router_logit_softcapping=0.0,
        moe_renormalize=False,
        num_experts=8,
        num_local_experts=None,
        num_experts_per_tok=2,
        use_cache=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.hidden_act = hidden_act
        self.attn_output_multiplier = attn_output_multiplier
        self.embedding_multiplier_scale = embedding_multiplier_scale
        self.output_multiplier_scale = output_multiplier_scale
        # `max_attn_value` is the hpcai-tech port's name for the same cap.
        self.attn_logit_softcapping = (
            attn_logit_softcapping if max_attn_value is None else max_attn_value
        )
        self.max_attn_value = self.attn_logit_softcapping
        self.router_logit_softcapping = router_logit_softcapping
        self.moe_renormalize = moe_renormalize
        self.num_experts = num_experts if num_local_experts is None else num_local_experts
        self.num_local_experts = self.num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.use_cache = use_cache
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
