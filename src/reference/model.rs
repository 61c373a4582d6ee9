//! [`Model`]: the forward pass one piece at a time (embedding, one decoder layer, the output
//! head), the layer-major API that `perplexity` and `imatrix` evaluate whole corpora with, and
//! the per-layer code [`super::Session`] runs too.
//!
//! Why layer-major: a model too large for memory is read once per run if every sequence goes
//! through layer 0, then every sequence through layer 1, and so on; only the hidden states
//! (`[tokens, D]` f32) move between layers. [`Model::layer`] takes the hidden states of several
//! independent sequences at once and runs each expert's product once over all the tokens of all
//! the sequences routed to it, so the weights of a layer are read once per call, however many
//! sequences it holds.
//!
//! The same [`Model::layer_with`] serves the KV-cached [`super::Session`]: a sequence is a
//! *segment* of the hidden-state rows with its own KV cache and start position, so a decode step,
//! a prefill and a layer-major pass all run one code path, and each row's result depends only on
//! its own sequence (the kernel's row independence), bit for bit.

use super::attention::{attention, KvCache, Segment};
use super::moe::moe;
use super::ops::{add_into, rms_norm, rope_inv_freq, round_if, Rounding};
use super::products::{self, Budget, Spec};
use super::store::{WeightId, Weights};
use super::{ModelDims, Precision, ReferenceError};
use crate::model::Role;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sees the input activations of every matrix product of a layer (for importance matrices).
pub trait Observer {
    /// `x` is `[x.len()/k, k]`: the activations entering weight `role` of `layer` (for the
    /// expert tensors, `expert` is `Some(e)` and `x` holds only the rows routed to `e`, in token
    /// order; for attention q/k/v the normed input; attention output: the attention result; the
    /// router (`ffn_gate_inp`): its input). Called in a deterministic order: q, k, v, output,
    /// router, then for each expert with tokens in ascending order its gate and up inputs, then
    /// for each such expert its down input.
    fn matmul_input(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    );
}

/// An optional observer, passed down the layer.
pub(crate) struct Obs<'o>(pub Option<&'o mut dyn Observer>);

impl Obs<'_> {
    pub(crate) fn see(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    ) {
        if let Some(o) = self.0.as_deref_mut() {
            o.matmul_input(layer, role, expert, x, k);
        }
    }
}

/// The model: weights, dims and the rounding plan.
pub struct Model<'w> {
    weights: &'w dyn Weights,
    dims: ModelDims,
    rounding: Rounding,
    inv_freq: Vec<f32>,
    budget: Budget,
    flops: AtomicU64,
}

impl<'w> Model<'w> {
    /// A model over `weights` with the numerics of `precision` (dims checked).
    pub fn new(
        weights: &'w dyn Weights,
        dims: ModelDims,
        precision: Precision,
    ) -> Result<Self, ReferenceError> {
        Self::with_rounding(weights, dims, Rounding::for_precision(precision))
    }

    /// A model with an explicit rounding plan (for precision experiments).
    pub fn with_rounding(
        weights: &'w dyn Weights,
        dims: ModelDims,
        rounding: Rounding,
    ) -> Result<Self, ReferenceError> {
        dims.validate()?;
        Ok(Model {
            weights,
            inv_freq: rope_inv_freq(dims.head_dim, dims.rope_base),
            dims,
            rounding,
            budget: Budget::default(),
            flops: AtomicU64::new(0),
        })
    }

    /// The dims.
    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    /// The rounding plan.
    pub fn rounding(&self) -> &Rounding {
        &self.rounding
    }

