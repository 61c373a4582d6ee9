//! [`ModelDims`]: the hyper-parameters the forward pass runs with, where each one comes from in
//! every format ([`DIM_FIELDS`], rows of the one key table), and the checks they pass before anything is sized by them.
//!
//! Why checks here: the dims come from files (a release `config.json`, GGUF metadata, a
//! safetensors `config.json`) and size every buffer of the forward pass. A `grok.block_count`
//! of 2^40 or a `head_dim` of 10^12 must be refused with the key and file named, before any
//! allocation, and a NaN epsilon or an infinite multiplier must not quietly produce NaN logits.
//! [`ModelDims::validate`] applies the caps and sanity rules; the sources
//! ([`super::sources`]) then check every dimension against the tensors actually present.

use super::ReferenceError;
use crate::model::keys::{Field, KeyFormat};
use crate::model::Config;

/// Hyper-parameters of a Grok-1-shaped model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDims {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Residual width D.
    pub d_model: usize,
    /// Decoder layers.
    pub n_layers: usize,
    /// Query heads H.
    pub n_q_heads: usize,
    /// Key/value heads K (H % K == 0).
    pub n_kv_heads: usize,
    /// Head width (even).
    pub head_dim: usize,
    /// Experts per MoE layer.
    pub n_experts: usize,
    /// Experts used per token.
    pub top_k: usize,
    /// Expert hidden width F.
    pub ffn: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base.
    pub rope_base: f32,
    /// Attention-logit soft cap (`c·tanh(x/c)`).
    pub attn_cap: f32,
    /// Embedding multiplier.
    pub emb_mult: f32,
    /// Output (logit) multiplier.
    pub out_mult: f32,
    /// Attention-logit multiplier.
    pub attn_mult: f32,
    /// Padding token id (masked as a key wherever it occurs).
    pub pad_id: u32,
    /// Maximum context: positions a sequence may reach (prompt and generated tokens).
    pub max_seq: usize,
    /// Optional soft cap on the router logits, `c·tanh(x/c)` before the softmax. `None` (the
    /// default everywhere) is the release; `Some(30.0)` is what SGLang's Grok-1 does, kept as a
    /// knob to measure that departure.
    pub router_cap: Option<f32>,
}

/// Largest vocabulary accepted (16 Mi tokens; Grok-1: 131072).
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest residual width (Grok-1: 6144).
pub const MAX_D_MODEL: usize = 1 << 17;
/// Most decoder layers (Grok-1: 64).
pub const MAX_LAYERS: usize = 4096;
/// Most attention heads (Grok-1: 48).
pub const MAX_HEADS: usize = 1 << 12;
/// Widest head (Grok-1: 128).
pub const MAX_HEAD_DIM: usize = 1 << 12;
/// Most experts (Grok-1: 8).
pub const MAX_EXPERTS: usize = 1 << 12;
/// Widest expert (Grok-1: 32768).
pub const MAX_FFN: usize = 1 << 20;
/// Longest context (Grok-1: 8192).
pub const MAX_CONTEXT: usize = 1 << 22;

/// Which [`Config`] field (and so which row of [`CONFIG_KEYS`], the one table of every
/// format's key names) each [`ModelDims`] field comes from. `None`: not a key in any format
/// (the router cap is grokit's own knob).
///
/// [`CONFIG_KEYS`]: crate::model::keys::CONFIG_KEYS
pub const DIM_FIELDS: &[(&str, Option<Field>)] = &[
    ("vocab", Some(Field::VocabSize)),
    ("d_model", Some(Field::EmbSize)),
    ("n_layers", Some(Field::NumLayers)),
    ("n_q_heads", Some(Field::NumQHeads)),
    ("n_kv_heads", Some(Field::NumKvHeads)),
    ("head_dim", Some(Field::KeySize)),
    ("n_experts", Some(Field::NumExperts)),
    ("top_k", Some(Field::NumSelectedExperts)),
    ("ffn", Some(Field::FfnSize)),
    ("rms_eps", Some(Field::RmsNormEps)),
    ("rope_base", Some(Field::RopeBase)),
    ("attn_cap", Some(Field::AttnLogitCap)),
    ("emb_mult", Some(Field::EmbeddingMultiplierScale)),
    ("out_mult", Some(Field::OutputMultiplierScale)),
    ("attn_mult", Some(Field::AttnOutputMultiplier)),
    ("pad_id", Some(Field::PadToken)),
    ("max_seq", Some(Field::MaxSeqLen)),
    ("router_cap", None),
];

