//! Grouped-query self-attention with RoPE, the release's logit cap, and a KV cache.
//!
//! Mirrors `MultiHeadAttention.__call__` in the release's `model.py`: q/k/v projections
//! (`[in, out]` weights, no biases), rotate-half RoPE on q and k at absolute positions
//! `start + t`, query head `h` reading kv head `h / (H/K)` (q reshaped to `(K, H/K, hd)`),
//! logits `(q·k) · attn_mult` soft-capped to `cap·tanh(x/cap)`, masked with -1e30 where the key
//! is in the future or is a pad token, softmax in f32, `o = Σ w·v`, heads flattened in the
//! original order, then the output projection.
//!
//! The rows of one call belong to *segments*: independent sequences, each with its own KV
//! cache, start position and key mask. A KV-cached decode step is one row per segment; a
//! prefill is one segment per batch row; a layer-major pass is one segment per sequence. The
//! projections run once over all rows (each weight read once per call), attention runs per
//! segment.
//!
//! The cache stores k (after RoPE) and v, so a decode step costs one token's projections plus a
//! pass over the cached keys. Keys over the whole cache (including masked ones) take part in the
//! softmax exactly as in the release, where masked logits are -1e30 and contribute exact zeros.
//! One edge case differs: a query with NO visible key (a row that starts with pad tokens) gets a
//! uniform softmax over all keys present, which is the whole row in a full forward (as in the
//! release) but only the keys so far in a cached step.

use super::model::{Model, Obs};
use super::ops::{rope_head, round_if, softmax};
use super::products::Spec;
use super::store::WeightId;
use super::ReferenceError;
use crate::kernel::{matmul_f32, Layout};
use crate::model::Role;
use rayon::prelude::*;

/// Query positions per attention task (bounds the `[block·group, keys]` logits matrix).
const Q_BLOCK: usize = 128;

/// Value the release puts on masked logits.
pub const MASK_VALUE: f32 = -1e30;

/// One layer's cached keys (after RoPE) and values for one sequence, `[len, K, hd]` each.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// Keys, position-major.
    pub k: Vec<f32>,
    /// Values, position-major.
    pub v: Vec<f32>,
}

/// One sequence's rows in an attention call.
pub(crate) struct Segment<'a> {
    /// First row of the segment in the call's activations.
    pub row0: usize,
    /// Rows (new positions).
    pub len: usize,
    /// Positions already in the cache (the RoPE offset of the first new row).
    pub start: usize,
    /// The sequence's cache for this layer (`start` positions on entry).
    pub cache: &'a mut KvCache,
    /// Whether each key position (`start + len` of them) is a real token.
    pub valid: &'a [bool],
}

