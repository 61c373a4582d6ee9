//! TEMPORARY — deleted when `forward` merges its layer-major `reference::Model`.
//!
//! The same public signatures as `forward`'s `reference::Model` and `reference::Observer`
//! (embed / layer / head), implemented over today's reference internals: the embedding gather
//! and output head of `reference::model`, `reference::attention::attention` with a fresh
//! `KvCache` per sequence (equal-length sequences share one call, so a layer's projections are
//! read once per call), and `reference::moe::moe` over all tokens at once. It reproduces
//! `reference::forward` bit for bit (tested below). The observer is accepted but not called:
//! today's internals do not expose their matrix inputs.
//!
//! To switch: in `eval/mod.rs` replace `pub use shim::{Model, Observer};` with
//! `pub use crate::reference::{Model, Observer};` and delete this file and its `mod` line.

use crate::model::Role;
use crate::reference::attention::{attention, AttnInput, KvCache};
use crate::reference::band::{default_band_bytes, matmul_rows_t, open_matrix};
use crate::reference::model::{EMBED, FINAL_NORM};
use crate::reference::moe::moe;
use crate::reference::ops::{add_into, rms_norm, rope_inv_freq, round_if, Rounding};
use crate::reference::{fetch, ModelDims, Precision, ReferenceError, Weights};

/// Sees the input activations of every matrix product (the seam `imatrix` uses).
pub trait Observer {
    /// `x` is `[rows, k]` row-major: the input of `role`'s product in `layer` (one expert's
    /// routed rows for the MoE matrices).
    fn matmul_input(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    );
}

/// The model, layer by layer.
pub struct Model<'w> {
    weights: &'w dyn Weights,
    dims: ModelDims,
    rounding: Rounding,
    inv_freq: Vec<f32>,
    band_bytes: usize,
}

fn norm_path(layer: usize, which: &str) -> String {
    format!("transformer/decoder_layer_{layer}/{which}/scale")
}

impl<'w> Model<'w> {
    /// A model over `weights` with `dims` and `precision`'s numerics.
    pub fn new(
        weights: &'w dyn Weights,
        dims: ModelDims,
        precision: Precision,
    ) -> Result<Self, ReferenceError> {
        dims.validate()?;
        Ok(Model {
            weights,
            inv_freq: rope_inv_freq(dims.head_dim, dims.rope_base),
            rounding: Rounding::for_precision(precision),
            dims,
            band_bytes: default_band_bytes(),
        })
    }

