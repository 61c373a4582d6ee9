//! The role table: ONE row per parameter role, with every name it has in every format.
//! Slot numbers are the position inside a layer's 12 consecutive release files
//! (grok1-checkpoint.md §2.3); GGUF names are llama.cpp's `grok` names (output-formats.md §3.3);
//! `hf` is the hpcai-tech/vLLM `Grok1ModelForCausalLM` layout and `jax` the keyfan-style names
//! llama.cpp's HF converter maps (§1.5). `{L}` is the layer, `{E}` the expert.

/// What a parameter does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Token embedding (tied output head), f32 [V, D].
    Embed,
    /// Final RMSNorm scale [D].
    FinalNorm,
    /// Expert gate projection (`moe/linear`, GELU side), int8 [E, D, F].
    MoeGate,
    /// Expert down projection (`moe/linear_1`), int8 [E, F, D], 8 row blocks.
    MoeDown,
    /// Expert up projection (`moe/linear_v`), int8 [E, D, F].
    MoeUp,
    /// Key projection, int8 [D, K·hd].
    AttnK,
    /// Output projection (`multi_head_attention/linear`), int8 [H·hd, D], 8 row blocks.
    AttnO,
    /// Query projection, int8 [D, H·hd].
    AttnQ,
    /// Value projection, int8 [D, K·hd].
    AttnV,
    /// Pre-attention RMSNorm (`rms_norm`).
    PreAttnNorm,
    /// Post-attention RMSNorm (`rms_norm_1`).
    PostAttnNorm,
    /// Pre-MoE RMSNorm (`rms_norm_2`).
    PreMoeNorm,
    /// Post-MoE RMSNorm (`rms_norm_3`).
    PostMoeNorm,
    /// Router, f32 [D, E].
    Router,
}

/// One row of [`ROLES`].
#[derive(Clone, Copy, Debug)]
pub struct RoleInfo {
    /// The role.
    pub role: Role,
    /// Slot within a layer's 12 files (None for the two global tensors).
    pub slot: Option<usize>,
    /// Release path (haiku module path + parameter), with `{L}`.
    pub path: &'static str,
    /// True for `QuantizedWeight8bit` (int8 + bf16 scales); false for plain f32.
    pub quantized: bool,
    /// Scale row blocks B in the release (1 = per column, 8 = per 1/8 of the rows).
    pub scale_blocks: u64,
    /// llama.cpp GGUF name.
    pub gguf: &'static str,
    /// hpcai-tech / vLLM name (`--layout hf`).
    pub hf: &'static str,
    /// keyfan / JAX-style HF name (`--layout jax`).
    pub jax: &'static str,
    /// True for per-expert tensors (stacked [E, ...] in the release and in GGUF).
    pub experts: bool,
}

macro_rules! role {
    ($role:ident, $slot:expr, $path:literal, $q:literal, $b:literal, $gguf:literal, $hf:literal, $jax:literal, $e:literal) => {
        RoleInfo { role: Role::$role, slot: $slot, path: $path, quantized: $q, scale_blocks: $b, gguf: $gguf, hf: $hf, jax: $jax, experts: $e }
    };
}