    /// The weights.
    pub fn weights(&self) -> &'w dyn Weights {
        self.weights
    }

    /// Cap the stored bytes of one band of a matrix (default
    /// [`products::PIECE_BYTES`], 128 MiB) and of one batch of products (twice that). Any value
    /// gives the same results, bit for bit; tiny values (even 1: one column per band) exist to
    /// test exactly that.
    pub fn set_band_bytes(&mut self, bytes: u64) {
        let b = bytes.max(1);
        self.budget = Budget {
            piece_bytes: b,
            batch_bytes: b.saturating_mul(2),
        };
    }

    /// The memory limits of the products.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub(crate) fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Run products through the weights in bounded memory ([`products::run`]).
    pub(crate) fn products(
        &self,
        specs: &[Spec<'_>],
        round_weights: bool,
    ) -> Result<Vec<Vec<f32>>, ReferenceError> {
        let f: u64 = specs
            .iter()
            .map(|s| 2 * s.m as u64 * s.k as u64 * s.n as u64)
            .sum();
        self.flops.fetch_add(f, Ordering::Relaxed);
        products::run(self.weights, specs, &self.budget, round_weights)
    }

    /// Floating-point operations of the weight products run so far (2 per multiply-add;
    /// attention's activation products and the elementwise work not included): what the
    /// benchmark compares with the FMA ceiling.
    pub fn weight_flops(&self) -> u64 {
        self.flops.load(Ordering::Relaxed)
    }

    /// Embedding rows of `tokens` times the embedding multiplier: `[tokens.len(), D]`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, ReferenceError> {
        let (d, v) = (self.dims.d_model, self.dims.vocab);
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(ReferenceError::Input(format!(
                "token {t} out of vocabulary {v}"
            )));
        }
        let id = WeightId::global(Role::Embed);
        let info = self.weights.info(id)?;
        if (info.k, info.n) != (d, v) {
            return Err(ReferenceError::Shape {
                path: id.to_string(),
                got: vec![info.n, info.k],
                expected: vec![v, d],
            });
        }
        let mut h = vec![0f32; tokens.len() * d];
        for (&t, row) in tokens.iter().zip(h.chunks_exact_mut(d)) {
            let t = t as usize;
            let piece = self.weights.load(id, t..t + 1)?;
            let m = piece
                .matrix()
                .map_err(|e| super::store::weight_err(id, e))?;
            m.column(0, row)
                .map_err(|e| super::store::weight_err(id, e))?;
            row.iter_mut().for_each(|x| *x *= self.dims.emb_mult);
        }
        Ok(h)
    }

    /// Decoder layer `layer`, in place, on the hidden states of independent sequences
    /// concatenated in `h` (`[Σ len, D]`); `seqs[i]` are sequence i's tokens (for the pad mask);
    /// each sequence is its own causal context starting at position 0 (no KV cache).
    /// `obs`, when given, sees the input activations of every matrix product.
    pub fn layer(
        &self,
        layer: usize,
        h: &mut [f32],
        seqs: &[&[u32]],
        obs: Option<&mut dyn Observer>,
    ) -> Result<(), ReferenceError> {
        let d = self.dims.d_model;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        if h.len() != total.saturating_mul(d) {
            return Err(ReferenceError::Input(format!(
                "layer {layer}: {} hidden values for {total} tokens of width {d}",
                h.len()
            )));
        }
        if let Some(s) = seqs.iter().find(|s| s.len() > self.dims.max_seq) {
            return Err(ReferenceError::Input(format!(
                "a sequence of {} tokens exceeds the model's context of {}",
                s.len(),
                self.dims.max_seq
            )));
        }
        let mut caches = vec![KvCache::default(); seqs.len()];
        let valid: Vec<Vec<bool>> = seqs
            .iter()
            .map(|s| s.iter().map(|&t| t != self.dims.pad_id).collect())
            .collect();
        let mut row0 = 0;
        let mut segs: Vec<Segment<'_>> = Vec::with_capacity(seqs.len());
        for ((s, cache), valid) in seqs.iter().zip(caches.iter_mut()).zip(&valid) {
            segs.push(Segment {
                row0,
                len: s.len(),
                start: 0,
                cache,
                valid,
            });
            row0 += s.len();
        }
        self.layer_with(layer, h, &mut segs, &mut Obs(obs))
    }

    /// One decoder layer over the segments of `h` (the shared per-layer code).
    pub(crate) fn layer_with(
        &self,
        layer: usize,
        h: &mut [f32],
        segs: &mut [Segment<'_>],
        obs: &mut Obs<'_>,
    ) -> Result<(), ReferenceError> {
        if layer >= self.dims.n_layers {
            return Err(ReferenceError::Input(format!(
                "layer {layer} of a {}-layer model",
                self.dims.n_layers
            )));
        }
        let r = self.rounding;
        let x = self.norm(h, Role::PreAttnNorm, layer)?;
        let a = attention(self, layer, &x, segs, obs)?;
        add_into(h, &self.norm(&a, Role::PostAttnNorm, layer)?);
        round_if(r.residual, h);
        let x = self.norm(h, Role::PreMoeNorm, layer)?;
        let y = moe(self, layer, &x, obs)?;
        add_into(h, &self.norm(&y, Role::PostMoeNorm, layer)?);
        round_if(r.residual, h);
        Ok(())
    }

    /// Final norm, tied output head and output multiplier for the selected rows of `h`
    /// (row indices into h): `[rows.len(), V]`.
    pub fn head(&self, h: &[f32], rows: &[usize]) -> Result<Vec<f32>, ReferenceError> {
        let (d, v) = (self.dims.d_model, self.dims.vocab);
        let have = h.len() / d;
        if !h.len().is_multiple_of(d) {
            return Err(ReferenceError::Input(format!(
                "head: {} hidden values are not rows of {d}",
                h.len()
            )));
        }
        let mut sel = Vec::with_capacity(rows.len() * d);
        for &i in rows {
            if i >= have {
                return Err(ReferenceError::Input(format!(
                    "head: row {i} of {have} hidden rows"
                )));
            }
            sel.extend_from_slice(&h[i * d..(i + 1) * d]);
        }
        let scale = self.scale(WeightId::global(Role::FinalNorm))?;
        let mut x = rms_norm(&sel, &scale, self.dims.rms_eps);
        round_if(self.rounding.norm_out, &mut x);
        let r = self.rounding;
        let spec = Spec {
            id: WeightId::global(Role::Embed),
            x: &x,
            m: rows.len(),
            k: d,
            n: v,
        };
        let mut logits = self.products(&[spec], r.weights)?.pop().unwrap_or_default();
        round_if(r.logits, &mut logits);
        logits.iter_mut().for_each(|x| *x *= self.dims.out_mult);
        round_if(r.logits, &mut logits);
        Ok(logits)
    }

    /// A norm scale, length-checked.
    fn scale(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        let s = self.weights.vector(id)?;
        if s.len() != self.dims.d_model {
            return Err(ReferenceError::Shape {
                path: id.to_string(),
                got: vec![s.len()],
                expected: vec![self.dims.d_model],
            });
        }
        Ok(s)
    }

    fn norm(&self, x: &[f32], role: Role, layer: usize) -> Result<Vec<f32>, ReferenceError> {
        let scale = self.scale(WeightId::layer(role, layer))?;
        let mut y = rms_norm(x, &scale, self.dims.rms_eps);
        round_if(self.rounding.norm_out, &mut y);
        Ok(y)
    }
}
