//! The reference forward pass of Grok-1 on the CPU, written from the release's `model.py`.
//!
//! Why it exists: every conversion grokit makes (safetensors, GGUF, quantized variants) is
//! judged by how far its logits move from the release's own numerics. This module is that
//! yardstick, so it favours clarity and fidelity over speed: f32 everywhere by default, with an
//! optional bf16 mode that rounds where the release's bf16 (`fprop_dtype`) path rounds.
//!
//! Equations (spec `grok1-checkpoint.md` §7; the release's `model.py` at 7050ed2):
//! ```text
//! h   = bf16(E[tok]) * 78.38367176906169                      (embedding, tied with the output)
//! for layer in 0..L (NUMERIC order):
//!   h += rms_norm_1( Attn( rms_norm(h) ) )                     (sandwich norms)
//!   h += rms_norm_3( MoE ( rms_norm_2(h) ) )
//! logits = (rms_norm_final(h) @ Eᵀ) * 0.5773502691896257
//! RMSNorm(x) = scale * x * rsqrt(mean(x²) + 1e-5), in f32, cast back
//! Attn: q,k RoPE rotate-half over the full head (f32 inv_freq), GQA head h -> kv h/(H/K),
//!       logits * 1/√128 then 30·tanh(x/30), mask causal × (key token > 0) with -1e30,
//!       f32 softmax, o = Σ w v, out = o Wo
//! MoE:  p = softmax(x Wr) over all experts (f32), top-2 (ties -> lower index), gates not
//!       renormalised; y = Σ_k p_k · (gelu_tanh(x W_linear) ⊙ x W_linear_v) W_linear_1
//! ```
//!
//! Weights arrive through the [`Weights`] trait, dequantized to f32 in the release orientation
//! (`[in, out]`): small tensors whole ([`Weights::get`]), big matrices in bands
//! ([`Weights::matrix`], [`band`]).
//!
//! Memory bound: the weights live at any moment are one band of at most
//! [`band::DEFAULT_BAND_BYTES`] (128 MiB) of f32 — a band of output columns of an expert or
//! projection matrix, or of vocabulary rows of the tied output head — plus, for the release's
//! int8, the raw bytes of the one matrix being banded (201 MB for a Grok-1 expert), and, for
//! GGUF/safetensors (stored `[out, in]`), nothing beyond the band (mapped pages are dropped once
//! decoded). The input embedding is gathered row by row for the batch's tokens only. So peak
//! memory is about 0.4 GB of weights plus the activations, logits and KV cache of the batch
//! (`[tokens, 131072]` f32 logits, `[tokens, 32768]` expert activations), independent of the
//! layer count: a 2-layer checkpoint at Grok-1's widths runs an 8-token prefill in well under
//! 1 GiB of RSS (docs/PERFORMANCE.md), and so does the full 64-layer model. Bands split the
//! output dimension, never the summed one, so the logits are bit-identical to whole-matrix
//! products for any band size.

pub mod attention;
pub mod band;
pub mod compare;
#[allow(unsafe_code)]
pub mod gemm;
pub mod model;
pub mod moe;
pub mod ops;
pub mod sources;
pub mod weights;

pub use model::{forward, greedy, Logits, Session};

use gemm::BLayout;
use std::ops::Range;

/// Errors of the reference model.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The weight source failed to produce a parameter.
    #[error("weight {path}: {reason}")]
    Weight {
        /// Release path of the parameter.
        path: String,
        /// Why it could not be produced.
        reason: String,
    },
    /// A parameter arrived with the wrong shape.
    #[error("weight {path}: shape {got:?}, expected {expected:?}")]
    Shape {
        /// Release path of the parameter.
        path: String,
        /// Shape received.
        got: Vec<usize>,
        /// Shape the dims require.
        expected: Vec<usize>,
    },
    /// Bad input: token out of range, ragged batch, inconsistent dims, ...
    #[error("input: {0}")]
    Input(String),
}

/// One dequantized parameter (or one expert's slice of it), f32, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    /// Dims, outermost first (release orientation: matrices `[in, out]`).
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

/// Where the reference model gets its weights.
pub trait Weights {
    /// Dequantized f32 weights of one parameter, named by its release path without the
    /// `params/` prefix (e.g. `"transformer/decoder_layer_0/multi_head_attention/query/w"`,
    /// `"language_model/in_out_embed/embeddings"`, `"transformer/decoder_layer_3/moe/linear/w"`),
    /// in the RELEASE orientation: matrices `[in, out]`, experts `[E, in, out]`, norms `[D]`.
    /// `expert: Some(e)` asks for expert `e`'s `[in, out]` slice of an expert tensor (the model
    /// always asks for expert tensors this way, one expert at a time).
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError>;