/// The key that carries the [`ModelDims`] field `field` in format `f` (its name in the key
/// table), or the field's own name where `f` has no key for it: what an error names.
pub fn key_name(field: &'static str, f: KeyFormat) -> &'static str {
    if field == "vocab" && f == KeyFormat::Gguf {
        // GGUF readers take the vocabulary from the embedding's rows (the key is optional).
        return "token_embd.weight (rows)";
    }
    DIM_FIELDS
        .iter()
        .find(|(n, _)| *n == field)
        .and_then(|(_, c)| c.and_then(|c| c.key_name(f)))
        .unwrap_or(field)
}

/// A dims problem: the [`ModelDims`] field and what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct DimsProblem {
    /// The field (its name in [`DIM_FIELDS`]).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl DimsProblem {
    /// The error naming `file` and this field's key in `format`.
    pub fn into_error(self, file: &str, format: KeyFormat) -> ReferenceError {
        ReferenceError::Metadata {
            file: file.to_string(),
            key: key_name(self.field, format).to_string(),
            reason: self.reason,
        }
    }
}

fn sat(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

impl ModelDims {
    /// The dims of a release configuration, checked ([`ModelDims::problem`]); an error names
    /// the configuration key (`model::Config` field, the release's `config.json` name).
    pub fn from_config(c: &Config) -> Result<ModelDims, ReferenceError> {
        let d = ModelDims::from_config_unchecked(c);
        match d.problem() {
            None => Ok(d),
            Some(p) => Err(p.into_error("the configuration", KeyFormat::Release)),
        }
    }

    /// The dims of a configuration, unchecked (values beyond `usize` saturate, so
    /// [`ModelDims::problem`] refuses them).
    pub fn from_config_unchecked(c: &Config) -> ModelDims {
        ModelDims {
            vocab: sat(c.vocab_size),
            d_model: sat(c.emb_size),
            n_layers: sat(c.num_layers),
            n_q_heads: sat(c.num_q_heads),
            n_kv_heads: sat(c.num_kv_heads),
            head_dim: sat(c.key_size),
            n_experts: sat(c.num_experts),
            top_k: sat(c.num_selected_experts),
            ffn: sat(c.ffn_size),
            rms_eps: c.rms_norm_eps as f32,
            rope_base: c.rope_base as f32,
            attn_cap: c.attn_logit_cap as f32,
            emb_mult: c.embedding_multiplier_scale as f32,
            out_mult: c.output_multiplier_scale as f32,
            attn_mult: c.attn_output_multiplier as f32,
            pad_id: c.pad_token,
            max_seq: sat(c.max_seq_len),
            router_cap: None,
        }
    }

    /// The released Grok-1 (314B), from [`Config::grok1`].
    pub fn grok1() -> ModelDims {
        ModelDims::from_config_unchecked(&Config::grok1())
    }

    /// The first problem of these dims, if any: every size within its cap (so nothing sized by
    /// them can overflow or exhaust memory), heads and experts consistent, floats finite and
    /// positive.
    pub fn problem(&self) -> Option<DimsProblem> {
        let bad = |field: &'static str, reason: String| Some(DimsProblem { field, reason });
        for (field, v, lo, cap) in [
            ("vocab", self.vocab, 1, MAX_VOCAB),
            ("d_model", self.d_model, 1, MAX_D_MODEL),
            ("n_layers", self.n_layers, 0, MAX_LAYERS),
            ("n_q_heads", self.n_q_heads, 1, MAX_HEADS),
            ("n_kv_heads", self.n_kv_heads, 1, MAX_HEADS),
            ("head_dim", self.head_dim, 2, MAX_HEAD_DIM),
            ("n_experts", self.n_experts, 1, MAX_EXPERTS),
            ("top_k", self.top_k, 1, MAX_EXPERTS),
            ("ffn", self.ffn, 1, MAX_FFN),
            ("max_seq", self.max_seq, 1, MAX_CONTEXT),
        ] {
            if v < lo {
                return bad(field, format!("{v} is below the minimum {lo}"));
            }
            if v > cap {
                return bad(field, format!("{v} exceeds the limit {cap}"));
            }
        }
        if !self.n_q_heads.is_multiple_of(self.n_kv_heads) {
            return bad(
                "n_kv_heads",
                format!(
                    "{} query heads are not a multiple of {} kv heads",
                    self.n_q_heads, self.n_kv_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(
                "head_dim",
                format!("{} is odd (RoPE needs pairs)", self.head_dim),
            );
        }
        if self.top_k > self.n_experts {
            return bad(
                "top_k",
                format!("{} exceeds the {} experts", self.top_k, self.n_experts),
            );
        }
        if self.n_q_heads * self.head_dim > MAX_D_MODEL {
            return bad(
                "n_q_heads",
                format!(
                    "{} heads of {} exceed the width limit {MAX_D_MODEL}",
                    self.n_q_heads, self.head_dim
                ),
            );
        }
        if self.pad_id as usize >= self.vocab {
            return bad(
                "pad_id",
                format!(
                    "{} is outside the vocabulary 0..{}",
                    self.pad_id, self.vocab
                ),
            );
        }
        for (field, v) in [
            ("rms_eps", self.rms_eps),
            ("rope_base", self.rope_base),
            ("attn_cap", self.attn_cap),
            ("emb_mult", self.emb_mult),
            ("out_mult", self.out_mult),
            ("attn_mult", self.attn_mult),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return bad(field, format!("{v} (must be a finite number above 0)"));
            }
            if f64::from(v) > crate::model::Config::MAX_REAL {
                return bad(
                    field,
                    format!("{v} (exceeds {:e})", crate::model::Config::MAX_REAL),
                );
            }
        }
        if self.rms_eps >= 1.0 {
            return bad(
                "rms_eps",
                format!("{} (an epsilon must be below 1)", self.rms_eps),
            );
        }
        if let Some(c) = self.router_cap {
            if !c.is_finite() || c <= 0.0 {
                return bad(
                    "router_cap",
                    format!("{c} (must be a finite number above 0)"),
                );
            }
        }
        None
    }

    /// [`ModelDims::problem`] as an error naming the field.
    pub fn validate(&self) -> Result<(), ReferenceError> {
        match self.problem() {
            None => Ok(()),
            Some(p) => Err(ReferenceError::Input(format!(
                "model dims: {} {}",
                p.field, p.reason
            ))),
        }
    }

    /// Query width H · head_dim.
    pub fn q_width(&self) -> usize {
        self.n_q_heads * self.head_dim
    }

    /// Key/value width K · head_dim.
    pub fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Bytes of activations one position costs while a chunk is in flight (hidden state, the
    /// normed copies, q/k/v, the attention output, the routed expert activations): an estimate
    /// for sizing batches, not an exact count.
    pub fn bytes_per_position(&self) -> u64 {
        let (d, q, kv, f, k) = (
            self.d_model as u64,
            self.q_width() as u64,
            self.kv_width() as u64,
            self.ffn as u64,
            self.top_k as u64,
        );
        4 * (8 * d + 2 * q + 2 * kv + k * (2 * f + 3 * d))
    }

    /// Bytes of KV cache one cached position costs over all layers.
    pub fn kv_bytes_per_position(&self) -> u64 {
        4 * 2 * self.kv_width() as u64 * self.n_layers as u64
    }

    /// Bytes of one row of logits.
    pub fn logit_row_bytes(&self) -> u64 {
        4 * self.vocab as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grok1_dims_and_checks() {
        let g = ModelDims::grok1();
        assert_eq!(
            (g.vocab, g.d_model, g.n_layers, g.ffn),
            (131_072, 6144, 64, 32_768)
        );
        assert_eq!(g.problem(), None);
        let with = |f: &dyn Fn(&mut ModelDims)| {
            let mut d = ModelDims::grok1();
            f(&mut d);
            d.problem().map(|p| p.field)
        };
        assert_eq!(with(&|d| d.n_layers = 1 << 40), Some("n_layers"));
        assert_eq!(with(&|d| d.head_dim = 1 << 40), Some("head_dim"));
        assert_eq!(with(&|d| d.n_q_heads = 1 << 40), Some("n_q_heads"));
        assert_eq!(with(&|d| d.rms_eps = f32::NAN), Some("rms_eps"));
        assert_eq!(with(&|d| d.rms_eps = -1e-5), Some("rms_eps"));
        assert_eq!(with(&|d| d.rope_base = 0.0), Some("rope_base"));
        assert_eq!(with(&|d| d.emb_mult = 1e300f64 as f32), Some("emb_mult"));
        assert_eq!(with(&|d| d.vocab = 0), Some("vocab"));
        assert_eq!(with(&|d| d.n_kv_heads = 5), Some("n_kv_heads"));
        assert_eq!(
            with(&|d| d.router_cap = Some(f32::INFINITY)),
            Some("router_cap")
        );
        assert_eq!(with(&|d| d.router_cap = Some(30.0)), None);
        assert_eq!(key_name("n_layers", KeyFormat::Gguf), "grok.block_count");
        assert_eq!(key_name("head_dim", KeyFormat::Hf), "head_dim");
        assert_eq!(
            key_name("vocab", KeyFormat::Gguf),
            "token_embd.weight (rows)"
        );
        assert_eq!(key_name("router_cap", KeyFormat::Hf), "router_cap");
    }
}
