//! The role table: ONE row per parameter role, with its release shape and orientation, its
//! quantization class, and every name it has in every format. Planners read these columns
//! instead of matching on roles or names. Slot numbers are the position inside a layer's 12
//! consecutive release files (docs/formats/grok-checkpoint.md "File order"); GGUF names are
//! llama.cpp's `grok` names (docs/formats/gguf-output.md "Grok tensors"); `hf` is the
//! hpcai-tech/vLLM `Grok1ModelForCausalLM` layout and `jax` the keyfan-style names llama.cpp's
//! HF converter maps (docs/formats/safetensors-output.md "Tensor names"). `{L}` is the layer,
//! `{E}` the expert.

use super::config::{Config, Dim};
use crate::quant::policy::TensorClass;

/// What a parameter does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Token embedding (tied output head), f32 [V, D].
    Embed,
    /// Final RMSNorm scale, `[D]`.
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
    /// The release's shape, in sizes of the configuration (experts first for expert tensors).
    pub dims: &'static [Dim],
    /// True when the release stores the matrix as [in, out] (haiku's `x @ W`): every output
    /// format stores [out, in], so an output row is a release column.
    pub transposed: bool,
    /// True for `QuantizedWeight8bit` (int8 + bf16 scales); false for plain f32.
    pub quantized: bool,
    /// Scale row blocks B in the release (1 = per column, 8 = per 1/8 of the rows).
    pub scale_blocks: u64,
    /// The class a quantization policy chooses a type for.
    pub class: TensorClass,
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
    ($role:ident, $slot:expr, $path:literal, [$($dim:ident),*], $tr:literal, $q:literal, $b:literal,
     $class:ident, $gguf:literal, $hf:literal, $jax:literal) => {
        RoleInfo {
            role: Role::$role,
            slot: $slot,
            path: $path,
            dims: &[$(Dim::$dim),*],
            transposed: $tr,
            quantized: $q,
            scale_blocks: $b,
            class: TensorClass::$class,
            gguf: $gguf,
            hf: $hf,
            jax: $jax,
            experts: matches!([$(Dim::$dim),*], [Dim::Experts, ..]),
        }
    };
}