    /// A 2-D parameter (or one expert's slice) opened for reading in bands of rows or columns,
    /// in the same release orientation as [`Weights::get`] (matrices `[in, out]`, the embedding
    /// `[V, D]`). The model uses it for every matrix too big to hold whole as f32 (the embedding
    /// and output head, the experts, Grok-1's query/output projections).
    ///
    /// The default fetches the whole tensor with [`Weights::get`] and slices it, which is right
    /// for small in-memory sources; the file-backed sources override it so that a band costs
    /// only its own f32 values (plus, for the release's int8, the raw bytes of one matrix).
    fn matrix<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<Box<dyn WeightMatrix + 'a>, ReferenceError> {
        Ok(Box::new(band::WholeMatrix::new(
            path,
            self.get(path, expert)?,
        )?))
    }
}

/// A band of a matrix's columns, laid out as the source stores it, ready for
/// [`gemm::matmul`]: `[rows, width]` row-major ([`BLayout::KN`]) or its transpose
/// `[width, rows]` ([`BLayout::NK`]). Either way it holds exactly the values of the release
/// orientation's columns, so `x · band` is the corresponding band of `x · W`.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// The values, `rows * width` of them.
    pub data: Vec<f32>,
    /// How they are laid out.
    pub layout: BLayout,
}

/// A 2-D parameter opened by [`Weights::matrix`]: f32 values on demand, one band at a time.
///
/// Ranges outside the matrix are an error ([`ReferenceError::Input`]), never a panic.
pub trait WeightMatrix {
    /// Release-orientation dims (`[rows, cols]` for a matrix; a source may report another rank,
    /// which callers reject as a shape error).
    fn dims(&self) -> &[usize];
    /// Rows `r` as f32, row-major `[r.len(), cols]`.
    fn rows(&self, r: Range<usize>) -> Result<Vec<f32>, ReferenceError>;
    /// Columns `c` as a [`Band`].
    fn cols(&self, c: Range<usize>) -> Result<Band, ReferenceError>;
}

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
}

impl ModelDims {
    /// The released Grok-1 (314B): spec §7 constants.
    pub fn grok1() -> ModelDims {
        ModelDims {
            vocab: 131_072,
            d_model: 6144,
            n_layers: 64,
            n_q_heads: 48,
            n_kv_heads: 8,
            head_dim: 128,
            n_experts: 8,
            top_k: 2,
            ffn: 32_768,
            rms_eps: 1e-5,
            rope_base: 10_000.0,
            attn_cap: 30.0,
            emb_mult: 78.383_671_769_061_69_f64 as f32,
            out_mult: 0.577_350_269_189_625_7_f64 as f32,
            attn_mult: 0.088_388_347_648_318_45_f64 as f32,
            pad_id: 0,
        }
    }

    /// Check internal consistency (heads divide, dims non-zero, top-k ≤ experts).
    pub fn validate(&self) -> Result<(), ReferenceError> {
        let bad = |m: &str| Err(ReferenceError::Input(format!("model dims: {m}")));
        if self.vocab == 0
            || self.d_model == 0
            || self.n_q_heads == 0
            || self.n_kv_heads == 0
            || self.ffn == 0
        {
            return bad("zero-sized dimension");
        }
        if !self.n_q_heads.is_multiple_of(self.n_kv_heads) {
            return bad("query heads not a multiple of kv heads");
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad("head_dim must be even and non-zero");
        }
        if self.top_k == 0 || self.top_k > self.n_experts {
            return bad("top_k must be in 1..=n_experts");
        }
        Ok(())
    }
}

/// Which numerics to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (the release run with `fprop_dtype = float32`); weights dequantized
    /// exactly. Matches the release's f32 logits to ~1e-5.
    #[default]
    F32,
    /// The release's default bf16 `fprop_dtype` path, emulated by rounding to bf16 at the
    /// points where XLA (CPU) actually materialises bf16 values; see [`ops::Rounding`].
    Bf16,
}

/// Fetch a tensor and check its shape.
pub(crate) fn fetch(
    w: &dyn Weights,
    path: &str,
    expert: Option<usize>,
    shape: &[usize],
) -> Result<Vec<f32>, ReferenceError> {
    let t = w.get(path, expert)?;
    if t.shape != shape {
        return Err(ReferenceError::Shape {
            path: path.to_string(),
            got: t.shape,
            expected: shape.to_vec(),
        });
    }
    if t.data.len() != shape.iter().product::<usize>() {
        return Err(ReferenceError::Weight {
            path: path.to_string(),
            reason: format!("{} elements for shape {shape:?}", t.data.len()),
        });
    }
    Ok(t.data)
}