/// The role table. Per-layer rows are in slot order (= the release's file order within a layer).
pub const ROLES: &[RoleInfo] = &[
    role!(
        Embed,
        None,
        "language_model/in_out_embed/embeddings",
        false,
        0,
        "token_embd.weight",
        "model.embed_tokens.weight",
        "transformer.in_out_embed.weight",
        false
    ),
    role!(
        FinalNorm,
        None,
        "language_model/rms_norm/scale",
        false,
        0,
        "output_norm.weight",
        "model.norm.scale",
        "transformer.rms_norm.weight",
        false
    ),
    role!(
        MoeGate,
        Some(0),
        "transformer/decoder_layer_{L}/moe/linear/w",
        true,
        1,
        "blk.{L}.ffn_gate_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear.weight",
        true
    ),
    role!(
        MoeDown,
        Some(1),
        "transformer/decoder_layer_{L}/moe/linear_1/w",
        true,
        8,
        "blk.{L}.ffn_down_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear_1.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear_1.weight",
        true
    ),
    role!(
        MoeUp,
        Some(2),
        "transformer/decoder_layer_{L}/moe/linear_v/w",
        true,
        1,
        "blk.{L}.ffn_up_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear_v.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear_v.weight",
        true
    ),
    role!(
        AttnK,
        Some(3),
        "transformer/decoder_layer_{L}/multi_head_attention/key/w",
        true,
        1,
        "blk.{L}.attn_k.weight",
        "model.layers.{L}.attn.k_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.key.weight",
        false
    ),
    role!(
        AttnO,
        Some(4),
        "transformer/decoder_layer_{L}/multi_head_attention/linear/w",
        true,
        8,
        "blk.{L}.attn_output.weight",
        "model.layers.{L}.attn.o_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.linear.weight",
        false
    ),
    role!(
        AttnQ,
        Some(5),
        "transformer/decoder_layer_{L}/multi_head_attention/query/w",
        true,
        1,
        "blk.{L}.attn_q.weight",
        "model.layers.{L}.attn.q_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.query.weight",
        false
    ),
    role!(
        AttnV,
        Some(6),
        "transformer/decoder_layer_{L}/multi_head_attention/value/w",
        true,
        1,
        "blk.{L}.attn_v.weight",
        "model.layers.{L}.attn.v_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.value.weight",
        false
    ),
    role!(
        PreAttnNorm,
        Some(7),
        "transformer/decoder_layer_{L}/rms_norm/scale",
        false,
        0,
        "blk.{L}.attn_norm.weight",
        "model.layers.{L}.pre_attn_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm.weight",
        false
    ),
    role!(
        PostAttnNorm,
        Some(8),
        "transformer/decoder_layer_{L}/rms_norm_1/scale",
        false,
        0,
        "blk.{L}.attn_output_norm.weight",
        "model.layers.{L}.post_attn_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_1.weight",
        false
    ),
    role!(
        PreMoeNorm,
        Some(9),
        "transformer/decoder_layer_{L}/rms_norm_2/scale",
        false,
        0,
        "blk.{L}.ffn_norm.weight",
        "model.layers.{L}.pre_moe_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_2.weight",
        false
    ),
    role!(
        PostMoeNorm,
        Some(10),
        "transformer/decoder_layer_{L}/rms_norm_3/scale",
        false,
        0,
        "blk.{L}.layer_output_norm.weight",
        "model.layers.{L}.post_moe_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_3.weight",
        false
    ),
    role!(
        Router,
        Some(11),
        "transformer/decoder_layer_{L}/router/w",
        false,
        0,
        "blk.{L}.ffn_gate_inp.weight",
        "model.layers.{L}.moe_block.gate.weight",
        "transformer.decoder_layer.{L}.router.weight",
        false
    ),
];

/// Per-layer slots.
pub const SLOTS_PER_LAYER: usize = 12;

impl Role {
    /// This role's row.
    pub fn info(self) -> &'static RoleInfo {
        ROLES.iter().find(|r| r.role == self).unwrap_or(&ROLES[0])
    }
    /// The role in a per-layer slot.
    pub fn from_slot(slot: usize) -> Option<Role> {
        ROLES.iter().find(|r| r.slot == Some(slot)).map(|r| r.role)
    }
    /// True for the four RMSNorm scales and the final norm.
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Role::FinalNorm
                | Role::PreAttnNorm
                | Role::PostAttnNorm
                | Role::PreMoeNorm
                | Role::PostMoeNorm
        )
    }
    /// True for 2-D/3-D weight matrices stored as int8 in the release.
    pub fn is_matrix(self) -> bool {
        self.info().quantized
    }
}

/// Fill `{L}` and `{E}` in a name template.
pub fn fill(template: &str, layer: Option<u64>, expert: Option<u64>) -> String {
    let mut s = template.to_string();
    if let Some(l) = layer {
        s = s.replace("{L}", &l.to_string());
    }
    if let Some(e) = expert {
        s = s.replace("{E}", &e.to_string());
    }
    s
}

/// The role and layer of a release path such as `transformer/decoder_layer_12/router/w`.
pub fn parse_path(path: &str) -> Option<(Role, Option<u64>)> {
    for r in ROLES {
        match r.path.split_once("{L}") {
            None if r.path == path => return Some((r.role, None)),
            None => {}
            Some((pre, post)) => {
                if let Some(rest) = path.strip_prefix(pre).and_then(|x| x.strip_suffix(post)) {
                    if !rest.is_empty()
                        && rest.bytes().all(|b| b.is_ascii_digit())
                        && (rest == "0" || !rest.starts_with('0'))
                    {
                        return Some((r.role, rest.parse().ok()));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_paths() {
        assert_eq!(
            parse_path("transformer/decoder_layer_12/router/w"),
            Some((Role::Router, Some(12)))
        );
        assert_eq!(
            parse_path("language_model/in_out_embed/embeddings"),
            Some((Role::Embed, None))
        );
        assert_eq!(
            parse_path("transformer/decoder_layer_0/rms_norm_1/scale"),
            Some((Role::PostAttnNorm, Some(0)))
        );
        assert_eq!(parse_path("transformer/decoder_layer_01/router/w"), None);
        assert_eq!(parse_path("transformer/decoder_layer_x/router/w"), None);
    }
}