/// The role table. Per-layer rows are in slot order (= the release's file order within a layer).
pub const ROLES: &[RoleInfo] = &[
    role!(
        Embed,
        None,
        "language_model/in_out_embed/embeddings",
        [Vocab, Model],
        false,
        false,
        0,
        TokenEmbd,
        "token_embd.weight",
        "model.embed_tokens.weight",
        "transformer.in_out_embed.weight"
    ),
    role!(
        FinalNorm,
        None,
        "language_model/rms_norm/scale",
        [Model],
        false,
        false,
        0,
        Norm,
        "output_norm.weight",
        "model.norm.scale",
        "transformer.rms_norm.weight"
    ),
    role!(
        MoeGate,
        Some(0),
        "transformer/decoder_layer_{L}/moe/linear/w",
        [Experts, Model, Ffn],
        true,
        true,
        1,
        FfnGateExps,
        "blk.{L}.ffn_gate_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear.weight"
    ),
    role!(
        MoeDown,
        Some(1),
        "transformer/decoder_layer_{L}/moe/linear_1/w",
        [Experts, Ffn, Model],
        true,
        true,
        8,
        FfnDownExps,
        "blk.{L}.ffn_down_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear_1.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear_1.weight"
    ),
    role!(
        MoeUp,
        Some(2),
        "transformer/decoder_layer_{L}/moe/linear_v/w",
        [Experts, Model, Ffn],
        true,
        true,
        1,
        FfnUpExps,
        "blk.{L}.ffn_up_exps.weight",
        "model.layers.{L}.moe_block.experts.{E}.linear_v.weight",
        "transformer.decoder_layer.{L}.moe.{E}.linear_v.weight"
    ),
    role!(
        AttnK,
        Some(3),
        "transformer/decoder_layer_{L}/multi_head_attention/key/w",
        [Model, KvWidth],
        true,
        true,
        1,
        AttnK,
        "blk.{L}.attn_k.weight",
        "model.layers.{L}.attn.k_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.key.weight"
    ),
    role!(
        AttnO,
        Some(4),
        "transformer/decoder_layer_{L}/multi_head_attention/linear/w",
        [QWidth, Model],
        true,
        true,
        8,
        AttnOutput,
        "blk.{L}.attn_output.weight",
        "model.layers.{L}.attn.o_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.linear.weight"
    ),
    role!(
        AttnQ,
        Some(5),
        "transformer/decoder_layer_{L}/multi_head_attention/query/w",
        [Model, QWidth],
        true,
        true,
        1,
        AttnQ,
        "blk.{L}.attn_q.weight",
        "model.layers.{L}.attn.q_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.query.weight"
    ),
    role!(
        AttnV,
        Some(6),
        "transformer/decoder_layer_{L}/multi_head_attention/value/w",
        [Model, KvWidth],
        true,
        true,
        1,
        AttnV,
        "blk.{L}.attn_v.weight",
        "model.layers.{L}.attn.v_proj.weight",
        "transformer.decoder_layer.{L}.multi_head_attention.value.weight"
    ),
    role!(
        PreAttnNorm,
        Some(7),
        "transformer/decoder_layer_{L}/rms_norm/scale",
        [Model],
        false,
        false,
        0,
        Norm,
        "blk.{L}.attn_norm.weight",
        "model.layers.{L}.pre_attn_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm.weight"
    ),
    role!(
        PostAttnNorm,
        Some(8),
        "transformer/decoder_layer_{L}/rms_norm_1/scale",
        [Model],
        false,
        false,
        0,
        Norm,
        "blk.{L}.attn_output_norm.weight",
        "model.layers.{L}.post_attn_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_1.weight"
    ),
    role!(
        PreMoeNorm,
        Some(9),
        "transformer/decoder_layer_{L}/rms_norm_2/scale",
        [Model],
        false,
        false,
        0,
        Norm,
        "blk.{L}.ffn_norm.weight",
        "model.layers.{L}.pre_moe_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_2.weight"
    ),
    role!(
        PostMoeNorm,
        Some(10),
        "transformer/decoder_layer_{L}/rms_norm_3/scale",
        [Model],
        false,
        false,
        0,
        Norm,
        "blk.{L}.layer_output_norm.weight",
        "model.layers.{L}.post_moe_norm.scale",
        "transformer.decoder_layer.{L}.rms_norm_3.weight"
    ),
    role!(
        Router,
        Some(11),
        "transformer/decoder_layer_{L}/router/w",
        [Model, Experts],
        true,
        false,
        0,
        Router,
        "blk.{L}.ffn_gate_inp.weight",
        "model.layers.{L}.moe_block.gate.weight",
        "transformer.decoder_layer.{L}.router.weight"
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
        self.info().class == TensorClass::Norm
    }
    /// True for the tensors every output keeps in F32 whatever the requested type: the norms
    /// and the router (llama.cpp never quantizes them either).
    pub fn stays_f32(self) -> bool {
        matches!(self.info().class, TensorClass::Norm | TensorClass::Router)
    }
    /// True for 2-D/3-D weight matrices stored as int8 in the release.
    pub fn is_matrix(self) -> bool {
        self.info().quantized
    }
}

impl RoleInfo {
    /// The release's shape of this role's parameter under `c`.
    pub fn release_shape(&self, c: &Config) -> Vec<u64> {
        self.dims.iter().map(|&d| c.dim(d)).collect()
    }
    /// The release's scales shape (int8 tensors): the shape with its row dim (second to last)
    /// replaced by the scale row blocks.
    pub fn scales_shape(&self, c: &Config) -> Option<Vec<u64>> {
        let mut s = self.release_shape(c);
        let n = s.len();
        (self.quantized && n >= 2).then(|| {
            s[n - 2] = self.scale_blocks;
            s
        })
    }
    /// The output shape of one piece (one expert of a stacked tensor): [out, in] for
    /// transposed matrices, else the release's own shape.
    pub fn piece_shape(&self, c: &Config) -> Vec<u64> {
        let mut s = self.release_shape(c);
        if self.experts {
            s.remove(0);
        }
        if self.transposed {
            s.reverse();
        }
        s
    }
}

/// A safetensors naming scheme: which column of [`ROLES`] names the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// hpcai-tech / vLLM `Grok1ModelForCausalLM` names ([`RoleInfo::hf`]).
    Hf,
    /// keyfan-style names that llama.cpp's HF converter maps ([`RoleInfo::jax`]).
    Jax,
}

impl RoleInfo {
    /// The name template of `layout`.
    pub fn st_name(&self, layout: Layout) -> &'static str {
        match layout {
            Layout::Hf => self.hf,
            Layout::Jax => self.jax,
        }
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
