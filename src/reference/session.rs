//! [`Session`]: the KV-cached driver for full forwards, chunked prefills and generation, on the
//! per-layer code of [`Model`].
//!
//! A full forward is a prefill into a fresh session, and a decode step is a one-token chunk
//! through the same code, so "KV-cache generation equals full recompute" holds by
//! construction (and is tested): every matrix row and every attention row is computed
//! independently of what else is in the batch. For the same reason a long prefill may be cut
//! into chunks of positions ([`Session::set_max_chunk`]) to bound its activations: the logits
//! do not change, bit for bit.
//!
//! Batches are rows of equal length, right-padded with the pad id; pad tokens are masked as
//! keys (the release's `tokens > 0` mask). Logits are computed only where asked
//! ([`Positions`]): the output head is as large as a layer's expert work at 64 tokens.

use super::attention::{KvCache, Segment};
use super::model::{Model, Obs};
use super::store::Weights;
use super::{ModelDims, Precision, ReferenceError};
use std::time::Instant;

/// Which positions get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Every position of every row.
    All,
    /// Per row, its last non-pad position (the last position when the row is all pads).
    Last,
}

/// Logits of selected positions, `[positions.len(), vocab]`, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    /// Batch rows.
    pub batch: usize,
    /// Positions per row in the run.
    pub seq: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// `(row, position)` of each logits row, in row-major order.
    pub positions: Vec<(usize, usize)>,
    /// `positions.len() * vocab` values.
    pub data: Vec<f32>,
}

impl Logits {
    /// True when every position of every row is present (`[batch, seq, vocab]`).
    pub fn is_full(&self) -> bool {
        self.positions.len() == self.batch * self.seq
    }

    /// The logits of row `b`, position `t`, when they were computed.
    pub fn at(&self, b: usize, t: usize) -> Option<&[f32]> {
        let i = if self.is_full() {
            if b >= self.batch || t >= self.seq {
                return None;
            }
            b * self.seq + t
        } else {
            self.positions.iter().position(|&p| p == (b, t))?
        };
        self.data.get(i * self.vocab..(i + 1) * self.vocab)
    }

    /// The shape: `[batch, seq, vocab]` when full, else `[positions, vocab]`.
    pub fn shape(&self) -> Vec<usize> {
        if self.is_full() {
            vec![self.batch, self.seq, self.vocab]
        } else {
            vec![self.positions.len(), self.vocab]
        }
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

/// Largest batch a session accepts (rows).
pub const MAX_BATCH: usize = 1 << 24;

/// A forward-pass session over a fixed batch, with per-layer KV caches.
pub struct Session<'w> {
    model: Model<'w>,
    /// `[layer][row]`.
    cache: Vec<Vec<KvCache>>,
    /// Per row: whether each position so far is a real (non-pad) token.
    key_valid: Vec<Vec<bool>>,
    len: usize,
    max_chunk: usize,
}

impl<'w> Session<'w> {
    /// A fresh session for `batch` rows.
    pub fn new(
        weights: &'w dyn Weights,
        dims: ModelDims,
        precision: Precision,
        batch: usize,
    ) -> Result<Self, ReferenceError> {
        Self::from_model(Model::new(weights, dims, precision)?, batch)
    }