    /// The dims.
    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    /// Embedding rows of `tokens` times the embedding multiplier: `[tokens.len(), D]`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, ReferenceError> {
        let (d, v) = (self.dims.d_model, self.dims.vocab);
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(ReferenceError::Input(format!(
                "token {t} out of vocabulary {v}"
            )));
        }
        let emb = open_matrix(self.weights, EMBED, None, [v, d])?;
        let mut h = Vec::with_capacity(tokens.len() * d);
        for &t in tokens {
            let t = t as usize;
            let row = emb.rows(t..t + 1)?;
            if row.len() != d {
                return Err(ReferenceError::Weight {
                    path: EMBED.to_string(),
                    reason: format!("row {t}: {} values, expected {d}", row.len()),
                });
            }
            h.extend(row.iter().map(|x| x * self.dims.emb_mult));
        }
        Ok(h)
    }

    /// Decoder layer `layer`, in place, on the hidden states of independent sequences
    /// concatenated in `h` (`[Σ len, D]`); `seqs[i]` are sequence i's tokens (for the pad
    /// mask); each sequence is its own causal context starting at position 0 (no KV cache).
    /// `obs` is accepted for the API's sake; the shim does not call it.
    pub fn layer(
        &self,
        layer: usize,
        h: &mut [f32],
        seqs: &[&[u32]],
        _obs: Option<&mut dyn Observer>,
    ) -> Result<(), ReferenceError> {
        let dims = &self.dims;
        let d = dims.d_model;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        if layer >= dims.n_layers || h.len() != total * d {
            return Err(ReferenceError::Input(format!(
                "layer {layer}: {} values for {total} tokens of width {d} ({} layers)",
                h.len(),
                dims.n_layers
            )));
        }
        let w = self.weights;
        let r = &self.rounding;
        let sc = |which: &str| fetch(w, &norm_path(layer, which), None, &[d]);
        let x = self.norm(h, &sc("rms_norm")?);
        // Attention: runs of consecutive equal-length sequences share one call (one read of the
        // projections); each sequence gets a fresh cache, i.e. starts at position 0.
        let mut a = Vec::with_capacity(h.len());
        let mut i = 0;
        let mut off = 0;
        while i < seqs.len() {
            let len = seqs[i].len();
            let j = (i..seqs.len())
                .find(|&j| seqs[j].len() != len)
                .unwrap_or(seqs.len());
            let rows = j - i;
            let key_valid: Vec<Vec<bool>> = seqs[i..j]
                .iter()
                .map(|s| s.iter().map(|&t| t != dims.pad_id).collect())
                .collect();
            let mut cache = vec![KvCache::default(); rows];
            let inp = AttnInput {
                x: &x[off * d..(off + rows * len) * d],
                rows,
                new: len,
                start: 0,
                key_valid: &key_valid,
                band_bytes: self.band_bytes,
            };
            a.extend(attention(
                dims,
                r,
                w,
                layer,
                &inp,
                &mut cache,
                &self.inv_freq,
            )?);
            off += rows * len;
            i = j;
        }
        add_into(h, &self.norm(&a, &sc("rms_norm_1")?));
        round_if(r.residual, h);
        let x = self.norm(h, &sc("rms_norm_2")?);
        let y = moe(dims, r, w, layer, &x, self.band_bytes)?;
        add_into(h, &self.norm(&y, &sc("rms_norm_3")?));
        round_if(r.residual, h);
        Ok(())
    }

    /// Final norm, tied output head and output multiplier for the selected rows of `h`:
    /// `[rows.len(), V]`.
    pub fn head(&self, h: &[f32], rows: &[usize]) -> Result<Vec<f32>, ReferenceError> {
        let (d, v) = (self.dims.d_model, self.dims.vocab);
        let mut sel = Vec::with_capacity(rows.len() * d);
        for &row in rows {
            let x = h.get(row * d..(row + 1) * d).ok_or_else(|| {
                ReferenceError::Input(format!(
                    "head: row {row} outside {} rows",
                    h.len() / d.max(1)
                ))
            })?;
            sel.extend_from_slice(x);
        }
        let r = &self.rounding;
        let hf = self.norm(&sel, &fetch(self.weights, FINAL_NORM, None, &[d])?);
        let mut logits = matmul_rows_t(
            self.weights,
            EMBED,
            &hf,
            rows.len(),
            (d, v),
            r.weights,
            self.band_bytes,
        )?;
        round_if(r.logits, &mut logits);
        logits.iter_mut().for_each(|x| *x *= self.dims.out_mult);
        round_if(r.logits, &mut logits);
        Ok(logits)
    }

    fn norm(&self, x: &[f32], scale: &[f32]) -> Vec<f32> {
        let mut y = rms_norm(x, scale, self.dims.rms_eps);
        round_if(self.rounding.norm_out, &mut y);
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::sources;
    use crate::source::grok::OpenOptions;
    use std::path::PathBuf;

    fn fixture() -> sources::Model {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny");
        sources::Model::open(&p, &OpenOptions::default()).unwrap()
    }

    /// embed → every layer → head on each sequence equals `reference::forward`, bit for bit,
    /// whether the sequences are run together or alone, with equal or unequal lengths.
    #[test]
    fn layer_by_layer_equals_reference_forward() {
        let m = fixture();
        let dims = ModelDims::from_config(m.config()).unwrap();
        for p in [Precision::F32, Precision::Bf16] {
            let model = Model::new(m.weights(), dims.clone(), p).unwrap();
            let seqs: Vec<Vec<u32>> = vec![
                (0..9).map(|i| (i * 37 + 5) % 500 + 3).collect(),
                (0..9).map(|i| (i * 11 + 7) % 500 + 3).collect(),
                (0..5).map(|i| (i * 13 + 1) % 500 + 3).collect(),
            ];
            let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
            let all: Vec<u32> = seqs.concat();
            let mut h = model.embed(&all).unwrap();
            for l in 0..dims.n_layers {
                model.layer(l, &mut h, &refs, None).unwrap();
            }
            let rows: Vec<usize> = (0..all.len()).collect();
            let got = model.head(&h, &rows).unwrap();
            let mut off = 0;
            for s in &seqs {
                let want =
                    crate::reference::forward(m.weights(), &dims, p, std::slice::from_ref(s))
                        .unwrap();
                let v = dims.vocab;
                assert_eq!(
                    &got[off * v..(off + s.len()) * v],
                    want.data.as_slice(),
                    "{p:?}"
                );
                off += s.len();
            }
        }
    }
}
