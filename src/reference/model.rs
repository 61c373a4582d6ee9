//! The whole model: embedding, decoder layers in numeric order, final norm, tied output head;
//! and [`Session`], the KV-cached driver used for both full forwards and generation.
//!
//! A full forward is a prefill into a fresh session, and a decode step is a one-token chunk
//! through the same code, so "KV-cache generation equals full recompute" holds by
//! construction (and is tested): every matmul row and every attention row is computed
//! independently of what else is in the batch.
//!
//! Batches are rows of equal length, right-padded with the pad id; pad tokens are masked as
//! keys (the release's `tokens > 0` mask) but still produce logits, like the release.

use super::attention::{attention, AttnInput, KvCache};
use super::band::{default_band_bytes, matmul_rows_t, open_matrix};
use super::moe::moe;
use super::ops::{add_into, rms_norm, rope_inv_freq, round_if, Rounding};
use super::{fetch, ModelDims, Precision, ReferenceError, Weights};

/// Logits `[batch, seq, vocab]`, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    /// Batch rows.
    pub batch: usize,
    /// Positions per row.
    pub seq: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// `batch * seq * vocab` values.
    pub data: Vec<f32>,
}

impl Logits {
    /// The logits of row `b`, position `t`.
    pub fn at(&self, b: usize, t: usize) -> Option<&[f32]> {
        let i = (b * self.seq + t) * self.vocab;
        self.data.get(i..i + self.vocab)
    }
    /// The shape as a vector (for `.npy` output).
    pub fn shape(&self) -> Vec<usize> {
        vec![self.batch, self.seq, self.vocab]
    }
}

impl From<Logits> for crate::npy::NpyF32 {
    fn from(l: Logits) -> Self {
        crate::npy::NpyF32 {
            shape: l.shape(),
            data: l.data,
        }
    }
}

/// Embedding path (tied input/output matrix, `[V, D]`).
pub const EMBED: &str = "language_model/in_out_embed/embeddings";
/// Final norm path.
pub const FINAL_NORM: &str = "language_model/rms_norm/scale";

fn norm_path(layer: usize, which: &str) -> String {
    format!("transformer/decoder_layer_{layer}/{which}/scale")
}

/// A forward-pass session over a fixed batch, with per-layer KV caches.
pub struct Session<'w> {
    weights: &'w dyn Weights,
    dims: ModelDims,
    rounding: Rounding,
    inv_freq: Vec<f32>,
    /// `[layer][row]`.
    cache: Vec<Vec<KvCache>>,
    /// Per row: whether each position so far is a real (non-pad) token.
    key_valid: Vec<Vec<bool>>,
    len: usize,
    /// Cap on the f32 weight bytes of one band ([`super::band`]).
    band_bytes: usize,
}

impl<'w> Session<'w> {
    /// A fresh session for `batch` rows.
    pub fn new(
        weights: &'w dyn Weights,
        dims: ModelDims,
        precision: Precision,
        batch: usize,
    ) -> Result<Self, ReferenceError> {
        Self::with_rounding(weights, dims, Rounding::for_precision(precision), batch)
    }

    /// A fresh session with an explicit rounding plan (for precision experiments).
    pub fn with_rounding(
        weights: &'w dyn Weights,
        dims: ModelDims,
        rounding: Rounding,
        batch: usize,
    ) -> Result<Self, ReferenceError> {
        dims.validate()?;
        if batch == 0 {
            return Err(ReferenceError::Input("empty batch".into()));
        }
        Ok(Session {
            weights,
            inv_freq: rope_inv_freq(dims.head_dim, dims.rope_base),
            cache: vec![vec![KvCache::default(); batch]; dims.n_layers],
            key_valid: vec![Vec::new(); batch],
            len: 0,
            rounding,
            dims,
            band_bytes: default_band_bytes(),
        })
    }

    /// Cap the f32 weight bytes of one band of a matrix (default
    /// [`super::band::DEFAULT_BAND_BYTES`], 128 MiB). Any value gives the same logits, bit for
    /// bit; tiny values (even 1: one column per band) exist to test exactly that.
    pub fn set_band_bytes(&mut self, bytes: usize) {
        self.band_bytes = bytes.max(1);
    }

    /// The band cap in effect.
    pub fn band_bytes(&self) -> usize {
        self.band_bytes
    }

    /// Positions processed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Run `tokens` (one equal-length row per batch row) and return their logits.
    pub fn prefill(&mut self, tokens: &[Vec<u32>]) -> Result<Logits, ReferenceError> {
        let rows: Vec<&[u32]> = tokens.iter().map(|r| r.as_slice()).collect();
        self.chunk(&rows)
    }

    /// Append one token per batch row and return its logits (`seq` = 1).
    pub fn step(&mut self, tokens: &[u32]) -> Result<Logits, ReferenceError> {
        let rows: Vec<&[u32]> = tokens.chunks(1).collect();
        self.chunk(&rows)
    }