/// Run attention for `layer` on the normed activations `x` (`[rows, D]`), appending the new
/// keys and values to each segment's cache. Returns the output projection `[rows, D]`.
pub(crate) fn attention(
    model: &Model<'_>,
    layer: usize,
    x: &[f32],
    segs: &mut [Segment<'_>],
    obs: &mut Obs<'_>,
) -> Result<Vec<f32>, ReferenceError> {
    let dims = model.dims();
    let r = *model.rounding();
    let (d, h, kvh, hd) = (dims.d_model, dims.n_q_heads, dims.n_kv_heads, dims.head_dim);
    let (qw, kvw) = (h * hd, kvh * hd);
    let m = x.len() / d;
    let covered: usize = segs.iter().map(|s| s.len).sum();
    if x.len() != m * d
        || covered != m
        || segs
            .iter()
            .any(|s| s.row0 + s.len > m || s.valid.len() != s.start + s.len)
    {
        return Err(ReferenceError::Input(format!(
            "layer {layer}: attention segments do not tile the {m} rows"
        )));
    }
    for role in [Role::AttnQ, Role::AttnK, Role::AttnV] {
        obs.see(layer, role, None, x, d);
    }
    let spec = |role: Role, n: usize| Spec {
        id: WeightId::layer(role, layer),
        x,
        m,
        k: d,
        n,
    };
    let mut qkv = model.products(
        &[
            spec(Role::AttnQ, qw),
            spec(Role::AttnK, kvw),
            spec(Role::AttnV, kvw),
        ],
        r.weights,
    )?;
    qkv.iter_mut().for_each(|y| round_if(r.matmul_out, y));
    let (Some(v), Some(mut k), Some(mut q)) = (qkv.pop(), qkv.pop(), qkv.pop()) else {
        return Err(ReferenceError::Input(
            "attention: missing projections".into(),
        ));
    };
    // RoPE at absolute positions, then the release's cast back to the activation dtype.
    let inv_freq = model.inv_freq();
    for s in segs.iter() {
        for i in 0..s.len {
            let (row, pos) = (s.row0 + i, s.start + i);
            for head in q[row * qw..(row + 1) * qw].chunks_exact_mut(hd) {
                rope_head(head, pos, inv_freq);
            }
            for head in k[row * kvw..(row + 1) * kvw].chunks_exact_mut(hd) {
                rope_head(head, pos, inv_freq);
            }
        }
    }
    round_if(r.rope, &mut q);
    round_if(r.rope, &mut k);
    for s in segs.iter_mut() {
        if s.cache.k.len() != s.start * kvw || s.cache.v.len() != s.start * kvw {
            return Err(ReferenceError::Input(format!(
                "layer {layer}: cache holds {} values, expected {} positions",
                s.cache.k.len(),
                s.start
            )));
        }
        let rows = s.row0 * kvw..(s.row0 + s.len) * kvw;
        s.cache.k.extend_from_slice(&k[rows.clone()]);
        s.cache.v.extend_from_slice(&v[rows]);
    }
    drop((k, v));
    let group = h / kvh;
    let views: Vec<(&KvCache, &[bool], usize, usize, usize)> = segs
        .iter()
        .map(|s| (&*s.cache, s.valid, s.row0, s.len, s.start))
        .collect();
    // One task per (segment, kv head, query block): the group's query heads as one matrix
    // [positions × group, hd] against that kv head's keys and values.
    let tasks: Vec<(usize, usize, usize)> = views
        .iter()
        .enumerate()
        .flat_map(|(si, v)| {
            let nblk = v.3.div_ceil(Q_BLOCK);
            (0..kvh).flat_map(move |g| (0..nblk).map(move |qb| (si, g, qb * Q_BLOCK)))
        })
        .collect();
    let blocks: Vec<Option<Vec<f32>>> = tasks
        .par_iter()
        .map(|&(si, g, t0)| {
            let (c, valid, row0, len, start) = views[si];
            let total = start + len;
            let t1 = (t0 + Q_BLOCK).min(len);
            let gather = |src: &[f32]| -> Option<Vec<f32>> {
                let mut out = Vec::with_capacity(total * hd);
                for s in 0..total {
                    out.extend_from_slice(src.get((s * kvh + g) * hd..(s * kvh + g + 1) * hd)?);
                }
                Some(out)
            };
            let (kg, vg) = (gather(&c.k)?, gather(&c.v)?);
            let rows_q = (t1 - t0) * group;
            let mut qm = Vec::with_capacity(rows_q * hd);
            for t in t0..t1 {
                let i = row0 + t;
                qm.extend_from_slice(
                    q.get((i * h + g * group) * hd..(i * h + (g + 1) * group) * hd)?,
                );
            }
            let mut logits = matmul_f32(&qm, rows_q, hd, &kg, Layout::Nk, total).ok()?;
            for (ri, row) in logits.chunks_exact_mut(total).enumerate() {
                let qpos = start + t0 + ri / group;
                for (s, l) in row.iter_mut().enumerate() {
                    *l = if s > qpos || !valid[s] {
                        MASK_VALUE
                    } else {
                        let x = *l * dims.attn_mult;
                        dims.attn_cap * (x / dims.attn_cap).tanh()
                    };
                }
                softmax(row);
                round_if(r.attn_weights, row);
            }
            matmul_f32(&logits, rows_q, total, &vg, Layout::Kn, hd).ok()
        })
        .collect();
    let mut o = vec![0f32; m * qw];
    for (&(si, g, t0), blk) in tasks.iter().zip(blocks) {
        let ob =
            blk.ok_or_else(|| ReferenceError::Input(format!("layer {layer}: attention dims")))?;
        let row0 = views[si].2;
        for (ri, orow) in ob.chunks_exact(hd).enumerate() {
            let (i, head) = (row0 + t0 + ri / group, g * group + ri % group);
            o[(i * h + head) * hd..(i * h + head + 1) * hd].copy_from_slice(orow);
        }
    }
    drop(views);
    round_if(r.attn_out, &mut o);
    obs.see(layer, Role::AttnO, None, &o, qw);
    let mut y = model
        .products(
            &[Spec {
                id: WeightId::layer(Role::AttnO, layer),
                x: &o,
                m,
                k: qw,
                n: d,
            }],
            r.weights,
        )?
        .pop()
        .unwrap_or_default();
    round_if(r.matmul_out, &mut y);
    Ok(y)
}
