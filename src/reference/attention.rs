//! Grouped-query self-attention with RoPE, the release's logit cap, and a KV cache.
//!
//! Mirrors `MultiHeadAttention.__call__` in the release's `model.py`: q/k/v projections
//! (`[in, out]` weights, no biases), rotate-half RoPE on q and k at absolute positions
//! `cache_len + t`, query head `h` reading kv head `h / (H/K)` (q reshaped to `(K, H/K, hd)`),
//! logits `(q·k) · attn_mult` soft-capped to `cap·tanh(x/cap)`, masked with -1e30 where the key
//! is in the future or is a pad token, softmax in f32, `o = Σ w·v`, heads flattened in the
//! original order, then the output projection.
//!
//! The cache stores k (after RoPE) and v per layer and batch row, so a decode step costs one
//! token's projections plus a pass over the cached keys. Keys over the whole cache (including
//! masked ones) take part in the softmax exactly as in the release, where masked logits are
//! -1e30 and contribute exact zeros. One edge case differs: a query with NO visible key (a row
//! that starts with pad tokens) gets a uniform softmax over all keys present, which is the
//! whole row in a full forward (as in the release) but only the keys so far in a cached step.

use super::band::matmul_cols;
use super::gemm::{matmul, BLayout};
use super::ops::{rope_head, round_if, softmax, Rounding};
use super::{ModelDims, ReferenceError, Weights};
use rayon::prelude::*;

/// Query positions per attention task (bounds the `[block·group, keys]` logits matrix).
const Q_BLOCK: usize = 128;

/// Value the release puts on masked logits.
pub const MASK_VALUE: f32 = -1e30;

/// One layer's cached keys (after RoPE) and values for one batch row, `[len, K, hd]` each.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// Keys, position-major.
    pub k: Vec<f32>,
    /// Values, position-major.
    pub v: Vec<f32>,
}

/// The inputs of one attention call beyond the layer weights.
pub struct AttnInput<'a> {
    /// Normalized activations `[rows × new, D]`, row-major by (batch row, position).
    pub x: &'a [f32],
    /// Batch rows.
    pub rows: usize,
    /// New positions per row in this call.
    pub new: usize,
    /// Positions already in the cache (the RoPE offset of the first new token).
    pub start: usize,
    /// Per batch row: whether each key position (`start + new` of them) is a real token.
    pub key_valid: &'a [Vec<bool>],
    /// Cap on the f32 weight bytes of one projection band ([`super::band`]).
    pub band_bytes: usize,
}

fn path(layer: usize, what: &str) -> String {
    format!("transformer/decoder_layer_{layer}/multi_head_attention/{what}/w")
}

/// `x[m, k] @ W[k, n]` for projection `what` of `layer`, in column bands of at most
/// `band_bytes` of f32 weights (Grok-1's 6144 × 6144 query and output projections take two).
fn project(
    w: &dyn Weights,
    r: &Rounding,
    (layer, what): (usize, &str),
    x: &[f32],
    (m, k, n): (usize, usize, usize),
    band_bytes: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let p = path(layer, what);
    let mut y = matmul_cols(w, &p, None, x, m, (k, n), r.weights, band_bytes)?;
    round_if(r.matmul_out, &mut y);
    Ok(y)
}

/// Run attention for layer `layer`, appending the new keys/values to `cache` (one per row).
/// Returns the output projection `[rows × new, D]`.
pub fn attention(
    dims: &ModelDims,
    r: &Rounding,
    w: &dyn Weights,
    layer: usize,
    inp: &AttnInput<'_>,
    cache: &mut [KvCache],
    inv_freq: &[f32],
) -> Result<Vec<f32>, ReferenceError> {
    let (d, h, kvh, hd) = (dims.d_model, dims.n_q_heads, dims.n_kv_heads, dims.head_dim);
    let m = inp.rows * inp.new;
    if inp.x.len() != m * d || cache.len() != inp.rows || inp.key_valid.len() != inp.rows {
        return Err(ReferenceError::Input(
            "attention: inconsistent batch".into(),
        ));
    }
    let mut q = project(
        w,
        r,
        (layer, "query"),
        inp.x,
        (m, d, h * hd),
        inp.band_bytes,
    )?;
    let mut k = project(
        w,
        r,
        (layer, "key"),
        inp.x,
        (m, d, kvh * hd),
        inp.band_bytes,
    )?;
    let v = project(
        w,
        r,
        (layer, "value"),
        inp.x,
        (m, d, kvh * hd),
        inp.band_bytes,
    )?;
    // RoPE at absolute positions, then the release's cast back to the activation dtype.
    for (i, head) in q.chunks_exact_mut(hd).enumerate() {
        rope_head(head, inp.start + (i / h) % inp.new, inv_freq);
    }
    for (i, head) in k.chunks_exact_mut(hd).enumerate() {
        rope_head(head, inp.start + (i / kvh) % inp.new, inv_freq);
    }
    round_if(r.rope, &mut q);
    round_if(r.rope, &mut k);
    let kv_row = inp.new * kvh * hd;
    for (b, c) in cache.iter_mut().enumerate() {
        if c.k.len() != inp.start * kvh * hd {
            return Err(ReferenceError::Input(format!(
                "layer {layer}: cache holds {} values, expected {} positions",
                c.k.len(),
                inp.start
            )));
        }
        c.k.extend_from_slice(&k[b * kv_row..(b + 1) * kv_row]);
        c.v.extend_from_slice(&v[b * kv_row..(b + 1) * kv_row]);
    }
    let total = inp.start + inp.new;
    for kv in inp.key_valid {
        if kv.len() != total {
            return Err(ReferenceError::Input("attention: key mask length".into()));
        }
    }
    let group = h / kvh;
    let cache_ro: &[KvCache] = cache;
    let nblk = inp.new.div_ceil(Q_BLOCK);
    let tasks: Vec<(usize, usize, usize)> = (0..inp.rows)
        .flat_map(|b| (0..kvh).flat_map(move |g| (0..nblk).map(move |qb| (b, g, qb * Q_BLOCK))))
        .collect();
    // One task per (row, kv head, query block): the group's query heads as one matrix
    // [positions × group, hd] against that kv head's keys and values.
    let blocks: Vec<Option<Vec<f32>>> = tasks
        .par_iter()
        .map(|&(b, g, t0)| {
            let (c, valid) = (&cache_ro[b], &inp.key_valid[b]);
            let t1 = (t0 + Q_BLOCK).min(inp.new);
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
                let i = b * inp.new + t;
                qm.extend_from_slice(
                    q.get((i * h + g * group) * hd..(i * h + (g + 1) * group) * hd)?,
                );
            }
            let mut logits = matmul(&qm, rows_q, hd, &kg, BLayout::NK, total)?;
            for (ri, row) in logits.chunks_exact_mut(total).enumerate() {
                let qpos = inp.start + t0 + ri / group;
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
            matmul(&logits, rows_q, total, &vg, BLayout::KN, hd)
        })
        .collect();
    let mut o = vec![0f32; m * h * hd];
    for (&(b, g, t0), blk) in tasks.iter().zip(blocks) {
        let ob =
            blk.ok_or_else(|| ReferenceError::Input(format!("layer {layer}: attention dims")))?;
        for (ri, orow) in ob.chunks_exact(hd).enumerate() {
            let (i, head) = (b * inp.new + t0 + ri / group, g * group + ri % group);
            o[(i * h + head) * hd..(i * h + head + 1) * hd].copy_from_slice(orow);
        }
    }
    round_if(r.attn_out, &mut o);
    project(w, r, (layer, "linear"), &o, (m, h * hd, d), inp.band_bytes)
}
