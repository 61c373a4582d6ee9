//! The reference forward pass of Grok-1 on the CPU, written from the release's `model.py`.
//!
//! Why it exists: every conversion grokit makes (safetensors, GGUF, quantized variants) is
//! judged by how far its logits move from the release's own numerics. This module is that
//! yardstick: f32 everywhere by default (matching the release's f32 logits to ~1e-5), with an
//! optional bf16 mode that rounds where the release's bf16 (`fprop_dtype`) path rounds.
//!
//! Equations (docs/reference-model.md; the release's `model.py` at 7050ed2):
//! ```text
//! h   = E[tok] * 78.38367176906169                            (embedding, tied with the output)
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
//! Structure:
//! - [`store`]: the [`Weights`] trait. Sources hand over matrices as stored (keyed by
//!   [`WeightId`]: role, layer, expert), and every product runs on [`crate::kernel`], which
//!   decodes the weights only into its working set: nothing is dequantized into f32 copies.
//! - [`products`]: every product of the model, banded and batched in bounded memory, loading the
//!   next batch while the current one is computed.
//! - [`model`]: [`Model`], the layer-major API (embedding, one decoder layer over many
//!   sequences, output head) with an [`Observer`] of matrix inputs; [`attention`], [`moe`],
//!   [`ops`] its parts.
//! - [`session`]: [`Session`], KV-cached prefill and decode on the same per-layer code.
//! - [`sources`]: the release, GGUF and safetensors as [`Weights`], with their dims checked
//!   against the tensors present ([`dims`]).
//! - [`compare`]: the metrics behind `grokit compare`.
//!
//! Memory bound: the weights held at any moment are at most two batches of products
//! ([`products::BATCH_BYTES`] each, or two whole matrices when one is bigger: a release expert
//! matrix is 201 MB of int8, read with `pread`; GGUF and safetensors pieces are slices of the map
//! whose pages are dropped after use), plus the activations, logits and KV cache of the batch.
//! That is independent of the layer count: well under 1 GiB for short prompts on Grok-1's widths
//! (docs/PERFORMANCE.md).

pub mod attention;
pub mod compare;
pub mod dims;
pub mod model;
pub mod moe;
pub mod ops;
pub mod products;
pub mod session;
pub mod sources;
pub mod store;

pub use dims::ModelDims;
pub use model::{Model, Observer};
pub use session::{
    forward, forward_select, generate, greedy, Generated, Logits, Positions, Session,
};
pub use store::{Loaded, MatrixInfo, MemoryWeights, WeightId, Weights};

/// Errors of the reference model.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The weight source failed to produce a parameter.
    #[error("weight {path}: {reason}")]
    Weight {
        /// Release path of the parameter (or the file).
        path: String,
        /// Why it could not be produced.
        reason: String,
    },
    /// A model file could not be opened (the reader's error is the source).
    #[error("opening {file}: {source}")]
    Open {
        /// The path given.
        file: String,
        /// The reader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
    /// A hyper-parameter read from a file is missing, mistyped, out of range or inconsistent
    /// with the tensors present.
    #[error("{file}: {key}: {reason}")]
    Metadata {
        /// The file it was read from.
        file: String,
        /// The key (or keys) in that file's format.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The release has structural problems (the checks of `inspect`, `verify` and `convert`).
    #[error(
        "{file}: {tensor}: {reason} ({count} structural problem(s); run `grokit inspect` for all)"
    )]
    Structure {
        /// The shard.
        file: String,
        /// The parameter.
        tensor: String,
        /// The first problem.
        reason: String,
        /// How many problems.
        count: usize,
    },
    /// Bad input: token out of range, ragged batch, context exceeded, inconsistent dims, ...
    #[error("input: {0}")]
    Input(String),
}

/// Which numerics to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (the release run with `fprop_dtype = float32`); weights exact. Matches
    /// the release's f32 logits to ~1e-5.
    #[default]
    F32,
    /// The release's default bf16 `fprop_dtype` path, emulated by rounding to bf16 at the
    /// points where XLA (CPU) actually materialises bf16 values; see [`ops::Rounding`].
    Bf16,
}