    fn chunk(&mut self, rows: &[&[u32]]) -> Result<Logits, ReferenceError> {
        let dims = self.dims.clone();
        let (d, v) = (dims.d_model, dims.vocab);
        let b = self.key_valid.len();
        if rows.len() != b {
            return Err(ReferenceError::Input(format!(
                "{} rows for a batch of {b}",
                rows.len()
            )));
        }
        let new = rows.first().map_or(0, |r| r.len());
        if new == 0 || rows.iter().any(|r| r.len() != new) {
            return Err(ReferenceError::Input(
                "rows must be non-empty and of equal length (right-pad them)".into(),
            ));
        }
        if let Some(&t) = rows
            .iter()
            .flat_map(|r| r.iter())
            .find(|&&t| t as usize >= v)
        {
            return Err(ReferenceError::Input(format!(
                "token {t} out of vocabulary {v}"
            )));
        }
        let r = self.rounding;
        let w = self.weights;
        // Embedding: gather the batch's rows in f32, times the multiplier.
        let emb = open_matrix(w, EMBED, None, [v, d])?;
        let mut h: Vec<f32> = Vec::with_capacity(b * new * d);
        for &t in rows.iter().flat_map(|r| r.iter()) {
            let t = t as usize;
            let row = emb.rows(t..t + 1)?;
            if row.len() != d {
                return Err(ReferenceError::Weight {
                    path: EMBED.to_string(),
                    reason: format!("row {t}: {} values, expected {d}", row.len()),
                });
            }
            h.extend(row.iter().map(|x| x * dims.emb_mult));
        }
        drop(emb);
        for (kv, row) in self.key_valid.iter_mut().zip(rows) {
            kv.extend(row.iter().map(|&t| t != dims.pad_id));
        }
        let m = b * new;
        for layer in 0..dims.n_layers {
            let sc = |which: &str| fetch(w, &norm_path(layer, which), None, &[d]);
            let x = self.norm(&h, &sc("rms_norm")?);
            let inp = AttnInput {
                x: &x,
                rows: b,
                new,
                start: self.len,
                key_valid: &self.key_valid,
                band_bytes: self.band_bytes,
            };
            let a = attention(
                &dims,
                &r,
                w,
                layer,
                &inp,
                &mut self.cache[layer],
                &self.inv_freq,
            )?;
            add_into(&mut h, &self.norm(&a, &sc("rms_norm_1")?));
            round_if(r.residual, &mut h);
            let x = self.norm(&h, &sc("rms_norm_2")?);
            let y = moe(&dims, &r, w, layer, &x, self.band_bytes)?;
            add_into(&mut h, &self.norm(&y, &sc("rms_norm_3")?));
            round_if(r.residual, &mut h);
        }
        self.len += new;
        let hf = self.norm(&h, &fetch(w, FINAL_NORM, None, &[d])?);
        // Tied output head, streamed over the vocabulary in bands of embedding rows.
        let mut logits = matmul_rows_t(w, EMBED, &hf, m, (d, v), r.weights, self.band_bytes)?;
        round_if(r.logits, &mut logits);
        logits.iter_mut().for_each(|x| *x *= dims.out_mult);
        round_if(r.logits, &mut logits);
        Ok(Logits {
            batch: b,
            seq: new,
            vocab: v,
            data: logits,
        })
    }

    fn norm(&self, x: &[f32], scale: &[f32]) -> Vec<f32> {
        let mut y = rms_norm(x, scale, self.dims.rms_eps);
        round_if(self.rounding.norm_out, &mut y);
        y
    }
}

/// Full forward of a batch of equal-length rows (right-padded with the pad id): `[B, T, V]`.
pub fn forward(
    weights: &dyn Weights,
    dims: &ModelDims,
    precision: Precision,
    tokens: &[Vec<u32>],
) -> Result<Logits, ReferenceError> {
    Session::new(weights, dims.clone(), precision, tokens.len())?.prefill(tokens)
}

/// Greedy decoding of one prompt through the KV cache: the prompt is prefilled, then the
/// argmax token (ties → lower id) is fed back up to `max_new` times, stopping after `eos`.
/// Returns the generated tokens (without the prompt).
pub fn greedy(
    weights: &dyn Weights,
    dims: &ModelDims,
    precision: Precision,
    prompt: &[u32],
    max_new: usize,
    eos: Option<u32>,
) -> Result<Vec<u32>, ReferenceError> {
    let mut s = Session::new(weights, dims.clone(), precision, 1)?;
    let lo = s.prefill(&[prompt.to_vec()])?;
    let mut next = lo.at(0, lo.seq - 1).map(super::compare::argmax);
    let mut out = Vec::with_capacity(max_new);
    while let Some(t) = next {
        if out.len() == max_new {
            break;
        }
        // vocab ≤ u32::MAX is guaranteed by the token range check on the prompt
        let t = t as u32;
        out.push(t);
        if Some(t) == eos || out.len() == max_new {
            break;
        }
        let lo = s.step(&[t])?;
        next = lo.at(0, 0).map(super::compare::argmax);
    }
    Ok(out)
}