    /// A fresh session for `batch` rows of `model`.
    pub fn from_model(model: Model<'w>, batch: usize) -> Result<Self, ReferenceError> {
        if batch == 0 {
            return Err(ReferenceError::Input("empty batch".into()));
        }
        let layers = model.dims().n_layers;
        if batch > MAX_BATCH || batch.saturating_mul(layers.max(1)) > MAX_BATCH * 4 {
            return Err(ReferenceError::Input(format!(
                "a batch of {batch} rows over {layers} layers exceeds the session limit ({MAX_BATCH} rows)"
            )));
        }
        Ok(Session {
            cache: vec![vec![KvCache::default(); batch]; layers],
            key_valid: vec![Vec::new(); batch],
            len: 0,
            max_chunk: usize::MAX,
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model<'w> {
        &self.model
    }

    /// See [`Model::set_band_bytes`].
    pub fn set_band_bytes(&mut self, bytes: u64) {
        self.model.set_band_bytes(bytes);
    }

    /// Prefill at most `positions` positions per chunk (at least 1); the logits do not change.
    pub fn set_max_chunk(&mut self, positions: usize) {
        self.max_chunk = positions.max(1);
    }

    /// Positions processed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Run `tokens` (one equal-length row per batch row) and return the logits of every position.
    pub fn prefill(&mut self, tokens: &[Vec<u32>]) -> Result<Logits, ReferenceError> {
        self.prefill_select(tokens, Positions::All)
    }

    /// Run `tokens` and return the logits of the positions `want` selects. Runs in chunks of at
    /// most [`Session::set_max_chunk`] positions.
    pub fn prefill_select(
        &mut self,
        tokens: &[Vec<u32>],
        want: Positions,
    ) -> Result<Logits, ReferenceError> {
        let b = self.key_valid.len();
        let seq = tokens.first().map_or(0, Vec::len);
        if tokens.len() != b || seq == 0 || tokens.iter().any(|r| r.len() != seq) {
            return Err(ReferenceError::Input(format!(
                "{} rows for a batch of {b}; rows must be non-empty and of equal length (right-pad them)",
                tokens.len()
            )));
        }
        let pad = self.model.dims().pad_id;
        let wanted: Vec<(usize, usize)> = match want {
            Positions::All => (0..b).flat_map(|r| (0..seq).map(move |t| (r, t))).collect(),
            Positions::Last => tokens
                .iter()
                .enumerate()
                .map(|(r, row)| (r, row.iter().rposition(|&t| t != pad).unwrap_or(seq - 1)))
                .collect(),
        };
        let v = self.model.dims().vocab;
        let mut data = Vec::with_capacity(wanted.len().saturating_mul(v));
        let mut t0 = 0;
        while t0 < seq {
            let t1 = seq.min(t0.saturating_add(self.max_chunk));
            let rows: Vec<&[u32]> = tokens.iter().map(|r| &r[t0..t1]).collect();
            let sel: Vec<(usize, usize)> = wanted
                .iter()
                .filter(|&&(_, t)| (t0..t1).contains(&t))
                .map(|&(r, t)| (r, t - t0))
                .collect();
            data.extend(self.chunk(&rows, &sel)?);
            t0 = t1;
        }
        Ok(Logits {
            batch: b,
            seq,
            vocab: v,
            positions: wanted,
            data,
        })
    }

    /// Append one token per batch row and return its logits (`seq` = 1).
    pub fn step(&mut self, tokens: &[u32]) -> Result<Logits, ReferenceError> {
        let rows: Vec<&[u32]> = tokens.chunks(1).collect();
        let b = self.key_valid.len();
        if rows.len() != b {
            return Err(ReferenceError::Input(format!(
                "{} tokens for a batch of {b}",
                rows.len()
            )));
        }
        let sel: Vec<(usize, usize)> = (0..b).map(|r| (r, 0)).collect();
        let data = self.chunk(&rows, &sel)?;
        Ok(Logits {
            batch: b,
            seq: 1,
            vocab: self.model.dims().vocab,
            positions: sel,
            data,
        })
    }

    /// One chunk of equal-length rows through every layer; logits of `(row, chunk position)`s.
    fn chunk(
        &mut self,
        rows: &[&[u32]],
        sel: &[(usize, usize)],
    ) -> Result<Vec<f32>, ReferenceError> {
        let dims = self.model.dims().clone();
        let b = self.key_valid.len();
        let new = rows.first().map_or(0, |r| r.len());
        if rows.len() != b || new == 0 || rows.iter().any(|r| r.len() != new) {
            return Err(ReferenceError::Input(
                "rows must be non-empty and of equal length (right-pad them)".into(),
            ));
        }
        if self.len.saturating_add(new) > dims.max_seq {
            return Err(ReferenceError::Input(format!(
                "{} positions exceed the model's context of {}",
                self.len.saturating_add(new),
                dims.max_seq
            )));
        }
        let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let mut h = self.model.embed(&flat)?;
        for (kv, row) in self.key_valid.iter_mut().zip(rows) {
            kv.extend(row.iter().map(|&t| t != dims.pad_id));
        }
        let start = self.len;
        for (layer, caches) in self.cache.iter_mut().enumerate() {
            let mut segs: Vec<Segment<'_>> = caches
                .iter_mut()
                .zip(&self.key_valid)
                .enumerate()
                .map(|(r, (cache, valid))| Segment {
                    row0: r * new,
                    len: new,
                    start,
                    cache,
                    valid,
                })
                .collect();
            // After an error the caches no longer agree with `len`: later calls are refused.
            self.model
                .layer_with(layer, &mut h, &mut segs, &mut Obs(None))?;
        }
        self.len += new;
        let picks: Vec<usize> = sel.iter().map(|&(r, t)| r * new + t).collect();
        self.model.head(&h, &picks)
    }
}

/// Full forward of a batch of equal-length rows (right-padded with the pad id): `[B, T, V]`.
pub fn forward(
    weights: &dyn Weights,
    dims: &ModelDims,
    precision: Precision,
    tokens: &[Vec<u32>],
) -> Result<Logits, ReferenceError> {
    forward_select(weights, dims, precision, tokens, Positions::All)
}

/// Forward of a batch, logits only at the positions `want` selects.
pub fn forward_select(
    weights: &dyn Weights,
    dims: &ModelDims,
    precision: Precision,
    tokens: &[Vec<u32>],
    want: Positions,
) -> Result<Logits, ReferenceError> {
    Session::new(weights, dims.clone(), precision, tokens.len())?.prefill_select(tokens, want)
}

/// What [`generate`] produced, with llama.cpp-style timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The generated tokens (without the prompt).
    pub tokens: Vec<u32>,
    /// Seconds of the prompt's prefill (logits of its last position only).
    pub prefill_s: f64,
    /// Weight-product FLOPs of the prefill ([`Model::weight_flops`]).
    pub prefill_flops: u64,
    /// Seconds of each decode step (one token through the KV cache).
    pub step_s: Vec<f64>,
}

/// Greedy decoding of one prompt through the KV cache: the prompt is prefilled, then the argmax
/// token (ties → lower id) is fed back, up to `max_new` tokens, stopping after `eos`. Each
/// generated token but the last costs one decode step.
pub fn generate(
    session: &mut Session<'_>,
    prompt: &[u32],
    max_new: usize,
    eos: Option<u32>,
) -> Result<Generated, ReferenceError> {
    let t = Instant::now();
    let f0 = session.model().weight_flops();
    let lo = session.prefill_select(&[prompt.to_vec()], Positions::Last)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let prefill_flops = session.model().weight_flops() - f0;
    let mut next = lo.data.get(..lo.vocab).map(super::compare::argmax);
    let mut out = Vec::new();
    let mut step_s = Vec::new();
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
        let clock = Instant::now();
        let lo = session.step(&[t])?;
        step_s.push(clock.elapsed().as_secs_f64());
        next = lo.at(0, 0).map(super::compare::argmax);
    }
    Ok(Generated {
        tokens: out,
        prefill_s,
        prefill_flops,
        step_s,
    })
}

/// [`generate`] in a fresh session, returning the tokens.
pub fn greedy(
    weights: &dyn Weights,
    dims: &ModelDims,
    precision: Precision,
    prompt: &[u32],
    max_new: usize,
    eos: Option<u32>,
) -> Result<Vec<u32>, ReferenceError> {
    let mut s = Session::new(weights, dims.clone(), precision, 1)?;
    Ok(generate(&mut s, prompt, max_new, eos)?.tokens)
}
